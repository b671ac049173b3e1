"""Apply a patch series to a source tree, naming exactly what no longer applies."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .errors import KilnError

_PATCHING = re.compile(r"^(?:patching|checking) file '?([^'\n]+)'?$")
_FAILED = re.compile(r"^Hunk #\d+ FAILED|^No file to patch|Reversed \(or previously applied\)|can't find file")


_TARGET = re.compile(r"^\+\+\+ (\S+)")
# What a C compiler reads: a patch touching only these leaves configure's output as it was.
# Everything else (configure, *.m4, *.in, Makefile.frag, build/...) is configure's input.
_COMPILED = (".c", ".h", ".cc", ".cpp", ".S", ".re", ".y", ".l")


def touched_paths(patch: Path) -> list[str]:
    """The files a -p1 patch changes, as paths inside the tree."""
    paths = []
    for line in patch.read_text(errors="replace").splitlines():
        match = _TARGET.match(line)
        if match and match.group(1) != "/dev/null":
            path = match.group(1).split("/", 1)[-1]
            if path not in paths:
                paths.append(path)
    return paths


def touches_configure(patch: Path) -> bool:
    """Whether applying `patch` can change what configure produces."""
    return any(not path.endswith(_COMPILED) or path.endswith(".h.in") for path in touched_paths(patch))


def apply(tree: Path, patch: Path, recipe_path: Path | None = None) -> None:
    """Apply one -p1 patch inside `tree`; on failure, raise naming the patch and the file."""
    command = ["patch", "-p1", "--forward", "--batch", "--no-backup-if-mismatch", "-r", "-", "-i", str(patch)]
    # A dry run first: a half-applied series is harder to read than none.
    for extra in (["--dry-run"], []):
        try:
            result = subprocess.run(command + extra, cwd=tree, capture_output=True, text=True)
        except FileNotFoundError:
            raise KilnError("GNU patch is not installed: apt-get install patch") from None
        if result.returncode != 0:
            raise KilnError(_explain(patch, result.stdout + result.stderr, recipe_path))


def _explain(patch: Path, output: str, recipe_path: Path | None) -> str:
    current, bad = None, []
    for line in output.splitlines():
        match = _PATCHING.match(line.strip())
        if match:
            current = match.group(1)
        elif _FAILED.search(line) and current and current not in bad:
            bad.append(current)
    files = ", ".join(bad) if bad else "(see below)"
    where = f" or narrow its `when` range in {recipe_path}" if recipe_path else ""
    detail = "" if bad else " " + " | ".join(output.strip().splitlines()[-3:])
    return f"patch {patch.name} no longer applies to {files}: refresh the patch{where}.{detail}"
