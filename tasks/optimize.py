"""optimize: the smaller variant of each module (bin/<module>.opt.wasm) and its precompiled
artifact (bin/<module>.opt.cwasm), which `php_smoke_optimized` checks like the originals.

Optional: `php:<build>` includes it when KILN_OPTIMIZE=on (kiln/settings.py says why it is
off by default); `doit php_optimize:<build>` runs it any time.
"""
from doit.exceptions import TaskFailed
from doit.tools import config_changed

from kiln import atomic, optimize, runner
from kiln.errors import KilnError
from kiln.layout import Build

from . import builds, php, refuse_command_line_only, user_errors


def optimized(build: Build, module: str, aot: bool = False):
    return build.bin / f"{module}.opt.{'cwasm' if aot else 'wasm'}"


def record(build: Build):
    return build.root / "optimized.json"


def _targets(build: Build, modules: list[str]) -> list:
    return [*(optimized(build, m, aot) for m in modules for aot in (False, True)), record(build)]


@user_errors
def _optimize(build: Build, modules: list[str], options: list[str]):
    refuse_command_line_only(build, "the optimized modules' engines (wasmtime-py, WasmEdge, browsers)",
                             "run its .wasm on the Wasmtime command line as it is")
    found = {}
    for name in modules:
        sizes = optimize.optimize(build.module(name), optimized(build, name), options,
                                  build.logs / f"optimize-{name}.log")
        runner.precompile(optimized(build, name), optimized(build, name, aot=True))
        sizes["cwasm"] = optimized(build, name, aot=True).stat().st_size
        print(f"  {optimized(build, name)}: {sizes['after'] / 1e6:.2f} MB "
              f"(from {sizes['before'] / 1e6:.2f} MB, wasm-opt {sizes['seconds']:.0f}s)")
        found[name] = sizes
    atomic.write_json(record(build), {"modules": found, **optimize.identity(options)})


def task_php_optimize():
    """wasm-opt each module into bin/<module>.opt.wasm and precompile it (.opt.cwasm)."""
    modules = list(php().outputs)
    try:
        options = optimize.passes(php().settings, str(php().path))
        identity = optimize.identity(options)
    except KilnError as exc:
        # No wasm-opt (or a bad setting) must not break the rest of the graph: the task says why.
        # Its targets stay declared, so php_smoke_optimized reaches this message too.
        message = f"kiln: {exc}"
        for build in builds():
            yield {"name": build.id, "actions": [lambda m=message: TaskFailed(m)],
                   "targets": _targets(build, modules),
                   "doc": f"optimize {build.id} (unavailable: {exc})"}
        return
    for build in builds():
        yield {
            "name": build.id,
            "actions": [(_optimize, [build, modules, options])],
            "file_dep": [build.module(m) for m in modules],
            "targets": _targets(build, modules),
            "uptodate": [config_changed({**identity, "engine": runner.engine_fingerprint()})],
            "doc": f"optimized modules for {build.id} (wasm-opt {' '.join(options)})",
            "clean": True,
        }
