"""collect: place the build's modules in bin/<name>.wasm (atomically), without debug sections,
joined to the WebAssembly text modules its variants `merge` (kiln/wasm_merge.py: the +fibers
variant's fiber switch).

Normally copied from the compiled tree. With KILN_CACHE_REGISTRY set and the build's input
key already in that registry, they are pulled instead, and this task no longer depends on
make: download, extract, patch, configure and make do not run at all.
"""
import functools

from doit.tools import config_changed

from kiln import atomic, remote_cache, toolchain, wasm_merge, wasmfile
from kiln.fetch import file_sha256
from kiln.layout import Build

from . import builds, php, user_errors


@user_errors
def _collect(build: Build, outputs: dict[str, str], merge: list):
    for module, relative in outputs.items():
        linked = (build.src / relative).read_bytes()
        data = wasmfile.strip_debug(linked)
        if merge:
            data = wasm_merge.merge(data, merge, str(build.src / relative))
        atomic.write_bytes(build.module(module), data)
        print(f"  {build.module(module)}: {build.module(module).stat().st_size / 1e6:.2f} MB "
              f"({len(linked) / 1e6:.2f} MB as linked, debug sections dropped"
              f"{', merged with ' + ', '.join(p.name for p in merge) if merge else ''})")


def _merged(build: Build) -> list:
    """The .wat files the build's variants merge into its modules."""
    recipe = php()
    return [recipe.folder / wat for wat in recipe.resolve(build.version, build.flavour).merge]


@user_errors
def _pull(build: Build, modules: list[str], key: str):
    remote_cache.pull(build, modules, key)


@user_errors
def _push(build: Build, modules: list[str], key: str):
    remote_cache.push(build, modules, key)


@functools.lru_cache(maxsize=None)
def _cache_keys():
    """{build id: key} when a remote cache is configured, else {}. Both task generators
    below need it; the keys hash every input file, so compute them once per process."""
    if not remote_cache.address():
        return {}
    try:
        tools = toolchain.current()
    except Exception:  # no toolchain: nothing can be keyed, configure will say why
        return {}
    return {b.id: remote_cache.key(b, php(), tools) for b in builds()}


def task_php_collect():
    """Place php.wasm and php-cgi.wasm in build-output/php/php-<version>/bin/."""
    outputs = php().outputs
    keys = _cache_keys()
    for build in builds():
        targets = [build.module(m) for m in outputs]
        key = keys.get(build.id)
        if key and remote_cache.has(build, list(outputs), key):
            yield {
                "name": build.id,
                "actions": [(_pull, [build, list(outputs), key])],
                "targets": targets,
                "uptodate": [config_changed({"cache_key": key})],
                "doc": f"pull {build.id}'s modules from the remote cache",
                "clean": True,
            }
            continue
        merge = _merged(build)
        done_to_bytes = {"strip": "debug sections"}
        if merge:
            done_to_bytes["merge"] = {"binaryen": wasm_merge.version(), "features": wasm_merge.features(),
                                      "rewrite": wasm_merge.REWRITE,
                                      "modules": {p.name: file_sha256(p) for p in merge}}
        yield {
            "name": build.id,
            "actions": [(_collect, [build, outputs, merge])],
            "file_dep": [build.state / "built.json", *merge],
            "targets": targets,
            # What collect does to the bytes is part of its result.
            "uptodate": [config_changed(done_to_bytes)],
            "doc": f"collect {build.id}'s modules",
            "clean": True,
        }


def task_php_cache_push():
    """Share a build's modules through KILN_CACHE_REGISTRY, keyed by the hash of their inputs."""
    outputs = list(php().outputs)
    keys = _cache_keys()
    for build in builds():
        if build.id not in keys:
            yield {"name": build.id, "actions": [], "doc": "KILN_CACHE_REGISTRY is not set"}
            continue
        yield {
            "name": build.id,
            "actions": [(_push, [build, outputs, keys[build.id]])],
            "file_dep": [build.module(m) for m in outputs],
            "uptodate": [config_changed({"cache_key": keys[build.id], "registry": remote_cache.address()})],
            "doc": f"push {build.id}'s modules to the remote cache",
        }
