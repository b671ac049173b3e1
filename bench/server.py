#!/usr/bin/env python3
"""HTTP server benchmark: php-cgi in Wasmtime against native php-cgi, behind the same server.

    /work/venv/bin/python bench/server.py [--php 8.2.32 | --module PATH]
        [--native-cgi /usr/bin/php-cgi8.2 (default: the machine's, kiln/native.py)] [--requests 200] [--rounds 3] [--concurrency 1,4]
        [--docroot DIR --page NAME=/path ...] [--opcache wasm|none|both] [--no-write]

Both servers are `python -m kiln.server` subprocesses, same code, same settings; only the
backend differs (`--module` vs `--native-cgi`). OPcache (`--opcache`): by default the wasm
server keeps its file cache (the server's default) and native runs with opcache off, the
baseline the 2x goal is stated against; `none` turns the wasm file cache off too, `both` gives
native the same file cache (Debian's php-cgi loads opcache.so from its conf.d). The client (this
process) keeps one connection per worker thread and sends `--requests` requests per batch at
each concurrency; batches alternate wasm/native within each round so that machine noise hits
both alike. Reported: requests/s (all batches), p50 and p99 latency, and wasm/native ratios.
Results are printed as a Markdown table and written to docs/benchmarks.md ("HTTP server").

Default page: a hello page (`<?php echo "Hello, world!";`) in a temporary docroot. Other pages
(e.g. the WordPress front page) with `--docroot DIR --page front=/`.
"""
from __future__ import annotations

import argparse
import http.client
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln import native, server as kiln_server  # noqa: E402
from kiln.errors import KilnError  # noqa: E402

HELLO = '<?php echo "Hello, world!";\n'
NATIVE_DEFINES = ["opcache.enable=0", "opcache.enable_cli=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, label: str, backend: list[str], docroot: Path, extra: list[str]):
        self.label = label
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        # `{port}` in an extra argument is this server's port (a site that must know its
        # own address: --server-arg=--env=WORDPRESS_HOME=http://127.0.0.1:{port}).
        extra = [a.replace("{port}", str(self.port)) for a in extra]
        command = [sys.executable, "-m", "kiln.server", "--docroot", str(docroot), "--port",
                   str(self.port), "--quiet", "--timeout", "120", *backend, *extra]
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 120   # a .wasm (not precompiled) compiles first
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise SystemExit(f"{label} server exited: {self.log.read().decode(errors='replace')}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{label} server did not start listening")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def batch(port: int, path: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """`requests` GETs spread over `concurrency` keep-alive connections: (seconds, latencies)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = []
        try:
            while True:
                with lock:
                    if next(counter, None) is None:
                        break
                t0 = time.perf_counter()
                conn.request("GET", path)
                resp = conn.getresponse()
                resp.read()
                mine.append(time.perf_counter() - t0)
                if resp.status != 200:
                    errors.append(f"{path}: HTTP {resp.status}")
                    break
        except (OSError, http.client.HTTPException) as e:
            errors.append(f"{path}: {e}")
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"benchmark request failed: {errors[0]}")
    return elapsed, latencies


def startup_costs(module: Path, native: Path, runs: int = 5) -> tuple[float, float]:
    """Median ms of `php-cgi -v` alone (no HTTP, no script): wasm in process, native spawned.
    What every request pays before PHP looks at the script."""
    from kiln import runner
    loaded = runner.load_module(module)
    wasm, nat = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(loaded, ["php-cgi", "-v"])
        wasm.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([str(native), "-v"], capture_output=True)
        nat.append(time.perf_counter() - t0)
    return sorted(wasm)[runs // 2] * 1000, sorted(nat)[runs // 2] * 1000


def has_opcache(module: Path) -> bool:
    """Whether the module has OPcache built in (`php-cgi -v` names it): only then does the
    server's file cache apply to the wasm side."""
    from kiln import runner
    return b"Zend OPcache" in runner.run(runner.load_module(module), ["php-cgi", "-v"]).stdout


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def write_section(title: str, body: str) -> Path:
    """Put `body` under `## title` in docs/benchmarks.md; other sections stay as they are."""
    path = ROOT / "docs" / "benchmarks.md"
    lines = path.read_text().splitlines(keepends=True) if path.exists() else \
        ["# Benchmarks\n", "\n", "Latest results of the scripts in bench/.\n"]
    heading = f"## {title}\n"
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        lines[start:end] = [heading, "\n", body.rstrip() + "\n", "\n"] if end < len(lines) else \
            [heading, "\n", body.rstrip() + "\n"]
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines += ["\n", heading, "\n", body.rstrip() + "\n"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group()
    which.add_argument("--php", default="8.2.32", help="build-output's php-cgi of this version")
    which.add_argument("--module", type=Path, help="php-cgi .wasm/.cwasm to benchmark")
    p.add_argument("--native-cgi", type=Path, default=None,
                   help="native php-cgi (default: the machine's, kiln/native.py)")
    p.add_argument("--requests", type=int, default=200, help="requests per batch")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--concurrency", default="1,4", help="comma-separated levels")
    p.add_argument("--docroot", type=Path, help="docroot for --page (default: a hello page)")
    p.add_argument("--page", action="append", default=[], metavar="NAME=PATH",
                   help="page to fetch (repeatable; default hello=/hello.php)")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for both servers (e.g. --writable=wp-content); "
                        "{port} is replaced by the server's port")
    p.add_argument("--opcache", choices=("wasm", "none", "both"), default="wasm",
                   help="who keeps OPcache's file cache: wasm only (default), nobody, both")
    p.add_argument("--isolation", choices=("request", "worker"), default="request",
                   help="the wasm server's isolation (default request: an instance per "
                        "request, as native runs a process per request; worker: kiln.pool)")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs alone")
    ns = p.parse_args()

    try:
        module = ns.module or kiln_server.find_php_cgi(ns.php)
    except KilnError as e:
        print(f"bench/server.py: {e}", file=sys.stderr)
        return 2
    try:
        ns.native_cgi = ns.native_cgi or Path(native.binary("cgi"))
    except KilnError as exc:
        sys.exit(f"bench/server.py: {exc}")
    if not os.access(ns.native_cgi, os.X_OK):
        print(f"bench/server.py: {ns.native_cgi} missing: apt-get install -y php{native.release()}-cgi",
              file=sys.stderr)
        return 2
    levels = [int(x) for x in ns.concurrency.split(",") if x.strip()]
    scratch = tempfile.TemporaryDirectory(prefix="kiln-bench-")
    if ns.docroot:
        docroot = ns.docroot
    else:
        docroot = Path(scratch.name)
        (docroot / "hello.php").write_text(HELLO)
    pages = [tuple(spec.split("=", 1)) for spec in ns.page] or [("hello", "/hello.php")]
    native_version = subprocess.run([str(ns.native_cgi), "-v"], capture_output=True,
                                    text=True).stdout.split("\n")[0]

    load = os.getloadavg()[0]   # recorded with the figures: other work on the machine skews them
    startup = startup_costs(module, ns.native_cgi)
    wasm_extra = ["--no-opcache"] if ns.opcache == "none" else []
    native_extra = [] if ns.opcache == "both" else [a for d in NATIVE_DEFINES for a in ("-d", d)]
    servers = {
        "wasm": ServerProcess("wasm", ["--module", str(module), "--isolation", ns.isolation,
                                       *wasm_extra], docroot, ns.server_arg),
        "native": ServerProcess("native", ["--native-cgi", str(ns.native_cgi), *native_extra],
                                docroot, ns.server_arg),
    }
    samples: dict[tuple, list[float]] = {}
    elapsed: dict[tuple, float] = {}
    try:
        for name, path in pages:   # warm-up, and check both answer 200
            for label, s in servers.items():
                batch(s.port, path, 5, 1)
        for r in range(ns.rounds):
            for name, path in pages:
                for c in levels:
                    order = list(servers.items())
                    if r % 2:
                        order.reverse()   # neither side always goes first
                    for label, s in order:
                        seconds, lat = batch(s.port, path, ns.requests, c)
                        key = (name, c, label)
                        samples.setdefault(key, []).extend(lat)
                        elapsed[key] = elapsed.get(key, 0.0) + seconds
                        print(f"round {r + 1}: {name} c={c} {label}: "
                              f"{len(lat) / seconds:.1f} req/s", file=sys.stderr)
    finally:
        for s in servers.values():
            s.stop()
        scratch.cleanup()

    rows = ["| page | concurrency | wasm req/s | native req/s | wasm/native time | "
            "wasm p50 ms | native p50 ms | p50 ratio | wasm p99 ms | native p99 ms | p99 ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, _ in pages:
        for c in levels:
            w, n = samples[(name, c, "wasm")], samples[(name, c, "native")]
            w_rps = len(w) / elapsed[(name, c, "wasm")]
            n_rps = len(n) / elapsed[(name, c, "native")]
            w50, n50 = percentile(w, 0.5) * 1000, percentile(n, 0.5) * 1000
            w99, n99 = percentile(w, 0.99) * 1000, percentile(n, 0.99) * 1000
            rows.append(f"| {name} | {c} | {w_rps:.1f} | {n_rps:.1f} | {n_rps / w_rps:.2f}x | "
                        f"{w50:.1f} | {n50:.1f} | {w50 / n50:.2f}x | {w99:.1f} | {n99:.1f} | "
                        f"{w99 / n99:.2f}x |")
    table = "\n".join(rows)
    print(table)
    print(f"php-cgi -v alone: wasm {startup[0]:.0f} ms, native {startup[1]:.0f} ms", file=sys.stderr)
    if not ns.no_write:
        opcache = {"wasm": ("OPcache file cache (warm)", "opcache off"),
                   "none": ("no OPcache", "opcache off"),
                   "both": ("OPcache file cache (warm)", "OPcache file cache (warm)")}[ns.opcache]
        if not has_opcache(module):
            opcache = ("no OPcache (not in this build)", opcache[1])
        meta = (f"`bench/server.py`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores "
                f"({platform.machine()}), {ns.rounds} interleaved rounds x {ns.requests} requests "
                f"per cell, keep-alive connections, one client thread per connection in the same "
                f"machine (load average {load:.1f} at start). wasm: `{module}`, "
                + ("one fresh Wasmtime instance per request" if ns.isolation == "request" else
                   "persistent kiln.pool workers (--isolation worker)")
                + f", {opcache[0]}; native: {native_version}, "
                f"a process per request, {opcache[1]}; both behind the same `kiln.server`. \"wasm/native time\" is "
                f"native req/s over wasm req/s (how many times slower wasm is; below 1 means faster). "
                f"`php-cgi -v` alone (start-up every request pays): wasm {startup[0]:.0f} ms, "
                f"native {startup[1]:.0f} ms (medians).")
        title = "HTTP server" + {"wasm": "", "none": " (no OPcache)",
                                 "both": " (OPcache file cache on both sides)"}[ns.opcache]
        if ns.isolation == "worker":
            title += " (wasm: --isolation worker)"   # its own section, beside the per-request one
        path = write_section(title, f"{meta}\n\n{table}\n")
        print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
