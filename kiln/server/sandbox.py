"""What the guest can reach, and the php.ini it reads.

The guest sees a synthetic read-only `/` holding only mount points, the docroot (read-only)
at its guest path, the writable grants, a private writable /tmp, a writable /.opcache for
OPcache's file cache and a read-only /.kiln holding the generated php.ini (found through
PHPRC). A native php-cgi has no sandbox: its guest paths are the host paths.

The php.ini is a file, not php-cgi's `-c`/`-d` arguments, because php-cgi ignores its
arguments when the query string starts with `-` (the CVE-2012-1823 fix), which would let a
request drop the settings.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .. import atomic, runner, templating
from ..errors import KilnError
from .config import (INI_GUEST_DIR, OPCACHE_GUEST_DIR, TMP_GUEST_DIR, Mount, ServerConfig,
                     guest_parts, norm_guest)
from .routing import FileSystem

_SETTING_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]+")
OPCACHE_MEMORY_MB = 64      # per worker (opcache.memory_consumption), as kiln.pool's default


def opcache_memory_mb(memory_mb: int | None) -> int:
    """OPcache's "shared" memory comes out of the worker's linear memory, allocated at start:
    64 MB under a 96 MB --memory fails every worker's start-up ("Unable to allocate shared
    memory segment"). A quarter of the cap, 8 MB (OPcache's minimum) to 64 MB."""
    if not memory_mb:
        return OPCACHE_MEMORY_MB
    return max(8, min(OPCACHE_MEMORY_MB, memory_mb // 4))


@dataclass
class Sandbox:
    docroot_guest: str
    tmp_host: Path
    tmp_guest: str
    ini_guest: str
    opcache_host: Path | None
    fs: FileSystem                  # URL paths -> host files, through the docroot's grants
    writable_roots: list[Path]      # where a killed script's SQLite locks may be
    preopens: list[runner.Preopen]  # the wasm guest's grants (empty for a native php-cgi)


def prepare(cfg: ServerConfig, state_dir: Path) -> Sandbox:
    """Folders, grants and php.ini for `cfg`, under `state_dir` (removed by the server)."""
    docroot = Path(cfg.docroot)
    if not docroot.is_dir():
        raise KilnError(f"{docroot}: docroot is not a folder (--docroot: the folder to serve)")
    native = cfg.native_cgi is not None
    if cfg.tmp_dir is not None:
        tmp_host = Path(cfg.tmp_dir)
        tmp_host.mkdir(parents=True, exist_ok=True)
    else:
        tmp_host = state_dir / "tmp"
        tmp_host.mkdir()
    ini_host = state_dir / "etc"
    ini_host.mkdir()
    mounts: list[Mount] = []
    for m in cfg.mounts:
        if not Path(m.host).is_dir():
            raise KilnError(f"{m.host}: granted folder does not exist")
        mounts.append(Mount(Path(m.host), norm_guest(m.guest), m.writable))
    if native:
        docroot_guest = os.path.realpath(docroot)
        mounts = [Mount(m.host, os.path.realpath(m.host), m.writable) for m in mounts]
        tmp_guest, ini_guest = str(tmp_host.resolve()), str(ini_host)
    else:
        docroot_guest = norm_guest(cfg.docroot_guest)
        tmp_guest, ini_guest = TMP_GUEST_DIR, INI_GUEST_DIR
        if docroot_guest in ("/", tmp_guest, ini_guest):
            raise KilnError(f"docroot guest path {docroot_guest} is reserved; use e.g. /var/www")
    docroot_mount = Mount(docroot, docroot_guest, False)
    grants = [docroot_mount, *mounts, Mount(tmp_host, tmp_guest, True)]
    # Not the OPcache folder: the stale-lock scan walks these, and it holds no databases.
    writable_roots = [Path(m.host) for m in grants if m.writable]
    opcache_host = opcache_guest = None
    if cfg.opcache:
        opcache_host = Path(cfg.opcache_dir) if cfg.opcache_dir is not None else state_dir / "opcache"
        try:
            opcache_host.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KilnError(f"{opcache_host}: cannot create the OPcache folder: "
                            f"{e.strerror} (give a writable --opcache-dir)") from None
        opcache_guest = str(opcache_host.resolve()) if native else OPCACHE_GUEST_DIR
        grants.append(Mount(opcache_host, opcache_guest, True))
    atomic.write_text(ini_host / "php.ini", render_ini(cfg, tmp_guest, opcache_guest))
    preopens: list[runner.Preopen] = []
    if not native:
        root = Path(cfg.root) if cfg.root is not None else state_dir / "root"
        root.mkdir(exist_ok=True)
        grants.append(Mount(ini_host, ini_guest, False))
        # Mount points, so that every folder on the way to a grant exists for the guest
        # (PHP's realpath() lstat()s each component of /var/www/index.php).
        for m in grants:
            target = root.joinpath(*guest_parts(m.guest))
            if not target.exists():
                target.mkdir(parents=True, exist_ok=True)
        preopens = [runner.Preopen(root, "/", False)]
        preopens += [runner.Preopen(Path(m.host), m.guest, m.writable) for m in grants]
    return Sandbox(docroot_guest, tmp_host, tmp_guest, ini_guest, opcache_host,
                   FileSystem(docroot_guest, [docroot_mount, *mounts]), writable_roots, preopens)


def render_ini(cfg: ServerConfig, tmp_guest: str, opcache_guest: str | None) -> str:
    """Defaults, OPcache for the isolation in use, then --ini verbatim, then -d settings."""
    opcache = None
    if opcache_guest is not None:
        opcache = {"in_memory": cfg.effective_isolation() == "worker",
                   "memory": opcache_memory_mb(cfg.memory_mb), "file_cache": opcache_guest}
    ini_text = ""
    if cfg.ini_file is not None:
        try:
            ini_text = Path(cfg.ini_file).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise KilnError(f"{cfg.ini_file}: cannot read php.ini: {e.strerror}") from None
    settings = []
    for name, value in cfg.ini.items():
        if not _SETTING_NAME.fullmatch(name) or "\n" in value or "\r" in value:
            raise KilnError(f"bad php.ini setting {name!r}={value!r}")
        settings.append((name, value))
    return templating.render("php.ini.j2", generator="kiln.server", tmp=tmp_guest, opcache=opcache,
                             ini_file=cfg.ini_file, ini_text=ini_text, settings=settings)
