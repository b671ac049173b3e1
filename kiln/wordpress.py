"""WordPress on SQLite as a docroot for php-cgi.wasm (languages/php/wordpress/recipe.toml).

The docroot is assembled from WordPress Playground's npm package: WordPress's PHP code (a zip),
the static assets beside it, the SQLite database integration plugin (a zip) whose `db.copy`
becomes `wp-content/db.php`, and Kiln's own wp-config.php (templates/wp-config.php.j2).
Everything is unpacked into a staging folder that is renamed into place when complete.

At run time the server grants `wp-content/` writable (database, uploads) and /tmp; the rest
of the docroot can stay read-only.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import archive, atomic, fetch, settings, templating
from .errors import KilnError
from .recipe import _expect, _string_list, check_keys, read_toml

RECIPE = settings.ROOT / "languages" / "php" / "wordpress" / "recipe.toml"
CONFIG_TEMPLATE = "wp-config.php.j2"
# What the host grants writable, relative to the docroot.
WRITABLE = "wp-content"


@dataclass(frozen=True)
class WordPress:
    path: Path
    version: str
    npm: str
    file: str
    sha256: str
    code: str
    assets: str
    plugin: str
    plugin_folder: str
    remove: tuple[str, ...]


def docroot_dir() -> Path:
    return settings.build_output() / "wordpress" / "docroot"


def docroot_stamp() -> Path:
    """Beside the docroot, not in it (it would be served)."""
    return settings.build_output() / "wordpress" / "docroot.json"


def load(path: Path | str = RECIPE) -> WordPress:
    path = Path(path)
    data, check = read_toml(path)
    check_keys(check, data, {"name", "version", "source", "layout"}, ("version", "source", "layout"))
    source = _expect(check, data["source"], dict, "[source]", "[source]")
    layout = _expect(check, data["layout"], dict, "[layout]", "[layout]")
    for table, keys, header in ((source, ("npm", "file", "sha256"), "[source]"),
                                (layout, ("code", "assets", "plugin", "plugin_folder"), "[layout]")):
        for key in table:
            if key not in (*keys, "remove"):
                check.fail(f"{header}: unknown key {key!r}", header, key)
        for key in keys:
            if key not in table:
                check.fail(f"{header} needs {key!r}", header)
            _expect(check, table[key], str, f"{header} {key}", header, key)
    if len(source["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in source["sha256"]):
        check.fail("[source] sha256 must be 64 lowercase hex digits", "[source]", "sha256")
    if "/" in source["file"]:
        check.fail("[source] file is a file name, not a path", "[source]", "file")
    remove = _string_list(check, layout.get("remove", []), "[layout] remove", "[layout]", "remove")
    for rel in (layout["code"], layout["assets"], layout["plugin"], layout["plugin_folder"], *remove):
        if rel.startswith("/") or ".." in rel.split("/"):
            check.fail(f"{rel!r} must be a relative path without '..'", rel)
    return WordPress(path=path, version=_expect(check, data["version"], str, "version", "version"),
                     npm=source["npm"], file=source["file"], sha256=source["sha256"],
                     code=layout["code"], assets=layout["assets"], plugin=layout["plugin"],
                     plugin_folder=layout["plugin_folder"], remove=remove)


# ---------------------------------------------------------------------------------------------
# Fetching the package


def fetch_package(wp: WordPress, dest: Path, mirrors: list[str]) -> str:
    """Place the package at `dest`: from a mirror if one has it, else `npm pack`; sha256-pinned."""
    try:
        return fetch.fetch(wp.file, wp.sha256, dest, [], mirrors)
    except KilnError as from_mirrors:
        if not shutil.which("npm"):
            raise KilnError(f"{from_mirrors}; and npm is not installed to fetch {wp.npm}") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-pack.", dir=dest.parent) as work:
        print(f"  npm pack {wp.npm}", flush=True)
        result = subprocess.run(["npm", "pack", wp.npm, "--pack-destination", work, "--silent"],
                                capture_output=True, text=True)
        packed = Path(work) / wp.file
        if result.returncode != 0 or not packed.is_file():
            reason = (result.stderr.strip().splitlines() or [f"no {wp.file} written"])[-1]
            raise KilnError(f"npm pack {wp.npm} failed: {reason}")
        got = fetch.file_sha256(packed)
        if got != wp.sha256:
            raise KilnError(f"npm pack {wp.npm}: sha256 {got[:16]}..., pinned {wp.sha256[:16]}... "
                            f"in {wp.path}: the package changed upstream, or the pin is wrong")
        os.replace(packed, dest)
    return f"npm:{wp.npm}"


# ---------------------------------------------------------------------------------------------
# Assembling the docroot


def _safe_name(name: str, what: str) -> str:
    if name.startswith("/") or "\\" in name or ".." in name.split("/") or posixpath.isabs(name):
        raise KilnError(f"refusing to unpack {what}: entry {name!r} is unsafe; the package is "
                        f"corrupt or malicious: delete it and fetch it again")
    return name


def _unzip(zip_path: Path, dest: Path, strip: str = "") -> int:
    """Unpack a zip whose entries are checked first; `strip` drops a leading folder."""
    count = 0
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
        for info in infos:
            _safe_name(info.filename, zip_path.name)
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise KilnError(f"refusing to unpack {zip_path.name}: {info.filename} is a symlink")
        for info in infos:
            name = info.filename
            if strip:
                if not name.startswith(strip + "/"):
                    continue
                name = name[len(strip) + 1:]
            if not name:
                continue
            target = dest / name
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            count += 1
    return count


def _unpack_package(wp: WordPress, tgz: Path, dest: Path) -> None:
    """The three parts of the (large, many-versions) package only; every entry checked."""
    wanted = (wp.code, wp.plugin, wp.assets)
    try:
        with tarfile.open(tgz) as tar:
            members = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise KilnError(f"cannot read {tgz}: {exc}; delete it and fetch it again") from None
    archive.check_members(tgz, members)
    names = {m.name for m in members}
    for part in wanted:
        if part not in names and not any(n.startswith(part + "/") for n in names):
            raise KilnError(f"{tgz.name} has no {part}: is [layout] in {wp.path} right?")
    subprocess.run(["tar", "-xzf", str(tgz), "-C", str(dest), "--no-same-owner",
                    "--no-same-permissions", *wanted], check=True, capture_output=True)


def _db_dropin(plugin_dir: Path, plugin_folder: str) -> str:
    """The plugin's db.copy with its two placeholders filled (relative to wp-content/)."""
    text = (plugin_dir / "db.copy").read_text()
    for placeholder in ("'{SQLITE_IMPLEMENTATION_FOLDER_PATH}'", "'{SQLITE_PLUGIN}'"):
        if placeholder not in text:
            raise KilnError(f"{plugin_dir / 'db.copy'} lacks {placeholder}: a plugin version "
                            f"Kiln does not know; check how db.php must be made")
    text = text.replace("'{SQLITE_IMPLEMENTATION_FOLDER_PATH}'", f"__DIR__ . '/plugins/{plugin_folder}'")
    return text.replace("'{SQLITE_PLUGIN}'", f"'{plugin_folder}/load.php'")


def render_config(wp: WordPress) -> str:
    return templating.render(CONFIG_TEMPLATE, wordpress=wp)


def assemble(wp: WordPress, tgz: Path, target: Path, config_text: str) -> dict:
    """Build the docroot in a staging folder beside `target`, then swap it in."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging.", dir=target.parent))
    unpacked = Path(tempfile.mkdtemp(prefix=".package.", dir=target.parent))
    try:
        _unpack_package(wp, tgz, unpacked)
        root = staging / "docroot"
        root.mkdir()
        code_files = _unzip(unpacked / wp.code, root)
        themes = {p.name for p in (root / "wp-content" / "themes").iterdir() if p.is_dir()}

        # Static assets: only where the code zip has nothing, and only for themes it ships
        # (the assets folder also holds the static half of themes whose PHP is not there).
        assets_root = unpacked / wp.assets
        asset_files = 0
        for source in sorted(assets_root.rglob("*")):
            if not source.is_file() or source.is_symlink():
                continue
            rel = source.relative_to(assets_root).as_posix()
            parts = rel.split("/")
            if rel in wp.remove or rel.startswith("wp-content/database/"):
                continue
            if parts[:2] == ["wp-content", "themes"] and len(parts) > 2 and parts[2] not in themes:
                continue
            if parts[:2] == ["wp-content", "plugins"]:
                continue
            dest = root / rel
            if dest.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
            asset_files += 1

        plugin_dir = root / "wp-content" / "plugins" / wp.plugin_folder
        with zipfile.ZipFile(unpacked / wp.plugin) as zf:
            tops = {info.filename.split("/")[0] for info in zf.infolist()}
        if len(tops) != 1:
            raise KilnError(f"{wp.plugin} should hold one top folder, has {sorted(tops)}")
        plugin_files = _unzip(unpacked / wp.plugin, plugin_dir, strip=tops.pop())
        shutil.rmtree(plugin_dir / ".github", ignore_errors=True)
        (root / "wp-content" / "db.php").write_text(_db_dropin(plugin_dir, wp.plugin_folder))

        for rel in wp.remove:
            victim = root / rel
            if victim.is_dir():
                shutil.rmtree(victim)
            elif victim.exists():
                victim.unlink()
        (root / "wp-content" / "database").mkdir(parents=True, exist_ok=True)
        (root / "wp-content" / "uploads").mkdir(parents=True, exist_ok=True)
        (root / "wp-config.php").write_text(config_text)

        # Fixed modes: readable by everyone, nothing executable.
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        files = [p for p in root.rglob("*") if p.is_file()]
        record = {
            "wordpress": wp.version,
            "package": wp.npm,
            "sha256": wp.sha256,
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
            "from_code_zip": code_files,
            "from_assets": asset_files,
            "from_plugin": plugin_files,
            "wp_config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
        }
        atomic.replace_dir(root, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(unpacked, ignore_errors=True)
    return record


def fresh_copy(destination: Path) -> Path:
    """A private copy of the assembled docroot (tests, a first deployment): the server then
    grants its wp-content/ writable."""
    source = docroot_dir()
    if not source.is_dir():
        raise KilnError(f"{source} is missing: assemble it with `doit wordpress_docroot`")
    shutil.copytree(source, destination)
    return destination
