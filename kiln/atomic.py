"""Atomic outputs: write beside the target, fsync, rename over it.

An interrupted build must never leave a half-written artifact under its final
name, because doit (and people) judge "done" by the name existing.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

# mkstemp creates 0600 files; artifacts should get the usual permissions for new files.
_UMASK = os.umask(0)
os.umask(_UMASK)
DEFAULT_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(target: Path | str, suffix: str = ""):
    """Yield a temporary path in the target's folder; rename it over target on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(DEFAULT_MODE)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def clear_stale(target: Path | str) -> None:
    """Remove temporaries a killed run left beside `target` (callers hold the build lock)."""
    target = Path(target)
    if target.parent.is_dir():
        for leftover in target.parent.glob(f".{target.name}.*.part"):
            leftover.unlink(missing_ok=True)


def write_bytes(target: Path | str, data: bytes, mode: int | None = None) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
        if mode is not None:
            tmp.chmod(mode)


def write_text(target: Path | str, text: str, mode: int | None = None) -> None:
    write_bytes(target, text.encode(), mode)


def write_json(target: Path | str, data) -> None:
    write_text(target, json.dumps(data, indent=2, sort_keys=True) + "\n")


def copy_file(source: Path | str, target: Path | str, mode: int | None = None) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        if mode is not None:
            tmp.chmod(mode)


def replace_dir(staged: Path, target: Path) -> None:
    """Swap a fully prepared folder into place; the old one is removed after."""
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    if old.exists():
        shutil.rmtree(old)
