"""compare: native PHP against the wasm build, side by side (bench.json, report section).

Not part of `php:<id>` (it takes a few minutes of benchmarking): `doit php_compare:<id>`.
bench/php.py runs the same measurements and writes docs/benchmarks.md ("PHP speed").
"""
import os

from doit.tools import config_changed

from kiln import compare, runner
from kiln.layout import Build

from . import builds, php, user_errors


def rounds() -> int:
    """Runs per measure, median taken (KILN_BENCH_ROUNDS, default 3)."""
    return max(1, int(os.environ.get("KILN_BENCH_ROUNDS") or 3))


@user_errors
def _compare(build: Build, modules: dict, n: int):
    result = compare.measure(build, modules, rounds=n)
    print(compare.markdown_table(result), end="")
    print(f"  -> {build.root / 'bench.json'}")


def task_php_compare():
    """Native PHP vs the wasm build: bench.php, micro_bench.php, start-up, memory, sizes."""
    n = rounds()
    for build in builds():
        modules = {name: {"wasm": build.module(name), "aot": build.module(name, aot=True)}
                   for name in php().outputs}
        yield {
            "name": build.id,
            "actions": [(_compare, [build, modules, n])],
            "file_dep": [modules["php"]["wasm"], modules["php"]["aot"], compare.__file__],
            "targets": [build.root / "bench.json"],
            "uptodate": [config_changed({"rounds": n, "engine": runner.engine_fingerprint()})],
            "doc": f"native PHP vs {build.id} (speed, start-up, memory, sizes)",
            "clean": True,
            "verbosity": 2,
        }
