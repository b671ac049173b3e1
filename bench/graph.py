#!/usr/bin/env python3
"""Benchmarks of the task graph itself, printed as ratios measured side by side in one run.

    .venv/bin/python bench/graph.py [--rounds N] [--skip cold]

1. no-op: `doit php:<v>` and the buildable matrix when everything is up to date, against
   the interpreter's own start (`python -c "import doit"`), alternated.
2. orchestration overhead: the doit chain patch -> make against the same steps by hand
   (copy the pristine tree, apply the series, run the rendered wl-build), warm compiler cache.
3. patch-edit rebuild: one statement of one patch edited, rebuilt through doit with the
   compiler cache (ccache), against a cold build (empty compiler caches).
4. parallel: `doit -n 2` against `doit -n 1` for the buildable matrix from the patch step.

Every timing is wall-clock on this machine; the ratios are what to compare across machines.
Results are printed as a Markdown table and written to docs/benchmarks.md ("Task graph").
"""
from __future__ import annotations

import argparse
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

from kiln import patching, recipe, settings  # noqa: E402
from kiln.layout import Build  # noqa: E402

PHP = recipe.language("php")
VERSION = "8.2.32"
BUILDABLE = list(PHP.testable)
ENV = {**os.environ, "KILN_IMAGES": "off"}


def run(*command, env=None, check=True) -> float:
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env or ENV, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if check and result.returncode != 0:
        sys.exit(f"bench: {' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds


def doit(*args, env=None) -> float:
    return run(sys.executable, "-m", "doit", *args, env=env)


def forget_from_patch(versions):
    stages = ["php_patch", "php_configure", "php_make", "php_collect", "php_aot", "php_smoke"]
    doit("forget", *[f"{s}:{v}" for v in versions for s in stages])
    for v in versions:  # the stamps must change too, or md5 checks would call make up to date
        shutil.rmtree(Build("php", v, "default").src, ignore_errors=True)


def noop(rounds):
    for target in [[f"php:{v}" for v in BUILDABLE]]:
        doit(*target)  # make sure everything is built
    base, one, matrix = [], [], []
    for _ in range(rounds):
        base.append(run(sys.executable, "-c", "import doit"))
        one.append(doit(f"php:{VERSION}"))
        matrix.append(doit(*[f"php:{v}" for v in BUILDABLE]))
    b, o, m = (statistics.median(x) for x in (base, one, matrix))
    return [("no-op, one version", o, b, f"{o - b:.2f} s beyond interpreter start", "< 1 s"),
            (f"no-op, buildable matrix ({len(BUILDABLE)})", m, b, f"{m - b:.2f} s beyond interpreter start", "< 1 s")]


def by_hand(build: Build) -> float:
    """patch + configure + make exactly as the graph does them, without doit."""
    started = time.monotonic()
    shutil.rmtree(build.src, ignore_errors=True)
    subprocess.run(["cp", "-a", str(build.pristine), str(build.src)], check=True)
    for patch in PHP.patches_for(build.version, build.flavour):
        subprocess.run(["patch", "-p1", "--batch", "-i", str(patch.file)], cwd=build.src, check=True,
                       capture_output=True)
    for step in (["configure"], ["make", str(settings.jobs())]):
        subprocess.run([str(build.script), *step], cwd=build.src, check=True, capture_output=True, env=ENV)
    return time.monotonic() - started


def overhead(rounds):
    build = Build("php", VERSION, "default")
    graph, hand = [], []
    for _ in range(rounds):
        forget_from_patch([VERSION])
        started = time.monotonic()
        doit(f"php_make:{VERSION}")
        graph.append(time.monotonic() - started)
        hand.append(by_hand(build))
    forget_from_patch([VERSION])
    doit(f"php:{VERSION}")
    g, h = statistics.median(graph), statistics.median(hand)
    return [("orchestration: doit patch..make vs by hand (warm cache)", g, h,
             f"{(g / h - 1) * 100:+.1f}% overhead", "< 3%")]


def patch_edit():
    build = Build("php", VERSION, "default")
    # A real one-file change: a comment appended to one statement a C-only patch adds (hunk
    # line counts stay right), so exactly one C file differs from the last build.
    def statement(line):
        return line.startswith("+") and not line.startswith("+++") and line.rstrip().endswith(";")

    target = next(p.file for p in PHP.patches_for(VERSION)
                  if not patching.touches_configure(p.file) and any(map(statement, p.file.read_text().split("\n"))))
    original = target.read_bytes()
    try:
        lines = original.decode().split("\n")
        index = next(i for i, line in enumerate(lines) if statement(line))
        lines[index] += " /* benchmark edit */"
        target.write_bytes("\n".join(lines).encode())
        started = time.monotonic()
        doit(f"php_make:{VERSION}")
        edit = time.monotonic() - started
    finally:
        target.write_bytes(original)
    cache = settings.cache_dir()
    aside = cache.with_name(cache.name + ".bench-aside")
    if cache.exists():
        os.replace(cache, aside)
    try:
        forget_from_patch([VERSION])
        started = time.monotonic()
        doit(f"php_make:{VERSION}")
        cold = time.monotonic() - started
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if aside.exists():
            os.replace(aside, cache)
    doit(f"php:{VERSION}")
    return [("patch-edit rebuild vs cold build (patch..make)", edit, cold, f"{edit / cold:.2f}x", "< 0.25x")]


def parallel():
    targets = [f"php_make:{v}" for v in BUILDABLE]
    forget_from_patch(BUILDABLE)
    serial = doit("-n", "1", *targets)
    forget_from_patch(BUILDABLE)
    both = doit("-n", "2", "-P", "thread", *targets)
    doit(*[f"php:{v}" for v in BUILDABLE])
    return [(f"-n 2 vs serial ({len(BUILDABLE)} versions, patch..make)", both, serial,
             f"{both / serial:.2f}x", "<= 0.65x")]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip", action="append", default=[], choices=["noop", "overhead", "edit", "parallel"])
    args = parser.parse_args()
    rows = []
    if "noop" not in args.skip:
        rows += noop(args.rounds * 3)
    if "overhead" not in args.skip:
        rows += overhead(max(1, args.rounds - 1))
    if "edit" not in args.skip:
        rows += patch_edit()
    if "parallel" not in args.skip:
        rows += parallel()
    table = ["| measurement | measured (s) | against (s) | ratio | target |", "|---|---:|---:|---|---|"]
    table += [f"| {name} | {a:.2f} | {b:.2f} | {ratio} | {goal} |" for name, a, b, ratio, goal in rows]
    text = "\n".join(table)
    print(text)
    write_section("Task graph", f"`bench/graph.py`, {time.strftime('%Y-%m-%d')}, "
                  f"{os.cpu_count()} cores, KILN_JOBS={settings.jobs()}:\n\n{text}\n")


def cpu_model() -> str:
    """The CPU's name, for the line that says where a table was measured."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def write_section(title: str, body: str) -> None:
    """Replace (or add) one `## title` section of docs/benchmarks.md, keeping the others."""
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\nLatest results of the scripts in bench/.\n"
    marker = f"## {title}\n"
    body = body.strip("\n") + "\n"
    if marker in text:
        head, _, rest = text.partition(marker)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        # One blank line before the next section, however the body ends.
        text = head + marker + "\n" + body + ("\n" + tail.lstrip("\n") if tail else "")
    else:
        text = text.rstrip() + "\n\n" + marker + "\n" + body
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from kiln import atomic
    atomic.write_text(path, text)


if __name__ == "__main__":
    main()
