"""The `wasmtime run` child of `kiln run`: spawn it confined, relay its stderr, return its status.

Also `kiln run MODULE [ARGS...]` with no options at all, from the Wasmtime command line's cache,
importing nothing but this module and kiln/engine.py (`os`, `signal`, `select`): Python's own
start is as long as native PHP's whole `php -r 'echo 1;'`, and the modules a full `kiln run`
imports (argparse, pathlib, json, re) cost about twice that again (docs/benchmarks.md,
"Start-up"). quick_run() takes a command line only when it is sure to do what the full path
(kiln/run_command.py) would: no option, no host file among the arguments (the full path checks
those against the grants), the default engine and a valid KILN_TIME_LIMITS, and an artifact
already in the cache for this very module and these very engines (fingerprints computed as
kiln/engine.py computes them, so a difference can only miss, never pick a wrong artifact).
Anything else returns None, and the full path runs, compiles, or says in one line what is wrong.
"""
from __future__ import annotations

import os
import time

try:  # the C module: `signal` wraps it in enums, and enum's import was a tenth of a quick run
    import _signal as signal
except ImportError:
    import signal

from kiln import engine
from kiln.engine import EXIT_TIMEOUT, EXIT_USAGE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Sequence

    from kiln.engine import Preopen

_WASM_MAGIC, _ELF_MAGIC = b"\0asm", b"\x7fELF"


def confine(preopens: Iterable) -> None:
    """In the process about to exec `wasmtime run`: writable only where a grant is, and no
    core file when a trap aborts it."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    grants = list(preopens)
    if any(not g.writable for g in grants):
        from kiln import landlock  # ctypes: only when a grant needs it

        landlock.restrict_writes([g.host for g in grants if g.writable])


class _StderrRelay:
    """Copies the guest's stderr to ours as it comes, except what may end it: the exit shim's
    marker (see kiln/wasmtime_cli.py), which it turns back into the guest's status, and
    Wasmtime's own error when the module cannot be instantiated, which becomes Kiln's one line.
    From the first of those on, the rest waits for the end; so does a tail that could be the
    beginning of one."""

    FAILED = b"Error: failed to run main module"   # how `wasmtime run` reports any failure

    def __init__(self, marker: bytes):
        self.marker = marker
        self.markers = (marker, self.FAILED)
        self.held = b""

    @staticmethod
    def _write(data: bytes) -> None:
        while data:
            data = data[os.write(2, data):]

    def feed(self, data: bytes) -> None:
        data = self.held + data
        found = [at for at in (data.find(m) for m in self.markers) if at >= 0]
        if found:
            at = min(found)
        else:
            at = len(data)
            for marker in self.markers:
                for n in range(min(len(marker) - 1, len(data)), 0, -1):
                    if marker.startswith(data[-n:]):
                        at = min(at, len(data) - n)
                        break
        self._write(data[:at])
        self.held = data[at:]

    def _marked(self) -> tuple[bytes, int] | None:
        """(what precedes it, the status) when the held bytes end with the marker."""
        size = len(self.marker) + 4   # the marker, three digits, a newline
        tail = self.held[-size:]
        if len(tail) == size and tail.startswith(self.marker) and tail[-4:-1].isdigit() \
                and tail.endswith(b"\n"):
            return self.held[:-size], int(tail[-4:-1])
        return None

    def finish(self, status: int, label: str) -> int:
        """The guest's status: the marker's, else `status`; an instantiation failure (status 1)
        is written as one line and gives EXIT_USAGE, as in process; so is a trap (Wasmtime's
        numbered causes and backtrace become engine.trap_report's line)."""
        marked, held = self._marked(), self.held
        self.held = b""
        if marked is None and status == 1 and held.startswith(self.FAILED) \
                and b"failed to instantiate" in held:
            causes = [line.strip() for line in held.decode("utf-8", "replace").splitlines() if line.strip()]
            reason = causes[-1].split(": ", 1)[-1] if causes else "unknown error"
            self._write(f"{label}: cannot instantiate module: {reason}\n".encode())
            return EXIT_USAGE
        if marked is None and status == engine.EXIT_TRAP and held.startswith(self.FAILED) \
                and b"wasm trap: " in held:
            self._write(engine.trap_report(label, held.decode("utf-8", "replace")).encode())
            return status
        self._write(marked[0] if marked else held)
        return marked[1] if marked else status


def _stderr_channel() -> tuple[int, int]:
    """(read end, the child's stderr). A pipe; a terminal in raw mode (no newline translation)
    when ours is one: the guest then sees a terminal where it would without the relay
    (`stream_isatty(STDERR)`, run-tests.php's pty tests)."""
    if not os.isatty(2):
        return os.pipe()
    import tty

    main_end, child_end = os.openpty()
    tty.setraw(child_end)
    return main_end, child_end


def _kill_and_reap(pid: int) -> None:
    """End the guest's process now (it may have ended already) and collect its status."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def run_process(command: Sequence[str], grants: Sequence[Preopen], timeout: float | None,
                label: str) -> int:
    """Run `wasmtime run` as a child with this process's stdin and stdout, relaying its stderr;
    returns the guest's status (the shim's marker for statuses >= 126), 124 past `timeout`
    (the child killed), 128+N when a signal N ended it (134: a trap), and ends at once with
    130/143 on SIGINT/SIGTERM, the child killed first."""
    import select

    environment = engine.cli_engine_env()
    err_read, err_write = _stderr_channel()
    if all(g.writable for g in grants):
        # Nothing to confine but core files (RLIMIT_CORE, inherited): posix_spawn (vfork and
        # exec) starts wasmtime a few ms sooner than fork, a Python child and exec.
        confine(())
        pid = os.posix_spawn(command[0], list(command), environment, file_actions=[
            (os.POSIX_SPAWN_DUP2, err_write, 2), (os.POSIX_SPAWN_CLOSE, err_read)])
    else:
        pid = os.fork()
    if pid == 0:  # the child: confine, then become wasmtime (nothing else may run here)
        try:
            os.close(err_read)
            os.dup2(err_write, 2)
            os.close(err_write)
            confine(grants)
            os.execve(command[0], list(command), environment)
        except BaseException as exc:  # noqa: BLE001 - reported on stderr, then exit
            os.write(2, f"{label}: cannot start the Wasmtime command line: {exc}\n".encode())
        finally:
            os._exit(127)
    os.close(err_write)
    relay = _StderrRelay(engine.CLI_EXIT_MARKER)

    def end(status: int) -> None:
        _kill_and_reap(pid)
        relay.finish(status, label)
        os._exit(status)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, lambda signum, frame: end(128 + signum))
        except ValueError:  # not the main thread: whoever owns it handles signals
            break
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = select.select([err_read], [], [], wait)[0]
        if deadline is not None and time.monotonic() >= deadline:
            _kill_and_reap(pid)
            relay.finish(EXIT_TIMEOUT, label)
            os.write(2, f"{label}: timed out after {timeout:g} s\n".encode())
            return EXIT_TIMEOUT
        if not ready:
            continue
        try:
            data = os.read(err_read, 1 << 16)
        except OSError:  # EIO: a terminal's other side is closed
            data = b""
        if not data:  # the child (and so the guest) is gone
            break
        relay.feed(data)
    os.close(err_read)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return relay.finish(128 - code if code < 0 else code, label)


def cache_dir() -> str:
    """settings.cache_dir() without pathlib (tests/test_wasmtime_cli.py checks they agree)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    output = os.path.realpath(os.environ.get("KILN_BUILD_OUTPUT") or os.path.join(root, "build-output"))
    return os.path.realpath(os.environ.get("KILN_CACHE") or os.path.join(output, "cache"))


def _sidecar_value(text: str, key: str) -> str | None:
    """A hex string value from a sidecar Kiln wrote (atomic.write_json), without json."""
    at = text.find(f'"{key}": "')
    if at < 0:
        return None
    start = at + len(key) + 5
    end = text.find('"', start)
    value = text[start:end]
    return value if end > start and all(c in "0123456789abcdef" for c in value) else None


def cached_artifact(module: str, folder: str) -> str | None:
    """The command line's cached artifact for `module` in `folder`, as wasmtime_cli.artifact()
    would find it (without compiling); None when it is not there or the module is not current."""
    try:
        with open(module, "rb") as f:
            magic = f.read(4)
        if magic == _WASM_MAGIC:
            source = engine.file_sha256(module)
        elif magic == _ELF_MAGIC:
            with open(module + ".json") as f:
                meta = f.read()
            if not engine.current_in_process(_sidecar_value(meta, "fingerprint")):
                return None
            source = _sidecar_value(meta, "source_sha256")
        else:
            return None
    except OSError:
        return None
    candidate = os.path.join(folder, f"{source}.cwasm")
    return candidate if source and os.path.isfile(candidate) else None


def quick_run(args: Sequence[str], label: str) -> int | None:
    """`kiln run MODULE [ARGS...]` with no options, when it can run from the cache as is (see
    the module's docstring); None otherwise."""
    if not args or args[0].startswith("-"):
        return None
    if os.environ.get("KILN_ENGINE", "auto").strip().lower() not in ("", "auto") or \
            os.environ.get("KILN_TIME_LIMITS", "off").strip().lower() not in ("", "on", "off"):
        return None
    module, rest = args[0], list(args[1:])
    if any(not arg.startswith("-") and os.path.isfile(arg) for arg in rest):
        return None
    binary = engine.cli_binary_path()
    if binary is None or not os.access(binary, os.X_OK):
        return None
    folder = os.path.join(cache_dir(), "wasmtime-cli", engine.cli_fingerprint())
    artifact = cached_artifact(module, folder)
    shim = os.path.join(folder, f"exit-shim-{engine.CLI_SHIM_VERSION}.cwasm")
    if artifact is None or not os.path.isfile(shim):
        return None
    command = engine.cli_command(binary, artifact, shim, [os.path.basename(module), *rest], {}, ())
    return run_process(command, (), None, label)
