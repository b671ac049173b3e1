"""collect: place the build's modules in bin/<name>.wasm (atomically), without debug sections.

Normally copied from the compiled tree. With KILN_CACHE_REGISTRY set and the build's input
key already in that registry, they are pulled instead, and this task no longer depends on
make: download, extract, patch, configure and make do not run at all.
"""
import functools

from doit.tools import config_changed

from kiln import atomic, optimize, remote_cache, toolchain, wasmfile
from kiln.layout import Build

from . import builds, php, user_errors


@user_errors
def _collect(build: Build, outputs: dict[str, str], post_link: list[str], mcpu: str):
    for module, relative in outputs.items():
        linked = (build.src / relative).read_bytes()
        data = wasmfile.strip_debug(linked)
        if post_link:   # a variant's wasm-opt step (the compat variant's --strip-eh)
            data = optimize.post_link(data, f"{module}.wasm", post_link, mcpu,
                                      build.logs / f"post-link-{module}.log")
        atomic.write_bytes(build.module(module), data)
        print(f"  {build.module(module)}: {build.module(module).stat().st_size / 1e6:.2f} MB "
              f"({len(linked) / 1e6:.2f} MB as linked, debug sections dropped"
              f"{', wasm-opt ' + ' '.join(post_link) if post_link else ''})")


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
        resolved = php().resolve(build.version, build.flavour)
        post_link, mcpu = list(resolved.post_link), optimize.build_mcpu(resolved.cflags)
        # What collect does to the bytes is part of its result (the post-link step only where a
        # variant asks for one, so the other builds stay up to date).
        changes = {"strip": "debug sections"}
        if post_link:
            changes.update(post_link=post_link, mcpu=mcpu,
                           wasm_opt=optimize.version(optimize.wasm_opt()))
        yield {
            "name": build.id,
            "actions": [(_collect, [build, outputs, post_link, mcpu])],
            "file_dep": [build.state / "built.json"],
            "targets": targets,
            "uptodate": [config_changed(changes)],
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
