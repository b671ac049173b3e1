"""Kiln's HTTP server: a docroot served by php-cgi running in Wasmtime.

WASI preview 1 cannot listen on sockets, so PHP's built-in server cannot run under Wasmtime.
This host-side server does what Apache's mod_wasm and WAGI do: it speaks HTTP itself and runs
php-cgi (CGI/1.1) for each request in Wasmtime, in a fresh instance per request or in a
persistent worker (kiln.pool).

    python -m kiln.server --docroot DIR [--php 8.2.32 | --module PATH | --native-cgi PATH] ...

One concern per module (docs/server.md tells the whole story):
- config: ServerConfig, Mount, where a build's php-cgi is;
- cli: the command line (`python -m kiln.server`, `kiln serve`);
- front: HTTP/1.1 on the wire (h11's parser), keep-alive, writing responses;
- messages: Request and Response apart from the wire, a script's CGI answer as a Response
  (parsed by kiln.cgi, shared with the smoke checks);
- app: Request -> Response: routing, the CGI environment, running the script;
- routing, static: URL paths to files, static files with ranges and conditional requests;
- backends: what runs php-cgi (a fresh instance, a kiln.pool worker, native php-cgi);
- sandbox: what the guest sees (grants, /tmp, OPcache's folder) and its php.ini
  (templates/php.ini.j2, shared with kiln.pool);
- janitor: SQLite lock folders left by a killed script;
- lifecycle: the Server (start, graceful stop, access log, wp-cron).
"""
from ..errors import KilnError
from .app import Application
from .backends import CgiResult, NativeBackend, PoolBackend, WasmBackend
from .cli import main
from .config import Mount, ServerConfig, find_php_cgi
from .janitor import LockJanitor
from .lifecycle import Server, rootfs_config, serve, serve_rootfs
from .messages import Request, Response, error_response, parse_cgi_output
from .static import content_type

_LockJanitor = LockJanitor   # the name tests/test_server.py has always used

__all__ = [
    "Mount", "ServerConfig", "Request", "Response", "WasmBackend", "PoolBackend", "NativeBackend",
    "CgiResult", "Application", "Server", "serve", "serve_rootfs", "rootfs_config", "find_php_cgi",
    "parse_cgi_output", "error_response", "content_type", "KilnError", "main",
]
