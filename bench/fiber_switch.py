#!/usr/bin/env python3
"""What a fiber switch (a suspend + resume pair) costs on wasm32-wasi with Kiln's fiber switch
(languages/php/fibers/kiln_fiber.wat: WebAssembly stack switching on the Wasmtime command line)
against native code, in C and in PHP.

    .venv/bin/python bench/fiber_switch.py [--rounds 3] [--pairs 2000000]
        [--module build-output/php/php-8.2.32-fibers/bin/php.wasm]

C: languages/php/fibers/proof.c (its last line times PAIRS resume+suspend pairs), built as
tests/test_fibers.py builds it, against the same loop on glibc's swapcontext (which also saves
and restores the signal mask: a system call each way). PHP: one fiber resumed PAIRS/4 times,
native `php -n` (boost.context's assembly) against the +fibers module. Rounds alternate;
medians in nanoseconds per pair and ratios to native are printed. Nothing is written.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln import engine, native, toolchain, wasm_merge, wasmtime_cli  # noqa: E402

FIBERS = ROOT / "languages" / "php" / "fibers"
UCONTEXT_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>
static ucontext_t main_ctx, fiber_ctx;
static volatile long value;
static void counter(void) { for (;;) { value++; swapcontext(&fiber_ctx, &main_ctx); } }
int main(int argc, char **argv)
{
    long n = atol(argv[1]);
    static char stack[64 * 1024];
    getcontext(&fiber_ctx);
    fiber_ctx.uc_stack.ss_sp = stack;
    fiber_ctx.uc_stack.ss_size = sizeof stack;
    makecontext(&fiber_ctx, counter, 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) swapcontext(&main_ctx, &fiber_ctx);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("switch: %ld pairs, %.1f ns per pair\n", value,
           ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / n);
}
"""
PHP = r"""<?php
$n = (int) $argv[1];
$f = new Fiber(function () { $v = 0; for (;;) { $v = Fiber::suspend($v + 1); } });
$v = $f->start();
$t = hrtime(true);
for ($i = 0; $i < $n; $i++) { $v = $f->resume($v); }
printf("switch: %d pairs, %.1f ns per pair\n", $v, (hrtime(true) - $t) / $n);
"""


def build(scratch: Path) -> tuple[Path, Path]:
    tools = toolchain.current()
    linked = scratch / "proof.linked.wasm"
    subprocess.run([*tools.cc, *tools.cflags, *tools.ldflags, str(FIBERS / "proof.c"),
                    str(ROOT / "languages" / "php" / "shim" / "kiln_sjlj_tag.S"), "-o", str(linked)],
                   check=True, env={**os.environ, **tools.env})
    proof = scratch / "proof.wasm"
    proof.write_bytes(wasm_merge.merge(linked.read_bytes(), [FIBERS / "kiln_fiber.wat"], "proof.wasm"))
    (scratch / "ucontext.c").write_text(UCONTEXT_C)
    subprocess.run(["cc", "-O2", str(scratch / "ucontext.c"), "-o", str(scratch / "ucontext")], check=True)
    (scratch / "fiber.php").write_text(PHP)
    return proof, scratch / "ucontext"


def ns_per_pair(command: list[str]) -> float:
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"switch: \d+ \S* ?pairs, ([\d.]+) ns per pair", out).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=2_000_000)
    parser.add_argument("--module", default=str(ROOT / "build-output/php/php-8.2.32-fibers/bin/php.wasm"))
    args = parser.parse_args()
    wasmtime = [str(wasmtime_cli.binary()), "run", *engine.cli_options()]
    with tempfile.TemporaryDirectory(prefix="kiln-fiber-bench-") as scratch:
        proof, ucontext = build(Path(scratch))
        php_pairs = str(args.pairs // 4)
        commands = {
            "C, wasm (stack switching)": wasmtime + [str(proof), "10", str(args.pairs), "1", "1"],
            "C, native swapcontext": [str(ucontext), str(args.pairs)],
        }
        if Path(args.module).is_file():
            commands["PHP, wasm +fibers"] = wasmtime + ["--dir", f"{scratch}::/b", args.module, "-n",
                                                        "/b/fiber.php", php_pairs]
            commands["PHP, native php -n"] = [native.binary("cli"), "-n", f"{scratch}/fiber.php", php_pairs]
        results: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                results[name].append(ns_per_pair(command))
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"{'':28} ns per suspend+resume pair (median of {args.rounds})")
    for name, value in medians.items():
        print(f"{name:28} {value:8.1f}")
    print(f"C: wasm / native swapcontext = {medians['C, wasm (stack switching)'] / medians['C, native swapcontext']:.2f}")
    if "PHP, native php -n" in medians:
        print(f"PHP: wasm / native = {medians['PHP, wasm +fibers'] / medians['PHP, native php -n']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
