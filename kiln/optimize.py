"""The optimized, smaller variant of a module: wasm-opt (binaryen, pinned in package.json).

Two steps, both pure functions of the bytes and the pinned tools, so the result is reproducible:
1. only `_start` and `memory` stay exported (kiln.wasmfile.keep_exports): a module linked with
   -export-dynamic exports ~2,000 symbols, which would keep every function they reach alive
   (Kiln's PHP builds no longer are, see wl-build; the step still holds for any module);
2. wasm-opt with the recipe's passes (`wasm_opt` in [settings]) and the toolchain's wasm
   features, so binaryen accepts and keeps the exception-handling instructions.
The `name` section goes too (wasm-opt --strip-debug): traps then show function indices, not
names; the unoptimized module is still there for that.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from . import atomic, process, settings, toolchain, wasmfile
from .errors import KilnError

KEPT_EXPORTS = frozenset({"_start", "memory"})
# clang's -mcpu feature names (toolchain.WASM_FEATURES) and binaryen's flag for each.
_FEATURE_FLAGS = {
    # Exception handling as the toolchain encodes it (try_table) can rethrow through an
    # exnref (`catch_all_ref`, which clang emits at -Oz), a reference type: binaryen then
    # needs reference types allowed too, or it rejects the module.
    "exception_handling": ["--enable-exception-handling", "--enable-reference-types"],
    "bulk_memory": ["--enable-bulk-memory"],
    "sign_ext": ["--enable-sign-ext"],
    "mutable_globals": ["--enable-mutable-globals"],
    "nontrapping_fptoint": ["--enable-nontrapping-float-to-int"],
    "tail_call": ["--enable-tail-call"],
}


def feature_flags(mcpu: str = toolchain.WASM_FEATURES) -> list[str]:
    """wasm-opt's --enable-* flags for the features the toolchain compiles with.

    An unknown feature is an error, not a silent drop: wasm-opt would refuse (or worse,
    lower) the instructions it does not know are allowed."""
    _, _, spec = mcpu.partition("=")
    cpu, *features = spec.split("+")
    unknown = [f for f in features if f not in _FEATURE_FLAGS]
    if unknown or cpu != "generic":
        raise KilnError(f"kiln/optimize.py has no wasm-opt flag for {', '.join(unknown) or cpu} "
                        f"(from {mcpu}): add it to _FEATURE_FLAGS")
    return [flag for f in features for flag in _FEATURE_FLAGS[f]]


def passes(recipe_settings: dict, where: str = "recipe.toml") -> list[str]:
    """The recipe's `wasm_opt` setting: a list of wasm-opt options (each starting with '-')."""
    value = recipe_settings.get("wasm_opt")
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v.startswith("-") for v in value)):
        raise KilnError(f"{where}: [settings] wasm_opt must be a non-empty list of wasm-opt options, "
                        f"like [\"-Oz\", \"--strip-debug\"]; found {value!r}")
    return value


def wasm_opt() -> Path:
    """KILN_WASM_OPT, else the one `npm ci` installs (node_modules/.bin/wasm-opt)."""
    path = Path(os.environ.get("KILN_WASM_OPT") or settings.ROOT / "node_modules" / ".bin" / "wasm-opt")
    if not os.access(path, os.X_OK):
        raise KilnError(f"no wasm-opt at {path}: run `npm ci` (scripts/setup does), set KILN_WASM_OPT, "
                        "or KILN_OPTIMIZE=off to skip the optimized modules")
    return path


@functools.lru_cache(maxsize=None)
def version(path: Path) -> str:
    """What decides the optimized bytes besides the options. npm's binaryen says it in its
    package.json (read at every graph load: `wasm-opt --version` starts node, ~1 s); any other
    wasm-opt is asked."""
    package = path.resolve().parent.parent / "package.json"
    try:
        meta = json.loads(package.read_text())
        if meta.get("name") == "binaryen":
            return f"binaryen {meta['version']} (npm)"
    except (OSError, ValueError, KeyError):
        pass
    result = subprocess.run([str(path), "--version"], capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        raise KilnError(f"{path} --version failed (exit {result.returncode}): reinstall with `npm ci`")
    return result.stdout.strip()


def identity(options: list[str]) -> dict:
    """Everything that decides the optimized bytes besides the input module."""
    return {"wasm_opt": version(wasm_opt()), "options": options, "features": feature_flags(),
            "exports": sorted(KEPT_EXPORTS)}


def optimize(source: Path, target: Path, options: list[str], log: Path) -> dict:
    """Write the optimized `source` to `target` (atomically); sizes and seconds for the record."""
    tool = wasm_opt()
    data = source.read_bytes()
    try:
        trimmed = wasmfile.keep_exports(data, set(KEPT_EXPORTS))
    except ValueError as exc:
        raise KilnError(f"{source}: {exc}: is it a WASI command module?") from None
    started = time.monotonic()
    # The export-trimmed input is scratch in the system's temp folder (not an output: a killed
    # run must not leave it among the build's files); the output appears under its name only
    # once wasm-opt has finished and its exports are checked.
    with tempfile.TemporaryDirectory(prefix="kiln-optimize-") as scratch, \
            atomic.atomic_path(target) as optimized:
        unoptimized = Path(scratch) / source.name
        unoptimized.write_bytes(trimmed)
        process.run_logged([str(tool), str(unoptimized), *options, *feature_flags(),
                            "-o", str(optimized)], log, f"wasm-opt {source.name}")
        after = optimized.stat().st_size
        if {name for name, _, _ in wasmfile.exports(optimized.read_bytes())} != KEPT_EXPORTS:
            raise KilnError(f"wasm-opt changed {source.name}'s exports: check the wasm_opt options")
    return {"before": len(data), "after": after, "seconds": round(time.monotonic() - started, 1)}


def build_mcpu(flavour_cflags) -> str:
    """The -mcpu a build compiles with: the last one in its flavour's cflags (clang keeps the
    last), else the toolchain's."""
    given = [flag for flag in flavour_cflags if flag.startswith("-mcpu=")]
    return given[-1] if given else toolchain.WASM_FEATURES


def post_link(data: bytes, name: str, options: list[str], mcpu: str, log: Path) -> bytes:
    """A linked module run through wasm-opt with a variant's `post_link` options (the compat
    variant's --strip-eh), reading and writing only the features the build compiles with."""
    tool = wasm_opt()
    with tempfile.TemporaryDirectory(prefix="kiln-post-link-") as scratch:
        linked, out = Path(scratch) / name, Path(scratch) / f"out-{name}"
        linked.write_bytes(data)
        process.run_logged([str(tool), str(linked), *options, *feature_flags(mcpu), "-o", str(out)],
                           log, f"wasm-opt {' '.join(options)} {name}")
        return out.read_bytes()
