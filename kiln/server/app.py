"""The application: Request -> Response, whatever carried the request (HTTP or internal cron)."""
from __future__ import annotations

import re
import threading
import urllib.parse
from typing import Callable

from ..cgi import TOKEN, clean
from .config import SERVER_SOFTWARE, ServerConfig
from .janitor import LockJanitor
from .messages import HOP_BY_HOP, Request, Response, error_response, parse_cgi_output
from .routing import FileSystem, Route, Router, decode_path
from .static import static_response

_HOST_HEADER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


class Application:
    _decode_path = staticmethod(decode_path)

    def __init__(self, config: ServerConfig, backend, fs: FileSystem, janitor: LockJanitor,
                 ini_guest_dir: str, tmp_guest: str, log: Callable[[str], None]):
        self.config = config
        self.backend = backend
        self.fs = fs
        self.janitor = janitor
        self.ini_guest_dir = ini_guest_dir
        self.tmp_guest = tmp_guest
        self.log = log
        self.router = Router(fs, config.index_files, config.script_extensions,
                             config.front_controller)
        self.slots = threading.BoundedSemaphore(config.effective_workers())
        self.server_port = config.port

    def route(self, path: str) -> Route:
        return self.router.route(path)

    def handle(self, req: Request) -> Response:
        target = req.target
        if not target.startswith("/"):
            split = urllib.parse.urlsplit(target)
            if split.scheme not in ("http", "https") or not split.path.startswith("/"):
                return error_response(400)
            target = split.path + (("?" + split.query) if split.query else "")
        raw_path, _, query = target.partition("?")
        path, refused = decode_path(raw_path)
        if path is None:
            return error_response(refused)
        route = self.route(path)
        if route.kind == "error":
            return error_response(route.status)
        if route.kind == "redirect":
            location = urllib.parse.quote(route.location, safe="/") + (f"?{query}" if query else "")
            return error_response(301, headers=[("Location", location)])
        if route.kind == "static":
            return static_response(req, route.host)
        return self._script(req, route, target, query)

    def cgi_environment(self, req: Request, route: Route, target: str, query: str) -> dict[str, str]:
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
            env["CONTENT_TYPE"] = clean(content_type_value)
        connection_listed = {t.strip().lower() for t in (req.header("Connection") or "").split(",")}
        merged: dict[str, list[str]] = {}
        for name, value in req.headers:
            key = name.lower()
            # Names with "_" are dropped (as Apache and nginx do): "X_Foo" must not pose as
            # "X-Foo", nor "Content_Length" as CONTENT_LENGTH.
            if (key in HOP_BY_HOP or key in connection_listed or "_" in name
                    or key in ("content-type", "content-length") or not TOKEN.match(name)):
                continue
            merged.setdefault("HTTP_" + name.upper().replace("-", "_"), []).append(
                clean(value.encode("latin-1", "replace").decode("utf-8", "replace")))
        for name, values in merged.items():
            env[name] = ("; " if name == "HTTP_COOKIE" else ", ").join(values)
        return env

    def _script(self, req: Request, route: Route, target: str, query: str) -> Response:
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
