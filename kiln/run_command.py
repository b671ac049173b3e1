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
    from . import wasmtime_cli

    try:
        settings.time_limits()  # a bad KILN_TIME_LIMITS is an error whichever engine runs
        artifact = wasmtime_cli.artifact_for(ns.module, ns.grants)
    except KilnError as e:
        print(f"{label}: {e}", file=sys.stderr)
        return cliargs.EXIT_USAGE
    if artifact is not None:
        from .guest_process import run_process

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

