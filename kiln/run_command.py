"""`kiln run` (and `python -m kiln.runner`): run one wasm32-wasi module from the command line.

This module turns a command line into one run: grants, checks that give one-line errors before
anything is compiled, exit statuses, and Ctrl-C/SIGTERM handling. The run itself is a
`wasmtime run` process of the Wasmtime command line (kiln/wasmtime_cli.py) when it can take
the module and keep every grant's meaning: ten times sooner started than wasmtime-py
(docs/benchmarks.md), which is not even imported then. Otherwise (KILN_ENGINE=in-process, a
module or artifact only wasmtime-py takes, read-only grants on a kernel without Landlock) it
is kiln/runner.py's run(), in this process.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
# typing is imported for type checkers only: its import was as costly as Python's own start-up
# (docs/benchmarks.md, "Start-up"), and `kiln run` imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

from . import cliargs, settings
from .engine import EXIT_TIMEOUT, Preopen
from .errors import KilnError

DESCRIPTION = """\
Run a wasm32-wasi module once, in Wasmtime, the way Kiln runs PHP everywhere.

The module sees only what is given: the folders granted with -v, the variables set with -e
(nothing from the host's environment), ARGS as its argv after argv[0], and this terminal's
stdin/stdout/stderr. A .wasm is compiled once and the native code kept under KILN_CACHE; a
.cwasm must have been precompiled by Kiln for this Wasmtime and these settings.
"""

EPILOG = """\
exit status:
  the module's own (0-255), 124 when --timeout ended it, 134 when it trapped,
  130/143 when interrupted (Ctrl-C/SIGTERM), 2 for a usage or input error.

examples:
  kiln run php.cwasm -r 'echo PHP_VERSION, "\\n";'
  kiln run -v .:/app:ro php.cwasm /app/index.php
  kiln run -v "$PWD:." -e APP_ENV=dev --timeout 30 php.wasm bin/console

-v HOST:GUEST[:ro] grants a host folder at GUEST (an absolute path, or . for the guest's
relative paths); it is writable unless :ro, as with docker run -v.
"""


def _legacy_dir(label: str):
    """The old --dir HOST::GUEST[:ro] ("::" because either side may hold a colon)."""
    def convert(spec: str) -> Preopen:
        host, sep, guest = spec.partition("::")
        if not sep or not host or not guest:
            raise argparse.ArgumentTypeError(f"expected HOST::GUEST[:ro], got {spec!r}; "
                                             "better: -v HOST:GUEST[:ro]")
        writable = True  # like `wasmtime run --dir`; ":ro" opts out
        for suffix, mode in ((":ro", False), (":rw", True)):
            if guest.endswith(suffix):
                guest, writable = guest[: -len(suffix)], mode
                break
        try:
            folder = cliargs.host_folder(host)
        except KilnError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        print(f"{label}: --dir HOST::GUEST is deprecated, use -v {host}:{guest}"
              f"{'' if writable else ':ro'} (same meaning)", file=sys.stderr)
        return Preopen(folder, guest, writable)
    convert.__name__ = "grant"
    return convert


def _guest_sees(guest_path: str, preopens: Sequence[Preopen]) -> bool:
    """Whether a path the guest is given lies under one of its grants. wasi-libc resolves a
    relative path through a "." grant, else from "/" (its working directory)."""
    if not guest_path.startswith("/"):
        if any(p.guest == "." for p in preopens):
            return True
        guest_path = "/" + guest_path
    guest_path = os.path.normpath(guest_path)
    for p in preopens:
        root = p.guest.rstrip("/")
        if p.guest != "." and (guest_path == (root or "/") or guest_path.startswith(root + "/")):
            return True
    return False


def unreachable_script(args: Sequence[str], preopens: Sequence[Preopen]) -> str | None:
    """A one-line error when the first argument naming a host file (the script, for PHP and
    every interpreter like it) is outside every grant: the module would only say "Could not
    open input file". None when it is reachable, or no argument names a host file."""
    for arg in args:
        if arg.startswith("-") or not os.path.isfile(arg):
            continue
        if _guest_sees(arg, preopens):
            return None
        host = Path(arg).resolve()
        for p in preopens:  # a host path given where the guest path was meant
            if p.guest != "." and host.is_relative_to(p.host.resolve()):
                inside = host.relative_to(p.host.resolve()).as_posix()
                return (f"{arg} is a host path; the module sees that file as "
                        f"{p.guest.rstrip('/')}/{inside}: pass that instead")
        grant = "-v .:.:ro" if not arg.startswith("/") else f"-v {host.parent}:{host.parent}:ro"
        return f"{arg} is outside every folder granted to the module: add {grant}"
    return None


def run_interruptible(work, cleanup=None, label: str = "kiln.runner"):
    """Run work(arm) in a worker thread and return its result (or raise its exception), while
    the main thread waits for SIGINT/SIGTERM and ends the process at once with 130/143; once
    work calls arm(seconds) (when the guest starts: compiling is not its time), it also ends
    it that many seconds later with 124 and a note on stderr, as run() writes for a timeout.

    A guest cannot be stopped from outside otherwise: epoch interruption is only checked in
    code compiled with it (Kiln's default is without), and not in a host call such as a
    read from the terminal. Python runs signal handlers in the main thread only, which waits
    here with the GIL free (Wasmtime's calls release it). os._exit, because nothing is left
    to clean: the guest's output went straight to fds 1 and 2, and its files are closed by
    the kernel, as for a native program killed by the same signal. `cleanup` runs first, for
    what the caller made (an unpacked image)."""
    if threading.current_thread() is not threading.main_thread():
        # Signals cannot be handled here, nor the process ended: whoever owns the main thread
        # does that.
        def refuse(seconds: float) -> None:
            raise KilnError(f"a {seconds:g} s limit without epoch checks ends the process, which "
                            "only its main thread may do: run it from the main thread")
        return work(refuse)
    outcome: dict[str, object] = {}
    deadline: dict[str, float] = {}

    def arm(seconds: float) -> None:
        deadline["at"], deadline["seconds"] = time.monotonic() + seconds, seconds

    def target() -> None:
        try:
            outcome["result"] = work(arm)
        except BaseException as exc:  # handed to the main thread below
            outcome["error"] = exc

    def end(status: int) -> None:
        try:
            if cleanup is not None:
                cleanup()
        finally:
            os._exit(status)

    def stop(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        end(128 + signum)

    from .runner import start_guest_thread

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker = start_guest_thread(target, "kiln-run")
        while worker.is_alive():
            at = deadline.get("at")
            # Unarmed, look again every 50 ms (nothing to do but notice the arming).
            worker.join(0.05 if at is None else max(0.0, at - time.monotonic()))
            if worker.is_alive() and at is not None and time.monotonic() >= at:
                sys.stderr.write(f"{label}: timed out after {deadline['seconds']:g} s\n")
                sys.stderr.flush()
                end(EXIT_TIMEOUT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["result"]


def main(args: Sequence[str] | None = None, prog: str = "python -m kiln.runner") -> int:
    label = prog.removeprefix("python -m ")  # how messages name this program
    parser = cliargs.Parser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                            formatter_class=cliargs.formatter,
                            usage=f"{prog} [OPTIONS] MODULE [ARGS...]")
    parser.add_argument("-v", "--volume", dest="grants", action="append", default=[],
                        type=cliargs.grant_type(relative_guest=True), metavar="HOST:GUEST[:ro]",
                        help="grant a host folder (repeatable; writable unless :ro)")
    parser.add_argument("--dir", dest="grants", action="append", type=_legacy_dir(label),
                        metavar="HOST::GUEST[:ro]", help="deprecated spelling of -v")
    parser.add_argument("-e", "--env", action="append", default=[], type=cliargs.env_pair,
                        metavar="NAME=VALUE", help="set a guest environment variable (repeatable)")
    parser.add_argument("--timeout", type=cliargs.positive_float, metavar="SECONDS",
                        help="wall-clock limit; the run then exits 124")
    parser.add_argument("--memory", type=cliargs.positive_int, metavar="MB",
                        help="linear memory cap: past it the guest's malloc fails")
    parser.add_argument("--argv0", metavar="NAME",
                        help="argv[0] for the guest (default: the module's file name)")
    parser.add_argument("module", metavar="MODULE", help=".wasm or Kiln-precompiled .cwasm")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="the module's arguments")
    ns = parser.parse_args(args)
    problem = unreachable_script(ns.args, ns.grants)
    if problem:
        print(f"{label}: {problem}", file=sys.stderr)
        return cliargs.EXIT_USAGE
    argv = [ns.argv0 or os.path.basename(ns.module), *ns.args]
    memory = ns.memory * 1024 * 1024 if ns.memory else None
    sys.stdout.flush()  # the guest writes straight to fd 1 and 2
    sys.stderr.flush()
    try:
        settings.time_limits()  # a bad KILN_TIME_LIMITS is an error whichever engine runs
        artifact = _cli_artifact(ns.module, ns.grants)
    except KilnError as e:
        print(f"{label}: {e}", file=sys.stderr)
        return cliargs.EXIT_USAGE
    if artifact is not None:
        from . import wasmtime_cli

        command = wasmtime_cli.command(artifact, argv, dict(ns.env), ns.grants, memory)
        return run_process(command, ns.grants, ns.timeout, label)
    from .runner import has_time_limits, load_cached, run

    def work(arm):
        module = load_cached(ns.module)
        # With epoch checks the guest stops itself at the deadline; without (the default),
        # the main thread ends the process, as a supervisor would kill a native one.
        inside = ns.timeout if has_time_limits(module) else None
        if ns.timeout is not None and inside is None:
            arm(ns.timeout)
        return run(module, argv, env=dict(ns.env), preopens=ns.grants,
                   timeout=inside, memory_limit=memory, inherit_stdio=True)

    try:
        result = run_interruptible(work, label=label)
    except KilnError as e:  # RunnerError, or a bad setting such as KILN_TIME_LIMITS
        print(f"{label}: {e}", file=sys.stderr)
        return cliargs.EXIT_USAGE
    return result.exit_code


def _cli_artifact(module: str, grants: Sequence[Preopen]) -> Path | None:
    """The Wasmtime command line's artifact for `module`, or None to run it in process."""
    if settings.engine() == "in-process":
        return None
    from . import wasmtime_cli

    if not wasmtime_cli.available() or not wasmtime_cli.can_confine(grants):
        return None
    return wasmtime_cli.artifact(module)


class _StderrRelay:
    """Copies the guest's stderr to ours as it comes, except what may end it: the exit shim's
    marker (see kiln/wasmtime_cli.py), which it turns back into the guest's status, and
    Wasmtime's own error when the module cannot be instantiated, which becomes Kiln's one line.
    From the first of those on, the rest waits for the end; so does a tail that could be the
    beginning of one."""

    FAILED = b"Error: failed to run main module"   # how `wasmtime run` reports any failure

    def __init__(self, marker: bytes):
        self.markers = (marker, self.FAILED)
        self.held = b""
        self.ending = re.compile(re.escape(marker) + rb"(\d{3})\n\Z")

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

    def finish(self, status: int, label: str) -> int:
        """The guest's status: the marker's, else `status`; an instantiation failure (status 1)
        is written as one line and gives EXIT_USAGE, as in process."""
        found = self.ending.search(self.held)
        rest, held = (self.held[:found.start()] if found else self.held), self.held
        self.held = b""
        if not found and status == 1 and held.startswith(self.FAILED) and b"failed to instantiate" in held:
            causes = [line.strip() for line in held.decode("utf-8", "replace").splitlines() if line.strip()]
            reason = causes[-1].split(": ", 1)[-1] if causes else "unknown error"
            self._write(f"{label}: cannot instantiate module: {reason}\n".encode())
            return cliargs.EXIT_USAGE
        self._write(rest)
        return int(found.group(1)) if found else status


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


def run_process(command: Sequence[str], grants: Sequence[Preopen], timeout: float | None,
                label: str) -> int:
    """Run `wasmtime run` as a child with this process's stdin and stdout, relaying its stderr;
    returns the guest's status (the shim's marker for statuses >= 126), 124 past `timeout`
    (the child killed), 128+N when a signal N ended it (134: a trap), and ends at once with
    130/143 on SIGINT/SIGTERM, the child killed first."""
    import select

    from . import wasmtime_cli

    environment = wasmtime_cli.engine_env()
    err_read, err_write = _stderr_channel()
    if all(g.writable for g in grants):
        # Nothing to confine but core files (RLIMIT_CORE, inherited): posix_spawn (vfork and
        # exec) starts wasmtime a few ms sooner than fork, a Python child and exec.
        wasmtime_cli.confine(())
        pid = os.posix_spawn(command[0], list(command), environment, file_actions=[
            (os.POSIX_SPAWN_DUP2, err_write, 2), (os.POSIX_SPAWN_CLOSE, err_read)])
    else:
        pid = os.fork()
    if pid == 0:  # the child: confine, then become wasmtime (nothing else may run here)
        try:
            os.close(err_read)
            os.dup2(err_write, 2)
            os.close(err_write)
            wasmtime_cli.confine(grants)
            os.execve(command[0], list(command), environment)
        except BaseException as exc:  # noqa: BLE001 - reported on stderr, then exit
            os.write(2, f"{label}: cannot start the Wasmtime command line: {exc}\n".encode())
        finally:
            os._exit(127)
    os.close(err_write)
    relay = _StderrRelay(wasmtime_cli.EXIT_MARKER)

    def end(status: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        relay.finish(status, label)
        os._exit(status)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: end(128 + signum))
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = select.select([err_read], [], [], wait)[0]
        if deadline is not None and time.monotonic() >= deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
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
