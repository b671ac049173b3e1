#!/usr/bin/env python3
"""What one file-system call costs a PHP script under Kiln's runner, on either engine, against native PHP.

    .venv/bin/python bench/wasi_fs.py [--rounds 5] [--module build-output/php/php-8.2.32-wordpress/bin/php.cwasm]

WordPress's front page makes ~3,500 of them per request (stat, open, read, close: strace of a
pool worker, docs/benchmarks.md). Under wasmtime-py each WASI file-system call is handed to a
blocking-thread pool and waited for (Wasmtime's C API builds its WASI context without
`allow_blocking_current_thread`, which its own command line sets), so its cost is two thread
switches, not a system call. Rounds alternate native and wasm; the wasm runs are also made
with the worker pinned to one CPU (`taskset`), where the hand-off stays on one core. Prints
microseconds per call (medians) and ratios to native, and replaces the "WASI file-system
calls" section of docs/benchmarks.md unless --no-docs.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from kiln import native  # noqa: E402

SCRIPT = r"""<?php
$n = (int) ($argv[1] ?? 20000); $f = __FILE__;
$t = hrtime(true);
for ($i = 0; $i < $n; $i++) { clearstatcache(); file_exists($f); }
$stat = (hrtime(true) - $t) / $n / 1000;
$t = hrtime(true);
for ($i = 0; $i < $n / 4; $i++) { fclose(fopen($f, "r")); }
$open = (hrtime(true) - $t) / ($n / 4) / 1000;
$t = hrtime(true);
for ($i = 0; $i < $n / 4; $i++) { file_get_contents($f); }
$read = (hrtime(true) - $t) / ($n / 4) / 1000;
printf("stat=%.3f open=%.3f read=%.3f\n", $stat, $open, $read);
"""
CALLS = {"stat": "file_exists() after clearstatcache()", "open": "fopen() + fclose()",
         "read": "file_get_contents() of a small file"}


def measure(command: list[str], env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, **env})
    found = dict(re.findall(r"(\w+)=([\d.]+)", out.stdout))
    if set(found) != set(CALLS):
        sys.exit(f"bench/wasi_fs.py: {command[0]} gave {out.stdout!r} {out.stderr[-300:]!r}")
    return {k: float(v) for k, v in found.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--module", type=Path,
                    default=ROOT / "build-output/php/php-8.2.32-wordpress/bin/php.cwasm")
    ap.add_argument("--native", default=None, help="native php (default: the machine's, kiln/native.py)")
    ap.add_argument("--no-docs", action="store_true")
    ns = ap.parse_args()
    ns.native = ns.native or native.binary("cli")
    if not ns.module.is_file():
        sys.exit(f"bench/wasi_fs.py: {ns.module} missing: build it (doit php:8.2.32-wordpress)")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-fs-") as folder:
        script = Path(folder) / "fs.php"
        script.write_text(SCRIPT)
        wasm = [sys.executable, "-m", "kiln.runner", "-v", f"{folder}:{folder}:ro", str(ns.module), str(script)]
        before = {"KILN_ENGINE": "in-process"}   # wasmtime-py, as every run was before issue 28
        variants = {"native": ([ns.native, "-n", str(script)], {}),
                    "kiln in process": (wasm, before),
                    "kiln in process, one CPU": (["taskset", "-c", "0", *wasm], before),
                    "kiln on the Wasmtime CLI": (wasm, {"KILN_ENGINE": "auto"})}
        measure(*variants["kiln on the Wasmtime CLI"])   # compiles the CLI's artifact once
        results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for _ in range(ns.rounds):
            for name, (command, env) in variants.items():
                results[name].append(measure(command, env))
    load_after = os.getloadavg()
    median = {name: {call: statistics.median(r[call] for r in runs) for call in CALLS}
              for name, runs in results.items()}
    lines = ["| call | " + " | ".join(variants) + " | " + " | ".join(f"{n} / native" for n in variants if n != "native") + " |",
             "|---|" + "---:|" * (2 * len(variants) - 1)]
    for call, what in CALLS.items():
        cells = [f"{median[n][call]:.1f} µs" for n in variants]
        ratios = [f"{median[n][call] / median['native'][call]:.1f}x" for n in variants if n != "native"]
        lines.append(f"| {what} | " + " | ".join(cells + ratios) + " |")
    table = "\n".join(lines)
    from graph import cpu_model, write_section
    body = (f"`bench/wasi_fs.py --rounds {ns.rounds}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{os.cpu_count()} x {cpu_model()}, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after. "
            f"Native: `{ns.native} -n` (PHP {native.version(ns.native)}); kiln: `python -m kiln.runner {ns.module.name}` "
            f"({ns.module.parent.parent.name}) on wasmtime-py 50.0.1 (`KILN_ENGINE=in-process`, "
            f"before issue 28) and on the Wasmtime command line 49.0.3 (the default since); medians per call.\n\n{table}\n")
    print(body)
    if not ns.no_docs:
        write_section("WASI file-system calls", body + "\n" + DOC_NOTE)
    return 0


DOC_NOTE = """On the command line (`kiln run`'s and the pool's default since issue 28) the calls run
on the guest's own thread, as Wasmtime's own `wasmtime run` does (`allow_blocking_current_thread`).
What is left there is Wasmtime's WASI itself, the same under a bare `wasmtime run` of the
script. One `file_exists()` is one WASI call (`path_filestat_get`, following symlinks:
`WASMTIME_LOG=wasmtime_wasi=trace`), and Wasmtime 49 answers it with two sandboxed lookups of
the path, one for the stat and one for the inode number it derives from a hash of the file's
metadata, each `openat2` beneath the grant, `statx`, `close`: six system calls where native PHP
makes one `access()` (`strace -f -c` of 1,000 calls, 2026-12-08: 2,003 `openat2`, 2,020 `statx`,
2,158 `close`). `is_link()` (no symlink to follow) on a one-component path is two `statx`, on a
deeper path the same six. That is the floor for a stat under this engine: no `wasmtime run`
setting changes it (Wasmtime 49 removed the older WASI implementation, `-S preview2=n`), so the
4x aim of issue 28 for `file_exists()` is out of Kiln's reach short of patching Wasmtime.

Why it matters: a WordPress front page through a pool worker made ~1,300 `statx`, ~975
`openat2` (each WASI path call opens its path `O_PATH` beneath the granted folder, stats or
opens it, closes it), 270 `pread64` and ~11,700 `futex` calls per request (`strace -f -c` of one
worker over 10 requests), and `perf` put ~30% of the worker's samples outside the guest's code
(kernel scheduling, Wasmtime's blocking pool threads). The hand-off is Wasmtime's C API's
choice (its WASI context is built without `allow_blocking_current_thread`), not Kiln's:
wasmtime-py has no setting for it; the command line (docs/engines.md) does not hand off.
"""


if __name__ == "__main__":
    sys.exit(main())
