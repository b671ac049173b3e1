"""collect: copy the built modules to bin/<name>.wasm (atomically)."""
from kiln import atomic
from kiln.layout import Build

from . import builds, php, user_errors


@user_errors
def _collect(build: Build, outputs: dict[str, str]):
    for module, relative in outputs.items():
        atomic.copy_file(build.src / relative, build.module(module), mode=0o644)
        print(f"  {build.module(module)}: {build.module(module).stat().st_size / 1e6:.2f} MB")


def task_php_collect():
    """Place php.wasm and php-cgi.wasm in build-output/php/php-<version>/bin/."""
    outputs = php().outputs
    for build in builds():
        yield {
            "name": build.id,
            "actions": [(_collect, [build, outputs])],
            "file_dep": [build.state / "built.json"],
            "targets": [build.module(m) for m in outputs],
            "doc": f"collect {build.id}'s modules",
            "clean": True,
        }
