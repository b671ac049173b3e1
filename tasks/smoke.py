"""smoke: run the recipe's smoke checks on a build's precompiled modules."""
import platform
from dataclasses import asdict

from kiln import atomic, runner, smoke
from kiln.errors import KilnError
from kiln.layout import Build

from . import builds, php, user_errors

FIXTURES = php().folder / "smoke"
CHECKS = FIXTURES / "checks.toml"


@user_errors
def _smoke(build: Build, modules: dict):
    checks = [c for c in smoke.load_checks(CHECKS) if smoke.applies(c, build.version, build.flavour)]
    outcomes = []
    for check in checks:
        outcome = smoke.run_check(check, build.version, modules, FIXTURES)
        mark = "ok  " if outcome.passed else "FAIL"
        print(f"  {mark} {check['name']:<26} {outcome.seconds:6.2f}s  {'; '.join(outcome.problems)}")
        outcomes.append(outcome)
    failed = [o.name for o in outcomes if not o.passed]
    atomic.write_json(build.root / "smoke.json", {
        "version": build.version,
        "flavour": build.flavour,
        "engine": runner.engine_fingerprint(),
        "host": platform.machine(),
        "passed": not failed,
        "checks": [asdict(o) for o in outcomes],
    })
    if failed:
        # smoke.json stays as the record of the failure, but doit will not call it done.
        build.smoke_report.rename(build.root / "smoke.failed.json")
        raise KilnError(f"smoke checks failed for {build.id}: {', '.join(failed)} "
                        f"(details in {build.root / 'smoke.failed.json'})")


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
