"""Kiln's HTTP server: a docroot served by php-cgi running in Wasmtime, one instance per request.

WASI preview 1 cannot listen on sockets, so PHP's built-in server cannot run under Wasmtime.
This host-side server does what Apache's mod_wasm and WAGI do: it speaks HTTP itself and runs
php-cgi (CGI/1.1) once per request in a fresh Wasmtime instance of a module loaded once.

    python -m kiln.server --docroot DIR [--php 8.2.32 | --module PATH | --native-cgi PATH] ...

How a request is handled (see docs/server.md for the whole story):
- the URL path is decoded and checked once (no NUL, no `..`, no `%2f`, no dot-files), then
  walked segment by segment on the host, `php -S`/Apache style: a `.php` file runs with the
  rest of the path as PATH_INFO, a folder serves its index (index.php, index.html), another
  file is sent as a static file, and anything missing goes to the front controller
  (/index.php: pretty permalinks) or 404. Whatever is served or run must resolve, symlinks
  followed, inside the grant it was found in;
- scripts run through a backend: `WasmBackend` (kiln.runner; fresh Store per request, wall-clock
  limit by epoch interruption, memory cap by Store limits) or `NativeBackend` (a native php-cgi
  process, for benchmarks against the same server code);
- the guest sees a synthetic read-only `/` holding only mount points, the docroot (read-only)
  at its guest path, the writable grants, a private writable /tmp, a writable /.opcache for
  OPcache's file cache and a read-only /.kiln holding the generated php.ini (found through PHPRC);
- every instance starts with an empty memory, so compiled scripts are kept in OPcache's file
  cache (opcache.file_cache_only: no shared memory, no locks): an entry is created with
  O_CREAT|O_EXCL and checked (size, checksum, timestamp) when read, so instances racing on a
  cold cache recompile, never read a half-written entry;
- a request killed by the time limit (or a trap) runs no shutdown code: SQLite's dotfile lock
  (`<db>.lock` folder) it may have held would block every later request. Such lock folders in
  writable grants are removed once every request that was running when the kill happened has
  finished and the folder is still the same one (see `_LockJanitor`).
"""
from __future__ import annotations

import argparse
import email.utils
import html
import http.server
import mimetypes
import os
import re
import shutil
import signal
import socket
import socketserver
import ssl
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence, TextIO

from . import runner
from .errors import KilnError
from .layout import Build

__all__ = [
    "Mount", "ServerConfig", "Request", "Response", "WasmBackend", "NativeBackend",
    "Application", "Server", "serve", "serve_rootfs", "rootfs_config", "find_php_cgi", "parse_cgi_output", "main",
]

SERVER_SOFTWARE = "Kiln"
DEFAULT_DOCROOT_GUEST = "/var/www"
INI_GUEST_DIR = "/.kiln"        # generated php.ini, read-only, found through PHPRC
TMP_GUEST_DIR = "/tmp"
OPCACHE_GUEST_DIR = "/.opcache"  # OPcache's file cache, writable
MiB = 1024 * 1024

# Request headers that describe one hop, never forwarded to the script (RFC 9110 7.6.1), and
# response headers the server owns. "Proxy" is dropped so HTTP_PROXY can never be set (httpoxy).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                         "transfer-encoding", "upgrade", "proxy-authenticate",
                         "proxy-authorization", "proxy"})
_SERVER_OWNED = frozenset({"content-length", "date", "server"})
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")   # control characters but TAB
_HOST_HEADER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")
_ENCODED_SLASH = re.compile(r"%2f", re.IGNORECASE)

_REASONS = {s.value: s.phrase for s in http.HTTPStatus}

# A few types Debian's /etc/mime.types (or its absence) gets wrong or lacks.
_MIME_OVERRIDES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".json": "application/json", ".svg": "image/svg+xml", ".wasm": "application/wasm",
    ".webp": "image/webp", ".woff": "font/woff", ".woff2": "font/woff2", ".ico": "image/x-icon",
    ".txt": "text/plain", ".html": "text/html", ".htm": "text/html", ".xml": "text/xml",
    ".map": "application/json", ".avif": "image/avif", ".md": "text/markdown",
}


def content_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    kind = _MIME_OVERRIDES.get(ext) or mimetypes.guess_type(name, strict=False)[0]
    if not kind:
        return "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "image/svg+xml"):
        kind += "; charset=utf-8"
    return kind


# ---------------------------------------------------------------------------------------------
# Configuration


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
    opcache: bool = True                           # OPcache's file cache (a module without it ignores it)
    opcache_dir: Path | None = None                # its host folder (default: private, removed)
    ini_file: Path | None = None                   # php.ini to use
    ini: Mapping[str, str] = field(default_factory=dict)   # -d settings, after ini_file
    env: Mapping[str, str] = field(default_factory=dict)   # extra guest environment
    timeout: float = 30.0                          # wall-clock seconds per script
    max_body: int = 64 * MiB                       # request body cap (413)
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
    isolation: str = "request"                     # "request": an instance each; "worker": kiln.pool

    def effective_workers(self) -> int:
        return self.workers or max(4, 2 * (os.cpu_count() or 1))


def _norm_guest(path: str) -> str:
    if not path.startswith("/"):
        raise KilnError(f"guest path {path!r} must be absolute (the guest's working directory is /)")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise KilnError(f"guest path {path!r} must not contain '..'")
    return "/" + "/".join(parts)


def _guest_parts(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


# ---------------------------------------------------------------------------------------------
# Requests and responses (independent of the HTTP layer: internal cron requests use them too)


@dataclass
class Request:
    method: str
    target: str                                 # raw request-target ("/a%20b?x=1")
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    has_body: bool = False                      # Content-Length or chunked body was sent
    remote_addr: str = "127.0.0.1"
    remote_port: int = 0
    server_port: int = 0
    server_addr: str = "127.0.0.1"
    scheme: str = "http"
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        name = name.lower()
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: object | None = None       # open binary file to send instead of body
    file_offset: int = 0
    file_length: int = 0
    reason: str = ""
    note: str = ""                    # for the access log ("timeout", "trap", ...)
    content_length: bool = True       # send Content-Length (not for HEAD of a script)

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = _REASONS.get(self.status, "Unknown")

    @property
    def length(self) -> int:
        return self.file_length if self.file is not None else len(self.body)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def error_response(status: int, note: str = "", headers: Iterable[tuple[str, str]] = ()) -> Response:
    reason = _REASONS.get(status, "Error")
    body = (f"<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>"
            f"<body><h1>{status} {html.escape(reason)}</h1></body></html>\n").encode()
    return Response(status, [("Content-Type", "text/html; charset=utf-8"), *headers], body,
                    note=note)


def _clean(value: str) -> str:
    """A header value without CR, LF or other control characters (no header injection)."""
    return _CTL.sub("", value).strip()


def parse_cgi_output(out: bytes) -> Response | None:
    """Turn a CGI script's stdout into a Response; None when it is not a CGI response."""
    ends = [i for i in (out.find(b"\r\n\r\n"), out.find(b"\n\n")) if i >= 0]
    if not ends:
        return None
    end = min(ends)
    head, body = out[:end], out[end + (4 if out[end:end + 4] == b"\r\n\r\n" else 2):]
    status, reason = 200, ""
    headers: list[tuple[str, str]] = []
    has_status = has_location = False
    for raw in head.split(b"\n"):
        line = raw.rstrip(b"\r").decode("latin-1")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            continue  # folded or malformed line: drop it rather than guess
        value, key = _clean(value), name.lower()
        if key == "status":
            match = re.match(r"^(\d{3})(?:\s+(.*))?$", value)
            if not match or not 100 <= int(match.group(1)) <= 599:
                return None
            status, reason, has_status = int(match.group(1)), _clean(match.group(2) or ""), True
            continue
        if key in _HOP_BY_HOP or key in _SERVER_OWNED:
            continue
        if key == "location":
            has_location = True
        headers.append((name, value))
    if has_location and not has_status:
        status = 302
    return Response(status, headers, body, reason=reason)


# ---------------------------------------------------------------------------------------------
# Backends: what runs php-cgi


@dataclass
class CgiResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    crashed: bool = False       # trapped (wasm) or killed by a signal (native)
    truncated: bool = False     # output went past max_response
    error: str = ""             # could not run at all


class WasmBackend:
    """php-cgi as a wasm32-wasi module: one fresh Store + instance per request."""

    kind = "wasm"

    def __init__(self, module: Path, preopens: Sequence[runner.Preopen],
                 memory_limit: int | None, max_output: int | None):
        self.path = Path(module)
        # Compiled/mapped once, shared by threads. Each request's time is limited inside this
        # process, so this one backend pays for epoch checks (a .cwasm without them is
        # replaced by its .wasm, compiled with them once into KILN_CACHE).
        self.module = runner.load_cached(self.path, need_time_limits=True)
        self.preopens = list(preopens)
        self.memory_limit = memory_limit
        self.max_output = max_output

    def run(self, env: Mapping[str, str], body: bytes, timeout: float | None) -> CgiResult:
        try:
            r = runner.run(self.module, ["php-cgi"], env=env, stdin=body, preopens=self.preopens,
                           timeout=timeout, memory_limit=self.memory_limit,
                           max_output=self.max_output)
        except runner.RunnerError as e:
            return CgiResult(-1, b"", b"", error=str(e))
        crashed = r.exit_code == runner.EXIT_TRAP and not r.timed_out
        return CgiResult(r.exit_code, r.stdout, r.stderr, r.timed_out, crashed,
                         r.output_truncated)


class PoolBackend:
    """php-cgi.wasm in persistent worker processes (kiln.pool): PHP's request start-up and
    shutdown per request, the instance (and OPcache's memory) kept; time limits kill the worker."""

    kind = "wasm"

    def __init__(self, module: Path, preopens: Sequence[runner.Preopen], memory_limit: int | None,
                 max_output: int | None, workers: int, timeout: float, env: Mapping[str, str],
                 log: Callable[[str], None]):
        from kiln.pool.supervisor import Pool, PoolConfig
        self.path = Path(module)
        self.max_output = max_output
        self.pool = Pool(PoolConfig(module=Path(module), preopens=list(preopens), listen=[],
                                    workers=workers, request_terminate_timeout=timeout or 0,
                                    memory_limit=memory_limit, env=dict(env)), log=log).start()

    def run(self, env: Mapping[str, str], body: bytes, timeout: float | None) -> CgiResult:
        from kiln.pool import fastcgi
        out, err = bytearray(), bytearray()

        def send(rtype: int, content: bytes) -> None:
            if rtype == fastcgi.STDOUT:
                out.extend(content)
            elif rtype == fastcgi.STDERR:
                err.extend(content)
        # FCGI_KEEP_CONN: the worker's stream stays open for the next request (patch 0013).
        outcome = self.pool.handle(1, fastcgi.request(1, env, body, keep_conn=True), send)
        truncated = self.max_output is not None and len(out) > self.max_output
        return CgiResult(0, bytes(out), bytes(err), timed_out=outcome == "timeout",
                         crashed=outcome == "crash", truncated=truncated)

    def close(self) -> None:
        self.pool.stop()


class NativeBackend:
    """A native php-cgi process per request, behind the same server code (benchmarks).
    No sandbox: the script sees the host file system (guest paths are host paths)."""

    kind = "native"

    def __init__(self, binary: Path, max_output: int | None, cwd: Path):
        self.path = Path(binary)
        if not os.access(self.path, os.X_OK):
            raise KilnError(f"{self.path}: not an executable php-cgi (apt-get install php8.2-cgi)")
        self.max_output = max_output
        self.cwd = cwd

    def run(self, env: Mapping[str, str], body: bytes, timeout: float | None) -> CgiResult:
        try:
            # Own process group: a timeout kills the script's children too (they would hold
            # the output pipes open).
            proc = subprocess.Popen([str(self.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=dict(env), cwd=self.cwd,
                                    close_fds=True, start_new_session=True)
        except OSError as e:
            return CgiResult(-1, b"", b"", error=f"{self.path}: {e.strerror}")
        try:
            out, err = proc.communicate(body, timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            timed_out = True
        code = proc.returncode
        truncated = self.max_output is not None and len(out) > self.max_output
        if truncated:
            out = out[: self.max_output]
        return CgiResult(runner.EXIT_TIMEOUT if timed_out else code & 0xFF, out, err, timed_out,
                         not timed_out and code < 0, truncated)


# ---------------------------------------------------------------------------------------------
# In-flight tracking and stale SQLite locks


class _LockJanitor:
    """Tracks running scripts; clears SQLite dotfile locks a killed script left behind.

    SQLite's unix-dotfile VFS (the WASI default) locks `<db>` by creating the folder
    `<db>.lock`; a script killed mid-transaction never removes it. When a script is killed,
    every `X.lock` folder beside a file `X` in the writable grants is a suspect, recorded with
    its identity (device, inode, ctime). It may also belong to a script still running, so it
    is only removed once every script that was running at the kill has finished, and only if
    it is still the very same folder: a script started after the kill cannot own it (it could
    not have created it while it existed), and one that ran at the kill and released it made
    the folder go away (a new one has a new identity).
    """

    def __init__(self, roots: Callable[[], Iterable[Path]], log: Callable[[str], None]):
        self._roots = roots
        self._log = log
        self._lock = threading.Lock()
        self._next = 0
        self._active: set[int] = set()
        self._pending: list[tuple[dict[Path, tuple], set[int]]] = []
        self._idle = threading.Condition(self._lock)

    def begin(self) -> int:
        with self._lock:
            self._next += 1
            self._active.add(self._next)
            return self._next

    def end(self, ticket: int, killed: bool = False) -> None:
        suspects = self._scan() if killed else None
        with self._lock:
            self._active.discard(ticket)
            if suspects:
                self._pending.append((suspects, set(self._active)))
            ready = [p for p in self._pending if not (p[1] & self._active)]
            self._pending = [p for p in self._pending if p[1] & self._active]
            if not self._active:
                self._idle.notify_all()
        for suspects, _ in ready:
            self._clear(suspects)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    @staticmethod
    def _identity(st: os.stat_result) -> tuple:
        return (st.st_dev, st.st_ino, st.st_ctime_ns)

    def _scan(self) -> dict[Path, tuple]:
        found: dict[Path, tuple] = {}
        for root in self._roots():
            for folder, dirs, files in os.walk(root):   # never follows symlinks
                for name in dirs:
                    if not name.endswith(".lock") or len(name) <= 5:
                        continue
                    lock = Path(folder, name)
                    try:
                        st = os.lstat(lock)
                        db = os.lstat(Path(folder, name[:-5]))
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode) and stat.S_ISREG(db.st_mode):
                        found[lock] = self._identity(st)
        return found

    def _clear(self, suspects: dict[Path, tuple]) -> None:
        for lock, identity in suspects.items():
            try:
                if self._identity(os.lstat(lock)) != identity:
                    continue    # released, maybe re-taken by a live script: not stale
                os.rmdir(lock)  # SQLite's lock folder is empty; anything else is not ours
                self._log(f"kiln.server: removed stale SQLite lock {lock}")
            except FileNotFoundError:
                continue
            except OSError as e:
                self._log(f"kiln.server: could not remove stale lock {lock}: {e.strerror}")


# ---------------------------------------------------------------------------------------------
# Routing


@dataclass
class _Route:
    kind: str                     # "script", "static", "redirect", "error"
    host: Path | None = None      # file on the host
    guest: str = ""               # script path in the guest
    script_name: str = ""         # URL path of the script
    path_info: str = ""
    status: int = 0
    location: str = ""


class _FileSystem:
    """Maps URL paths under the docroot to host files through the grants, refusing escapes."""

    def __init__(self, docroot_guest: str, mounts: Sequence[Mount]):
        self.docroot_guest = docroot_guest
        base = _guest_parts(docroot_guest)
        # Grants at or under the docroot, longest first: (segments below the docroot, host root).
        mapped = []
        for m in mounts:
            parts = _guest_parts(m.guest)
            if parts[: len(base)] == base:
                mapped.append((parts[len(base):], Path(os.path.realpath(m.host))))
        self.mapped = sorted(mapped, key=lambda item: -len(item[0]))

    def locate(self, segments: Sequence[str]) -> tuple[Path, Path]:
        """(host path, host root of the grant it belongs to) for URL segments."""
        for rel, root in self.mapped:
            if tuple(segments[: len(rel)]) == rel:
                return root.joinpath(*segments[len(rel):]), root
        raise LookupError("/".join(segments))  # not reachable: the docroot itself is mapped

    @staticmethod
    def inside(path: Path, root: Path) -> bool:
        real = os.path.realpath(path)
        return real == str(root) or real.startswith(str(root).rstrip("/") + "/")

    def guest_path(self, segments: Sequence[str]) -> str:
        return (self.docroot_guest.rstrip("/") + "/" + "/".join(segments)) if segments \
            else self.docroot_guest


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# The application: Request -> Response


class Application:
    def __init__(self, config: ServerConfig, backend, fs: _FileSystem, janitor: _LockJanitor,
                 ini_guest_dir: str, tmp_guest: str, log: Callable[[str], None]):
        self.config = config
        self.backend = backend
        self.fs = fs
        self.janitor = janitor
        self.ini_guest_dir = ini_guest_dir
        self.tmp_guest = tmp_guest
        self.log = log
        self.slots = threading.BoundedSemaphore(config.effective_workers())
        self.server_port = config.port

    # -- routing -----------------------------------------------------------------------------

    def _is_script(self, name: str) -> bool:
        return any(name.endswith(ext) for ext in self.config.script_extensions)

    def route(self, path: str) -> _Route:
        """`path`: the decoded URL path, already checked by _decode_path."""
        segments = [s for s in path.split("/") if s not in ("", ".")]
        trailing = path.endswith("/") and bool(segments)
        norm = "/" + "/".join(segments) + ("/" if trailing else "")
        for i in range(len(segments) + 1):
            host, root = self.fs.locate(segments[:i])
            st = _stat(host)
            if st is None:
                break
            if stat.S_ISDIR(st.st_mode):
                if i < len(segments):
                    continue
                if not self.fs.inside(host, root):
                    return _Route("error", status=403)
                return self._directory(segments, trailing, norm)
            if not stat.S_ISREG(st.st_mode) or not self.fs.inside(host, root):
                return _Route("error", status=403)
            if self._is_script(segments[i - 1]):
                script_name = "/" + "/".join(segments[:i])
                return _Route("script", host, self.fs.guest_path(segments[:i]), script_name,
                              norm[len(script_name):])
            if i == len(segments):
                return _Route("static", host)
            break   # a static file with more path after it: missing
        return self._fallback()

    def _directory(self, segments: list[str], trailing: bool, norm: str) -> _Route:
        if segments and not trailing:
            return _Route("redirect", status=301, location=norm + "/")
        for index in self.config.index_files:
            host, root = self.fs.locate([*segments, index])
            st = _stat(host)
            if st is None or not stat.S_ISREG(st.st_mode) or not self.fs.inside(host, root):
                continue
            if self._is_script(index):
                return _Route("script", host, self.fs.guest_path([*segments, index]),
                              norm + index, "")
            return _Route("static", host)
        return _Route("error", status=403)   # no listings

    def _fallback(self) -> _Route:
        front = self.config.front_controller
        if front:
            segments = [s for s in front.split("/") if s]
            host, root = self.fs.locate(segments)
            st = _stat(host)
            if st is not None and stat.S_ISREG(st.st_mode) and self.fs.inside(host, root):
                return _Route("script", host, self.fs.guest_path(segments), "/" + "/".join(segments))
        return _Route("error", status=404)

    # -- requests ----------------------------------------------------------------------------

    @staticmethod
    def _decode_path(raw: str) -> tuple[str | None, int]:
        """(decoded path, 0) or (None, HTTP status refusing it)."""
        if _ENCODED_SLASH.search(raw):
            return None, 404          # like Apache's AllowEncodedSlashes Off
        data = urllib.parse.unquote_to_bytes(raw)
        if b"\0" in data:
            return None, 400
        try:
            path = data.decode("utf-8")
        except UnicodeDecodeError:
            return None, 400
        if _CTL.search(path):
            return None, 400
        for segment in path.split("/"):
            if segment == "..":
                return None, 403
            if segment.startswith(".") and segment not in (".", ".well-known"):
                return None, 403      # .htaccess, .ht.sqlite, .git, ...
        return path, 0

    def handle(self, req: Request) -> Response:
        target = req.target
        if not target.startswith("/"):
            split = urllib.parse.urlsplit(target)
            if split.scheme not in ("http", "https") or not split.path.startswith("/"):
                return error_response(400)
            target = split.path + (("?" + split.query) if split.query else "")
        raw_path, _, query = target.partition("?")
        path, refused = self._decode_path(raw_path)
        if path is None:
            return error_response(refused)
        route = self.route(path)
        if route.kind == "error":
            return error_response(route.status)
        if route.kind == "redirect":
            location = urllib.parse.quote(route.location, safe="/") + (f"?{query}" if query else "")
            return error_response(301, headers=[("Location", location)])
        if route.kind == "static":
            return self._static(req, route.host)
        return self._script(req, route, target, query)

    # -- static files ------------------------------------------------------------------------

    def _static(self, req: Request, host: Path) -> Response:
        if req.method not in ("GET", "HEAD"):
            return error_response(405, headers=[("Allow", "GET, HEAD")])
        real = os.path.realpath(host)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return error_response(404)
        f = os.fdopen(fd, "rb")
        try:
            # What was opened is what was checked (a folder swapped for a symlink in between
            # would show here).
            opened = os.readlink(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else real
            if opened != real:
                raise PermissionError(opened)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PermissionError(real)
        except OSError:
            f.close()
            return error_response(403)
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        headers = [("Content-Type", content_type(host.name)),
                   ("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True)),
                   ("ETag", etag), ("Accept-Ranges", "bytes")]
        if self._not_modified(req, etag, st.st_mtime):
            f.close()
            return Response(304, [h for h in headers if h[0] != "Content-Type"],
                            content_length=False)
        offset, length, status = 0, st.st_size, 200
        ranges = req.header("Range")
        if_range = req.header("If-Range")
        if ranges and (if_range is None or if_range.strip() == etag):
            parsed = self._parse_range(ranges, st.st_size)
            if parsed == "unsatisfiable":
                f.close()
                return error_response(416, headers=[("Content-Range", f"bytes */{st.st_size}")])
            if parsed:
                offset, end = parsed
                length, status = end - offset + 1, 206
                headers.append(("Content-Range", f"bytes {offset}-{end}/{st.st_size}"))
        return Response(status, headers, file=f, file_offset=offset, file_length=length)

    @staticmethod
    def _not_modified(req: Request, etag: str, mtime: float) -> bool:
        inm = req.header("If-None-Match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        ims = req.header("If-Modified-Since")
        if ims:
            try:
                since = email.utils.parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return False
            return int(mtime) <= since
        return False

    @staticmethod
    def _parse_range(spec: str, size: int):
        """(first, last) for one satisfiable byte range, "unsatisfiable", or None (ignore)."""
        match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", spec)
        if not match or match.group(1) == match.group(2) == "":
            return None       # several ranges or junk: send the whole file
        first, last = match.group(1), match.group(2)
        if first == "":
            n = int(last)
            if n == 0 or size == 0:
                return "unsatisfiable"
            return max(0, size - n), size - 1
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or (last and int(last) < start):
            return "unsatisfiable"
        return start, end

    # -- scripts -----------------------------------------------------------------------------

    def cgi_environment(self, req: Request, route: _Route, target: str, query: str) -> dict[str, str]:
        cfg = self.config
        env = {k: v for k, v in cfg.env.items()}
        scheme = req.scheme
        server_port = str(req.server_port or self.server_port)
        remote = req.remote_addr
        host_header = req.header("Host")
        if cfg.trust_forwarded:
            proto = (req.header("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
            if proto in ("http", "https"):
                scheme = proto
                server_port = (req.header("X-Forwarded-Port") or "").strip() or \
                    ("443" if proto == "https" else "80")
            forwarded_for = [a.strip() for a in (req.header("X-Forwarded-For") or "").split(",")]
            if forwarded_for[-1]:
                remote = forwarded_for[-1]   # the address our proxy saw
            forwarded_host = req.header("X-Forwarded-Host")
            if forwarded_host:
                host_header = forwarded_host.split(",")[0].strip()
        server_name = cfg.host
        if host_header and _HOST_HEADER.match(host_header):
            server_name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") \
                and ":" in host_header else host_header
        env.update({
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_SOFTWARE": f"{SERVER_SOFTWARE} ({self.backend.kind})",
            "SERVER_PROTOCOL": req.protocol,
            "SERVER_NAME": server_name,
            "SERVER_ADDR": req.server_addr,
            "SERVER_PORT": server_port,
            "REQUEST_METHOD": req.method,
            "REQUEST_URI": target,
            "REQUEST_SCHEME": scheme,
            "QUERY_STRING": query,
            "DOCUMENT_ROOT": self.fs.docroot_guest,
            "SCRIPT_NAME": route.script_name,
            "SCRIPT_FILENAME": route.guest,
            "REMOTE_ADDR": remote,
            "REMOTE_PORT": str(req.remote_port),
            "REDIRECT_STATUS": "200",     # php-cgi's cgi.force_redirect check
            "PHPRC": self.ini_guest_dir,
            "TMPDIR": self.tmp_guest,
        })
        if scheme == "https":
            env["HTTPS"] = "on"
        if route.path_info:
            env["PATH_INFO"] = route.path_info
            env["PATH_TRANSLATED"] = self.fs.docroot_guest.rstrip("/") + route.path_info
        if req.has_body:
            env["CONTENT_LENGTH"] = str(len(req.body))
        content_type_value = req.header("Content-Type")
        if content_type_value is not None:
            env["CONTENT_TYPE"] = _clean(content_type_value)
        connection_listed = {t.strip().lower() for t in (req.header("Connection") or "").split(",")}
        merged: dict[str, list[str]] = {}
        for name, value in req.headers:
            key = name.lower()
            # Names with "_" are dropped (as Apache and nginx do): "X_Foo" must not pose as
            # "X-Foo", nor "Content_Length" as CONTENT_LENGTH.
            if (key in _HOP_BY_HOP or key in connection_listed or "_" in name
                    or key in ("content-type", "content-length") or not _TOKEN.match(name)):
                continue
            merged.setdefault("HTTP_" + name.upper().replace("-", "_"), []).append(
                _clean(value.encode("latin-1", "replace").decode("utf-8", "replace")))
        for name, values in merged.items():
            env[name] = ("; " if name == "HTTP_COOKIE" else ", ").join(values)
        return env

    def _script(self, req: Request, route: _Route, target: str, query: str) -> Response:
        env = self.cgi_environment(req, route, target, query)
        cfg = self.config
        wait = cfg.queue_timeout if cfg.queue_timeout is not None else cfg.timeout
        if not self.slots.acquire(timeout=wait):
            return error_response(503, "busy", headers=[("Retry-After", "5")])
        try:
            ticket = self.janitor.begin()
            result = None
            try:
                result = self.backend.run(env, req.body, cfg.timeout)
            finally:
                self.janitor.end(ticket, killed=result is None or result.timed_out or result.crashed)
        finally:
            self.slots.release()
        if cfg.log_php_errors and result.stderr:
            text = result.stderr.decode("utf-8", "replace").strip()
            for line in text.splitlines()[-20:]:
                self.log(f"php: {route.script_name}: {line}")
        if result.error:
            self.log(f"kiln.server: {route.script_name}: {result.error}")
            return error_response(500, "error")
        if result.timed_out:
            return error_response(504, "timeout")
        if result.crashed:
            return error_response(500, "crash")
        if result.truncated:
            return error_response(502, "output over --max-response")
        response = parse_cgi_output(result.stdout)
        if response is None:
            return error_response(500 if result.exit_code else 502, f"bad output, exit {result.exit_code}")
        if result.exit_code:
            response.note = f"exit {result.exit_code}"
        if req.method == "HEAD":
            response.body = b""
            response.content_length = False
        return response


# ---------------------------------------------------------------------------------------------
# HTTP layer


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_HTTPServer"
    protocol_version = "HTTP/1.1"
    server_version = SERVER_SOFTWARE
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.kiln.config.keepalive_timeout
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see wordpress.md
        except OSError:
            pass
        ctx = self.server.ssl_context
        if ctx is not None:
            self.request.settimeout(self.timeout)
            self.request = ctx.wrap_socket(self.request, server_side=True)
            self.connection = self.request
        super().setup()
        self.server.kiln._register(self)
        self.busy = False

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.kiln._unregister(self)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError):
            pass

    # Called right after the request line is read: from here on this connection is busy.
    def parse_request(self) -> bool:
        self.server.kiln._mark(self, busy=True)
        self.started = time.monotonic()
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "HTTP/1.1", ""
                self.server.kiln._mark(self, busy=True)
                self.started = time.monotonic()
                self.close_connection = True
                self._write(error_response(414), "", head=False)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self._serve()
        except (TimeoutError, socket.timeout):
            self.close_connection = True
        finally:
            if self.server.kiln._mark(self, busy=False):  # draining: finish this connection
                self.close_connection = True

    def handle_expect_100(self) -> bool:
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.kiln.config.max_body:
            self.close_connection = True
            self._write(error_response(413, "body cap"), self.path, head=False)
            return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (bad request line, too many headers...): our format and log.
        self.close_connection = True
        if not hasattr(self, "started"):
            self.started = time.monotonic()
        self._write(error_response(code), getattr(self, "path", ""), head=False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's name
        pass  # the access log is written by _write

    def _read_body(self) -> tuple[bytes | None, bool, Response | None]:
        cfg = self.server.kiln.config
        te = self.headers.get_all("Transfer-Encoding") or []
        cl = self.headers.get_all("Content-Length") or []
        if te and cl:
            return None, False, error_response(400, "both Transfer-Encoding and Content-Length")
        if te:
            codings = [c.strip().lower() for c in ",".join(te).split(",") if c.strip()]
            if codings != ["chunked"]:
                return None, False, error_response(501, "transfer coding")
            return self._read_chunked(cfg.max_body)
        if cl:
            values = {v.strip() for v in cl}
            if len(values) != 1 or not next(iter(values)).isdigit():
                return None, False, error_response(400, "bad Content-Length")
            length = int(values.pop())
            if length > cfg.max_body:
                return None, False, error_response(413, "body cap")
            data = self.rfile.read(length) if length else b""
            if len(data) != length:
                raise ConnectionError("client sent less than Content-Length")
            return data, True, None
        return b"", False, None

    def _read_chunked(self, cap: int):
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1026)
            if not line.endswith(b"\n"):
                return None, False, error_response(400, "bad chunk")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return None, False, error_response(400, "bad chunk")
            if size == 0:
                while True:   # trailers, ignored
                    trailer = self.rfile.readline(8194)
                    if trailer in (b"\r\n", b"\n", b""):
                        break
                return b"".join(parts), True, None
            total += size
            if total > cap:
                return None, False, error_response(413, "body cap")
            data = self.rfile.read(size)
            if len(data) != size:
                raise ConnectionError("truncated chunk")
            parts.append(data)
            self.rfile.readline(3)  # CRLF after the chunk

    def _serve(self) -> None:
        kiln = self.server.kiln
        method = self.command
        if not _TOKEN.match(method or ""):
            self.close_connection = True
            self._write(error_response(400), self.path, head=False)
            return
        host = self.headers.get("Host")
        if host is not None and not _HOST_HEADER.match(host.strip()):
            self.close_connection = True
            self._write(error_response(400, "bad Host"), self.path, head=False)
            return
        body, has_body, refused = self._read_body()
        if refused is not None:
            self.close_connection = True     # the unread body would be taken as a request
            self._write(refused, self.path, head=method == "HEAD")
            return
        client = self.client_address
        local = self.connection.getsockname()
        req = Request(method=method, target=self._ascii_target(self.path),
                      headers=list(self.headers.items()), body=body, has_body=has_body,
                      remote_addr=str(client[0]), remote_port=int(client[1]) if len(client) > 1 else 0,
                      server_addr=str(local[0]), server_port=int(local[1]),
                      scheme="https" if self.server.ssl_context is not None else "http",
                      protocol=self.request_version if self.request_version in
                      ("HTTP/1.0", "HTTP/1.1") else "HTTP/1.1")
        try:
            response = kiln.app.handle(req)
        except Exception:   # a bug here must not take the connection's thread down silently
            kiln.log("kiln.server: internal error: " + traceback.format_exc().strip().replace("\n", " | "))
            response = error_response(500, "internal error")
        self._write(response, self.path, head=method == "HEAD")

    @staticmethod
    def _ascii_target(target: str) -> str:
        # http.server decodes the request line as Latin-1; percent-encode raw non-ASCII bytes
        # the way browsers do, so the guest gets valid UTF-8 in REQUEST_URI.
        if target.isascii():
            return target
        return urllib.parse.quote(target.encode("latin-1", "replace"), safe="".join(
            chr(c) for c in range(0x21, 0x7F)))

    def _write(self, response: Response, path: str, head: bool) -> None:
        kiln = self.server.kiln
        try:
            if kiln.draining:
                self.close_connection = True
            lines = [f"HTTP/1.1 {response.status} {_clean(response.reason) or 'Unknown'}",
                     f"Date: {email.utils.formatdate(usegmt=True)}",
                     f"Server: {SERVER_SOFTWARE}"]
            for name, value in response.headers:
                lines.append(f"{name}: {_clean(value)}")
            no_body = response.status in (204, 304) or 100 <= response.status < 200
            if response.content_length and not no_body:
                lines.append(f"Content-Length: {response.length}")
            elif not no_body and not head:
                self.close_connection = True   # length unknown: the end of the connection marks it
            if self.close_connection:
                lines.append("Connection: close")
            data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
            sent = 0
            if head or no_body:
                self.wfile.write(data)
            elif response.file is not None:
                self.wfile.write(data)
                if response.file_length:
                    sent = self.connection.sendfile(response.file, response.file_offset,
                                                    response.file_length)
            elif len(response.body) < 65536:
                self.wfile.write(data + response.body)
                sent = len(response.body)
            else:
                self.wfile.write(data)
                self.wfile.write(response.body)
                sent = len(response.body)
        finally:
            response.close()
        kiln.access(self.client_address[0], self.command or "-", path, response, sent,
                    getattr(self, "started", time.monotonic()))


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, kiln: "Server", ssl_context: ssl.SSLContext | None):
        self.kiln = kiln
        self.ssl_context = ssl_context
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)   # skip getfqdn(): slow without DNS
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port

    def process_request(self, request, client_address) -> None:
        if self.kiln.connection_count() >= self.kiln.config.max_connections:
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Retry-After: 5\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        self.kiln.log("kiln.server: connection error: " + traceback.format_exc().strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# The server


def find_php_cgi(version: str, flavour: str = "default") -> Path:
    """The built php-cgi module of a version: precompiled if there, else the .wasm."""
    build = Build("php", version, flavour)
    for aot in (True, False):
        path = build.module("php-cgi", aot=aot)
        if path.is_file():
            return path
    raise KilnError(f"no php-cgi module for PHP {version} ({build.module('php-cgi', aot=True)} and "
                    f"php-cgi.wasm are missing): build it with `doit php:{build.id}`")


class Server:
    """The whole server. `Server(config).start()` serves in a background thread (tests, shims);
    `serve_forever()` serves in the calling thread; `stop()` shuts down gracefully."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.draining = False
        self._log_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._connections: dict[_Handler, bool] = {}   # handler -> busy
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._httpd: _HTTPServer | None = None
        self._state_dir = Path(tempfile.mkdtemp(prefix="kiln-server-"))
        try:
            self._setup()
        except BaseException:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            raise

    # -- setup -------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.config
        docroot = Path(cfg.docroot)
        if not docroot.is_dir():
            raise KilnError(f"{docroot}: docroot is not a folder")
        if (cfg.module is None) == (cfg.native_cgi is None):
            raise KilnError("give exactly one of module (php-cgi .wasm/.cwasm) or native_cgi")
        if cfg.isolation not in ("request", "worker"):
            raise KilnError(f"--isolation {cfg.isolation}: give request or worker")
        if cfg.tmp_dir is not None:
            tmp_host = Path(cfg.tmp_dir)
            tmp_host.mkdir(parents=True, exist_ok=True)
        else:
            tmp_host = self._state_dir / "tmp"
            tmp_host.mkdir()
        ini_host = self._state_dir / "etc"
        ini_host.mkdir()
        native = cfg.native_cgi is not None
        mounts: list[Mount] = []
        for m in cfg.mounts:
            if not Path(m.host).is_dir():
                raise KilnError(f"{m.host}: granted folder does not exist")
            mounts.append(Mount(Path(m.host), _norm_guest(m.guest), m.writable))
        if native:
            # No sandbox: the guest paths are the host paths.
            docroot_guest = os.path.realpath(docroot)
            mounts = [Mount(m.host, os.path.realpath(m.host), m.writable) for m in mounts]
            tmp_guest, ini_guest = str(tmp_host.resolve()), str(ini_host)
        else:
            docroot_guest = _norm_guest(cfg.docroot_guest)
            tmp_guest, ini_guest = TMP_GUEST_DIR, INI_GUEST_DIR
            if docroot_guest in ("/", tmp_guest, ini_guest):
                raise KilnError(f"docroot guest path {docroot_guest} is reserved; use e.g. /var/www")
        docroot_mount = Mount(docroot, docroot_guest, False)
        grants = [docroot_mount, *mounts, Mount(tmp_host, tmp_guest, True)]
        self.tmp_host = tmp_host
        self.opcache_host: Path | None = None
        opcache_guest = None
        if cfg.opcache:
            self.opcache_host = Path(cfg.opcache_dir) if cfg.opcache_dir is not None \
                else self._state_dir / "opcache"
            try:
                self.opcache_host.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise KilnError(f"{self.opcache_host}: cannot create the OPcache folder: "
                                f"{e.strerror} (give a writable --opcache-dir)") from None
            opcache_guest = str(self.opcache_host.resolve()) if native else OPCACHE_GUEST_DIR
        self._write_ini(ini_host / "php.ini", tmp_guest, opcache_guest)
        # Not the OPcache folder: the stale-lock scan walks these, and it holds no databases.
        self._writable_roots = [Path(m.host) for m in grants if m.writable]
        if opcache_guest is not None:
            grants.append(Mount(self.opcache_host, opcache_guest, True))
        self.fs = _FileSystem(docroot_guest, [docroot_mount, *mounts])
        max_output = cfg.max_response
        if native:
            backend = NativeBackend(Path(cfg.native_cgi), max_output, self._state_dir)
        else:
            root = Path(cfg.root) if cfg.root is not None else self._state_dir / "root"
            root.mkdir(exist_ok=True)
            # Mount points, so that every folder on the way to a grant exists for the guest
            # (PHP's realpath() lstat()s each component of /var/www/index.php).
            for m in [*grants, Mount(ini_host, ini_guest, False)]:
                target = root.joinpath(*_guest_parts(m.guest))
                if not target.exists():
                    target.mkdir(parents=True, exist_ok=True)
            preopens = [runner.Preopen(root, "/", False)]
            preopens += [runner.Preopen(Path(m.host), m.guest, m.writable) for m in grants]
            preopens.append(runner.Preopen(ini_host, ini_guest, False))
            memory = cfg.memory_mb * MiB if cfg.memory_mb else None
            if cfg.isolation == "worker":
                backend = PoolBackend(Path(cfg.module), preopens, memory, max_output,
                                      cfg.effective_workers(), cfg.timeout,
                                      {"PHPRC": ini_guest}, self.log)
            else:
                backend = WasmBackend(Path(cfg.module), preopens, memory, max_output)
        self.janitor = _LockJanitor(lambda: self._writable_roots, self.log)
        self.app = Application(cfg, backend, self.fs, self.janitor, ini_guest, tmp_guest, self.log)

    def _write_ini(self, path: Path, tmp_guest: str, opcache_guest: str | None) -> None:
        cfg = self.config
        lines = ["; generated by kiln.server: defaults, then --ini, then -d settings", "[PHP]",
                 f'upload_tmp_dir = "{tmp_guest}"', f'sys_temp_dir = "{tmp_guest}"',
                 f'session.save_path = "{tmp_guest}"', "cgi.fix_pathinfo = 1",
                 # Production error handling: errors go to stderr (the server's log), and a
                 # fatal error before any output is a 500 (PHP only sets it when not displaying).
                 "display_errors = Off", "log_errors = On", ""]
        if opcache_guest is not None and cfg.isolation == "worker":
            # Long-lived workers: OPcache in each worker's memory (patch 0014), the file cache
            # behind it so that a new worker starts warm.
            lines += ["opcache.enable = 1", "opcache.memory_consumption = 64",
                      f'opcache.file_cache = "{opcache_guest}"', "opcache.file_cache_only = 0",
                      "opcache.file_cache_consistency_checks = 1",
                      "opcache.validate_timestamps = 1", ""]
        elif opcache_guest is not None:
            # Each request is a fresh instance: shared memory would die with it, so scripts
            # are cached only in files. Timestamps are checked (one stat per script) because
            # WordPress rewrites its own files (updates, plugins); the checksum check is what
            # makes a cold-cache race between instances harmless.
            lines += ["opcache.enable = 1",
                      f'opcache.file_cache = "{opcache_guest}"', "opcache.file_cache_only = 1",
                      "opcache.file_cache_consistency_checks = 1",
                      "opcache.validate_timestamps = 1", ""]
        if cfg.ini_file is not None:
            try:
                text = Path(cfg.ini_file).read_text(encoding="utf-8", errors="replace")
            except OSError as e:
                raise KilnError(f"{cfg.ini_file}: cannot read php.ini: {e.strerror}") from None
            lines += [f"; from {cfg.ini_file}", text, ""]
        if cfg.ini:
            lines.append("[PHP]")   # a [PATH=...] section in the file must not swallow these
            for name, value in cfg.ini.items():
                if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+", name) or "\n" in value or "\r" in value:
                    raise KilnError(f"bad php.ini setting {name!r}={value!r}")
                lines.append(f"{name} = {value}")
        path.write_text("\n".join(lines) + "\n")

    # -- logging -----------------------------------------------------------------------------

    def log(self, line: str) -> None:
        stream = self.config.access_log
        if stream is None:
            return
        with self._log_lock:
            try:
                stream.write(line.replace("\n", " ") + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass

    def access(self, client: str, method: str, path: str, response: Response, sent: int,
               started: float) -> None:
        ms = (time.monotonic() - started) * 1000
        shown = path.split("?", 1)[0].encode("latin-1", "replace").decode("ascii", "backslashreplace")
        note = f" ({response.note})" if response.note else ""
        self.log(f"{client} {method} {shown} {response.status} {sent}B {ms:.1f}ms{note}")

    # -- connections -------------------------------------------------------------------------

    def _register(self, handler: _Handler) -> None:
        with self._conn_lock:
            self._connections[handler] = False

    def _unregister(self, handler: _Handler) -> None:
        with self._conn_lock:
            self._connections.pop(handler, None)

    def _mark(self, handler: _Handler, busy: bool) -> bool:
        """Record a connection's state; True when the server is draining."""
        with self._conn_lock:
            if handler in self._connections:
                self._connections[handler] = busy
            return self.draining

    def connection_count(self) -> int:
        with self._conn_lock:
            return len(self._connections)

    def busy_count(self) -> int:
        with self._conn_lock:
            return sum(1 for busy in self._connections.values() if busy)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._httpd.server_port if self._httpd else self.config.port

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self.config.tls_cert else "http"
        return f"{scheme}://{host}:{self.port}"

    def _bind(self) -> None:
        cfg = self.config
        ctx = None
        if cfg.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key) if cfg.tls_key else None)
            except (OSError, ssl.SSLError) as e:
                raise KilnError(f"{cfg.tls_cert}: cannot load TLS certificate/key: {e}") from None
        try:
            self._httpd = _HTTPServer((cfg.host, cfg.port), self, ctx)
        except OSError as e:
            raise KilnError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror}") from None
        self.app.server_port = self._httpd.server_port

    def start(self) -> "Server":
        """Listen and serve in background threads; returns at once."""
        self._bind()
        t = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                             name="kiln-server", daemon=True)
        t.start()
        self._threads.append(t)
        if self.config.cron_interval:
            c = threading.Thread(target=self._cron_loop, name="kiln-cron", daemon=True)
            c.start()
            self._threads.append(c)
        backend = self.app.backend
        self.log(f"kiln.server: serving {self.config.docroot} at {self.url} "
                 f"({backend.kind}: {backend.path}, {self.config.effective_workers()} workers)")
        return self

    def serve_forever(self, handle_signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT (or stop() from another thread), then shut down."""
        try:
            self.start()
        except BaseException:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            raise
        if handle_signals and threading.current_thread() is threading.main_thread():
            def on_signal(signum, frame) -> None:  # noqa: ANN001 - signal handler signature
                if self._stop.is_set():    # a second signal: do not wait for the grace period
                    self.log("kiln.server: second signal, exiting now")
                    os._exit(128 + signum)
                self.log(f"kiln.server: {signal.Signals(signum).name}, shutting down "
                         f"(up to {self.config.grace:g} s for running requests)")
                self._stop.set()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, on_signal)
        while not self._stop.wait(0.5):
            pass
        return 0 if self.stop() else 1

    def stop(self, grace: float | None = None) -> bool:
        """Stop accepting, let in-flight requests finish (up to `grace` seconds), close.
        True when everything finished in time."""
        grace = self.config.grace if grace is None else grace
        self._stop.set()
        with self._conn_lock:
            if self.draining:
                return True
            self.draining = True
            idle = [h for h, busy in self._connections.items() if not busy]
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for handler in idle:      # wake keep-alive connections waiting for a request
            try:
                handler.connection.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while self.busy_count() and time.monotonic() < deadline:
            time.sleep(0.02)
        finished = self.janitor.wait_idle(max(0.0, deadline - time.monotonic())) \
            and not self.busy_count()
        if finished:
            shutil.rmtree(self._state_dir, ignore_errors=True)
        else:
            self.log(f"kiln.server: {self.busy_count()} request(s) still running after "
                     f"{grace:g} s; exiting anyway")
        close = getattr(getattr(self, "app", None) and self.app.backend, "close", None)
        if close is not None:
            close()
        self.log("kiln.server: stopped")
        return finished

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- cron --------------------------------------------------------------------------------

    def run_cron(self) -> Response:
        """One internal GET of cron_path (wp-cron.php) through the same handler: no network,
        for a guest that cannot open sockets to trigger it itself."""
        started = time.monotonic()
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        req = Request("GET", self.config.cron_path,
                      headers=[("Host", f"{host}:{self.port}"), ("User-Agent", "kiln-cron")],
                      server_port=self.port)
        response = self.app.handle(req)
        response.close()
        self.access("cron", "GET", self.config.cron_path, response, response.length, started)
        return response

    def _cron_loop(self) -> None:
        while not self._stop.wait(self.config.cron_interval):
            try:
                self.run_cron()
            except Exception as e:  # keep the loop alive
                self.log(f"kiln.server: cron failed: {e}")


def serve(docroot: str | os.PathLike, **options) -> int:
    """Serve `docroot` until SIGTERM/SIGINT: `serve("www", module=..., port=8080)`."""
    return Server(ServerConfig(docroot=Path(docroot), **options)).serve_forever()


def serve_rootfs(rootfs: Path, module: Path, docroot: str, port: int,
                 env: Mapping[str, str] | Sequence[tuple[str, str]] = (),
                 mounts: Sequence[tuple[Path, str, bool]] = (), host: str = "127.0.0.1",
                 **options) -> int:
    """Serve an unpacked server image (kiln.shimrun): `rootfs` is the guest's / (read-only),
    `docroot` the guest path of the docroot inside it, `mounts` the -v volumes."""
    return Server(rootfs_config(rootfs, module, docroot, port, env, mounts, host,
                                **options)).serve_forever()


def rootfs_config(rootfs: Path, module: Path, docroot: str, port: int,
                  env: Mapping[str, str] | Sequence[tuple[str, str]] = (),
                  mounts: Sequence[tuple[Path, str, bool]] = (), host: str = "127.0.0.1",
                  **options) -> ServerConfig:
    """The ServerConfig serve_rootfs() uses (the image's / granted read-only)."""
    rootfs = Path(rootfs)
    guest_docroot = _norm_guest(docroot)
    return ServerConfig(
        docroot=rootfs.joinpath(*_guest_parts(guest_docroot)), module=Path(module),
        docroot_guest=guest_docroot, host=host, port=port, root=rootfs, env=dict(env),
        mounts=[Mount(Path(h), g, w) for h, g, w in mounts], **options)


# ---------------------------------------------------------------------------------------------
# Command line


def _size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)i?[bB]?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size like 1048576, 512K, 64M; got {text!r}")
    return int(match.group(1)) * {"": 1, "k": 1024, "m": MiB, "g": 1024 * MiB}[match.group(2).lower()]


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _writable(spec: str, docroot: Path, docroot_guest: str) -> Mount:
    """HOST:GUEST, or a folder relative to the docroot (granted at the same place inside it)."""
    host, sep, guest = spec.rpartition(":")
    if sep and guest.startswith("/") and host:
        return Mount(Path(host), guest, True)
    rel = [p for p in spec.split("/") if p not in ("", ".")]
    if not rel or ".." in rel or spec.startswith("/"):
        raise KilnError(f"--writable {spec}: expected HOST:GUEST or a folder inside the docroot")
    return Mount(docroot.joinpath(*rel), docroot_guest.rstrip("/") + "/" + "/".join(rel), True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m kiln.server",
        description="Serve a docroot over HTTP with php-cgi in Wasmtime (one instance per request).")
    p.add_argument("--docroot", required=True, type=Path, help="host folder to serve")
    p.add_argument("--docroot-guest", default=DEFAULT_DOCROOT_GUEST, metavar="PATH",
                   help=f"where PHP sees it (default {DEFAULT_DOCROOT_GUEST})")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080, help="0: any free port")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--php", metavar="VERSION", help="use build-output's php-cgi of VERSION")
    which.add_argument("--module", type=Path, help="php-cgi .wasm or .cwasm to run")
    which.add_argument("--native-cgi", type=Path, metavar="PATH",
                       help="run a native php-cgi instead (benchmarks; no sandbox)")
    p.add_argument("--flavour", default="default", help="flavour of --php (default: default)")
    p.add_argument("--writable", action="append", default=[], metavar="HOST:GUEST|SUBDIR",
                   help="grant a writable folder (repeatable); SUBDIR: a docroot subfolder")
    p.add_argument("--tmp", type=Path, metavar="DIR", help="host folder for /tmp "
                   "(default: a private one, removed at exit)")
    p.add_argument("--opcache-dir", type=Path, metavar="DIR",
                   help="host folder for OPcache's file cache, kept across restarts "
                        "(default: a private one, removed at exit)")
    p.add_argument("--no-opcache", action="store_true",
                   help="no OPcache file cache: every request compiles its scripts")
    p.add_argument("--ini", type=Path, metavar="FILE", help="php.ini to use")
    p.add_argument("-d", "--define", action="append", default=[], type=_key_value,
                   metavar="NAME=VALUE", help="php.ini setting (repeatable)")
    p.add_argument("--env", action="append", default=[], type=_key_value, metavar="NAME=VALUE",
                   help="extra guest environment variable (repeatable)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="wall-clock limit per script, answered with 504 (default 30)")
    p.add_argument("--max-body", type=_size, default=64 * MiB, metavar="BYTES",
                   help="request body cap, answered with 413 (default 64M)")
    p.add_argument("--max-response", type=_size, default=256 * MiB, metavar="BYTES",
                   help="script output cap, answered with 502 (default 256M)")
    p.add_argument("--memory", type=int, default=512, metavar="MB",
                   help="linear memory cap per instance (default 512; 0: none)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="scripts running at once (default: 2 x cores, at least 4)")
    p.add_argument("--front-controller", default="/index.php", metavar="PATH",
                   help="script for paths that do not exist (default /index.php; 'none' for 404)")
    p.add_argument("--trust-forwarded", action="store_true",
                   help="behind a proxy: honour X-Forwarded-Proto/-For/-Host/-Port")
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    p.add_argument("--cron-interval", type=float, metavar="S",
                   help="run GET --cron-path internally every S seconds (wp-cron)")
    p.add_argument("--cron-path", default="/wp-cron.php")
    p.add_argument("--grace", type=float, default=10.0, metavar="S",
                   help="on SIGTERM/SIGINT, wait this long for running requests (default 10)")
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.add_argument("--isolation", choices=["request", "worker"], default="request",
                   help="request: a fresh instance per request (default); worker: persistent "
                        "php-cgi.wasm workers with OPcache in memory (kiln.pool, docs/pool.md)")
    ns = p.parse_args(argv)
    try:
        if ns.module:
            module, native = ns.module, None
            if not module.is_file():
                raise KilnError(f"{module}: module not found")
        elif ns.native_cgi:
            module, native = None, ns.native_cgi
        else:
            module, native = find_php_cgi(ns.php or "8.2.32", ns.flavour), None
        config = ServerConfig(
            docroot=ns.docroot, module=module, native_cgi=native, docroot_guest=ns.docroot_guest,
            host=ns.host, port=ns.port,
            mounts=[_writable(w, ns.docroot, ns.docroot_guest) for w in ns.writable],
            tmp_dir=ns.tmp, opcache=not ns.no_opcache, opcache_dir=ns.opcache_dir, ini_file=ns.ini, ini=dict(ns.define), env=dict(ns.env),
            timeout=ns.timeout, max_body=ns.max_body, max_response=ns.max_response,
            memory_mb=ns.memory or None, workers=ns.workers,
            front_controller=None if ns.front_controller.lower() == "none" else ns.front_controller,
            trust_forwarded=ns.trust_forwarded, tls_cert=ns.tls_cert, tls_key=ns.tls_key,
            cron_interval=ns.cron_interval, cron_path=ns.cron_path, grace=ns.grace,
            access_log=None if ns.quiet else sys.stderr, isolation=ns.isolation)
        return Server(config).serve_forever()
    except KilnError as e:
        print(f"kiln.server: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
