#!/usr/bin/env python3
"""Serving benchmark: Kiln's worker pool against nginx + php-fpm with OPcache, one run, interleaved.

    .venv/bin/python bench/pool.py [--requests 30] [--rounds 3] [--concurrency 1,2]

One installed WordPress (SQLite) docroot and a hello page, each served by:
  - nginx -> kiln.pool (php-cgi.wasm workers, OPcache in memory)   "kiln pool"
    its workers on the Wasmtime command line (the default since issue 28), and the same pool
    with KILN_ENGINE=in-process (wasmtime-py, as before)           "kiln pool, in process"
  - kiln.server, its default: kiln.pool workers under its HTTP    "kiln.server workers"
  - kiln.server, an instance per request (OPcache file cache)      "kiln per-request"
  - nginx -> Debian's php-fpm (8.2 or 8.4), OPcache on                   "php-fpm"
Rounds alternate the servers so that machine noise hits them alike. Printed: mean latency
and requests/s per page and concurrency, ratios to php-fpm, worker memory (RSS), load average.
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jinja2

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from kiln import native, wordpress  # noqa: E402
from kiln.layout import Build  # noqa: E402
import server as server_bench  # noqa: E402  (bench/server.py)
from graph import cpu_model  # noqa: E402
from nginx import Nginx, free_port  # noqa: E402

MODULE = Build("php", "8.2.32", "wordpress").module("php-cgi", aot=True)   # KILN_BUILD_OUTPUT too
PAGES = {"hello": "/hello.php", "wordpress front page": "/"}
SLOW = 0.5  # seconds that /sleep.php sleeps: N of them on N workers should take about that


def wait_for(path: Path, proc: subprocess.Popen, what: str) -> None:
    for _ in range(400):
        if path.exists():
            return
        if proc.poll() is not None:
            sys.exit(f"bench/pool.py: {what} did not start")
        time.sleep(0.05)
    sys.exit(f"bench/pool.py: {what} did not start")


def batch(port: int, path: str, requests: int, concurrency: int) -> tuple[float, float]:
    """(mean latency, requests/s) of bench/server.py's keep-alive client batch."""
    seconds, latencies = server_bench.batch(port, path, requests, concurrency)
    return statistics.mean(latencies), requests / seconds


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024 / max(1, len(pids))


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def install(port: int) -> None:
    import requests
    r = requests.post(f"http://127.0.0.1:{port}/wp-admin/install.php?step=2", timeout=300, data={
        "weblog_title": "Kiln bench", "user_name": "kiln", "admin_password": "bench-password-1",
        "admin_password2": "bench-password-1", "pw_weak": "1", "admin_email": "kiln@example.com",
        "blog_public": "0", "language": ""})
    if "Success!" not in r.text:
        sys.exit("bench/pool.py: the WordPress installer failed")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", default="1,2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--module", type=Path, default=MODULE,
                    help="the wordpress flavour's php-cgi .cwasm or .wasm (default: this build output's)")
    ns = ap.parse_args()
    levels = [int(c) for c in ns.concurrency.split(",")]
    module = ns.module.resolve()
    if not module.is_file():
        sys.exit(f"bench/pool.py: {module} missing: run doit php:8.2.32-wordpress wordpress_docroot")
    state = Path(tempfile.mkdtemp(prefix="kiln-bench-pool-"))
    state.chmod(0o755)
    procs: list[subprocess.Popen] = []
    fronts: list[Nginx] = []
    try:
        servers = {}
        for name in ("kiln pool", "kiln pool, in process", "kiln.server workers", "kiln per-request",
                     "php-fpm"):
            folder = state / name.replace(" ", "-").replace(",", "")
            folder.mkdir()
            folder.chmod(0o755)
            doc = wordpress.fresh_copy(folder / "docroot")
            (doc / "hello.php").write_text('<?php echo "Hello, world!";')
            (doc / "sleep.php").write_text(f'<?php usleep({int(SLOW * 1e6)}); echo "slept";')
            log = open(folder / "log", "w")
            if name.startswith("kiln pool"):
                sock = folder / "pool.sock"
                engine = {"KILN_ENGINE": "in-process" if name.endswith("in process") else "auto"}
                p = subprocess.Popen([sys.executable, "-m", "kiln.pool", "--module", str(module),
                                      "--docroot", str(doc), "--listen", str(sock),
                                      "--workers", str(ns.workers), "--opcache-dir", str(folder / "opcache"),
                                      "-v", f"{doc}/wp-content:{doc}/wp-content"],
                                     cwd=ROOT, stderr=log, env={**os.environ, **engine})
                wait_for(sock, p, name)
                front = Nginx(doc, str(sock))
                fronts.append(front)
                servers[name] = (front.port, p.pid)
            elif name == "php-fpm":
                sock = folder / "fpm.sock"
                conf = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates")).get_template(
                    "php-fpm.conf.j2").render(state=folder, socket=sock, workers=ns.workers, opcache=True)
                (folder / "php-fpm.conf").write_text(conf)
                p = subprocess.Popen([native.binary("fpm"), "-F", "-R", "-y", str(folder / "php-fpm.conf")],
                                     stderr=log)
                wait_for(sock, p, name)
                front = Nginx(doc, str(sock))
                fronts.append(front)
                servers[name] = (front.port, p.pid)
            else:
                port = free_port()
                p = subprocess.Popen([sys.executable, "-m", "kiln.server", "--module", str(module),
                                      "--docroot", str(doc), "--port", str(port), "--quiet",
                                      "--docroot-guest", str(doc), "--writable", "wp-content",
                                      *(["--workers", str(2 * ns.workers), "--isolation", "request"]
                                        if name == "kiln per-request" else ["--workers", str(ns.workers)])],
                                     cwd=ROOT, stderr=log)
                for _ in range(400):
                    try:
                        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
                        break
                    except OSError:
                        time.sleep(0.05)
                servers[name] = (port, None if name == "kiln per-request" else p.pid)
            procs.append(p)
            install(servers[name][0])
        results: dict[tuple, list[tuple[float, float]]] = {}
        for name, (port, _) in servers.items():        # warm every cache
            for path in PAGES.values():
                batch(port, path, 5, 1)
        for _ in range(ns.rounds):
            for page, path in PAGES.items():
                for c in levels:
                    for name, (port, _) in servers.items():
                        results.setdefault((page, c, name), []).append(batch(port, path, ns.requests, c))
        # N slow requests at once on N workers: the wall time of the batch (side by side, it is
        # about one request's; in a queue, N of them).
        side_by_side = {}
        for name, (port, _) in servers.items():
            _, rate = batch(port, "/sleep.php", ns.workers, ns.workers)
            side_by_side[name] = ns.workers / rate
        memory = {name: rss_mib(children(pid)) if pid else None for name, (port, pid) in servers.items()}
    finally:
        for front in fronts:
            front.stop()
        for p in procs:
            p.terminate()
            p.wait(timeout=20)
        shutil.rmtree(state, ignore_errors=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} x {cpu_model()}, load before/after "
          f"{os.getloadavg()[0]:.2f}; {ns.rounds} rounds x {ns.requests} requests, {ns.workers} workers each; "
          f"php-fpm: {native.describe('fpm')}\n")
    print("| page | c | server | mean latency | req/s | latency vs php-fpm |")
    print("|---|---:|---|---:|---:|---:|")
    for page in PAGES:
        for c in levels:
            base = statistics.median(m for m, _ in results[(page, c, "php-fpm")])
            for name in servers:
                lat = statistics.median(m for m, _ in results[(page, c, name)])
                rps = statistics.median(r for _, r in results[(page, c, name)])
                print(f"| {page} | {c} | {name} | {lat * 1000:.1f} ms | {rps:.1f} | {lat / base:.2f}x |")
    print(f"\n{ns.workers} requests sleeping {SLOW:g} s each, sent at once to {ns.workers} workers, took "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in side_by_side.items()))
    print("\nmemory per worker (RSS): " + ", ".join(
        f"{name} {mib:.0f} MiB" for name, mib in memory.items() if mib))
    return 0


if __name__ == "__main__":
    sys.exit(main())
