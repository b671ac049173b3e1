#!/usr/bin/env python3
"""Kiln against the peer (WordPress Playground's php-wasm for Node) and native PHP, in one run.

    .venv/bin/python bench/peer.py [--module build-output/php/php-8.2.32/bin/php.cwasm]
        [--src build-output/php/pristine/php-8.2.32] [--rounds 3] [--no-docs]

For Zend/bench.php and Zend/micro_bench.php, every round runs, in this order: native
the machine's `php -n` (kiln/native.py), Kiln's runner as a whole process (`python -m kiln.runner`, the module's folder
granted read-only), Kiln's runner in this process (the precompiled module loaded once, then
instantiate + run, as bench/php.py measures) and the peer (`node bench/peer.mjs`, npm
`@php-wasm/node` pinned in package.json), so load on the machine hits them alike. The
table gives medians and ratios to native; the peer's figure is its whole process, with the
script alone (runtime loaded) beside it. It replaces the "Against the peer (php-wasm)"
section of docs/benchmarks.md unless --no-docs.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from kiln import compare, native, runner  # noqa: E402
from kiln.errors import KilnError  # noqa: E402
from kiln.layout import Build  # noqa: E402

SECTION = "Against the peer (php-wasm)"
PEER_SCRIPT = ROOT / "bench" / "peer.mjs"
PEER_MARKER = "kiln-peer "
SCRIPTS = [Path(bench).name for bench in compare.BENCHES]


def parse_peer(stderr: str) -> dict:
    """The figures bench/peer.mjs reports on its last `kiln-peer {...}` stderr line."""
    for line in reversed(stderr.splitlines()):
        if line.startswith(PEER_MARKER):
            found = json.loads(line[len(PEER_MARKER):])
            missing = {"load", "run", "exit", "php", "package"} - found.keys()
            if missing:
                raise KilnError(f"bench/peer.mjs: its report lacks {', '.join(sorted(missing))}: {line}")
            return found
    raise KilnError(f"bench/peer.mjs reported nothing (no {PEER_MARKER.strip()!r} line): {stderr.strip()[-300:]}")


def peer(node: str, script: Path) -> dict:
    """One run of the peer: its report plus the whole process's wall time."""
    started = time.monotonic()
    proc = subprocess.run([node, str(PEER_SCRIPT), str(script)], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    report = parse_peer(proc.stderr)
    if proc.returncode != 0 or report["exit"] != 0:
        raise KilnError(f"peer {script.name} exited {report['exit']}: {proc.stderr.strip()[-300:]}")
    return {**report, "process": seconds}


def kiln_command(module: Path, zend: Path, script: str) -> float:
    command = [sys.executable, "-m", "kiln.runner", "--dir", f"{zend}::/zend:ro", str(module), f"/zend/{script}"]
    seconds, code, _, _ = compare._spawn(command, cwd=ROOT)
    if code != 0:
        raise KilnError(f"{' '.join(command)} exited {code}")
    return seconds


def table(results: dict) -> str:
    lines = ["| script | native `php -n` | Kiln, `python -m kiln.runner` | Kiln, in process "
             "| peer, `node bench/peer.mjs` | peer, script alone | Kiln command / peer |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for script, runs in results.items():
        med = {key: statistics.median(values) for key, values in runs.items()}
        base = med["native"]

        def cell(key: str) -> str:
            return f"{med[key]:.3f} s ({med[key] / base:.2f}x)"
        lines.append(f"| {script} | {base:.3f} s | {cell('command')} | {cell('in_process')} "
                     f"| {cell('peer')} | {cell('peer_run')} | {med['command'] / med['peer']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    default = Build("php", "8.2.32", "default")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", type=Path, default=default.module("php", aot=True),
                        help="Kiln's precompiled php.cwasm")
    parser.add_argument("--src", type=Path, default=default.pristine, help="a PHP source tree (its Zend/)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    ns = parser.parse_args()
    zend = ns.src.resolve() / "Zend"
    node = shutil.which("node")
    for path, what in ((ns.module, "give --module"), (zend / "bench.php", "give --src"),
                       (ROOT / "node_modules" / "@php-wasm" / "node", "run scripts/setup (npm ci)")):
        if not path.exists():
            raise SystemExit(f"bench/peer.py: {path} does not exist: {what}")
    if node is None:
        raise SystemExit("bench/peer.py: no node on PATH: run scripts/setup")
    php = native.binary("cli")
    native_version = native.version(php)
    kiln_version = runner.run(ns.module, ["php", "-r", "echo PHP_VERSION;"]).stdout.decode()
    node_version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    loaded = runner.load_module(ns.module)  # in process: mapped once, as a server would
    grant = [runner.Preopen(zend, "/zend", False)]
    load_before = os.getloadavg()
    results, loads, peer_seen = {}, [], {}
    for script in SCRIPTS:
        runs = results[script] = {"native": [], "command": [], "in_process": [], "peer": [], "peer_run": []}
        for round_ in range(ns.rounds):
            runs["native"].append(compare._native(php, [str(zend / script)]))
            runs["command"].append(kiln_command(ns.module, zend, script))
            runs["in_process"].append(compare._module(loaded, [f"/zend/{script}"], grant, "Kiln in process"))
            peer_seen = peer(node, zend / script)
            runs["peer"].append(peer_seen["process"])
            runs["peer_run"].append(peer_seen["run"])
            loads.append(peer_seen["load"])
            print(f"{script} round {round_ + 1}/{ns.rounds}: "
                  + ", ".join(f"{key} {values[-1]:.3f} s" for key, values in runs.items()), flush=True)
    load_after = os.getloadavg()
    out = table(results)
    print(out)
    if ns.no_docs:
        return
    from graph import cpu_model, write_section
    wasmtime_version = runner.wasmtime_py_version()
    body = (f"`bench/peer.py --rounds {ns.rounds}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"{cpu_model()} ({os.cpu_count()} cores, {platform.machine()}), load average "
            f"{' '.join(f'{x:.2f}' for x in load_before)} before and "
            f"{' '.join(f'{x:.2f}' for x in load_after)} after. Native: `{php} -n`, PHP {native_version}. "
            f"Kiln: `{ns.module.name}` of {ns.module.parent.parent.name} (PHP {kiln_version}), "
            f"wasmtime-py {wasmtime_version}, engine {runner.engine_fingerprint()}"
            f"{' (KILN_TIME_LIMITS=on: epoch checks compiled in)' if runner.time_limits_available() else ''}. "
            f"Peer: npm `@php-wasm/node` {peer_seen['package']} (PHP {peer_seen['php']}) in Node "
            f"{node_version} (its {peer_seen.get('mode', '?')} build), `loadNodeRuntime('8.2', {{emscriptenOptions: {{processId: 1}}}})`, its "
            f"runtime load {statistics.median(loads):.2f} s (median) included in the whole-process "
            "column and left out of \"script alone\". Each round runs the four in that order; "
            "medians, ratios to native in brackets, last column below 1 means Kiln is faster.\n\n" + out + "\n")
    write_section(SECTION, body)
    print(f"docs/benchmarks.md: {SECTION} section updated")


if __name__ == "__main__":
    main()
