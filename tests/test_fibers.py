"""Fibers on WebAssembly stack switching (issue 16): the proof program outside PHP
(languages/php/fibers/proof.c, compiled by Kiln's toolchain with its setjmp/longjmp flags, joined
to languages/php/fibers/kiln_fiber.wat by binaryen's wasm-merge) run for real by the pinned
Wasmtime command line; what the engines say of such a module; the +fibers variant in the recipe."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from kiln import engine, recipe, runner, toolchain, wasm_merge, wasmfile, wasmtime_cli
from kiln.layout import Build

ROOT = Path(__file__).resolve().parents[1]
FIBERS = ROOT / "languages" / "php" / "fibers"
SJLJ_TAG = ROOT / "languages" / "php" / "shim" / "kiln_sjlj_tag.S"


@pytest.fixture(scope="module")
def proof(tmp_path_factory) -> Path:
    tools = toolchain.current()
    build = tmp_path_factory.mktemp("fibers")
    linked = build / "proof.linked.wasm"
    proc = subprocess.run([*tools.cc, *tools.cflags, *tools.ldflags, str(FIBERS / "proof.c"), str(SJLJ_TAG),
                           "-o", str(linked)], capture_output=True, text=True, env={**os.environ, **tools.env})
    if proc.returncode != 0:
        pytest.fail(f"compiling proof.c failed:\n{proc.stderr}")
    merged = build / "proof.wasm"
    merged.write_bytes(wasm_merge.merge(linked.read_bytes(), [FIBERS / "kiln_fiber.wat"], "proof.wasm"))
    return merged


def wasmtime_run(module: Path, *args: str, options: list[str] | None = None) -> subprocess.CompletedProcess:
    options = engine.cli_options() if options is None else options
    return subprocess.run([str(wasmtime_cli.binary()), "run", *options, str(module), *args],
                          capture_output=True, text=True, env=engine.cli_engine_env(), timeout=120)


def test_the_proof_runs_coroutines_on_the_command_line(proof):
    # depth 10000 frames, 1000 switch pairs, 1000 alive at once, 100,000 one after the other
    proc = wasmtime_run(proof, "10000", "1000", "1000", "100000")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:7] == ["ping 0", "pong 1", "ping 2", "pong 3", "ping 4", "pong 5", "ping-pong done: -1"]
    assert lines[7:12] == [
        "longjmp in a coroutine: suspended with 1, caught 42, done 1",
        "deep recursion: 10000 frames, answer 10000, done 1",
        "nested: outer suspended with 20, ended with 1006, done 1",
        f"1000 alive at once: sum {sum(3 * i + 1 for i in range(1000))}",
        # finished contexts park and are reused: the continuations made stay those alive at once
        f"100000 one after the other: sum {sum(3 * i + 1 for i in range(100000))}, "
        "1006 continuations made",
    ]
    assert lines[12].startswith("switch: 1000 resume+suspend pairs, ")


def test_the_merged_module_exports_what_the_linked_one_did_for_its_host(proof):
    # not the switch's functions, nor the C functions exported only for the switch
    assert sorted(name for name, _, _ in wasmfile.exports(proof.read_bytes())) == ["_start", "memory"]


def test_without_stack_switching_the_command_line_refuses_the_module(proof):
    options = {k: v for k, v in engine.CLI_WASM_OPTIONS.items() if k != "stack-switching"}
    proc = wasmtime_run(proof, options=["-W", ",".join(f"{k}={v}" for k, v in options.items())])
    assert proc.returncode != 0 and "stack switching" in proc.stderr


def test_wasmtime_py_refuses_it_in_one_line(proof):
    with pytest.raises(runner.RunnerError) as caught:
        runner.load_module(proof)
    assert str(caught.value) == runner.STACK_SWITCHING_REFUSED.format(path=proof)


def test_the_fibers_variant_swaps_the_fiber_patch_and_merges_the_switch():
    php = recipe.language("php")
    fibers = php.resolve("8.2.32", "fibers")
    default = php.resolve("8.2.32", "default")
    names = lambda r: [p.name for p in r.patches]  # noqa: E731
    assert "0020-fibers-stack-switching-wasi-8.patch" in names(fibers)
    assert "0007-fibers-wasi-8.patch" not in names(fibers)
    assert "0007-fibers-wasi-8.patch" in names(default) and default.merge == ()
    assert fibers.merge == ("fibers/kiln_fiber.wat",)
    assert php.flavour_applies("fibers", "8.1.29") and not php.flavour_applies("fibers", "8.0.30")


@pytest.mark.slow
def test_the_fibers_flavour_end_to_end():
    """PHP 8.2.32's fibers flavour built, precompiled for the command line and smoke-checked
    there: `fibers` prints native php8.2's output, `fiber-fatal` ends with 255."""
    from doit_run import build

    build("php:8.2.32-fibers")
    fibers = Build("php", "8.2.32", "fibers")
    report = json.loads(fibers.smoke_report.read_text())
    passed = {c["name"] for c in report["checks"] if c["passed"]}
    assert report["passed"] and {"fibers", "fiber-fatal", "version"} <= passed
    assert report["runtimes"]["wasmedge"] == {"not_run": "the modules use stack switching, which WasmEdge lacks"}
    for name in recipe.language("php").outputs:
        assert sorted(n for n, _, _ in wasmfile.exports(fibers.module(name).read_bytes())) == ["_start", "memory"]
    with pytest.raises(runner.RunnerError, match="stack switching"):
        runner.load_module(fibers.module("php"))



@pytest.mark.slow
def test_the_worker_pool_serves_fibers_request_after_request(tmp_path):
    """`kiln serve`'s default worker mode runs php-cgi on the command line, so the fibers
    flavour serves: fibers in every request of one persistent instance (parked continuations
    reused across requests), and a fiber left suspended unwinds at the request's end."""
    from doit_run import build
    from kiln.server import Server, ServerConfig

    build("php:8.2.32-fibers")
    (tmp_path / "index.php").write_text(
        "<?php $sum = 0; for ($i = 0; $i < 100; $i++) { $f = new Fiber(fn (int $x) => Fiber::suspend($x) * 2);"
        " $f->start($i); $f->resume($i); $sum += $f->getReturn(); }"
        " $left = new Fiber(function () { try { Fiber::suspend(); } finally { echo ' finally'; } });"
        " $left->start(); echo \"sum $sum\";")
    server = Server(ServerConfig(docroot=tmp_path, module=Build("php", "8.2.32", "fibers").module("php-cgi"),
                                 port=0, workers=1)).start()
    try:
        import http.client
        for _ in range(5):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("GET", "/index.php")
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b"sum 9900 finally")
            conn.close()
    finally:
        server.stop(grace=2)
