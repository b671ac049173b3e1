"""make: compile the configured tree with `wl-build make -j<cores>`.

Every make starts from `make clean`: PHP's makefiles do not track headers, so after a
series edit or an interrupted link, objects make calls up to date may be stale. The
compiler cache (ccache, content-keyed) turns the recompile of unchanged files into
cache hits. The stamp is written only on success.
"""
from kiln import atomic, process, settings
from kiln.fetch import file_sha256
from kiln.layout import Build

from . import builds, php, user_errors


@user_errors
def _make(build: Build, outputs: dict[str, str], jobs: int):
    process.run_logged([str(build.script), "make", str(jobs)], build.logs / "make.log",
                       f"make {build.id} (-j{jobs})")
    built = {}
    for module, relative in outputs.items():
        path = build.src / relative
        if not path.is_file():
            raise_missing(build, relative)
        built[module] = {"path": relative, "sha256": file_sha256(path)}
    atomic.write_json(build.state / "built.json", built)


def raise_missing(build, relative):
    from kiln.errors import KilnError
    raise KilnError(f"make {build.id} succeeded but {relative} is missing: see {build.logs / 'make.log'}")


def task_php_make():
    """Compile PHP (both SAPIs) for one build; parallel jobs from KILN_JOBS or the cores."""
    outputs = php().outputs
    for build in builds():
        yield {
            "name": build.id,
            # Job count is not an input: it changes how fast, not what is built.
            "actions": [(_make, [build, outputs, settings.jobs()])],
            # The patched tree too: a C-only series edit skips configure and comes here.
            "file_dep": [build.state / "configured.json", build.patched_stamp],
            "targets": [build.state / "built.json"],
            "doc": f"compile {build.id}",
        }
