"""publish: push a build's images and bare modules to the registry named by KILN_REGISTRY.

Images go out as the wasip1/wasm OCI images `php_image` assembled (not Docker's linux/amd64
ones), under `<repository>:<version>-<kind>`; each module goes out as a wasm OCI artifact
(CNCF layout) under `<repository>:<version>-<sapi>.wasm`. Everything is pulled back and
compared before the task calls itself done; `published.json` records the digests. Up to date
while the registry still serves those digests.
"""
import json
import os

from doit.tools import config_changed

from kiln import atomic, images, oci, settings
from kiln.errors import KilnError
from kiln.layout import Build

from . import builds, php, user_errors


def published_path(build: Build):
    return build.root / "published.json"


def module_tag(build: Build, sapi: str) -> str:
    suffix = sapi if build.flavour == "default" else f"{sapi}-{build.flavour}"
    return f"{build.version}-{suffix}.wasm"


def _registry() -> oci.Registry:
    address = settings.registry()
    if not address:
        raise KilnError("KILN_REGISTRY is not set: set it to the registry's host:port to publish "
                        "(scripts/services.sh starts one on 127.0.0.1:5000)")
    # The same credentials the remote build cache uses; unset: anonymous (a loopback registry).
    return oci.Registry(address, os.environ.get("KILN_REGISTRY_USER"),
                        os.environ.get("KILN_REGISTRY_PASSWORD"))


@user_errors
def _publish(build: Build, modules: list[str]):
    registry = _registry()
    repository = oci.repository_path(settings.image_repository())
    record = {"registry": registry.address, "repository": repository, "images": {}, "modules": {}}
    for kind in images.kinds_for(build):
        name = images.tag(build, kind)
        built = oci.Layout(images.layout_path(build, kind)).built(name)
        reference = name.rsplit(":", 1)[1]
        digest = registry.push_image(repository, reference, built)
        pulled = registry.pull_image(repository, reference)
        config = json.loads(pulled.config)
        if pulled.digest != built.digest or (config["os"], config["architecture"]) != (oci.WASM_OS, oci.WASM_ARCH):
            raise KilnError(f"{registry.address}/{repository}:{reference} came back different "
                            f"({pulled.digest}, {config['os']}/{config['architecture']})")
        record["images"][kind] = {"reference": f"{registry.address}/{repository}:{reference}",
                                  "digest": digest, "platform": f"{config['os']}/{config['architecture']}"}
        print(f"  {registry.address}/{repository}:{reference}  {digest}  "
              f"({config['os']}/{config['architecture']}, {built.size / images.MB:.2f} MB)")
    for sapi in modules:
        data = build.module(sapi).read_bytes()
        reference = module_tag(build, sapi)
        digest = registry.push_wasm_artifact(
            repository, reference, data, settings.source_date_epoch(),
            {"org.opencontainers.image.title": f"{sapi}.wasm",
             "org.opencontainers.image.version": build.version,
             "org.opencontainers.image.source": images.PHP_SOURCE,
             "org.opencontainers.image.revision": f"php-{build.version}"})
        if registry.pull_wasm_artifact(repository, reference) != data:
            raise KilnError(f"{registry.address}/{repository}:{reference}: the module pulled back "
                            f"differs from {build.module(sapi)}")
        record["modules"][sapi] = {"reference": f"{registry.address}/{repository}:{reference}",
                                   "digest": digest, "module_sha256": oci.sha256_digest(data)}
        print(f"  {registry.address}/{repository}:{reference}  {digest}  (wasm artifact, "
              f"{len(data) / images.MB:.2f} MB, pulled back identical)")
    atomic.write_json(published_path(build), record)


def still_published(build: Build) -> bool:
    """doit `uptodate` check: every recorded reference still resolves to its digest."""
    try:
        record = json.loads(published_path(build).read_text())
        registry = oci.Registry(record["registry"], os.environ.get("KILN_REGISTRY_USER"),
                                os.environ.get("KILN_REGISTRY_PASSWORD"), timeout=10)
        if record["registry"] != settings.registry():
            return False
        for entry in [*record["images"].values(), *record["modules"].values()]:
            ref = oci.parse_reference(entry["reference"])
            if registry.manifest_digest(ref.repository, ref.ref) != entry["digest"]:
                return False
        return True
    except (OSError, ValueError, KeyError, KilnError):
        return False


def task_php_publish():
    """Push images (wasip1/wasm) and modules (wasm artifacts) to KILN_REGISTRY."""
    modules = list(php().outputs)
    for build in builds():
        yield {
            "name": build.id,
            "actions": [(_publish, [build, modules])],
            "task_dep": [f"php_image:{build.id}"],
            "file_dep": [*(images.layout_path(build, kind) / "index.json" for kind in images.kinds_for(build)),
                         *(build.module(sapi) for sapi in modules)],
            "targets": [published_path(build)],
            "uptodate": [config_changed({"registry": settings.registry(),
                                         "repository": settings.image_repository()}),
                         (still_published, [build])],
            "doc": f"publish {build.id}'s images and modules to KILN_REGISTRY",
            "clean": True,
        }
