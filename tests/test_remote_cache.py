"""Across machines: a second build tree takes the modules another tree pushed to a real
loopback registry, keyed by the hash of their inputs, and compiles nothing."""
import hashlib

import pytest

from doit_run import doit, executed
from services import registry_address  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_second_tree_pulls_instead_of_compiling(php_builds, registry_address, tmp_path):  # noqa: F811
    first = php_builds["8.2.32"]
    shared = {"KILN_CACHE_REGISTRY": registry_address, "KILN_IMAGES": "off"}
    _, tasks, output, _ = doit("php_cache_push:8.2.32", env=shared)
    # WasmEdge is the smoke stage's business (tests/test_wasmedge.py): not another Debian root here.
    shared["KILN_WASMEDGE"] = "off"
    assert tasks["php_cache_push:8.2.32"] in ("success", "up-to-date"), output[-2000:]

    # An empty tree with no sources and no mirror: compiling is impossible, pulling is not.
    second = tmp_path / "second"
    env = {**shared, "KILN_BUILD_OUTPUT": str(second), "KILN_SOURCES": str(second / "sources"),
           "KILN_MIRROR": ""}
    _, tasks, output, _ = doit("php:8.2.32", env=env)
    ran = executed(tasks)
    assert "php_collect:8.2.32" in ran and "php_smoke:8.2.32" in ran, output[-3000:]
    for stage in ("download", "extract", "patch", "configure", "make"):
        assert f"php_{stage}:8.2.32" not in tasks, (stage, sorted(tasks))
    for module in ("php", "php-cgi"):
        pulled = second / "php" / "php-8.2.32" / "bin" / f"{module}.wasm"
        assert sha(pulled) == sha(first.module(module))
    # And the pulled tree is as incremental as a built one.
    _, tasks, _, _ = doit("php:8.2.32", env=env)
    assert {t for t in executed(tasks) if not t.startswith("php:")} == set()


def test_a_changed_input_misses_the_cache(php_builds, registry_address, tmp_path):  # noqa: F811
    env = {"KILN_CACHE_REGISTRY": registry_address, "KILN_IMAGES": "off",
           "KILN_BUILD_OUTPUT": str(tmp_path / "other"), "KILN_CFLAGS": "-DKILN_CACHE_PROBE=1"}
    from doit_run import plain
    info = plain("info", "php_collect:8.2.32", env=env).stdout
    assert "php_make:8.2.32" in info or "built.json" in info  # depends on make again: no cache hit
