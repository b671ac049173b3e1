"""The server as a whole: set-up, listening, the access log, graceful shutdown, wp-cron."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path
from typing import Mapping, Sequence

from .. import runner
from ..errors import KilnError
from . import sandbox
from .app import Application
from .backends import NativeBackend, PoolBackend, WasmBackend
from .config import ISOLATIONS, MiB, Mount, ServerConfig, guest_parts, norm_guest
from .front import Connection, HTTPServer
from .janitor import LockJanitor
from .messages import Request, Response


class Server:
    """The whole server. `Server(config).start()` serves in a background thread (tests, shims);
    `serve_forever()` serves in the calling thread; `stop()` shuts down gracefully."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.draining = False
        self._log_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._connections: dict[Connection, bool] = {}   # connection -> busy
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._httpd: HTTPServer | None = None
        self._state_dir = Path(tempfile.mkdtemp(prefix="kiln-server-"))
        try:
            self._setup()
        except BaseException:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            raise

    def _setup(self) -> None:
        cfg = self.config
        if [cfg.module, cfg.native_cgi, cfg.backend].count(None) != 2:
            raise KilnError("give exactly one of module (php-cgi .wasm/.cwasm), native_cgi or backend")
        if cfg.isolation not in ISOLATIONS:
            raise KilnError(f"--isolation {cfg.isolation}: give {' or '.join(ISOLATIONS)}")
        if not isinstance(cfg.port, int) or not 0 <= cfg.port <= 65535:
            raise KilnError(f"port {cfg.port!r} is not a port number (1-65535, or 0: any free port)")
        if cfg.workers < 0:
            raise KilnError(f"workers={cfg.workers}: give 0 (automatic) or more")
        if not cfg.timeout or cfg.timeout <= 0:
            raise KilnError(f"timeout={cfg.timeout}: every script needs a limit above 0 seconds")
        isolation = cfg.effective_isolation()
        box = sandbox.prepare(cfg, self._state_dir)
        self.tmp_host, self.opcache_host, self.fs = box.tmp_host, box.opcache_host, box.fs
        self._writable_roots = box.writable_roots
        if cfg.backend is not None:
            backend = cfg.backend
        elif cfg.native_cgi is not None:
            backend = NativeBackend(Path(cfg.native_cgi), cfg.max_response, self._state_dir)
        else:
            memory = cfg.memory_mb * MiB if cfg.memory_mb else None
            if isolation == "worker":
                backend = PoolBackend(Path(cfg.module), box.preopens, memory, cfg.max_response,
                                      cfg.effective_workers(), cfg.timeout,
                                      {"PHPRC": box.ini_guest}, self.log)
            else:
                backend = WasmBackend(Path(cfg.module), box.preopens, memory, cfg.max_response)
        self.janitor = LockJanitor(lambda: self._writable_roots, self.log)
        self.app = Application(cfg, backend, self.fs, self.janitor, box.ini_guest, box.tmp_guest,
                               self.log)

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
        self.log(f"{client} {method} {shown or '-'} {response.status} {sent}B {ms:.1f}ms{note}")

    # -- connections -------------------------------------------------------------------------

    def _register(self, conn: Connection) -> None:
        with self._conn_lock:
            self._connections[conn] = False

    def _unregister(self, conn: Connection) -> None:
        with self._conn_lock:
            self._connections.pop(conn, None)

    def _mark(self, conn: Connection, busy: bool) -> bool:
        """Record a connection's state; True when the server is draining."""
        with self._conn_lock:
            if conn in self._connections:
                self._connections[conn] = busy
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
            self._httpd = HTTPServer((cfg.host, cfg.port), self, ctx)
        except OSError as e:
            raise KilnError(f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror}") from None
        self.app.server_port = self._httpd.server_port

    def start(self) -> "Server":
        """Listen and serve in background threads; returns at once."""
        try:
            self._bind()
        except BaseException:
            self._close_backend()
            raise
        t = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                             name="kiln-server", daemon=True)
        t.start()
        self._threads.append(t)
        if self.config.cron_interval:
            c = threading.Thread(target=self._cron_loop, name="kiln-cron", daemon=True)
            c.start()
            self._threads.append(c)
        backend = self.app.backend
        isolation = self.config.effective_isolation()
        self.log(f"kiln.server: serving {self.config.docroot} at {self.url} "
                 f"({backend.kind}: {backend.path}, {self.config.effective_workers()} workers, "
                 f"isolation {isolation})")
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
            idle = [c for c, busy in self._connections.items() if not busy]
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for conn in idle:      # wake keep-alive connections waiting for a request
            try:
                conn.connection.shutdown(socket.SHUT_RD)
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
        self._close_backend()
        self.log("kiln.server: stopped")
        return finished

    def _close_backend(self) -> None:
        close = getattr(getattr(self, "app", None) and self.app.backend, "close", None)
        if close is not None:
            close()

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
    guest_docroot = norm_guest(docroot)
    return ServerConfig(
        docroot=rootfs.joinpath(*guest_parts(guest_docroot)), module=Path(module),
        docroot_guest=guest_docroot, host=host, port=port, root=rootfs, env=dict(env),
        mounts=[Mount(Path(h), g, w) for h, g, w in mounts], **options)
