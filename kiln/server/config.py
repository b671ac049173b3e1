"""What a server is asked to do: ServerConfig, the grants it names, and where modules are found."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence, TextIO

from ..errors import KilnError
from ..layout import Build

SERVER_SOFTWARE = "Kiln"
DEFAULT_DOCROOT_GUEST = "/var/www"
INI_GUEST_DIR = "/.kiln"         # generated php.ini, read-only, found through PHPRC
TMP_GUEST_DIR = "/tmp"
OPCACHE_GUEST_DIR = "/.opcache"  # OPcache's file cache, writable
ISOLATIONS = ("worker", "request")
MiB = 1024 * 1024


@dataclass(frozen=True)
class Mount:
    """A host folder the guest sees at `guest` (writable or not)."""
    host: Path
    guest: str
    writable: bool = True


@dataclass
class ServerConfig:
    docroot: Path                                  # host folder served
    module: Path | None = None                     # php-cgi .wasm / .cwasm
    native_cgi: Path | None = None                 # or a native php-cgi binary (benchmarks)
    docroot_guest: str = DEFAULT_DOCROOT_GUEST     # where the guest sees the docroot
    host: str = "127.0.0.1"
    port: int = 8080                               # 0: any free port
    mounts: Sequence[Mount] = ()                   # extra grants (writable subfolders, data)
    root: Path | None = None                       # host folder granted as / (default: synthetic)
    tmp_dir: Path | None = None                    # host folder for /tmp (default: private, removed)
    opcache: bool = True                           # OPcache (a module without it ignores it)
    opcache_dir: Path | None = None                # its file cache's host folder (default: private)
    ini_file: Path | None = None                   # php.ini to use
    ini: Mapping[str, str] = field(default_factory=dict)   # -d settings, after ini_file
    env: Mapping[str, str] = field(default_factory=dict)   # extra guest environment
    timeout: float = 30.0                          # wall-clock seconds per script
    max_body: int = 64 * MiB                       # request body cap (413)
    max_header_size: int = 64 * 1024               # request line + header lines (431; 414 line)
    max_header_lines: int = 100                    # header lines (431), Apache's LimitRequestFields
    max_response: int = 256 * MiB                  # script output cap (502)
    memory_mb: int | None = 512                    # linear memory cap per instance
    workers: int = 0                               # scripts at once (0: 2 x cores, at least 4)
    queue_timeout: float | None = None             # wait for a worker (None: = timeout) -> 503
    front_controller: str | None = "/index.php"    # for paths that do not exist
    index_files: Sequence[str] = ("index.php", "index.html", "index.htm")
    script_extensions: Sequence[str] = (".php",)
    trust_forwarded: bool = False                  # X-Forwarded-Proto/-For/-Host from a proxy
    tls_cert: Path | None = None
    tls_key: Path | None = None
    keepalive_timeout: float = 15.0                # idle connection and socket read timeout
    max_connections: int = 256
    cron_interval: float | None = None             # seconds between internal wp-cron runs
    cron_path: str = "/wp-cron.php"
    grace: float = 10.0                            # shutdown: wait this long for requests
    access_log: TextIO | None = field(default_factory=lambda: sys.stderr)
    log_php_errors: bool = True                    # copy the script's stderr to the log
    # "worker": persistent instances (kiln.pool), PHP's request shutdown between requests and
    # OPcache in memory; "request": a fresh instance per request, nothing survives it.
    # A native php-cgi is always a process per request.
    isolation: str = "worker"
    # What runs php-cgi, given whole instead of module/native_cgi: anything with `kind` and
    # `run(env, body, timeout) -> CgiResult` (kiln.crun's ContainerBackend: a container per request).
    backend: object | None = None

    def effective_workers(self) -> int:
        return self.workers or max(4, 2 * (os.cpu_count() or 1))

    def effective_isolation(self) -> str:
        return "request" if self.native_cgi is not None else self.isolation


def norm_guest(path: str) -> str:
    if not path.startswith("/"):
        raise KilnError(f"guest path {path!r} must be absolute (the guest's working directory is /)")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise KilnError(f"guest path {path!r} must not contain '..'")
    return "/" + "/".join(parts)


def guest_parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


def find_php_cgi(version: str, flavour: str = "default") -> Path:
    """The built php-cgi module of a version: precompiled if there, else the .wasm."""
    build = Build("php", version, flavour)
    for aot in (True, False):
        path = build.module("php-cgi", aot=aot)
        if path.is_file():
            return path
    raise KilnError(f"no php-cgi module for PHP {version} ({build.module('php-cgi', aot=True)} and "
                    f"php-cgi.wasm are missing): build it with `doit php:{build.id}`")
