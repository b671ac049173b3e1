"""Unpack a source tarball without trusting it.

Every entry is checked before anything is written: no absolute paths, no `..`,
no links that point outside the tree, no device files. The tree is unpacked
into a staging folder and only renamed into place when complete.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from .atomic import replace_dir
from .errors import KilnError


def _unsafe(member: tarfile.TarInfo) -> str | None:
    name = member.name
    if name.startswith("/") or posixpath.isabs(name):
        return "absolute path"
    if ".." in Path(name).parts:
        return "'..' in path"
    if member.isdev() or member.isfifo():
        return "device or fifo entry"
    if member.issym():
        target = member.linkname
        if target.startswith("/"):
            return f"symlink to absolute path {target}"
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if joined == ".." or joined.startswith("../"):
            return f"symlink escaping the tree ({target})"
    if member.islnk():
        joined = posixpath.normpath(member.linkname)
        if member.linkname.startswith("/") or joined == ".." or joined.startswith("../"):
            return f"hard link escaping the tree ({member.linkname})"
    return None


def check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    for member in members:
        why = _unsafe(member)
        if why:
            raise KilnError(
                f"refusing to unpack {archive.name}: entry {member.name!r} is unsafe ({why}); "
                f"the tarball is corrupt or malicious: delete it and fetch it again"
            )


def extract(archive: Path, dest: Path, root: str) -> Path:
    """Unpack `archive`, whose single top folder is `root`, so that `dest` holds its contents."""
    dest = Path(dest)
    staging = dest.with_name(f".{dest.name}.staging")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            check_members(archive, tar.getmembers())
        # Every entry is known to be safe: let tar(1) write them, it is several times faster.
        print(f"  {archive.name}: unpacking", file=sys.stderr)
        subprocess.run(["tar", "-xf", str(archive), "-C", str(staging), "--no-same-owner",
                        "--no-same-permissions", "--delay-directory-restore"],
                       check=True, capture_output=True)
    except (tarfile.TarError, EOFError, OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        detail = getattr(exc, "stderr", b"") or b""
        reason = (detail.decode(errors="replace").strip().splitlines() or [str(exc) or type(exc).__name__])[0]
        raise KilnError(
            f"cannot unpack {archive}: {reason}; the file is truncated or corrupt: "
            f"delete it and fetch it again"
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    top = staging / root
    if not top.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        raise KilnError(f"{archive.name} has no top folder {root!r}: is it the right file?")
    os.replace(top, staging.with_name(f".{dest.name}.top"))
    shutil.rmtree(staging)
    replace_dir(staging.with_name(f".{dest.name}.top"), dest)
    return dest
