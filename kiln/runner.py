"""The in-process Wasmtime runner (wasmtime-py): build steps, tests, images, kiln.server.

Everything that executes a wasm32-wasi module inside a Kiln process goes through `run()`, so
its exit-code handling, sandboxing and time limits are decided in one place; the engine's
settings and fingerprint are kiln/engine.py's. Where a guest gets a process of its own (`kiln
run`, kiln.pool's workers) the Wasmtime command line runs it instead when it can
(kiln/wasmtime_cli.py, docs/engines.md), with the same promises.

Facts about wasmtime-py 50.0.1 this module is built around (measured on this project):
- PHP's setjmp/longjmp is compiled to WebAssembly exception handling, so the engine needs
  `Config.wasm_exceptions = True`.
- Wasmtime's own `proc_exit` refuses statuses >= 126, but PHP exits 255 on fatal errors.
  We define WASI, then shadow `wasi_snapshot_preview1.proc_exit` with our own function.
- wasmtime-py passes a Python exception raised in a host function (`Linker.define_func`) back
  to the caller through a single *process-global* slot (`wasmtime._func.LAST_EXCEPTION`). With
  several threads running wasm at once, an exception then surfaces in the wrong thread
  (measured: other runs' trap messages were replaced). So our `proc_exit` is a raw ctypes
  callback that never raises: it records the code in per-run state and returns a wasm trap.
- The Trap wasmtime-py raises sits in a reference cycle (exception -> traceback -> frame ->
  exception), which keeps the whole Store alive until the cyclic GC runs; a Store with custom
  stdout callbacks still alive at interpreter exit makes a tokio thread panic. run() drops the
  traceback so each Store is freed when run() returns.
- `WasiConfig.stdout_custom`/`stderr_custom` (better than temp files: no disk, no read-back)
  call back on a Wasmtime tokio thread. Writes are complete when the guest's fd_write returns,
  but the callback's release happens on that thread shortly (~1 ms) *after* the Store is
  dropped; if the interpreter is already finalizing then, that thread panics and aborts. An
  atexit hook waits for outstanding releases (see _Capture).
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

import atexit
import ctypes
import gc
import itertools
import json
import os
import stat
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

# wasmtime-py's import creates tens of thousands of objects (ctypes types and functions) that
# trip some 40 garbage collections finding nothing to free: ~5% of a `python -m kiln.runner`
# start-up. Collect after it instead (docs/benchmarks.md, "Start-up").
_gc_was_enabled = gc.isenabled()
gc.disable()
try:
    import wasmtime
    from wasmtime import _ffi as _wasmtime_ffi  # raw C API: proc_exit callback, stdin bytes

    from kiln import settings
    from kiln.engine import (ENGINE_SETTINGS, EXIT_TIMEOUT, EXIT_TRAP, Preopen, engine_fingerprint,
                             engine_settings, file_sha256, machine, trap_report,
                             wasmtime_py_version)
    from kiln.errors import KilnError
finally:
    if _gc_was_enabled:
        gc.enable()

__all__ = [
    "ENGINE_SETTINGS", "EXIT_TIMEOUT", "EXIT_TRAP", "EPOCH_TICK_SECONDS", "engine_settings",
    "time_limits_available", "limit", "has_time_limits", "deserialize_file", "start_guest_thread",
    "RunnerError", "StackSwitchingRefused", "StaleArtifactError", "Preopen", "RunResult",
    "engine_fingerprint", "make_engine", "precompile", "sidecar_path", "read_artifact_metadata",
    "load_module", "load_cached", "run", "main", "wasmtime_py_version", "file_sha256",
]


EPOCH_TICK_SECONDS = 0.01  # the ticker bumps the engine epoch this often
_NO_DEADLINE_TICKS = 1 << 48  # runs without a timeout: ~89,000 years of 10 ms ticks

SIDECAR_SUFFIX = ".json"  # precompiled artifact metadata lives in ARTIFACT + ".json"
_WASM_MAGIC = b"\0asm"
_ELF_MAGIC = b"\x7fELF"  # what Module.serialize() writes
# wasmtime-py 50's C library is built without stack switching: with Config.wasm_stack_switching
# a module validates, then the process panics at its first `resume` (measured 2026-12-07). So it
# stays off here, and a module using it (the +fibers variant's) is refused in one line, which each
# path that runs in process words for itself (`where`, `fix`): kiln.server, kiln.shimrun.
STACK_SWITCHING_REFUSED = "{path} uses WebAssembly stack switching (PHP's fibers flavour), which {where} cannot run: {fix}"
IN_PROCESS = "wasmtime-py (Kiln's in-process engine)"
ON_THE_COMMAND_LINE = ("run it on the Wasmtime command line (`kiln run`, `kiln serve` in worker isolation, "
                       "kiln.pool; not with KILN_ENGINE=in-process, and read-only grants need Landlock), "
                       "or use another flavour")


def stack_switching_refused(path, where: str = IN_PROCESS, fix: str = ON_THE_COMMAND_LINE) -> str:
    return STACK_SWITCHING_REFUSED.format(path=path, where=where, fix=fix)


class RunnerError(KilnError):
    """A module could not be loaded or instantiated (not: the module failed while running)."""


class StackSwitchingRefused(RunnerError):
    """The module needs stack switching (the fibers flavour): only the Wasmtime command line runs it."""

    def __init__(self, path):
        super().__init__(stack_switching_refused(path))
        self.path = path


class StaleArtifactError(RunnerError):
    """A precompiled artifact does not match the current engine; rebuild it."""


# ---------------------------------------------------------------------------------------------
# Engine


# The engine's facts (settings, fingerprint, version) live in kiln/engine.py, which imports no
# Wasmtime; the names imported from it above are re-exported for callers of the runner.


def time_limits_available() -> bool:
    """Whether what Kiln compiles by default (AOT artifacts, the module cache) has epoch checks."""
    return bool(engine_settings()["epoch_interruption"])


def limit(seconds: float) -> float | None:
    """A safety limit for Kiln's own in-process runs (smoke checks, benchmarks): `seconds` when
    the artifacts have epoch checks (KILN_TIME_LIMITS=on), else none."""
    return seconds if time_limits_available() else None


_engines: dict[bool, wasmtime.Engine] = {}
_engine_lock = threading.Lock()
# The engine each loaded module was compiled for (a Store must use the same one).
_module_engines: "weakref.WeakKeyDictionary[wasmtime.Module, wasmtime.Engine]" = weakref.WeakKeyDictionary()


def make_engine(time_limits: bool | None = None) -> wasmtime.Engine:
    """The process's Engine with or without epoch checks (None: the default, see
    engine_settings). At most two per process: modules are tied to the engine that compiled
    them, and one epoch ticker drives the engine with checks."""
    key = bool(engine_settings(time_limits)["epoch_interruption"])
    with _engine_lock:
        if key not in _engines:
            config = wasmtime.Config()
            for name, value in engine_settings(key).items():
                setattr(config, name, value)
            _engines[key] = wasmtime.Engine(config)
        return _engines[key]


def deserialize_file(path: str | os.PathLike, time_limits: bool) -> wasmtime.Module:
    """A precompiled artifact whose engine the caller checked some other way (an image's
    labels), on that engine; load_module checks Kiln's own sidecars."""
    engine = make_engine(time_limits)
    module = wasmtime.Module.deserialize_file(engine, str(path))
    _module_engines[module] = engine
    return module


GUEST_THREAD_STACK = 16 << 20  # the wasm stack (max_wasm_stack, 2 MiB) plus host frames, with room
_stack_size_lock = threading.Lock()


def start_guest_thread(target, name: str) -> threading.Thread:
    """Start a daemon thread with room for a guest's stack: Wasmtime runs wasm on the calling
    thread's own stack. The size applies to threads started while it is set (start(), not the
    Thread object's creation), so it is set around start()."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    with _stack_size_lock:  # one size change at a time
        old_size = threading.stack_size(GUEST_THREAD_STACK)
        try:
            thread.start()
        finally:
            threading.stack_size(old_size)
    return thread


def has_time_limits(module: wasmtime.Module) -> bool:
    """Whether run() can stop this module at a deadline (it was compiled with epoch checks)."""
    return _module_engines.get(module) is _engines.get(True) is not None


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


def sidecar_path(artifact: str | os.PathLike) -> Path:
    return Path(str(artifact) + SIDECAR_SUFFIX)


def precompile(wasm_path: str | os.PathLike, out_path: str | os.PathLike,
               time_limits: bool | None = None) -> Path:
    """Compile a .wasm to a native artifact (with or without epoch checks; None: the default),
    plus its metadata sidecar."""
    from kiln import atomic  # only here: a run need not import it

    wasm_path, out_path = Path(wasm_path), Path(out_path)
    module = wasmtime.Module.from_file(make_engine(time_limits), str(wasm_path))
    data = bytes(module.serialize())
    # Remove the old sidecar first: if we die between the two writes, the artifact has no
    # metadata and load_module refuses it, instead of pairing new code with old metadata.
    sidecar = sidecar_path(out_path)
    sidecar.unlink(missing_ok=True)
    # Temp file beside the target, fsync, rename: never half an artifact under its name.
    atomic.write_bytes(out_path, data)
    meta = {
        "wasmtime": wasmtime_py_version(),
        "fingerprint": engine_fingerprint(time_limits),
        # What the fingerprint hashes, so a mismatch can say which setting differs (and
        # load_module picks the engine with or without epoch checks from it).
        "settings": engine_settings(time_limits),
        "machine": machine(),
        "source_sha256": file_sha256(wasm_path),
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


def _artifact_time_limits(meta: dict) -> bool | None:
    """Whether an artifact was compiled with epoch checks, from its sidecar (None: unknown)."""
    there = meta.get("settings")
    if isinstance(there, dict) and "epoch_interruption" in there:
        return bool(there["epoch_interruption"])
    # A sidecar from before the settings were recorded: the fingerprint says which.
    for flag in (False, True):
        if meta.get("fingerprint") == engine_fingerprint(flag):
            return flag
    return None


def _engine_difference(meta: dict, time_limits: bool) -> tuple[str, str]:
    """(what differs, how to fix it) between an artifact's engine and this process's."""
    rebuild = "rebuild it (re-run the AOT step)"
    if meta.get("wasmtime") != wasmtime_py_version():
        return (f"precompiled by wasmtime-py {meta.get('wasmtime')}, this is {wasmtime_py_version()}",
                f"run the .wasm instead, or {rebuild}")
    if meta.get("machine", machine()) != machine():
        return (f"precompiled on {meta['machine']}, this machine is {machine()}",
                f"run the .wasm instead, or {rebuild} here")
    here, there = engine_settings(time_limits), meta.get("settings")
    if isinstance(there, dict):
        changed = sorted(k for k in set(here) | set(there) if here.get(k) != there.get(k))
        if changed:
            return (f"precompiled with other engine settings ({', '.join(f'{k}={there.get(k)!r}' for k in changed)}; "
                    f"this engine: {', '.join(f'{k}={here.get(k)!r}' for k in changed)})", rebuild)
    return (f"built for engine {meta.get('fingerprint')}, this is {engine_fingerprint(time_limits)} "
            f"(wasmtime {wasmtime_py_version()} both)", rebuild)


def _check_artifact(path: Path, need_time_limits: bool) -> bool:
    """Refuse an artifact this process cannot run; returns whether it has epoch checks."""
    meta = read_artifact_metadata(path)
    problem, fix = None, "rebuild it (re-run the AOT step)"
    flag = settings.time_limits()
    if meta is None:
        problem = f"no readable metadata ({sidecar_path(path).name})"
    else:
        known = _artifact_time_limits(meta)
        flag = known if known is not None else flag
        if need_time_limits and known is False:
            raise StaleArtifactError(
                f"{path}: precompiled without epoch checks, and this run limits time inside the "
                "process: give the .wasm (compiled once with them into KILN_CACHE), or rebuild "
                "with KILN_TIME_LIMITS=on")
        if meta.get("fingerprint") != engine_fingerprint(flag):
            problem, fix = _engine_difference(meta, flag)
        elif meta.get("size") != path.stat().st_size:
            problem = "its size does not match its metadata"
    if problem:
        raise StaleArtifactError(f"{path}: stale precompiled artifact: {problem}; {fix}")
    return flag


_modules: dict[tuple[str, bool], tuple[tuple[int, int], wasmtime.Module]] = {}
_module_locks: dict[tuple[str, bool], threading.Lock] = {}
_modules_lock = threading.Lock()


def load_module(path: str | os.PathLike, need_time_limits: bool = False) -> wasmtime.Module:
    """A .wasm (compiled now) or a precompiled artifact (checked, then mapped, on the engine it
    was compiled for), cached per path and modification time so a rebuilt file is picked up.
    `need_time_limits`: the caller will give run() a timeout, so the module must have epoch
    checks (a .wasm is compiled with them; an artifact without them is refused)."""
    path = Path(path)
    real = os.path.realpath(path)
    key = (real, need_time_limits)
    try:
        st = os.stat(real)
    except OSError as e:
        raise RunnerError(f"{path}: cannot load module: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise RunnerError(f"{path} is a folder, not a module: give the .wasm or .cwasm file")
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
        try:
            with open(real, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise RunnerError(f"{path}: cannot load module: {e.strerror}") from None
        if magic not in (_WASM_MAGIC, _ELF_MAGIC):
            # Wasmtime artifacts are ELF files; anything else would only get a confusing
            # "stale artifact" or deserialization error.
            raise RunnerError(f"{path} is not a wasm module ({'empty' if not magic else f'it starts with {magic!r}'}):"
                              " give a .wasm, or a .cwasm precompiled by Kiln")
        try:
            if magic == _WASM_MAGIC:
                engine = make_engine(True if need_time_limits else None)
                module = wasmtime.Module.from_file(engine, real)
            else:
                # Deserializing runs native code from the file unchecked: only load artifacts
                # this project built.
                engine = make_engine(_check_artifact(path, need_time_limits))
                module = wasmtime.Module.deserialize_file(engine, real)
        except wasmtime.WasmtimeError as e:
            if "stack switching is disabled" in str(e):
                raise StackSwitchingRefused(path) from None
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else "unknown error"
            raise RunnerError(f"{path}: cannot load module: {first_line}") from e
        with _modules_lock:
            _modules[key] = (stamp, module)
            _module_engines[module] = engine
        return module


def _lacks_time_limits(artifact: Path) -> bool:
    meta = read_artifact_metadata(artifact)
    return meta is not None and _artifact_time_limits(meta) is False


def load_cached(path: str | os.PathLike, need_time_limits: bool = False) -> wasmtime.Module:
    """load_module, but a .wasm is compiled once per content and engine and the native code
    kept under KILN_CACHE (compiling PHP takes seconds, loading the artifact a fraction of one),
    the way a containerd wasm shim caches. Precompiled artifacts load as they are, except one
    without epoch checks when `need_time_limits` and its .wasm lies beside it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            is_wasm = f.read(4) == _WASM_MAGIC
    except OSError:
        is_wasm = False  # load_module says what is wrong with it
    if not is_wasm:
        source = path.with_suffix(".wasm")
        if need_time_limits and source.is_file() and _lacks_time_limits(path):
            # Kiln's bin/ keeps each module's .wasm beside its artifact: compile that one
            # with the checks (once, into the cache) rather than refuse.
            return load_cached(source, need_time_limits)
        return load_module(path, need_time_limits)
    flag = True if need_time_limits else None
    cached = settings.cache_dir() / "modules" / engine_fingerprint(flag) / f"{file_sha256(path)}.cwasm"
    if read_artifact_metadata(cached) is None or not cached.is_file():
        try:
            precompile(path, cached, flag)
        except (OSError, wasmtime.WasmtimeError):
            # A read-only cache: compile in memory, as before. A broken module: load_module
            # gives the one-line reason.
            return load_module(path, need_time_limits)
    try:
        return load_module(cached, need_time_limits)
    except StaleArtifactError:  # a copy half-replaced by another process, say: compile again
        precompile(path, cached, flag)
        return load_module(cached, need_time_limits)


# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class RunResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    duration: float  # seconds, wall clock, instantiation included
    # True when stdout went past run(max_output=...): the rest of it was discarded.
    output_truncated: bool = False


class _RunState:
    """Per-run facts the host functions write, read back by run() after the guest stops."""

    def __init__(self) -> None:
        self.exit_code: int | None = None


# proc_exit's `env` pointer is a key into this dict (ctypes callbacks get no closure).
_run_states: dict[int, _RunState] = {}
_run_state_ids = itertools.count(1)
_EXIT_TRAP_MESSAGE = b"kiln.runner: proc_exit"


@_wasmtime_ffi.wasmtime_func_callback_t
def _proc_exit(env, caller, args, nargs, results, nresults):  # noqa: ANN001 - C signature
    # Runs on the guest's thread with the GIL. It must not raise (see module docstring), so it
    # records the status and hands Wasmtime a trap to unwind the guest with.
    try:
        state = _run_states.get(env or 0)
        if state is not None and nargs == 1:
            state.exit_code = args[0].of.i32 & 0xFF  # low 8 bits, as a POSIX parent sees
    finally:
        trap = _wasmtime_ffi.wasmtime_trap_new(_EXIT_TRAP_MESSAGE, len(_EXIT_TRAP_MESSAGE))
        return ctypes.cast(trap, ctypes.c_void_p).value  # noqa: B012 - never propagate


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _forget_run_state(env):  # noqa: ANN001 - C signature; called when the Linker is freed
    _run_states.pop(env or 0, None)


def _define_proc_exit(linker: wasmtime.Linker, state: _RunState) -> None:
    key = next(_run_state_ids)
    _run_states[key] = state
    module, name = b"wasi_snapshot_preview1", b"proc_exit"
    ty = wasmtime.FuncType([wasmtime.ValType.i32()], [])
    error = _wasmtime_ffi.wasmtime_linker_define_func(
        linker.ptr(), module, len(module), name, len(name), ty.ptr(),
        _proc_exit, key, _forget_run_state)
    if error:
        _run_states.pop(key, None)
        raise wasmtime.WasmtimeError._from_ptr(error)


class _Capture:
    """Collects one stream of one run; Wasmtime calls it from its own thread.

    With a `limit`, bytes past it are dropped and `truncated` is set (the guest keeps running:
    raising here would go through wasmtime-py's process-global exception slot)."""

    __slots__ = ("buffer", "limit", "truncated", "__weakref__")

    def __init__(self, limit: int | None = None) -> None:
        self.buffer = bytearray()
        self.limit = limit
        self.truncated = False

    def __call__(self, data: bytes) -> None:
        if self.limit is not None and len(self.buffer) + len(data) > self.limit:
            self.buffer.extend(data[: max(0, self.limit - len(self.buffer))])
            self.truncated = True
            return
        self.buffer.extend(data)


# Captures Wasmtime still holds. Wasmtime frees them from its tokio thread after a Store is
# dropped; the interpreter must still be alive when it does (see module docstring).
_live_captures: "weakref.WeakSet[_Capture]" = weakref.WeakSet()


@atexit.register
def _wait_for_capture_release(limit: float = 1.0) -> None:
    if not _live_captures:  # nothing to wait for (the CLI inherits stdio): skip the ~8 ms collection
        return
    gc.collect()  # Stores kept alive only by reference cycles
    deadline = time.monotonic() + limit
    while len(_live_captures) and time.monotonic() < deadline:
        time.sleep(0.001)


# The C API has wasi_config_set_stdin_bytes but wasmtime-py 50 does not wrap it; use the raw
# binding when present (no temp file per request), else fall back to a temp file.
_stdin_bytes_setter = getattr(_wasmtime_ffi, "wasi_config_set_stdin_bytes", None)


def _set_stdin(wasi: wasmtime.WasiConfig, data: bytes, cleanup: list[str]) -> None:
    setter = _stdin_bytes_setter
    if setter is not None:
        vec = _wasmtime_ffi.wasm_byte_vec_t()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        _wasmtime_ffi.wasm_byte_vec_new(ctypes.byref(vec), len(data), buf)
        setter(wasi.ptr(), ctypes.byref(vec))  # the config takes ownership of vec
        return
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix="kiln-stdin-")
    cleanup.append(tmp)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    wasi.stdin_file = tmp



def _utf8_env(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """WASI environment strings are bytes, but Wasmtime's API takes UTF-8 only (its C API
    refuses anything else): say which variable, rather than fail deep in an encoder."""
    for name, value in env.items():
        for text in (name, value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise RunnerError(f"environment variable {name.encode('utf-8', 'backslashreplace').decode()} "
                                  "is not valid UTF-8: Wasmtime passes only UTF-8 environment strings "
                                  "to a WASI guest; re-encode the value") from None
    return list(env.items())


def _export(store: wasmtime.Store, instance: wasmtime.Instance, name: str):
    """One export by name. `instance.exports()` wraps every export first: a module linked with
    -export-dynamic has ~2,000, which cost over a second per run; the C API looks one up directly."""
    from wasmtime._extern import wrap_extern

    item = _wasmtime_ffi.wasmtime_extern_t()
    raw = name.encode()
    found = _wasmtime_ffi.wasmtime_instance_export_get(
        store._context(), ctypes.byref(instance._instance), raw, len(raw), ctypes.byref(item))
    return wrap_extern(item) if found else None

def run(
    module_or_path: wasmtime.Module | str | os.PathLike,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    preopens: Iterable[Preopen] = (),
    timeout: float | None = None,
    inherit_stdio: bool = False,
    memory_limit: int | None = None,
    max_output: int | None = None,
) -> RunResult:
    """Run a WASI command once in a fresh Store and instance.

    `argv` is passed as is (argv[0] included). The guest sees exactly `env`, nothing from the
    host. stdout/stderr are captured unless `inherit_stdio`; stdin is `stdin` if given, else
    empty (or the host's stdin when `inherit_stdio`). `timeout` is wall-clock seconds; it is
    checked at wasm function entries and loop back-edges, so a guest blocked in a host call
    (e.g. reading an inherited terminal) is not interrupted until that call returns.

    `memory_limit` caps the instance's linear memory in bytes (Store limits): past it
    `memory.grow` fails, which the guest sees as malloc returning NULL. `max_output` caps the
    captured stdout in bytes; the excess is dropped and `RunResult.output_truncated` is set.

    Safe to call from many threads at once: Engine and Module are shared, everything else is
    per call.
    """
    module = (module_or_path if isinstance(module_or_path, wasmtime.Module)
              else load_module(module_or_path, need_time_limits=timeout is not None))
    # A module compiled outside load_module (on the default engine) is not in the map.
    engine = _module_engines.get(module) or make_engine()
    limits = engine is _engines.get(True)
    if timeout is not None and not limits:
        raise RunnerError(f"a {timeout:g} s time limit needs a module compiled with epoch checks: "
                          "load it with need_time_limits=True (or stop the run from outside)")
    state = _RunState()
    out, err = _Capture(max_output), _Capture(max_output)
    cleanup: list[str] = []

    wasi = wasmtime.WasiConfig()
    wasi.argv = list(argv)
    wasi.env = _utf8_env(env or {})
    if inherit_stdio:
        wasi.inherit_stdout()
        wasi.inherit_stderr()
        if stdin is None:
            wasi.inherit_stdin()
    else:
        wasi.stdout_custom = out
        wasi.stderr_custom = err
        _live_captures.add(out)
        _live_captures.add(err)
    if stdin is not None:
        _set_stdin(wasi, stdin, cleanup)
    for p in preopens:
        # fs_mutable=False makes both the directory and its files read-only for the guest.
        wasi.preopen_dir(str(p.host), p.guest, p.writable)

    store = wasmtime.Store(engine)
    store.set_wasi(wasi)
    if memory_limit is not None:
        store.set_limits(memory_size=memory_limit)
    if timeout is not None:
        _ensure_ticker(engine)
        store.set_epoch_deadline(_timeout_ticks(timeout))
    elif limits:
        # With epoch_interruption on, the default deadline (0) would trap at once.
        store.set_epoch_deadline(_NO_DEADLINE_TICKS)

    # A Linker per run: its proc_exit is bound to this run's state. Building one is cheap
    # next to instantiation. define_wasi first, then shadow its proc_exit, which rejects
    # statuses >= 126 (PHP's fatal errors exit 255).
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    linker.allow_shadowing = True
    _define_proc_exit(linker, state)

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
        start = _export(store, instance, "_start")
        if not isinstance(start, wasmtime.Func):
            raise RunnerError("module has no _start function (not a WASI command)")
        start(store)
        exit_code = 0
    except RunnerError:
        raise
    except (wasmtime.WasmtimeError, wasmtime.Trap) as e:
        e.__traceback__ = None  # break the cycle that would keep the Store alive
        if state.exit_code is not None:
            exit_code = state.exit_code
        elif isinstance(e, wasmtime.ExitTrap):  # wasmtime's own exit path, if ever reached
            exit_code = e.code & 0xFF
        elif isinstance(e, wasmtime.Trap) and e.trap_code == wasmtime.TrapCode.INTERRUPT:
            timed_out, exit_code = True, EXIT_TIMEOUT
        else:
            exit_code, trap_message = EXIT_TRAP, str(e)
    finally:
        duration = time.monotonic() - started
        for tmp in cleanup:
            os.unlink(tmp)

    note = None
    if timed_out:
        note = f"kiln.runner: timed out after {timeout:g} s\n"
    elif trap_message is not None:
        note = trap_report("kiln.runner", trap_message)
    if note:
        if inherit_stdio:
            sys.stderr.write(note)
            sys.stderr.flush()
        else:
            err(note.encode())
    return RunResult(exit_code, bytes(out.buffer), bytes(err.buffer), timed_out, duration,
                     output_truncated=out.truncated)


# ---------------------------------------------------------------------------------------------
# Command line: kiln/run_command.py (`kiln run`); `python -m kiln.runner` is the same program.


def main(args: Sequence[str] | None = None, prog: str = "python -m kiln.runner") -> int:
    from kiln import run_command

    return run_command.main(args, prog)


if __name__ == "__main__":
    _status = main()
    # The run is over and its Store freed: spare the interpreter's final garbage collection the
    # objects wasmtime-py and Kiln made at import (~8% of a `-r 'echo 1;'` run), unless output
    # captures are still held (they need that collection, see _wait_for_capture_release).
    if not _live_captures:
        gc.freeze()
    sys.exit(_status)
