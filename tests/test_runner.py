"""Tests for kiln.runner, against tiny C programs built with zig (from the ziglang wheel)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

wasmtime = pytest.importorskip("wasmtime")

from kiln import runner  # noqa: E402
from kiln.runner import Preopen  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

def text(result) -> str:
    return result.stdout.decode()


def test_argv_is_passed_as_given(tool):
    r = runner.run(tool, ["tool", "args", "a b", "ü"])
    assert r.exit_code == 0 and not r.timed_out
    lines = text(r).splitlines()
    assert lines[:4] == ["argc=4", "argv[0]=tool", "argv[1]=args", "argv[2]=a b"]
    assert lines[4] == "argv[3]=ü"


@pytest.mark.parametrize("how", ["exit", "return"])
@pytest.mark.parametrize("code", [0, 3, 200, 255])
def test_exit_codes_are_the_modules_own(tool, how, code):
    r = runner.run(tool, ["tool", how, str(code)])
    assert (r.exit_code, r.timed_out, r.stderr) == (code, False, b"")


def test_exit_code_keeps_low_eight_bits_like_posix(tool):
    assert runner.run(tool, ["tool", "exit", "-1"]).exit_code == 255
    assert runner.run(tool, ["tool", "exit", "256"]).exit_code == 0


def test_env_is_exactly_what_is_given(tool, monkeypatch):
    monkeypatch.setenv("KILN_HOST_SECRET", "leak")
    r = runner.run(tool, ["tool", "args"])
    assert "envc=0" in text(r) and "leak" not in text(r)
    r = runner.run(tool, ["tool", "args"], env={"A": "1", "B": "x=y"})
    env_lines = [l for l in text(r).splitlines() if l.startswith("env")]
    assert sorted(env_lines) == ["env:A=1", "env:B=x=y", "envc=2"]


def test_a_non_utf8_environment_value_is_named(tool):
    # Raw bytes from a header, surrogate-escaped the way os.fsdecode does.
    with pytest.raises(runner.RunnerError, match="environment variable HTTP_COOKIE is not valid UTF-8"):
        runner.run(tool, ["tool", "args"], env={"HTTP_COOKIE": b"a=\xff".decode("utf-8", "surrogateescape")})
    assert runner.run(tool, ["tool", "args"], env={"A": "ü"}).exit_code == 0


def test_stdin_round_trip_and_separate_stderr(tool):
    data = bytes(range(256)) * 100
    r = runner.run(tool, ["tool", "echo"], stdin=data)
    assert r.exit_code == 0
    assert r.stdout == data
    assert r.stderr == b"done\n"


def test_stdin_through_a_temp_file_when_bytes_are_unsupported(tool, monkeypatch):
    monkeypatch.setattr(runner, "_stdin_bytes_setter", None)
    r = runner.run(tool, ["tool", "echo"], stdin=b"via file")
    assert (r.exit_code, r.stdout) == (0, b"via file")


def test_no_stdin_reads_as_empty(tool):
    r = runner.run(tool, ["tool", "echo"])
    assert (r.exit_code, r.stdout) == (0, b"")


def test_read_only_preopen_rejects_writes(tool, tmp_path):
    (tmp_path / "in.txt").write_text("hello")
    grant = [Preopen(tmp_path, "/data")]  # read-only by default
    r = runner.run(tool, ["tool", "cat", "/data/in.txt"], preopens=grant)
    assert (r.exit_code, text(r)) == (0, "hello")
    r = runner.run(tool, ["tool", "write", "/data/new.txt", "x"], preopens=grant)
    assert r.exit_code == 1 and "failed" in text(r)
    assert not (tmp_path / "new.txt").exists()
    r = runner.run(tool, ["tool", "write", "/data/in.txt", "overwritten"], preopens=grant)
    assert r.exit_code == 1
    assert (tmp_path / "in.txt").read_text() == "hello"


def test_writable_preopen_accepts_writes(tool, tmp_path):
    r = runner.run(tool, ["tool", "write", "/out/new.txt", "payload"],
                   preopens=[Preopen(tmp_path, "/out", writable=True)])
    assert (r.exit_code, text(r)) == (0, "written\n")
    assert (tmp_path / "new.txt").read_text() == "payload"


def test_root_is_not_visible_without_a_grant(tool, tmp_path):
    r = runner.run(tool, ["tool", "ls", "/"])
    assert r.exit_code == 1 and "opendir failed" in text(r)
    (tmp_path / "f").write_text("")
    r = runner.run(tool, ["tool", "ls", "/"], preopens=[Preopen(tmp_path, "/")])
    assert r.exit_code == 0 and "f" in text(r).split()


def test_timeout_interrupts_and_later_runs_work(tool):
    r = runner.run(tool, ["tool", "loop"], timeout=0.2)
    assert r.timed_out and r.exit_code == runner.EXIT_TIMEOUT
    assert 0.2 <= r.duration < 5
    assert b"timed out" in r.stderr
    r = runner.run(tool, ["tool", "exit", "7"], timeout=5)
    assert (r.exit_code, r.timed_out) == (7, False)
    r = runner.run(tool, ["tool", "exit", "8"])
    assert (r.exit_code, r.timed_out) == (8, False)


@pytest.mark.parametrize("cmd, words", [("trap", "unreachable"), ("overflow", "stack")])
def test_traps_give_exit_trap_and_a_message(tool, cmd, words):
    r = runner.run(tool, ["tool", cmd])
    assert r.exit_code == runner.EXIT_TRAP and not r.timed_out
    assert r.stderr.startswith(b"kiln.runner: wasm trap: ") and r.stderr.count(b"\n") == 1
    assert words in r.stderr.decode().lower() and "(in <wasm function" in r.stderr.decode()


def test_memory_limit_makes_growth_fail_and_later_runs_work(tool):
    r = runner.run(tool, ["tool", "alloc", "64"])
    assert (r.exit_code, text(r)) == (0, "alloc ok\n")
    r = runner.run(tool, ["tool", "alloc", "64"], memory_limit=24 << 20)
    assert (r.exit_code, text(r)) == (1, "alloc failed\n")
    r = runner.run(tool, ["tool", "alloc", "2"], memory_limit=24 << 20)
    assert (r.exit_code, text(r)) == (0, "alloc ok\n")


def test_max_output_truncates_stdout(tool):
    data = b"x" * 100_000
    r = runner.run(tool, ["tool", "echo"], stdin=data, max_output=1000)
    assert r.exit_code == 0 and r.stdout == data[:1000] and r.output_truncated
    r = runner.run(tool, ["tool", "echo"], stdin=data, max_output=len(data))
    assert r.stdout == data and not r.output_truncated


def test_precompile_round_trip_leaves_no_temp_files(tool, tmp_path):
    out = tmp_path / "tool.cwasm"
    runner.precompile(tool, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tool.cwasm", "tool.cwasm.json"]
    meta = json.loads((tmp_path / "tool.cwasm.json").read_text())
    assert meta["fingerprint"] == runner.engine_fingerprint()
    assert meta["source_sha256"] == runner.file_sha256(tool)
    module = runner.load_module(out)
    assert runner.load_module(out) is module  # cached per path + mtime
    r = runner.run(out, ["tool", "exit", "42"])
    assert r.exit_code == 42


def test_stale_fingerprint_is_rejected_clearly(tool, tmp_path):
    out = tmp_path / "tool.cwasm"
    runner.precompile(tool, out)
    sidecar = tmp_path / "tool.cwasm.json"
    meta = json.loads(sidecar.read_text())
    meta["fingerprint"] = "0000000000000000"
    sidecar.write_text(json.dumps(meta))
    with pytest.raises(runner.StaleArtifactError) as info:
        runner.load_module(out)
    message = str(info.value)
    assert str(out) in message and "rebuild" in message and "\n" not in message


def test_artifact_without_metadata_is_rejected(tool, tmp_path):
    out = tmp_path / "tool.cwasm"
    runner.precompile(tool, out)
    (tmp_path / "tool.cwasm.json").unlink()
    with pytest.raises(runner.StaleArtifactError):
        runner.load_module(out)


def test_fingerprint_is_stable_and_tracks_settings(monkeypatch):
    first = runner.engine_fingerprint()
    assert first == runner.engine_fingerprint() and len(first) == 16
    monkeypatch.setitem(runner.ENGINE_SETTINGS, "cranelift_opt_level", "none")
    assert runner.engine_fingerprint() != first


def test_rebuilt_wasm_is_reloaded(tool, tmp_path):
    copy = tmp_path / "m.wasm"
    copy.write_bytes(tool.read_bytes())
    first = runner.load_module(copy)
    os.utime(copy, ns=(1, 1))
    assert runner.load_module(copy) is not first


def test_missing_module_is_a_runner_error(tmp_path):
    with pytest.raises(runner.RunnerError):
        runner.run(tmp_path / "nope.wasm", ["nope"])


def test_concurrent_runs_keep_their_own_output(tool):
    # Mixed exits, traps and outputs: wasmtime-py hands host exceptions back through one
    # process-wide slot, so a runner that raised from proc_exit mixed these up across threads.
    module = runner.load_module(tool)
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                payload = f"thread {i} run {j}\n".encode() * 50
                r = runner.run(module, ["tool", "echo"], stdin=payload)
                assert r.exit_code == 0 and r.stdout == payload
                code = (i * 64 + j * 13) % 256
                r = runner.run(module, ["tool", "exit", str(code)])
                assert r.exit_code == code, (i, j, r)
                r = runner.run(module, ["tool", "trap"])
                assert r.exit_code == runner.EXIT_TRAP and b"unreachable" in r.stderr, (i, j, r)
            results[i] = runner.run(module, ["tool", "args"], env={"I": str(i)})
        except BaseException as e:  # surfaced below; a thread cannot fail the test itself
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(4):
        assert f"env:I={i}\nenvc=1" in text(results[i])


def test_link_errors_and_non_commands_are_runner_errors(tmp_path):
    needs_import = tmp_path / "imp.wasm"
    needs_import.write_bytes(wasmtime.wat2wasm(
        '(module (import "env" "missing" (func)) (func (export "_start")))'))
    with pytest.raises(runner.RunnerError, match="instantiate"):
        runner.run(needs_import, ["imp"])
    library = tmp_path / "lib.wasm"
    library.write_bytes(wasmtime.wat2wasm('(module (func (export "f")))'))
    with pytest.raises(runner.RunnerError, match="_start"):
        runner.run(library, ["lib"])


def test_garbage_file_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.cwasm"
    junk.write_bytes(b"not a module")
    with pytest.raises(runner.RunnerError, match="junk.cwasm"):
        runner.load_module(junk)


def test_cli_inherits_stdio_and_returns_the_exit_code(tool, tmp_path):
    (tmp_path / "in.txt").write_text("from host")
    base = [sys.executable, "-m", "kiln.runner"]
    cwd = Path(__file__).resolve().parents[1]
    proc = subprocess.run(base + ["--env", "K=V", "--argv0", "php", str(tool), "args", "x"],
                          capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "argv[0]=php\nargv[1]=args\nargv[2]=x\n" in proc.stdout and "env:K=V" in proc.stdout
    proc = subprocess.run(base + [str(tool), "args"], capture_output=True, text=True, cwd=cwd)
    assert "argv[0]=tool.wasm" in proc.stdout and "envc=0" in proc.stdout
    proc = subprocess.run(base + ["-v", f"{tmp_path}:/d:ro", str(tool), "write", "/d/x", "y"],
                          capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == 1 and not (tmp_path / "x").exists()
    proc = subprocess.run(base + ["-v", f"{tmp_path}:/d", str(tool), "cat", "/d/in.txt"],
                          capture_output=True, text=True, cwd=cwd)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "from host", "")
    proc = subprocess.run(base + [str(tool), "exit", "255"], capture_output=True, cwd=cwd)
    assert proc.returncode == 255
    proc = subprocess.run(base + [str(tmp_path / "none.wasm")], capture_output=True, text=True,
                          cwd=cwd)
    assert proc.returncode == 2 and proc.stderr.startswith("kiln.runner: ")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(base + ["--timeout", "0.2", str(tool), "loop"],
                          capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == runner.EXIT_TIMEOUT and "timed out" in proc.stderr


def test_modules_run_without_epoch_checks_by_default_and_a_limit_still_holds(tool, tmp_path):
    """By default nothing is compiled with epoch checks (KILN_TIME_LIMITS=on adds them): the
    command line ends a run past --timeout from outside, whichever way the module was built;
    each artifact runs on the engine it was compiled for; an in-process time limit asks for
    the checks and gets them from the .wasm beside an artifact without them, or a one-line
    refusal."""
    base = [sys.executable, "-m", "kiln.runner"]
    env = {**os.environ, "KILN_CACHE": str(tmp_path / "cache")}
    assert not runner.time_limits_available() and runner.limit(60) is None
    assert runner.engine_fingerprint() == runner.engine_fingerprint(False) != runner.engine_fingerprint(True)
    on = subprocess.run([sys.executable, "-c", "from kiln import runner; print(runner.engine_fingerprint(), "
                         "runner.time_limits_available(), runner.limit(60))"], capture_output=True, text=True,
                        cwd=ROOT, env={**env, "KILN_TIME_LIMITS": "on"}).stdout.split()
    assert on == [runner.engine_fingerprint(True), "True", "60"]

    plain = runner.precompile(tool, tmp_path / "plain.cwasm")
    checked = runner.precompile(tool, tmp_path / "checked.cwasm", time_limits=True)
    for artifact in (tool, plain, checked):
        started = time.monotonic()
        proc = subprocess.run(base + ["--timeout", "0.5", str(artifact), "loop"], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=60)
        assert proc.returncode == runner.EXIT_TIMEOUT, (artifact, proc.stderr)
        assert proc.stderr.strip().splitlines() == ["kiln.runner: timed out after 0.5 s"]
        assert time.monotonic() - started < 10
        proc = subprocess.run(base + [str(artifact), "exit", "7"], capture_output=True, text=True,
                              cwd=ROOT, env={**env, "KILN_TIME_LIMITS": "on"})
        assert proc.returncode == 7, proc.stderr

    assert not runner.has_time_limits(runner.load_module(plain))
    assert runner.has_time_limits(runner.load_module(checked))
    assert runner.run(checked, ["tool", "loop"], timeout=0.2).timed_out
    with pytest.raises(runner.StaleArtifactError, match="precompiled without epoch checks.*give the .wasm"):
        runner.run(plain, ["tool", "loop"], timeout=0.2)
    beside = tmp_path / "beside"
    beside.mkdir()
    shutil.copy(tool, beside / "tool.wasm")
    runner.precompile(beside / "tool.wasm", beside / "tool.cwasm")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KILN_CACHE", str(tmp_path / "cache"))
        module = runner.load_cached(beside / "tool.cwasm", need_time_limits=True)
    assert runner.has_time_limits(module) and runner.run(module, ["tool", "loop"], timeout=0.2).timed_out

    bad = subprocess.run(base + [str(tool)], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "KILN_TIME_LIMITS": "maybe"})
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [
        "kiln.runner: KILN_TIME_LIMITS='maybe' is not one of on, off: fix or unset it"]


def test_the_old_dir_spelling_still_works_with_a_one_line_note(tool, tmp_path):
    (tmp_path / "in.txt").write_text("old")
    proc = subprocess.run([sys.executable, "-m", "kiln.runner", "--dir", f"{tmp_path}::/d:ro", str(tool),
                           "cat", "/d/in.txt"], capture_output=True, text=True, cwd=ROOT)
    assert (proc.returncode, proc.stdout) == (0, "old")
    assert proc.stderr.splitlines() == [
        f"kiln.runner: --dir HOST::GUEST is deprecated, use -v {tmp_path}:/d:ro (same meaning)"]


@pytest.mark.parametrize("engine", ["auto", "in-process"])
def test_a_wasm_module_is_compiled_once_and_cached(tool, tmp_path, engine):
    """On either engine: the command line (kiln/wasmtime_cli.py, the default where it can run
    the module) or wasmtime-py in process (KILN_ENGINE=in-process), each with its own cache."""
    cache = tmp_path / "cache"
    env = {**os.environ, "KILN_CACHE": str(cache), "PYTHONPATH": str(ROOT), "KILN_ENGINE": engine}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "kiln.runner", str(tool), "exit", "5"],
                              capture_output=True, text=True, cwd=tmp_path, env=env)
        assert proc.returncode == 5, proc.stderr
    if engine == "auto":
        from kiln import wasmtime_cli

        artifacts = list(cache.glob("wasmtime-cli/*/*.cwasm"))
        assert sorted(a.name for a in artifacts) == sorted([f"{runner.file_sha256(tool)}.cwasm",
                                                            f"exit-shim-{wasmtime_cli.SHIM_VERSION}.cwasm"])
        assert {a.parent.name for a in artifacts} == {wasmtime_cli.fingerprint()}
        assert not list(cache.glob("modules/*/*"))   # wasmtime-py compiled nothing
        return
    artifacts = list(cache.glob("modules/*/*.cwasm"))
    assert [a.name for a in artifacts] == [f"{runner.file_sha256(tool)}.cwasm"]
    assert artifacts[0].parent.name == runner.engine_fingerprint()
    stamp = artifacts[0].stat().st_mtime_ns
    runner.load_cached(tool)  # in process too: the cached artifact is reused, not rewritten
    assert artifacts[0].stat().st_mtime_ns == stamp


def test_a_read_only_cache_still_runs_the_module(tool, tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_CACHE", str(tmp_path / "nowhere"))
    monkeypatch.setattr(runner, "precompile", lambda *a: (_ for _ in ()).throw(PermissionError("ro")))
    assert runner.run(runner.load_cached(tool), ["tool", "exit", "3"]).exit_code == 3


@pytest.mark.parametrize("time_limits", ["on", "off"])
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_a_busy_module_promptly(tool, tmp_path, time_limits, sig, status):
    """Without epoch checks (KILN_TIME_LIMITS=off) nothing inside the guest would notice:
    the main thread handles the signal while the module runs in a worker."""
    env = {**os.environ, "KILN_TIME_LIMITS": time_limits, "KILN_CACHE": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "kiln.runner", str(tool), "loop"], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)  # compiled and spinning
        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=5) == status
        assert time.monotonic() - sent < 2
    finally:
        proc.kill()
        proc.wait()
    assert b"Traceback" not in proc.stderr.read()


def test_deep_recursion_in_the_cli_worker_traps_cleanly(tool):
    proc = subprocess.run([sys.executable, "-m", "kiln.runner", str(tool), "overflow"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == runner.EXIT_TRAP and "stack" in proc.stderr


def test_a_script_outside_every_grant_is_named_with_the_grant_to_add(tool, tmp_path):
    script = tmp_path / "site" / "index.php"
    script.parent.mkdir()
    script.write_text("<?php")
    base = [sys.executable, "-m", "kiln.runner"]
    proc = subprocess.run(base + [str(tool), "cat", str(script)], capture_output=True, text=True, cwd=ROOT)
    assert (proc.returncode, proc.stderr) == (2, f"kiln.runner: {script} is outside every folder granted "
                                                 f"to the module: add -v {script.parent}:{script.parent}:ro\n")
    proc = subprocess.run(base + ["-v", f"{tmp_path}:/app", str(tool), "cat", str(script)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "the module sees that file as /app/site/index.php" in proc.stderr
    anywhere = {**os.environ, "PYTHONPATH": str(ROOT)}  # the project need not be installed
    proc = subprocess.run(base + [str(tool), "cat", "site/index.php"], capture_output=True, text=True,
                          cwd=tmp_path, env=anywhere)
    assert proc.returncode == 2 and "add -v .:.:ro" in proc.stderr
    for grant, path in ((".:.", "site/index.php"), (f"{tmp_path}:/", "site/index.php"),
                        (f"{tmp_path}/site:/app", "/app/index.php")):
        proc = subprocess.run(base + ["-v", grant, str(tool), "cat", path], capture_output=True,
                              text=True, cwd=tmp_path, env=anywhere)
        assert (proc.returncode, proc.stdout) == (0, "<?php"), (grant, proc.stderr)


def test_unusable_modules_are_named_in_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.wasm").write_bytes(b"")
    with pytest.raises(runner.RunnerError, match=r"is a folder, not a module"):
        runner.load_module(tmp_path)
    with pytest.raises(runner.RunnerError, match=r"notes.txt is not a wasm module \(it starts with b'hell'\)"):
        runner.load_cached(tmp_path / "notes.txt")
    with pytest.raises(runner.RunnerError, match=r"empty.wasm is not a wasm module \(empty\)"):
        runner.load_cached(tmp_path / "empty.wasm")
    broken = tmp_path / "broken.wasm"
    broken.write_bytes(b"\0asm\x01\0\0\0\xff")
    with pytest.raises(runner.RunnerError, match="broken.wasm: cannot load module"):
        runner.load_cached(broken)
