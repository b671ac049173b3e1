"""The browser site of a build (build-output/web/php-<build>/): the build's modules byte for byte,
the WASI shim from npm, and the playground from templates/web/ (docs/web.md). The wordpress
flavour's site adds WordPress: templates/web-wordpress/ (a service worker answering with
php-cgi.wasm) and the docroot packed as one archive the worker unpacks into memory.

Files in the template folders ending in .j2 are rendered (they get the build's identity and
module hashes); every other file there is copied as it is.
"""
from __future__ import annotations

import gzip
import json
import shutil
import tarfile
from pathlib import Path

from . import atomic, settings, templating, wordpress
from .engine import file_sha256
from .errors import KilnError
from .layout import Build

SHIM = "@bjorn3/browser_wasi_shim"
SITE_TEMPLATES = settings.TEMPLATES / "web"
WORDPRESS_TEMPLATES = settings.TEMPLATES / "web-wordpress"
DOCROOT_ARCHIVE = "wordpress-docroot.tar.gz"
# The shim's files that the browser loads (dist/*.js) and its licences, which travel with it.
SHIM_LICENCES = ("LICENSE-MIT", "LICENSE-APACHE")


def site_folder(build: Build) -> Path:
    return settings.build_output() / "web" / f"{build.language}-{build.id}"


def shim_folder() -> Path:
    return settings.ROOT / "node_modules" / SHIM


def shim_version() -> str:
    """The installed shim's version (package.json pins it; `npm ci` installs it)."""
    package = shim_folder() / "package.json"
    try:
        return json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        raise KilnError(f"no {SHIM} in {shim_folder()}: run `npm ci` (scripts/setup does)") from None


def shim_files() -> list[Path]:
    folder = shim_folder()
    return sorted([*(folder / "dist").glob("*.js"), *(folder / name for name in SHIM_LICENCES),
                   folder / "package.json"])


def has_wordpress(build: Build) -> bool:
    return build.flavour == "wordpress"


def site_templates(build: Build | None = None) -> list[Path]:
    """Every build's templates; with `build`, also WordPress's where the build has it."""
    folders = [SITE_TEMPLATES] + ([WORDPRESS_TEMPLATES] if build and has_wordpress(build) else [])
    return sorted(p for folder in folders for p in folder.rglob("*") if p.is_file())


def pack_docroot(source: Path, target: Path) -> int:
    """The WordPress docroot as one gzip'd ustar archive (the service worker's reader knows ustar
    only), sorted, without owners, times or gzip's file name: the same docroot gives the same
    bytes. Returns the number of files."""
    count = 0
    with atomic.atomic_path(target) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as packed, \
                tarfile.open(fileobj=packed, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            for path in sorted(source.rglob("*")):
                info = archive.gettarinfo(str(path), arcname=path.relative_to(source).as_posix())
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                if info.isfile():
                    with open(path, "rb") as fh:
                        archive.addfile(info, fh)
                    count += 1
                elif info.isdir():
                    archive.addfile(info)
    return count


def identity() -> dict:
    """What decides the site besides the modules' and templates' bytes. `layout`: raise it when
    this module changes what it writes, so every site is written again."""
    return {"shim": SHIM, "shim_version": shim_version(), "layout": 1}


def make_site(build: Build, modules: dict[str, Path]) -> dict:
    """Write the site into a staging folder and swap the whole folder into place; returns the
    manifest (site.json)."""
    target = site_folder(build)
    staged = target.with_name(f".{target.name}.staging")
    if staged.exists():
        shutil.rmtree(staged)  # left by a killed run
    staged.mkdir(parents=True)
    manifest = {
        "build": build.id, "version": build.version, "flavour": build.flavour,
        "shim_name": SHIM, "shim_version": shim_version(),
        "modules": {name: {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
                    for name, path in modules.items()},
    }
    for name, path in modules.items():
        shutil.copyfile(path, staged / path.name)
    shim = staged / "shim"
    shim.mkdir()
    for path in shim_files():
        shutil.copyfile(path, shim / path.name)
    if has_wordpress(build):
        files = pack_docroot(wordpress.docroot_dir(), staged / DOCROOT_ARCHIVE)
        manifest["wordpress"] = {"archive": DOCROOT_ARCHIVE, "files": files,
                                 "bytes": (staged / DOCROOT_ARCHIVE).stat().st_size}
    for path in site_templates(build):
        relative = path.relative_to(settings.TEMPLATES)
        out = staged / relative.relative_to(relative.parts[0])
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".j2":
            rendered = templating.render(relative.as_posix(), build_id=build.id, **manifest)
            out.with_suffix("").write_text(rendered)
        else:
            shutil.copyfile(path, out)
    (staged / "site.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    atomic.replace_dir(staged, target)
    return manifest
