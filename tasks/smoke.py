"""smoke: run the recipe's smoke checks on a build's precompiled modules."""
import platform
from dataclasses import asdict
from pathlib import Path

from kiln import atomic, runner, smoke
from kiln.errors import KilnError
from kiln.layout import Build

from . import builds, php, user_errors
from .optimize import optimized

FIXTURES = php().folder / "smoke"
CHECKS = FIXTURES / "checks.toml"


def _check(build: Build, modules: dict, report: Path):
    checks = [c for c in smoke.load_checks(CHECKS) if smoke.applies(c, build.version, build.flavour)]
    outcomes = []
    for check in checks:
        outcome = smoke.run_check(check, build.version, modules, FIXTURES)
        mark = "ok  " if outcome.passed else "FAIL"
        print(f"  {mark} {check['name']:<26} {outcome.seconds:6.2f}s  {'; '.join(outcome.problems)}")
        outcomes.append(outcome)
    failed = [o.name for o in outcomes if not o.passed]
    atomic.write_json(report, {
        "version": build.version,
        "flavour": build.flavour,
        "engine": runner.engine_fingerprint(),
        "host": platform.machine(),
        "passed": not failed,
        "checks": [asdict(o) for o in outcomes],
    })
    if failed:
        # smoke.json stays as the record of the failure, but doit will not call it done.
        failed_report = report.with_name(report.stem + ".failed.json")
        report.rename(failed_report)
        raise KilnError(f"smoke checks failed for {build.id}: {', '.join(failed)} "
                        f"(details in {failed_report})")


@user_errors
def _smoke(build: Build, modules: dict):
    _check(build, modules, build.smoke_report)


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
        modules = {name: build.module(name, aot=True) for name in outputs}
        yield {
            "name": build.id,
            "actions": [(_smoke, [build, modules])],
            "file_dep": [*modules.values(), *fixtures],
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
