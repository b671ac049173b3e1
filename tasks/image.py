"""image: FROM-scratch container images of each build (cli, cli-aot, server).

`php_image:<id>-<kind>` builds one image on the Docker engine (DOCKER_HOST or the default
socket) and re-packs it as a wasip1/wasm OCI layout; `php_image:<id>` runs the three and writes
the size report (images.json, images.md). An image is up to date when its files, its rendered
Dockerfile and its build args are unchanged *and* the engine still holds the image the last
run built: removed (or retagged) by hand, it is rebuilt, and only it.
KILN_IMAGES=off leaves these tasks out of `doit php:<id>`.
"""
import hashlib

from doit.tools import config_changed

from kiln import images
from kiln.layout import Build

from . import builds, refuse_command_line_only, user_errors


@user_errors
def _image(build: Build, kind: str):
    refuse_command_line_only(build, "the images' runtimes (wasmtime-py, WasmEdge, the containerd shims; docs/images.md)",
                             f"serve it with `kiln serve` or kiln.pool, or build another flavour's images (doit php_image:{build.version})")
    record = images.build(build, kind)
    engine, wasm = record["engine"], record["oci"]
    print(f"  {record['tag']}: {engine['size'] / images.MB:.2f} MB in the engine ({engine['platform']}, "
          f"{engine['id'][:19]}); {wasm['platform']} image {wasm['digest'][:19]} "
          f"({wasm['size'] / images.MB:.2f} MB pushed)")


@user_errors
def _image_sizes(build: Build, kinds: list[str]):
    images.write_report(build, kinds)
    json_path, md_path = images.report_paths(build)
    print(md_path.read_text())


def task_php_image():
    """Build the cli, cli-aot and server (or server-wordpress) images of each build (needs a Docker engine)."""
    for build in builds():
        kinds = images.kinds_for(build)
        for kind in kinds:
            dockerfile, buildargs = images.render(build, kind)
            yield {
                "name": f"{build.id}-{kind}",
                "actions": [(_image, [build, kind])],
                "file_dep": images.inputs(build, kind),
                "targets": [images.record_path(build, kind),
                            images.layout_path(build, kind) / "index.json"],
                "uptodate": [
                    config_changed({"dockerfile_sha256": hashlib.sha256(dockerfile.encode()).hexdigest(),
                                    "buildargs": buildargs, "tag": images.tag(build, kind)}),
                    (images.image_is_current, [build, kind]),
                ],
                "doc": f"image {images.tag(build, kind)}",
                "clean": True,
            }
        yield {
            "name": build.id,
            "actions": [(_image_sizes, [build, kinds])],
            "task_dep": [f"php_image:{build.id}-{kind}" for kind in kinds],
            "file_dep": [images.record_path(build, kind) for kind in kinds],
            "targets": list(images.report_paths(build)),
            "doc": f"images of {build.id} and their sizes",
            "clean": True,
        }
