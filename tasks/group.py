"""php:<build>: the whole chain for one build; `doit php` runs every build."""
from kiln import remote_cache, settings

from . import builds, command_line_only


def stages_of(build_id: str, command_line: bool = False) -> list[str]:
    """`command_line`: the build runs on the Wasmtime command line only (stack switching, the
    fibers flavour): no optimized modules (wasm-opt is not given the stack-switching features),
    no images (they carry wasmtime-py's artifacts and run in containerd's shims) and no browser
    site (browsers have no stack switching)."""
    # php_web copies the modules into the browser site: cheap, so always part of the chain.
    stages = ["php_smoke", "php_aot"] + ([] if command_line else ["php_web"])
    if settings.optimize_enabled() and not command_line:
        stages.append("php_smoke_optimized")  # which needs php_optimize
    if remote_cache.address():
        stages.append("php_cache_push")
    if settings.images_enabled() and not command_line:
        stages.append("php_image")
        if settings.registry():
            stages.append("php_publish")
    return [f"{stage}:{build_id}" for stage in stages]


def task_php():
    """Build, precompile, package and smoke-test PHP (one sub-task per version)."""
    for build in builds():
        yield {
            "name": build.id,
            "actions": None,
            "task_dep": stages_of(build.id, command_line_only(build)),
            # Nothing of its own to do: report "up-to-date" rather than "ran".
            "uptodate": [True],
            "doc": f"PHP {build.version} ({build.flavour}) end to end",
        }
