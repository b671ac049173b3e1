"""`python -m kiln.pool`: php-cgi.wasm workers answering FastCGI, for nginx (or any front server).

A stock php-fpm nginx site works unchanged: the docroot is granted to the guest at its own host
path, so nginx's SCRIPT_FILENAME ($document_root$fastcgi_script_name) names the file PHP opens.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from kiln import atomic, cliargs, templating
from kiln.errors import KilnError
from kiln.pool.supervisor import MiB, Pool, PoolConfig
from kiln.engine import Preopen

def parser() -> argparse.ArgumentParser:
    p = cliargs.Parser(prog="python -m kiln.pool", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--module", required=True, type=Path, help="php-cgi .wasm or .cwasm")
    p.add_argument("--docroot", required=True, type=Path, help="the site's folder (read-only to PHP)")
    p.add_argument("--listen", action="append", required=True,
                   help="a Unix socket path or HOST:PORT (repeatable)")
    p.add_argument("-v", "--volume", action="append", default=[], type=cliargs.grant_type(), metavar="HOST:GUEST[:ro]",
                   help="another folder for PHP, writable unless :ro (e.g. wp-content)")
    p.add_argument("--workers", type=cliargs.positive_int, default=2, help="pm.max_children (default 2)")
    p.add_argument("--no-cpu-affinity", dest="cpu_affinity", action="store_false",
                   help="let workers run on any CPU (default: each on one, round robin)")
    p.add_argument("--max-requests", type=cliargs.positive_int, default=500,
                   help="requests a worker serves before it is replaced (pm.max_requests)")
    p.add_argument("--request-terminate-timeout", type=cliargs.positive_float, default=30.0, metavar="SECONDS",
                   help="kill the worker and answer 504 past this (default 30)")
    p.add_argument("--memory", type=cliargs.positive_int, default=512, metavar="MB",
                   help="linear memory cap per worker, OPcache's memory included (default 512)")
    p.add_argument("--tmp-dir", type=Path, help="PHP's temporary folder (default: a fresh one)")
    p.add_argument("--opcache-dir", type=Path, help="OPcache file cache (flavours with OPcache)")
    p.add_argument("--opcache-memory", type=cliargs.positive_int, default=64, metavar="MB",
                   help="opcache.memory_consumption per worker (default 64)")
    p.add_argument("-d", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                   help="a php.ini setting")
    return p


def config_from(ns: argparse.Namespace) -> PoolConfig:
    if not ns.module.is_file():
        raise KilnError(f"{ns.module}: no such module (build it with doit php:<build>)")
    docroot = ns.docroot.resolve()
    if not docroot.is_dir():
        raise KilnError(f"{ns.docroot}: docroot is not a folder")
    state = Path(tempfile.mkdtemp(prefix="kiln-pool-etc-"))
    tmp = (ns.tmp_dir or state / "tmp").resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    grants = [Preopen(docroot, str(docroot), False), *ns.volume, Preopen(tmp, str(tmp), True),
              Preopen(state, "/etc/kiln", False)]
    opcache = None
    if ns.opcache_dir is not None:
        ns.opcache_dir.mkdir(parents=True, exist_ok=True)
        opcache = str(ns.opcache_dir.resolve())
        grants.append(Preopen(ns.opcache_dir.resolve(), opcache, True))
    # An empty root with a folder at each grant's guest path: PHP's realpath() lstat()s every
    # component of /srv/www/index.php, and without "/" and "/srv" PATH_INFO handling fails.
    root = state / "root"
    for grant in grants:
        root.joinpath(*grant.guest.strip("/").split("/")).mkdir(parents=True, exist_ok=True)
    grants.insert(0, Preopen(root, "/", False))
    settings = []
    for item in ns.settings:
        name, sep, value = item.partition("=")
        if not sep or not name or "\n" in value:
            raise KilnError(f"-d {item!r}: give NAME=VALUE")
        settings.append((name, value))
    # The same template as kiln.server's: workers behind either run PHP alike.
    ini = templating.render("php.ini.j2", generator="kiln.pool", tmp=str(tmp), settings=settings,
                            opcache={"in_memory": True, "memory": ns.opcache_memory,
                                     "file_cache": opcache},
                            ini_file=None, ini_text="")
    atomic.write_text(state / "php.ini", ini)
    return PoolConfig(module=ns.module.resolve(), preopens=grants, listen=ns.listen,
                      workers=ns.workers, max_requests=ns.max_requests, cpu_affinity=ns.cpu_affinity,
                      request_terminate_timeout=ns.request_terminate_timeout,
                      memory_limit=ns.memory * MiB, args=["-c", "/etc/kiln/php.ini"],
                      # Where PHP can write a database: the volumes and /tmp, not OPcache's files.
                      stale_lock_roots=[v.host for v in ns.volume if v.writable] + [tmp])


def main(argv=None) -> int:
    ns = parser().parse_args(argv)
    try:
        pool = Pool(config_from(ns)).start()
    except (KilnError, OSError) as e:
        print(f"kiln.pool: {e}", file=sys.stderr)
        return 2
    return pool.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
