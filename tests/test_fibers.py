"""Fibers on WebAssembly stack switching (issue 16): the proof program outside PHP
(languages/php/fibers/proof.c, compiled by Kiln's toolchain with its setjmp/longjmp flags, joined
to languages/php/fibers/kiln_fiber.wat by binaryen's wasm-merge) run for real by the pinned
Wasmtime command line; what the engines say of such a module; the +fibers variant in the recipe."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import tasks
from kiln import engine, oci, recipe, runner, toolchain, wasm_merge, wasmfile, wasmtime_cli
from kiln.errors import KilnError
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
    assert str(caught.value) == runner.stack_switching_refused(proof)


def one_line_refusal(args: list[str], cwd: Path, **env: str) -> str:
    """Run `python -m ARGS`: it must stop at once with one line (no trace) and a non-zero status."""
    proc = subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "uses WebAssembly stack switching (PHP's fibers flavour)" in lines[0], lines[0]
    return lines[0]


def test_every_in_process_path_refuses_it_in_one_line_naming_the_fix(proof, tmp_path):
    """What runs a module in wasmtime-py (no stack switching) says so and names a path that
    can, instead of a validation trace or a panic at the first switch."""
    line = one_line_refusal(["kiln", "run", str(proof)], tmp_path, KILN_ENGINE="in-process")
    assert line.startswith(f"kiln run: {proof} uses") and "`kiln run`" in line
    line = one_line_refusal(["kiln", "serve", "--module", str(proof), "--docroot", str(tmp_path),
                             "--isolation", "request", "--port", "0"], tmp_path)
    assert line.startswith(f"kiln serve: {proof} uses") and "--isolation worker (the default)" in line
    # The pool's workers fall back to wasmtime-py only when told to (or without Landlock)
    line = one_line_refusal(["kiln.pool", "--module", str(proof), "--docroot", str(tmp_path),
                             "--listen", str(tmp_path / "pool.sock")], tmp_path, KILN_ENGINE="in-process")
    assert line.startswith(f"kiln.pool: {proof} uses") and "not with KILN_ENGINE=in-process" in line
    # An image holding such a module: containerd's wasm shims are what `kiln image run` stands for
    entries = [oci.Entry("proof.wasm", tarfile.REGTYPE, 0o755, proof.read_bytes())]
    image = oci.Image(config={"Entrypoint": ["/proof.wasm"]}, layers=[oci.write_layer(entries, 0)])
    oci.write_layout(tmp_path / "layout", {"proof": oci.assemble(image, 0)})
    line = one_line_refusal(["kiln", "image", "run", str(tmp_path / "layout")], tmp_path)
    assert line.startswith(f"kiln image run: /proof.wasm in OCI layout {tmp_path / 'layout'} uses")
    assert "use an image of another flavour" in line


@pytest.mark.parametrize("stage", ["_web", "_image", "_optimize"])
def test_stages_for_other_engines_refuse_a_fibers_build_when_asked_by_name(stage):
    """`php:<build>` leaves them out; asked for by name, they stop before making anything."""
    import importlib

    module = importlib.import_module(f"tasks.{stage.strip('_')}")
    action = getattr(module, stage).__wrapped__
    fibers, default = Build("php", "8.2.32", "fibers"), Build("php", "8.2.32", "default")
    with pytest.raises(KilnError, match=r"^8\.2\.32-fibers: its modules use WebAssembly stack switching"):
        action(fibers, *([{}] if stage == "_web" else ["cli"] if stage == "_image" else [[], []]))
    assert tasks.command_line_only(fibers) and not tasks.command_line_only(default)


def test_the_fibers_variant_swaps_the_fiber_patch_and_merges_the_switch():
    php = recipe.language("php")
    fibers = php.resolve("8.2.32", "fibers")
    default = php.resolve("8.2.32", "default")
    names = lambda r: [p.name for p in r.patches]  # noqa: E731
    assert "0020-fibers-stack-switching-wasi-8.patch" in names(fibers)
    assert "0007-fibers-wasi-8.patch" not in names(fibers)
    assert "0007-fibers-wasi-8.patch" in names(default) and default.merge == ()
    assert fibers.merge == ("fibers/kiln_fiber.wat", "fibers/kiln_stack_limits.wat")
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
