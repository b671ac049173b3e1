"""The browser site of a build (build-output/web/php-<build>/): the build's modules byte for byte,
the WASI shim from npm, and the playground from templates/web/ (docs/web.md).

Files in templates/web/ ending in .j2 are rendered (they get the build's identity and module
hashes); every other file there is copied as it is.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import atomic, settings, templating
from .engine import file_sha256
from .errors import KilnError
from .layout import Build

SHIM = "@bjorn3/browser_wasi_shim"
SITE_TEMPLATES = settings.TEMPLATES / "web"
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


def site_templates() -> list[Path]:
    return sorted(p for p in SITE_TEMPLATES.rglob("*") if p.is_file())


def identity() -> dict:
    """What decides the site besides the modules' and templates' bytes."""
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
    for path in site_templates():
        relative = path.relative_to(SITE_TEMPLATES)
        out = staged / relative
        out.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".j2":
            rendered = templating.render(f"web/{relative.as_posix()}", build_id=build.id, **manifest)
            out.with_suffix("").write_text(rendered)
        else:
            shutil.copyfile(path, out)
    (staged / "site.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    atomic.replace_dir(staged, target)
    return manifest
