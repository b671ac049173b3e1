"""The task graph: one module per stage, each a doit task generator.

Every stage gathers the settings it reads into one dict and tracks it with
`config_changed`, so editing a setting reruns exactly the stages that read it.
"""
from __future__ import annotations

import functools
import time

from doit.exceptions import TaskFailed

from kiln import atomic, recipe
from kiln.errors import KilnError
from kiln.layout import Build

LANGUAGE = "php"


def php():
    return recipe.language(LANGUAGE)


def builds() -> list[Build]:
    """Every build of the matrix: each release of the recipe in each of its flavours."""
    r = php()
    return [Build(LANGUAGE, version, flavour) for version in r.versions for flavour in r.flavours
            if r.flavour_applies(flavour, version)]


def command_line_only(build: Build) -> bool:
    """Whether the build's modules run only on the Wasmtime command line: a variant merges
    WebAssembly text into them (kiln/wasm_merge.py: the +fibers variant's stack switching,
    which wasmtime-py and WasmEdge cannot run)."""
    return bool(php().resolve(build.version, build.flavour).merge)


def refuse_command_line_only(build: Build, where: str, instead: str) -> None:
    """For a stage asked for by name (`php:<build>` leaves it out): a command-line-only build
    stops here in one line rather than making what cannot run, or failing in a raw trace."""
    if command_line_only(build):
        raise KilnError(f"{build.id}: its modules use WebAssembly stack switching (the fibers variant), "
                        f"which {where} cannot run: {instead}")


def user_errors(action):
    """Run a stage action: a KilnError becomes doit's TaskFailed (one line, no traceback),
    and when the action works on a Build, its outcome and duration are recorded for the report."""
    stage = action.__name__.strip("_")

    @functools.wraps(action)
    def wrapper(*args, **kwargs):
        build = args[0] if args and isinstance(args[0], Build) else None
        started = time.time()
        outcome = "failed"
        try:
            result = action(*args, **kwargs)
            outcome = "failed" if isinstance(result, TaskFailed) else "done"
        except KilnError as exc:
            result = TaskFailed(f"kiln: {exc}")
        finally:
            if build is not None:
                atomic.write_json(build.state / f"stage-{stage}.json", {
                    "stage": stage, "outcome": outcome, "started": round(started, 3),
                    "seconds": round(time.time() - started, 3)})
        return result if result is not None else True

    return wrapper
