"""reproduce: build a release again from scratch in another folder and compare the modules.

Not part of `php:<build>` (it doubles the build time); run it on demand or nightly:
`doit php_reproduce:8.2.32`. The second build gets its own build-output (so its own paths
and its own doit store) but shares the verified sources; its compiler cache starts empty,
so nothing is reused from the first build. Any byte of difference fails the task.
"""
import os
import shutil
import subprocess
import sys

from kiln import atomic, settings
from kiln.errors import KilnError
from kiln.fetch import file_sha256
from kiln.layout import Build

from . import builds, php, user_errors


@user_errors
def _reproduce(build: Build, modules: list[str]):
    scratch = settings.build_output() / "reproduce" / build.id
    shutil.rmtree(scratch, ignore_errors=True)
    env = {**os.environ, "KILN_BUILD_OUTPUT": str(scratch), "KILN_SOURCES": str(settings.sources_dir()),
           "KILN_CACHE": str(scratch / "cache"), "KILN_IMAGES": "off"}
    print(f"  rebuilding {build.id} from scratch in {scratch}")
    result = subprocess.run([sys.executable, "-m", "doit", f"php_collect:{build.id}"],
                            cwd=settings.ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise KilnError(f"the second build of {build.id} failed: see {scratch}/php/php-{build.id}/logs "
                        f"({result.stdout.strip().splitlines()[-1:] or result.stderr[-200:]})")
    compared = {}
    for name in modules:
        first = file_sha256(build.module(name))
        second_path = scratch / build.module(name).relative_to(settings.build_output())
        second = file_sha256(second_path)
        compared[name] = {"first": first, "second": second, "identical": first == second}
        print(f"  {name}.wasm: {first[:16]}... vs {second[:16]}... "
              f"{'identical' if first == second else 'DIFFERENT'}")
    atomic.write_json(build.root / "reproduce.json", compared)
    different = [n for n, c in compared.items() if not c["identical"]]
    if different:
        raise KilnError(f"{build.id} is not reproducible: {', '.join(different)} differ between two "
                        f"clean builds (kept in {scratch} for diffing)")
    shutil.rmtree(scratch, ignore_errors=True)


def task_php_reproduce():
    """Rebuild in a scratch folder from an empty compiler cache and compare the modules byte for byte."""
    modules = list(php().outputs)
    for build in builds():
        yield {
            "name": build.id,
            "actions": [(_reproduce, [build, modules])],
            "file_dep": [build.module(m) for m in modules],
            "targets": [build.root / "reproduce.json"],
            "doc": f"check that {build.id} builds byte-identical",
        }
