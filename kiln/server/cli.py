"""`python -m kiln.server` and `kiln serve`: arguments -> ServerConfig -> Server."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Sequence

from .. import cliargs
from ..errors import KilnError
from .config import DEFAULT_DOCROOT_GUEST, ISOLATIONS, MiB, Mount, ServerConfig, find_php_cgi
from .lifecycle import Server


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


def _writable(spec: str, docroot: Path, docroot_guest: str, label: str) -> Mount:
    """A folder relative to the docroot, granted writable at the same place inside it; or the
    old spelling of a grant, HOST:GUEST (now -v, as everywhere in Kiln)."""
    host, sep, guest = spec.rpartition(":")
    if sep and guest.startswith("/") and host:
        print(f"{label}: --writable {spec} is the old spelling of a grant: use -v {spec} "
              "(Docker's HOST:GUEST[:ro], writable unless :ro)", file=sys.stderr)
        return Mount(Path(host), guest, True)
    rel = [p for p in spec.split("/") if p not in ("", ".")]
    if not rel or ".." in rel or spec.startswith("/"):
        raise KilnError(f"--writable {spec}: expected HOST:GUEST or a folder inside the docroot")
    return Mount(docroot.joinpath(*rel), docroot_guest.rstrip("/") + "/" + "/".join(rel), True)


def parser(prog: str = "python -m kiln.server") -> argparse.ArgumentParser:
    p = cliargs.Parser(
        prog=prog,
        description="Serve a docroot over HTTP with php-cgi in Wasmtime: persistent workers "
                    "(default) or a fresh instance per request (--isolation request).")
    p.add_argument("--docroot", required=True, type=Path, help="host folder to serve")
    p.add_argument("--docroot-guest", default=DEFAULT_DOCROOT_GUEST, metavar="PATH",
                   help=f"where PHP sees it (default {DEFAULT_DOCROOT_GUEST})")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=cliargs.port_type(any_free=True), default=8080, help="0: any free port")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--php", metavar="VERSION", help="use build-output's php-cgi of VERSION")
    which.add_argument("--module", type=Path, help="php-cgi .wasm or .cwasm to run")
    which.add_argument("--native-cgi", type=Path, metavar="PATH",
                       help="run a native php-cgi instead (benchmarks; no sandbox)")
    p.add_argument("--flavour", default="default", help="flavour of --php (default: default)")
    p.add_argument("-v", "--volume", dest="volumes", action="append", default=[],
                   type=cliargs.grant_type(), metavar="HOST:GUEST[:ro]",
                   help="grant a host folder (repeatable; writable unless :ro), as docker run -v")
    p.add_argument("--writable", action="append", default=[], metavar="SUBDIR",
                   help="make a folder of the docroot writable, at its place (repeatable)")
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
    p.add_argument("--timeout", type=cliargs.number(float, 0, "a number of seconds", above=True), default=30.0, metavar="S",
                   help="wall-clock limit per script, answered with 504 (default 30)")
    p.add_argument("--max-body", type=_size, default=64 * MiB, metavar="BYTES",
                   help="request body cap, answered with 413 (default 64M)")
    p.add_argument("--max-header-size", type=_size, default=64 * 1024, metavar="BYTES",
                   help="request line and header lines together, answered with 431 "
                        "(default 64K; nginx: 4 x 8K)")
    p.add_argument("--max-header-lines", type=cliargs.positive_int, default=100, metavar="N",
                   help="header lines in a request, answered with 431 (default 100)")
    p.add_argument("--max-response", type=_size, default=256 * MiB, metavar="BYTES",
                   help="script output cap, answered with 502 (default 256M)")
    p.add_argument("--memory", type=cliargs.number(int, 0, "a whole number of MB"), default=512, metavar="MB",
                   help="linear memory cap per instance (default 512; 0: none)")
    p.add_argument("--workers", type=cliargs.number(int, 0, "a whole number"), default=0, metavar="N",
                   help="scripts running at once (default: 2 x cores, at least 4)")
    p.add_argument("--front-controller", default="/index.php", metavar="PATH",
                   help="script for paths that do not exist (default /index.php; 'none' for 404)")
    p.add_argument("--trust-forwarded", action="store_true",
                   help="behind a proxy: honour X-Forwarded-Proto/-For/-Host/-Port")
    p.add_argument("--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    p.add_argument("--cron-interval", type=cliargs.number(float, 0, "a number of seconds", above=True), metavar="S",
                   help="run GET --cron-path internally every S seconds (wp-cron)")
    p.add_argument("--cron-path", default="/wp-cron.php")
    p.add_argument("--grace", type=cliargs.number(float, 0, "a number of seconds"), default=10.0, metavar="S",
                   help="on SIGTERM/SIGINT, wait this long for running requests (default 10)")
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.add_argument("--isolation", choices=list(ISOLATIONS),
                   help="worker (default): persistent php-cgi.wasm workers, PHP's request "
                        "shutdown between requests, OPcache in memory (kiln.pool); request: a "
                        "fresh instance per request, nothing kept (docs/server.md)")
    return p


def mounts(ns: argparse.Namespace, label: str) -> list[Mount]:
    """The folders granted besides the docroot: --writable SUBDIR, then -v HOST:GUEST[:ro]."""
    return [*(_writable(w, ns.docroot, ns.docroot_guest, label) for w in ns.writable),
            *(Mount(v.host, v.guest, v.writable) for v in ns.volumes)]


def main(argv: Sequence[str] | None = None, prog: str = "python -m kiln.server") -> int:
    p = parser(prog)
    ns = p.parse_args(argv)
    label = prog.removeprefix("python -m ")
    if ns.max_response == 0:
        p.error("argument --max-response: 0 must be above 0")
    if ns.max_header_size < 1024:
        p.error(f"argument --max-header-size: {ns.max_header_size} must be 1K or more")
    if ns.native_cgi and ns.isolation == "worker":
        p.error("--isolation worker needs a php-cgi.wasm module (--php or --module); "
                "--native-cgi always runs a process per request")
    try:
        if ns.module:
            module, native = ns.module, None
            if module.is_dir():
                raise KilnError(f"{module} is a folder, not a module: give php-cgi.cwasm or "
                                "php-cgi.wasm (--module FILE)")
            if not module.is_file():
                raise KilnError(f"{module}: module not found (build it with doit php:<version>, "
                                "or give --php VERSION)")
        elif ns.native_cgi:
            module, native = None, ns.native_cgi
        else:
            module, native = find_php_cgi(ns.php or "8.2.32", ns.flavour), None
        config = ServerConfig(
            docroot=ns.docroot, module=module, native_cgi=native, docroot_guest=ns.docroot_guest,
            host=ns.host, port=ns.port,
            mounts=mounts(ns, label),
            tmp_dir=ns.tmp, opcache=not ns.no_opcache, opcache_dir=ns.opcache_dir,
            ini_file=ns.ini, ini=dict(ns.define), env=dict(ns.env),
            timeout=ns.timeout, max_body=ns.max_body, max_response=ns.max_response,
            max_header_size=ns.max_header_size, max_header_lines=ns.max_header_lines,
            memory_mb=ns.memory or None, workers=ns.workers,
            front_controller=None if ns.front_controller.lower() == "none" else ns.front_controller,
            trust_forwarded=ns.trust_forwarded, tls_cert=ns.tls_cert, tls_key=ns.tls_key,
            cron_interval=ns.cron_interval, cron_path=ns.cron_path, grace=ns.grace,
            access_log=None if ns.quiet else sys.stderr,
            isolation=ns.isolation or ("request" if native else "worker"))
        return Server(config).serve_forever()
    except KilnError as e:
        print(f"{label}: {e}", file=sys.stderr)
        return cliargs.EXIT_USAGE
