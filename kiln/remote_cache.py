"""Built modules shared between machines through an OCI registry (KILN_CACHE_REGISTRY).

A build's modules are keyed by the hash of its spec (kiln/spec.py), everything that decides
their bytes: the tarball's pinned sha256, the patch series, the shim, the build-script template,
configure arguments, the toolchain's identity and the libraries' recipes. Paths are not part of the
key (the builds are reproducible across folders), so a CI cell, or a second checkout,
can take another machine's modules instead of compiling them. Each module is stored as a
CNCF wasm artifact, `<registry>/kiln-cache/<language>:<module>-<key>`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import atomic, oci, settings, spec, toolchain
from .errors import KilnError
from .layout import Build
from .recipe import Recipe

REPOSITORY = "kiln-cache/{language}"


def address() -> str | None:
    return os.environ.get("KILN_CACHE_REGISTRY") or None


def key(build: Build, recipe: Recipe, tools: toolchain.Toolchain) -> str:
    """The hash of the build's spec (kiln/spec.py): what its wl-build script is rendered from."""
    inputs = spec.of(build, tools, recipe).cache_inputs()
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _tag(module: str, digest: str) -> str:
    return f"{module}-{digest[:48]}"


def _registry() -> oci.Registry:
    return oci.Registry(address(), os.environ.get("KILN_REGISTRY_USER"),
                        os.environ.get("KILN_REGISTRY_PASSWORD"), timeout=30)


def has(build: Build, modules: list[str], digest: str) -> bool:
    """True when every module of the build is in the cache (one HEAD request each)."""
    try:
        registry = _registry()
        repository = REPOSITORY.format(language=build.language)
        return all(registry.manifest_digest(repository, _tag(m, digest)) for m in modules)
    except (KilnError, OSError) as exc:
        print(f"kiln: remote cache {address()} not usable ({exc}); building locally")
        return False


def pull(build: Build, modules: list[str], digest: str) -> None:
    registry = _registry()
    repository = REPOSITORY.format(language=build.language)
    for module in modules:
        data = registry.pull_wasm_artifact(repository, _tag(module, digest))
        atomic.write_bytes(build.module(module), data)
        print(f"  {build.module(module)}: {len(data) / 1e6:.2f} MB from {address()}/{repository}")
    atomic.write_json(build.bin / "cache-key.json", {"key": digest, "from": address()})


def push(build: Build, modules: list[str], digest: str) -> None:
    registry = _registry()
    repository = REPOSITORY.format(language=build.language)
    for module in modules:
        data = Path(build.module(module)).read_bytes()
        registry.push_wasm_artifact(repository, _tag(module, digest), data, settings.source_date_epoch(),
                                    {"kiln.cache.key": digest, "kiln.build": build.id})
        print(f"  {module}.wasm -> {address()}/{repository}:{_tag(module, digest)}")
