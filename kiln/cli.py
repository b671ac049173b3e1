"""The `kiln` command: one entry point for the runner, the HTTP server and the image runner.

Each subcommand is the `main()` of its module, so `kiln run ...` and `python -m kiln.runner ...`
are the same program; this file only dispatches. Modules are imported when their command is
chosen: `kiln --help` should not pay for loading Wasmtime.
"""
from __future__ import annotations

import importlib
import os
import sys
# typing is imported for type checkers only: its import was as costly as Python's own start-up
# (docs/benchmarks.md, "Start-up"), and `kiln run` imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

from . import __version__

USAGE = "usage: kiln [--version] [--help] COMMAND [ARGS...]"

HELP = f"""{USAGE}

Run what Kiln builds: PHP compiled for wasm32-wasi, in Wasmtime.

commands:
  run MODULE [ARGS...]     run a wasm32-wasi module (.wasm or precompiled .cwasm) once
  serve --docroot DIR ...  serve a folder over HTTP with php-cgi.wasm workers
  image run IMAGE [ARGS...]
                           run a wasm container image the way a containerd wasm shim does

options:
  -h, --help               show this help and exit
  --version                show Kiln's and Wasmtime's versions and exit

`kiln COMMAND --help` describes a command's options. Building is doit's job:
`doit php:8.2.32` in the checkout (see README.md).

examples:
  kiln run -v .:/app php.cwasm /app/hello.php
  kiln run php.wasm -r 'echo PHP_VERSION, "\\n";'
  kiln serve --php 8.2.32 --docroot ./site --port 8080
  kiln image run php-wasm:8.2.32-cli -r 'phpinfo();'
"""

# command words -> (module, prog shown in its usage and errors)
COMMANDS = {
    # Not kiln.runner: its import loads wasmtime-py, which a run on the command line never uses.
    ("run",): ("kiln.run_command", "kiln run"),
    ("serve",): ("kiln.server", "kiln serve"),
    ("image", "run"): ("kiln.shimrun", "kiln image run"),
}


def _version() -> str:
    from . import engine, wasmtime_cli
    from .errors import KilnError

    try:
        cli = f"Wasmtime {wasmtime_cli.version()} from {wasmtime_cli.PACKAGE} {wasmtime_cli.package_version()}"
    except (KilnError, OSError) as e:
        cli = f"not usable: {e}"
    return (f"kiln {__version__} (wasmtime-py {engine.wasmtime_py_version()} in process; "
            f"command line: {cli})")


def _fail(message: str) -> int:
    print(f"kiln: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(f"{USAGE} (commands: run, serve, image run; kiln --help)", file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        return 0
    if args[0] == "--version":
        print(_version())
        return 0
    if args[0].startswith("-"):
        return _fail(f"unknown option {args[0]!r} before the command (kiln --help)")
    if args[0] == "run":
        # The commonest command line, `kiln run MODULE ARGS`, straight from the command line's
        # cache when it can be (kiln/guest_process.py): most of a run's start-up otherwise is
        # importing what parses options and compiles modules.
        from .guest_process import quick_run

        status = quick_run(args[1:], "kiln run")
        if status is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    for words, (module_name, prog) in COMMANDS.items():
        if tuple(args[: len(words)]) == words:
            module = importlib.import_module(module_name)
            rest = args[len(words):]
            status = module.main(rest, prog=prog)
            if words == ("run",):
                # The guest is gone and wrote to fds 1 and 2 itself: nothing is left to clean up,
                # so skip the interpreter's teardown (~8 ms of a ~20 ms `kiln run`).
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
            return status
    if args[0] == "image":
        return _fail("`kiln image` has one subcommand: kiln image run IMAGE [ARGS...] "
                     "(kiln image run --help)")
    return _fail(f"unknown command {args[0]!r}: the commands are run, serve, image run (kiln --help)")


if __name__ == "__main__":
    sys.exit(main())
