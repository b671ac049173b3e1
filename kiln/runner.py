"""The one Wasmtime runner Kiln uses: build steps, tests, the CLI and the HTTP server.

Everything that executes a wasm32-wasi module goes through `run()`, so the engine settings,
exit-code handling, sandboxing and time limits are decided in exactly one place.

Facts about wasmtime-py 50 this module is built around (see docs/notes in the repo):
- PHP's setjmp/longjmp is compiled to WebAssembly exception handling, so the engine needs
  `Config.wasm_exceptions = True`.
- Wasmtime's own `proc_exit` refuses statuses >= 126, but PHP exits 255 on fatal errors.
  We define WASI, then shadow `wasi_snapshot_preview1.proc_exit` with our own function.
- wasmtime-py passes a Python exception raised in a host function back to the caller through a
  single *process-global* slot (`wasmtime._func.LAST_EXCEPTION`). With several threads running
  wasm at once, an exception can surface in the wrong thread. So our `proc_exit` records the
  exit code in per-run state before raising, and `run()` trusts that state, not the exception.
- Precompiled artifacts (`Module.serialize`) only load into an engine with the same version and
  settings; we key them on `engine_fingerprint()` and record it in a sidecar file.
- `max_wasm_stack` above 2 MiB crashed the Python process; 2 MiB is the ceiling.
- `WasiConfig.preopen_dir(host, guest, fs_mutable=True)` is the 50.x signature (its docstring
  still talks about dir_perms/file_perms, which do not exist); note the default is *writable*.

Exit codes reported by `run()` (and by `python -m kiln.runner`):
- the module's own status (0..255, low 8 bits as on POSIX) when it returns or calls proc_exit;
- EXIT_TIMEOUT (124, like coreutils `timeout`) when the wall-clock limit interrupted it;
- EXIT_TRAP (134, like a native SIGABRT) for any other trap (unreachable, stack overflow,
  out-of-bounds access, uncaught exception...); the trap message is appended to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import wasmtime
from wasmtime import _ffi as _wasmtime_ffi  # only for stdin-from-bytes, see _set_stdin

from kiln import atomic
from kiln.errors import KilnError

__all__ = [
    "ENGINE_SETTINGS", "EXIT_TIMEOUT", "EXIT_TRAP", "EPOCH_TICK_SECONDS",
    "RunnerError", "StaleArtifactError", "Preopen", "RunResult",
    "engine_fingerprint", "make_engine", "precompile", "load_module", "run", "main",
]

EXIT_TIMEOUT = 124  # wall-clock limit reached (same value as coreutils `timeout`)
EXIT_TRAP = 134     # wasm trapped for a reason other than exiting (128 + SIGABRT)

# Engine settings that change generated code, hence what a precompiled artifact contains.
# Any change here changes engine_fingerprint(), which invalidates every artifact.
ENGINE_SETTINGS: dict[str, object] = {
    "wasm_exceptions": True,             # PHP's zend_try/zend_bailout (setjmp/longjmp)
    "cranelift_opt_level": "speed",      # "none" measured 7-28% slower on PHP
    "max_wasm_stack": 2 * 1024 * 1024,   # deep recursion in PHP; >2 MiB crashed Python
    "epoch_interruption": True,          # wall-clock limits; compiled-in checks
}

EPOCH_TICK_SECONDS = 0.01  # the ticker bumps the engine epoch this often
_NO_DEADLINE_TICKS = 1 << 48  # runs without a timeout: ~89,000 years of 10 ms ticks

SIDECAR_SUFFIX = ".json"  # precompiled artifact metadata lives in ARTIFACT + ".json"
_WASM_MAGIC = b"\0asm"


class RunnerError(KilnError):
    """A module could not be loaded or instantiated (not: the module failed while running)."""


class StaleArtifactError(RunnerError):
    """A precompiled artifact does not match the current engine; rebuild it."""


# ---------------------------------------------------------------------------------------------
# Engine


def _wasmtime_version() -> str:
    return importlib.metadata.version("wasmtime")


def engine_fingerprint() -> str:
    """Short stable hash of everything a precompiled artifact depends on."""
    key = json.dumps(
        {
            "wasmtime": _wasmtime_version(),
            "settings": ENGINE_SETTINGS,
            # Artifacts are native code: never share them across CPU architectures.
            "machine": platform.machine(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


_engine: wasmtime.Engine | None = None
_engine_lock = threading.Lock()


def make_engine() -> wasmtime.Engine:
    """The process-wide Engine. Modules are tied to the engine that compiled them, and the
    epoch ticker drives a single engine, so everything shares this one."""
    global _engine
    with _engine_lock:
        if _engine is None:
            config = wasmtime.Config()
            for name, value in ENGINE_SETTINGS.items():
                setattr(config, name, value)
            _engine = wasmtime.Engine(config)
        return _engine


# ---------------------------------------------------------------------------------------------
# Epoch ticker: one daemon thread for the whole process, started on the first timed run.

_ticker: threading.Thread | None = None
_ticker_lock = threading.Lock()


def _ensure_ticker(engine: wasmtime.Engine) -> None:
    global _ticker
    with _ticker_lock:
        if _ticker is not None:
            return

        def tick() -> None:
            while True:
                time.sleep(EPOCH_TICK_SECONDS)
                engine.increment_epoch()

        _ticker = threading.Thread(target=tick, name="kiln-epoch-ticker", daemon=True)
        _ticker.start()


def _timeout_ticks(timeout: float) -> int:
    # +1 because the current tick may be almost over when the deadline is set: the run gets
    # at least `timeout` seconds, at most one tick more.
    return max(1, int(-(-timeout // EPOCH_TICK_SECONDS))) + 1


# ---------------------------------------------------------------------------------------------
# Loading and precompiling


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(artifact: str | os.PathLike) -> Path:
    return Path(str(artifact) + SIDECAR_SUFFIX)


def precompile(wasm_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Compile a .wasm to a native artifact for this engine, plus its metadata sidecar."""
    wasm_path, out_path = Path(wasm_path), Path(out_path)
    module = wasmtime.Module.from_file(make_engine(), str(wasm_path))
    data = bytes(module.serialize())
    # Remove the old sidecar first: if we die between the two writes, the artifact has no
    # metadata and load_module refuses it, instead of pairing new code with old metadata.
    sidecar = sidecar_path(out_path)
    sidecar.unlink(missing_ok=True)
    # Temp file beside the target, fsync, rename: never half an artifact under its name.
    atomic.write_bytes(out_path, data)
    meta = {
        "wasmtime": _wasmtime_version(),
        "fingerprint": engine_fingerprint(),
        "source_sha256": _sha256_file(wasm_path),
        "size": len(data),
    }
    atomic.write_json(sidecar, meta)
    return out_path


def read_artifact_metadata(path: str | os.PathLike) -> dict | None:
    """The sidecar of a precompiled artifact, or None when it is missing or unreadable."""
    try:
        return json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return None


def _check_artifact(path: Path) -> None:
    meta = read_artifact_metadata(path)
    problem = None
    if meta is None:
        problem = f"no readable metadata ({sidecar_path(path).name})"
    elif meta.get("fingerprint") != engine_fingerprint():
        problem = (f"built for engine {meta.get('fingerprint')} (wasmtime {meta.get('wasmtime')}),"
                   f" this is {engine_fingerprint()} (wasmtime {_wasmtime_version()})")
    elif meta.get("size") != path.stat().st_size:
        problem = "its size does not match its metadata"
    if problem:
        raise StaleArtifactError(
            f"{path}: stale precompiled artifact: {problem}; rebuild it (re-run the AOT step)")


_modules: dict[str, tuple[tuple[int, int], wasmtime.Module]] = {}
_module_locks: dict[str, threading.Lock] = {}
_modules_lock = threading.Lock()


def load_module(path: str | os.PathLike) -> wasmtime.Module:
    """A .wasm (compiled now) or a precompiled artifact (checked, then mapped), cached per path
    and modification time so a rebuilt file is picked up."""
    path = Path(path)
    key = os.path.realpath(path)
    try:
        st = os.stat(key)
    except OSError as e:
        raise RunnerError(f"{path}: cannot load module: {e.strerror}") from None
    stamp = (st.st_mtime_ns, st.st_size)
    with _modules_lock:
        cached = _modules.get(key)
        if cached and cached[0] == stamp:
            return cached[1]
        # One lock per file: two threads asking for the same new file compile it once, while
        # other files stay available.
        file_lock = _module_locks.setdefault(key, threading.Lock())
    with file_lock:
        cached = _modules.get(key)
        if cached and cached[0] == stamp:
            return cached[1]
        with open(key, "rb") as f:
            magic = f.read(4)
        engine = make_engine()
        try:
            if magic == _WASM_MAGIC:
                module = wasmtime.Module.from_file(engine, key)
            else:
                # Deserializing runs native code from the file unchecked: only load artifacts
                # this project built.
                _check_artifact(path)
                module = wasmtime.Module.deserialize_file(engine, key)
        except wasmtime.WasmtimeError as e:
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else "unknown error"
            raise RunnerError(f"{path}: cannot load module: {first_line}") from e
        with _modules_lock:
            _modules[key] = (stamp, module)
        return module


# ---------------------------------------------------------------------------------------------
# Running


@dataclass(frozen=True)
class Preopen:
    """Grant the guest access to host directory `host`, visible at `guest`."""
    host: Path
    guest: str
    writable: bool = False


@dataclass
class RunResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration: float  # seconds, wall clock, instantiation included


class _ProcExit(Exception):
    """Raised by our proc_exit to unwind the guest; never escapes run()."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class _RunState:
    """Per-run facts the host functions write, read back by run() after the guest stops."""

    def __init__(self) -> None:
        self.exit_code: int | None = None


def _set_stdin(wasi: wasmtime.WasiConfig, data: bytes, cleanup: list[str]) -> None:
    # The C API has wasi_config_set_stdin_bytes but wasmtime-py 50 does not wrap it; use the
    # binding when present (no temp file per request), else fall back to a temp file.
    setter = getattr(_wasmtime_ffi, "wasi_config_set_stdin_bytes", None)
    if setter is not None:
        vec = _wasmtime_ffi.wasm_byte_vec_t()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        _wasmtime_ffi.wasm_byte_vec_new(ctypes.byref(vec), len(data), buf)
        setter(wasi.ptr(), ctypes.byref(vec))  # the config takes ownership of vec
        return
    fd, tmp = tempfile.mkstemp(prefix="kiln-stdin-")
    cleanup.append(tmp)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    wasi.stdin_file = tmp


def run(
    module_or_path: wasmtime.Module | str | os.PathLike,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    preopens: Iterable[Preopen] = (),
    timeout: float | None = None,
    inherit_stdio: bool = False,
) -> RunResult:
    """Run a WASI command once in a fresh Store and instance.

    `argv` is passed as is (argv[0] included). The guest sees exactly `env`, nothing from the
    host. stdout/stderr are captured unless `inherit_stdio`; stdin is `stdin` if given, else
    empty (or the host's stdin when `inherit_stdio`). `timeout` is wall-clock seconds; it is
    checked at wasm function entries and loop back-edges, so a guest blocked in a host call
    (e.g. reading an inherited terminal) is not interrupted until that call returns.

    Safe to call from many threads at once: Engine and Module are shared, everything else is
    per call.
    """
    module = (module_or_path if isinstance(module_or_path, wasmtime.Module)
              else load_module(module_or_path))
    engine = make_engine()
    state = _RunState()
    out, err = bytearray(), bytearray()
    cleanup: list[str] = []

    wasi = wasmtime.WasiConfig()
    wasi.argv = list(argv)
    wasi.env = list((env or {}).items())
    if inherit_stdio:
        wasi.inherit_stdout()
        wasi.inherit_stderr()
        if stdin is None:
            wasi.inherit_stdin()
    else:
        # Callbacks run on this thread while the guest writes; no temp files to read back.
        wasi.stdout_custom = out.extend
        wasi.stderr_custom = err.extend
    if stdin is not None:
        _set_stdin(wasi, stdin, cleanup)
    for p in preopens:
        # fs_mutable=False makes both the directory and its files read-only for the guest.
        wasi.preopen_dir(str(p.host), p.guest, p.writable)

    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    if timeout is not None:
        _ensure_ticker(engine)
        store.set_epoch_deadline(_timeout_ticks(timeout))
    else:
        # With epoch_interruption on, the default deadline (0) would trap at once.
        store.set_epoch_deadline(_NO_DEADLINE_TICKS)

    def proc_exit(code: int) -> None:
        # Record first (see module docstring: the exception may surface in another thread).
        state.exit_code = code & 0xFF
        raise _ProcExit(state.exit_code)

    # A Linker per run: its proc_exit closes over this run's state. Building one is cheap
    # next to instantiation.
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    linker.allow_shadowing = True
    linker.define_func("wasi_snapshot_preview1", "proc_exit",
                       wasmtime.FuncType([wasmtime.ValType.i32()], []), proc_exit)

    timed_out = False
    trap_message = None
    started = time.monotonic()
    try:
        try:
            instance = linker.instantiate(store, module)
        except wasmtime.WasmtimeError as e:
            if state.exit_code is None and not isinstance(e, wasmtime.Trap):
                raise RunnerError(f"cannot instantiate module: {e}") from None
            raise
        start = instance.exports(store).get("_start")
        if not isinstance(start, wasmtime.Func):
            raise RunnerError("module has no _start function (not a WASI command)")
        start(store)
        exit_code = 0
    except RunnerError:
        raise
    except (_ProcExit, wasmtime.WasmtimeError, wasmtime.Trap) as e:
        if state.exit_code is not None:
            exit_code = state.exit_code
        elif isinstance(e, wasmtime.ExitTrap):  # wasmtime's own exit path, if ever reached
            exit_code = e.code & 0xFF
        elif isinstance(e, wasmtime.Trap) and e.trap_code == wasmtime.TrapCode.INTERRUPT:
            timed_out, exit_code = True, EXIT_TIMEOUT
        elif timeout is not None and time.monotonic() - started >= timeout:
            # Our INTERRUPT trap was displaced by another thread's host exception.
            timed_out, exit_code = True, EXIT_TIMEOUT
        else:
            exit_code = EXIT_TRAP
            trap_message = (str(e) if not isinstance(e, _ProcExit)
                            else "trap (details lost to a concurrent run's host exception)")
    finally:
        duration = time.monotonic() - started
        for tmp in cleanup:
            os.unlink(tmp)

    note = None
    if timed_out:
        note = f"kiln.runner: timed out after {timeout:g} s\n"
    elif trap_message is not None:
        note = f"kiln.runner: wasm trap: {trap_message.rstrip()}\n"
    if note:
        if inherit_stdio:
            sys.stderr.write(note)
            sys.stderr.flush()
        else:
            err.extend(note.encode())
    return RunResult(exit_code, bytes(out), bytes(err), timed_out, duration)


# ---------------------------------------------------------------------------------------------
# Command line


def _parse_dir(spec: str) -> Preopen:
    # HOST::GUEST[:ro|:rw]; "::" because either side may contain a single colon.
    host, sep, guest = spec.partition("::")
    if not sep or not host or not guest:
        raise argparse.ArgumentTypeError(f"expected HOST::GUEST[:ro], got {spec!r}")
    writable = True  # like `wasmtime run --dir`; ":ro" opts out
    for suffix, mode in ((":ro", False), (":rw", True)):
        if guest.endswith(suffix):
            guest, writable = guest[: -len(suffix)], mode
            break
    return Preopen(Path(host), guest, writable)


def _parse_env(spec: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected K=V, got {spec!r}")
    return name, value


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kiln.runner",
        description="Run a wasm32-wasi module (.wasm or precompiled) with Kiln's runner.")
    parser.add_argument("--dir", action="append", default=[], type=_parse_dir,
                        metavar="HOST::GUEST[:ro]", help="grant a host directory (default writable)")
    parser.add_argument("--env", action="append", default=[], type=_parse_env, metavar="K=V",
                        help="set a guest environment variable (the host's are never passed)")
    parser.add_argument("--timeout", type=float, metavar="S", help="wall-clock limit in seconds")
    parser.add_argument("--argv0", help="argv[0] for the guest (default: module file name)")
    parser.add_argument("module", metavar="MODULE")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    ns = parser.parse_args(args)
    try:
        module = load_module(ns.module)
    except RunnerError as e:
        print(f"kiln.runner: {e}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    result = run(module, [ns.argv0 or os.path.basename(ns.module), *ns.args],
                 env=dict(ns.env), preopens=ns.dir, timeout=ns.timeout, inherit_stdio=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
