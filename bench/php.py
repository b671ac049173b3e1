#!/usr/bin/env python3
"""PHP speed: native PHP (the machine's, kiln/native.py) against the wasm builds, as ratios.

    /work/venv/bin/python bench/php.py [--rounds N] [--versions 8.2.32 7.4.33] [--no-cold]

Runs kiln.compare.measure() -- the code behind `doit php_compare:<id>` -- for each built
release (side by side in one run: native and precompiled module alternate, median of N),
writes each build's bench.json, prints a Markdown table and replaces the "PHP speed" section
of docs/benchmarks.md (other sections are kept).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln import atomic, compare, native, recipe  # noqa: E402
from kiln.layout import Build  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from graph import write_section  # noqa: E402

PHP = recipe.language("php")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--versions", nargs="+", default=list(PHP.testable))
    parser.add_argument("--no-cold", action="store_true", help="skip the in-process compile of the .wasm")
    parser.add_argument("--from-json", action="store_true",
                        help="do not measure: re-render the builds' existing bench.json")
    ns = parser.parse_args()
    sections = []
    load_before = os.getloadavg()[0]
    for version in ns.versions:
        build = Build("php", version, "default")
        modules = {name: {"wasm": build.module(name), "aot": build.module(name, aot=True)}
                   for name in PHP.outputs}
        print(f"== PHP {version}")
        if ns.from_json:
            result = compare.finish(json.loads((build.root / "bench.json").read_text()))
            atomic.write_json(build.root / "bench.json", result)
        else:
            result = compare.measure(build, modules, rounds=ns.rounds, cold=not ns.no_cold)
        table = compare.markdown_table(result)
        print(table)
        sections.append(f"### PHP {version}\n\n{table}")
    rounds = result["rounds"]
    body = (f"`bench/php.py --rounds {rounds}` on {platform.machine()}, "
            f"{time.strftime('%Y-%m-%d', time.gmtime())}; native = {native.describe()} with `-n`, "
            "wasm = the build's precompiled module in Kiln's runner (in process). Ratios are "
            f"wasm / native, lower is better. Load average {load_before:.1f} before the run and "
            f"{os.getloadavg()[0]:.1f} after it on {os.cpu_count()} cores: compare ratios, "
            "not seconds.\n\n" + "\n".join(sections))
    write_section("PHP speed", body)
    print("docs/benchmarks.md: PHP speed section updated")


if __name__ == "__main__":
    main()
