"""What Kiln's edits of PHP's generated VM share (kiln/tailcall_vm.py, kiln/goto_vm.py): how a
build script runs one on Zend/zend_vm_execute.h in place, and the digest that names it."""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import atomic, settings
from .errors import KilnError


@dataclass(frozen=True)
class Tool:
    """How a build script runs an edit, and the digest of everything the edit reads, which the
    script names so that a change to the edit rebuilds every build it applies to."""
    python: str
    root: str
    digest: str


def tool(files: Iterable[Path]) -> Tool:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return Tool(python=sys.executable, root=str(settings.ROOT), digest=digest.hexdigest())


def main(argv: list[str], module: str, rewrite: Callable[[str], str]) -> int:
    """`python -m <module> Zend/zend_vm_execute.h`: the file rewritten in place, atomically;
    a one-line error and status 1 when the edit does not fit it."""
    if len(argv) != 1:
        print(f"usage: python -m {module} Zend/zend_vm_execute.h", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        atomic.write_text(path, rewrite(path.read_text()))
    except (KilnError, OSError) as exc:
        print(f"kiln: {exc}", file=sys.stderr)
        return 1
    return 0
