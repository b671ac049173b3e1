"""php:<build>: the whole chain for one build; `doit php` runs every build."""
from kiln import remote_cache, settings

from . import builds


def stages_of(build_id: str) -> list[str]:
    # php_web copies the modules into the browser site: cheap, so always part of the chain.
    stages = ["php_smoke", "php_aot", "php_web"]
    if settings.optimize_enabled():
        stages.append("php_smoke_optimized")  # which needs php_optimize
    if remote_cache.address():
        stages.append("php_cache_push")
    if settings.images_enabled():
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
            "task_dep": stages_of(build.id),
            # Nothing of its own to do: report "up-to-date" rather than "ran".
            "uptodate": [True],
            "doc": f"PHP {build.version} ({build.flavour}) end to end",
        }
