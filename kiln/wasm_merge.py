"""WebAssembly text modules joined to a linked module by binaryen's wasm-merge (pinned in
package.json, like wasm-opt): code C cannot express, such as the fiber switch of PHP's +fibers
variant (languages/php/fibers/kiln_fiber.wat: the stack-switching proposal's cont.new, resume
and suspend, which clang cannot emit).

A merged module imports from a .wat under the .wat's file name ("kiln_fiber"), and the .wat
imports from the linked module under "env"; wasm-merge resolves both sides and leaves one module.
A module with stack-switching instructions runs only where the engine has the proposal on: the
Wasmtime command line with -W stack-switching=y (CLI_WASM_OPTIONS, kiln/engine.py), not
wasmtime-py (its C library is built without it: `resume` panics), not WasmEdge, not browsers.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import optimize, settings, wasmfile
from .errors import KilnError

# binaryen's flags for what a merged module may contain beyond the toolchain's features: the
# continuation types and instructions, the typed function references cont.new takes, and the
# multi-value block a suspension handler receives (the tag's values and the continuation).
EXTRA_FEATURES = ["--enable-stack-switching", "--enable-gc", "--enable-reference-types",
                  "--enable-multivalue"]
# The name a linked module goes by, for the .wat's imports.
HOST_NAME = "env"
# What merge() does besides wasm-merge (the exports it keeps): part of the collect stage's
# tracked input, so a change here recollects. Bump it with any such change.
REWRITE = 3


def features() -> list[str]:
    return list(dict.fromkeys(optimize.feature_flags() + EXTRA_FEATURES))


def tool(name: str) -> Path:
    """wasm-as or wasm-merge from `npm ci` (node_modules/.bin), beside the pinned wasm-opt."""
    path = settings.ROOT / "node_modules" / ".bin" / name
    if not os.access(path, os.X_OK):
        raise KilnError(f"no {name} at {path}: run `npm ci` (scripts/setup does)")
    return path


def version() -> str:
    """binaryen's version, which decides the merged bytes (npm's package.json, no node start)."""
    return optimize.version(tool("wasm-opt"))


def import_name(wat: Path) -> str:
    return Path(wat).stem


def merge(linked: bytes, wats: list[Path], name: str = "module") -> bytes:
    """`linked` with every module of `wats` joined to it (`name` is for messages)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kiln-merge-") as scratch:
        host = Path(scratch) / "linked.wasm"
        host.write_bytes(linked)
        args = [str(tool("wasm-merge")), *features(), str(host), HOST_NAME]
        for wat in wats:
            binary = Path(scratch) / f"{import_name(wat)}.wasm"
            _run([str(tool("wasm-as")), *features(), str(wat), "-o", str(binary)], str(wat))
            args += [str(binary), import_name(wat)]
        merged = Path(scratch) / "merged.wasm"
        _run([*args, "-o", str(merged)], name)
        # wasm-merge exports what every part exported. Kept: what the linked module exported
        # for its host, not the functions it exported for the .wat files (the memory they share
        # stays the host's) nor what they export to it.
        # Nor what it exported for itself (binaryen's --stack-check imports its handler from
        # "env", which the merge resolves to the linked module's own export).
        internal = {entry for module, entry, kind in wasmfile.imports(linked)
                    if module == HOST_NAME and kind == 0}
        for wat in wats:
            assembled = (Path(scratch) / f"{import_name(wat)}.wasm").read_bytes()
            internal |= {entry for module, entry, kind in wasmfile.imports(assembled)
                         if module == HOST_NAME and kind == 0}
        keep = {export for export, _, _ in wasmfile.exports(linked)} - internal
        return wasmfile.keep_exports(merged.read_bytes(), keep)


def _run(args: list[str], subject: str) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
        raise KilnError(f"{subject}: {Path(args[0]).name} failed: "
                        f"{lines[-1].strip() if lines else f'status {proc.returncode}'}")
