"""smoke: run the recipe's smoke checks on a build's precompiled modules (Wasmtime), and on its
modules under WasmEdge where the wasmedge stage provides one."""
import functools
import platform
from dataclasses import asdict
from pathlib import Path

from kiln import atomic, runner, smoke, wasmedge, wasmtime_cli
from kiln.errors import KilnError
from kiln.layout import Build

from . import builds, command_line_only, php, user_errors
from .optimize import optimized

FIXTURES = php().folder / "smoke"
CHECKS = FIXTURES / "checks.toml"


def _check(build: Build, modules: dict, report: Path, wasm: dict | None = None, cli: bool = False):
    """Every check under Wasmtime (the precompiled `modules`), and, given the plain `wasm`
    modules, under WasmEdge too where the wasmedge stage found or made one (kiln/wasmedge.py).
    A failure on either runtime fails the stage; a runtime that could not run says why.
    `cli`: the modules run on the Wasmtime command line only (stack switching): there, not in
    process, and not on WasmEdge."""
    variants = php().resolve(build.version, build.flavour).variants
    checks = [c for c in smoke.load_checks(CHECKS) if smoke.applies(c, build.version, variants)]
    edge = wasmedge.read_state() if wasm and not cli else (
        "the modules use stack switching, which WasmEdge lacks" if cli else "not asked for these modules")
    execute = functools.partial(_on_command_line, smoke.CHECK_LIMIT) if cli else None
    outcomes, on_edge = [], []
    for check in checks:
        outcome = smoke.run_check(check, build.version, modules, FIXTURES, execute=execute)
        line = f"  {_mark(outcome)} {check['name']:<26} {outcome.seconds:6.2f}s  {'; '.join(outcome.problems)}"
        if isinstance(edge, wasmedge.WasmEdge):
            other = smoke.run_check(check, build.version, wasm, FIXTURES,
                                    execute=functools.partial(wasmedge.run, edge, smoke.CHECK_LIMIT))
            on_edge.append(other)
            line += f"  wasmedge {_mark(other).strip()} {other.seconds:.2f}s  {'; '.join(other.problems)}"
        print(line.rstrip())
        outcomes.append(outcome)
    if not isinstance(edge, wasmedge.WasmEdge):
        print(f"  wasmedge: not run ({edge})")
    failed = [o.name for o in outcomes if not o.passed] + [f"{o.name} (wasmedge)" for o in on_edge if not o.passed]
    edge_results = {o.name: "passed" if o.passed else "failed" for o in on_edge}
    fingerprint = wasmtime_cli.fingerprint() if cli else runner.engine_fingerprint()
    atomic.write_json(report, {
        "version": build.version,
        "flavour": build.flavour,
        "engine": fingerprint,
        "host": platform.machine(),
        "passed": not failed,
        "runtimes": {
            "wasmtime": {"engine": fingerprint},
            "wasmedge": ({"version": edge.version, "where": edge.where} if isinstance(edge, wasmedge.WasmEdge)
                         else {"not_run": edge}),
        },
        "checks": [{**asdict(o), "runtimes": {"wasmtime": "passed" if o.passed else "failed",
                                               "wasmedge": edge_results.get(o.name, "not run")}}
                   for o in outcomes],
        "wasmedge_checks": [asdict(o) for o in on_edge],
    })
    if failed:
        # smoke.json stays as the record of the failure, but doit will not call it done.
        failed_report = report.with_name(report.stem + ".failed.json")
        report.rename(failed_report)
        raise KilnError(f"smoke checks failed for {build.id}: {', '.join(failed)} "
                        f"(details in {failed_report})")


def _on_command_line(limit: float, module: Path, argv: list, env=None, stdin: bytes = b"", preopens=()):
    return wasmtime_cli.run_captured(module, argv, env, stdin, preopens, timeout=limit)


def _mark(outcome: smoke.Outcome) -> str:
    return "ok  " if outcome.passed else "FAIL"


@user_errors
def _smoke(build: Build, modules: dict, wasm: dict, cli: bool = False):
    _check(build, modules, build.smoke_report, wasm, cli)


@user_errors
def _smoke_optimized(build: Build, modules: dict):
    _check(build, modules, optimized_smoke_report(build))


def optimized_smoke_report(build: Build) -> Path:
    return build.root / "smoke-optimized.json"


def task_php_smoke():
    """Run php.wasm / php-cgi.wasm (precompiled) through the smoke checks."""
    outputs = php().outputs
    fixtures = sorted(p for p in FIXTURES.rglob("*") if p.is_file())
    for build in builds():
        cli = command_line_only(build)
        # A command-line-only build's checks run its .wasm (the aot stage filled the cache).
        modules = {name: build.module(name, aot=not cli) for name in outputs}
        wasm = {name: build.module(name) for name in outputs}
        yield {
            "name": build.id,
            "actions": [(_smoke, [build, modules, wasm, cli])],
            # wasmedge.json (the wasmedge stage): which WasmEdge also runs the checks, or why none.
            "file_dep": [*modules.values(), *wasm.values(), wasmedge.state_path(), *fixtures],
            "targets": [build.smoke_report],
            "doc": f"smoke-test {build.id}",
            "clean": True,
        }


def task_php_smoke_optimized():
    """The same smoke checks on the optimized modules (tasks/optimize.py), in smoke-optimized.json."""
    outputs = php().outputs
    fixtures = sorted(p for p in FIXTURES.rglob("*") if p.is_file())
    for build in builds():
        modules = {name: optimized(build, name, aot=True) for name in outputs}
        report = optimized_smoke_report(build)
        yield {
            "name": build.id,
            "actions": [(_smoke_optimized, [build, modules])],
            "file_dep": [*modules.values(), *fixtures],
            "targets": [report],
            "doc": f"smoke-test {build.id}'s optimized modules",
            "clean": True,
        }
