"""Kiln: language runtimes fired into WebAssembly.  Run `doit list` to see the graph.

    doit php:8.2.32        one release end to end (download ... smoke, images)
    doit php               every release of the recipe
    doit "php:8.*"         a selection
"""
import fcntl
import os
import sys

from kiln import settings
from kiln.errors import KilnError

DOIT_CONFIG = {
    "default_tasks": ["php"],
    # sqlite3 is the backend that survives concurrent readers; it lives with the outputs.
    "backend": "sqlite3",
    "dep_file": str(settings.build_output() / ".doit.sqlite3"),
    "verbosity": 2,
    "action_string_formatting": "new",
}

# Commands that only read the graph, and tasks that only read outputs: no lock needed,
# so `doit list` or `doit report` work while a build runs.
_READ_ONLY = {"list", "info", "help", "dumpdb", "tabcompletion", "strace"}
_LOCK_FREE_TASKS = {"report", "matrix"}


def _fail(message: str) -> None:
    print(f"kiln: {message}", file=sys.stderr)
    sys.exit(2)


def _command_and_tasks(argv):
    words = [w for w in argv[1:] if not w.startswith("-")]
    command = words[0] if words and words[0] in _READ_ONLY | {"run", "clean", "forget", "ignore", "reset-dep", "auto"} else "run"
    tasks = [w for w in words if w not in (command,) and "=" not in w]
    return command, tasks


def _interrupted(kind, value, traceback):
    """Ctrl-C: doit has already saved what finished; say so in one line instead of a traceback."""
    if issubclass(kind, KeyboardInterrupt):
        sys.stdout.flush()
        print("\nkiln: interrupted; finished stages are recorded and nothing half-written "
              "is kept: rerun to continue", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)
    sys.__excepthook__(kind, value, traceback)


sys.excepthook = _interrupted


def _prepare_build_output():
    out = settings.build_output()
    try:
        out.mkdir(parents=True, exist_ok=True)
        return open(out / ".kiln.lock", "a+")
    except OSError as exc:
        _fail(f"cannot write to {out} ({exc.strerror}): make it writable or set KILN_BUILD_OUTPUT")


def _take_build_lock(handle) -> None:
    """Two doit processes on one build-output would race on the trees and the store."""
    out = settings.build_output()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        if os.environ.get("KILN_WAIT_FOR_LOCK"):
            print(f"kiln: waiting for the build running in {out} (pid {holder})", file=sys.stderr)
            fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            _fail(f"another doit (pid {holder}) is building in {out}: wait for it, "
                  f"set KILN_WAIT_FOR_LOCK=1 to queue, or use another KILN_BUILD_OUTPUT")
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    globals()["_LOCK"] = handle  # held until the process exits


try:
    from tasks import builds, php
    from kiln import settings as _settings
    _settings.time_limits()  # read by every engine fingerprint: a bad value stops here, in one line
    from tasks.aot import task_php_aot  # noqa: F401
    from tasks.collect import task_php_cache_push, task_php_collect  # noqa: F401
    from tasks.compare import task_php_compare  # noqa: F401
    from tasks.conformance import task_php_conformance  # noqa: F401
    from tasks.configure import task_php_configure  # noqa: F401
    from tasks.download import task_php_download  # noqa: F401
    from tasks.extract import task_php_extract  # noqa: F401
    from tasks.group import task_php  # noqa: F401
    from tasks.image import task_php_image  # noqa: F401
    from tasks.library import task_lib_build, task_lib_download  # noqa: F401
    from tasks.make import task_php_make  # noqa: F401
    from tasks.optimize import task_php_optimize  # noqa: F401
    from tasks.matrix import task_matrix  # noqa: F401
    from tasks.patch import task_php_patch  # noqa: F401
    from tasks.publish import task_php_publish  # noqa: F401
    from tasks.report import task_report  # noqa: F401
    from tasks.reproduce import task_php_reproduce  # noqa: F401
    from tasks.smoke import task_php_smoke, task_php_smoke_optimized  # noqa: F401
    from tasks.wasmedge import task_wasmedge  # noqa: F401
    from tasks.web import task_php_web  # noqa: F401
    from tasks.wordpress import task_wordpress_docroot, task_wordpress_download  # noqa: F401

    from kiln.images import kinds_for as _image_kinds

    _known = {b.id for b in builds()}
    _known |= {f"{b.id}-{kind}" for b in builds() for kind in _image_kinds(b)}  # php_image:<id>-<kind>
    _command, _selected = _command_and_tasks(sys.argv)
    for _name in _selected:
        # Catch `php:9.9.9` here: doit would only say "not a task".
        base, _, sub = _name.partition(":")
        if base.startswith("php") and sub and not any(c in sub for c in "*?[") and sub not in _known:
            version, _, flavour = sub.partition("-")
            php().check_build(version, flavour or "default")  # the real reason, in one line
            _fail(f"unknown build {sub!r} for {base}: `doit list --all` shows every task")
    _lock_file = _prepare_build_output()
    if _command not in _READ_ONLY and not (_selected and set(_selected) <= _LOCK_FREE_TASKS):
        _take_build_lock(_lock_file)
except KilnError as _error:
    _fail(str(_error))
