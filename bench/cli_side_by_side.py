#!/usr/bin/env python3
"""Modules only the Wasmtime command line runs (the fibers flavour's), side by side with others
on the same engine: one PHP script, native `php -n` and each module once per round, in turn, so
load on the machine hits them alike; medians and same-round ratios printed. Nothing is written.

    .venv/bin/python bench/cli_side_by_side.py --src build-output/php/php-8.2.32/src \\
        default=/work/main/build-output/php/php-8.2.32/bin/php.wasm \\
        "fibers, no check=/elsewhere/php.wasm" \\
        fibers=build-output/php/php-8.2.32-fibers/bin/php.wasm

Each module is compiled once into the command line's cache (kiln/wasmtime_cli.py, the same
artifacts `kiln run` and the pool's workers use); each run is `wasmtime run` of that artifact, a
fresh process, timed as user + system CPU of the child (what the machine's other sessions
move least) and wall clock. --script names a file of --src's Zend/ folder (bench.php by
default), or any PHP file by its path (ARGS after it go to the script).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln import engine, native, wasmtime_cli  # noqa: E402
from kiln.engine import Preopen  # noqa: E402


def timed(command: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one child process, which must exit 0."""
    before = os.times()
    started = time.monotonic()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=engine.cli_engine_env())
    wall = time.monotonic() - started
    after = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"bench/cli_side_by_side.py: {command[0]} ... exited {proc.returncode}: "
                         f"{proc.stderr.decode(errors='replace')[-300:]}")
    return (after.children_user - before.children_user) + (after.children_system - before.children_system), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="LABEL=MODULE.wasm")
    parser.add_argument("--src", type=Path, required=True, help="the release's source tree (its Zend/ benchmarks)")
    parser.add_argument("--script", default="bench.php")
    parser.add_argument("--arg", action="append", default=[], dest="args", help="an argument for the script")
    parser.add_argument("--rounds", type=int, default=7)
    ns = parser.parse_args()
    zend = (ns.src / "Zend").resolve()
    script = zend / ns.script if (zend / ns.script).is_file() else Path(ns.script).resolve()
    grants = [Preopen(script.parent, "/scripts")]
    guest = [f"/scripts/{script.name}", *ns.args]
    commands = [("native `php -n`", [native.binary(), "-n", str(script), *ns.args])]
    for variant in ns.variants:
        label, sep, module = variant.partition("=")
        if not sep or not Path(module).is_file():
            raise SystemExit(f"bench/cli_side_by_side.py: {variant!r} is not LABEL=MODULE.wasm (an existing file)")
        artifact = wasmtime_cli.compiled(Path(module))   # compiled once, outside the timed runs
        commands.append((label, wasmtime_cli.command(artifact, ["php", "-n", *guest], {}, grants)))
    cpu = {label: [] for label, _ in commands}
    wall = {label: [] for label, _ in commands}
    for _ in range(ns.rounds):
        for label, command in commands:
            c, w = timed(command)
            cpu[label].append(c)
            wall[label].append(w)
    first = commands[1][0]
    print(f"{' '.join([script.name, *ns.args])}, {ns.rounds} rounds, load {os.getloadavg()[0]:.1f} at the end")
    print(f"| run | median CPU | median wall | x {first} (CPU, same round) | x {first} (fastest CPU) |")
    print("|---|---:|---:|---:|---:|")
    for label, _ in commands:
        same = statistics.median(c / f for c, f in zip(cpu[label], cpu[first]))
        print(f"| {label} | {statistics.median(cpu[label]):.3f} s | {statistics.median(wall[label]):.3f} s "
              f"| {same:.3f} | {min(cpu[label]) / min(cpu[first]):.3f} |")


if __name__ == "__main__":
    main()
