"""conformance: PHP's own run-tests.php against a build's precompiled modules.

Not part of `php:<id>` (it takes minutes): run `doit php_conformance:<id>`. Folders come from
the recipe's `conformance_folders` setting, the skips from languages/php/conformance-skips.toml.
"""
import os

from doit.tools import config_changed

from kiln import conformance, runner, settings
from kiln.layout import Build

from . import builds, php, user_errors

SKIPS = php().folder / "conformance-skips.toml"


def folders(build: Build | None = None) -> list[str]:
    """The recipe's `conformance_folders`, then, for a build, the folders of the extensions its
    variants add (`conformance_variant_folders`: gd's ext/gd/tests on the builds that have gd)."""
    chosen = list(php().settings.get("conformance_folders", conformance.DEFAULT_FOLDERS))
    if build is not None:
        on = php().resolve(build.version, build.flavour).variants
        extra = php().settings.get("conformance_variant_folders", {})
        chosen += [folder for variant in on for folder in extra.get(variant, []) if folder not in chosen]
    return chosen


def jobs() -> int:
    """Parallel run-tests workers: KILN_JOBS, at most 2 by default (builds share the cores)."""
    return settings.jobs() if os.environ.get("KILN_JOBS") else min(settings.jobs(), 2)


@user_errors
def _conformance(build: Build, modules: dict, chosen: list[str], workers: int):
    result = conformance.run(build, modules, chosen, SKIPS, jobs=workers)
    for folder, counts in result["per_folder"].items():
        print(f"  {folder:<14} passed {counts['passed']:4}  failed {counts['failed']:3}  "
              f"skipped {counts['skipped']:3}  rate {counts['rate'] * 100:5.1f}%")
    t = result["totals"]
    print(f"  total          passed {t['passed']:4}  failed {t['failed']:3}  skipped {t['skipped']:3}  "
          f"rate {t['rate'] * 100:5.1f}%  ({result['seconds']:.0f}s) -> {build.root / 'conformance.json'}")


def task_php_conformance():
    """Run PHP's run-tests.php (native PHP driving) against the wasm build."""
    workers = jobs()
    for build in builds():
        chosen = folders(build)
        modules = {name: build.module(name, aot=True) for name in php().outputs}
        yield {
            "name": build.id,
            "actions": [(_conformance, [build, modules, chosen, workers])],
            "file_dep": [*modules.values(), SKIPS, conformance.__file__,
                         str(conformance.settings.TEMPLATES / conformance.WRAPPER_TEMPLATE)],
            "targets": [build.root / "conformance.json"],
            "uptodate": [config_changed({"folders": chosen, "engine": runner.engine_fingerprint()})],
            "doc": f"PHP's own tests ({', '.join(chosen)}) on {build.id}",
            "clean": True,
            "verbosity": 2,
        }
