"""Read-only grants for a guest under the Wasmtime command line, enforced by the kernel.

`wasmtime run --dir HOST::GUEST` grants every folder writable: Wasmtime 49's command line has
no read-only grant, while Kiln's grants are read-only unless asked (`-v HOST:GUEST:ro`, the
pool's docroot). Linux's Landlock (5.13 and later, no privileges needed) lets a process give up
the right to change files anywhere but in a list of folders, for itself and every program it
then executes; Kiln does that just before it executes `wasmtime run`, listing the writable
grants. Reading is not restricted (Wasmtime itself reads its binary and the module): the guest
reaches only its grants anyway, this only takes writing away where a grant is read-only.

A guest writing where it may not gets EACCES (wasmtime-py's read-only grants answer
ENOTCAPABLE): PHP says "Permission denied" either way. A read-only grant inside a writable one
on the host is writable through either path (Landlock follows host folders, not grants).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Iterable

# x86_64 and aarch64 share these numbers (syscalls added after 5.1 have one number everywhere).
_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Every access that changes the file system, by the ABI version that introduced it.
_WRITE_FILE, _REMOVE_DIR, _REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_MAKE = sum(1 << bit for bit in range(6, 13))   # char, dir, reg, sock, fifo, block, sym
_REFER, _TRUNCATE = 1 << 13, 1 << 14            # ABI 2, ABI 3


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = None


def _syscall(*args) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc.syscall(*args)


def abi_version() -> int:
    """The kernel's Landlock ABI version, 0 when it has none (or it is disabled)."""
    try:
        found = _syscall(_CREATE_RULESET, None, ctypes.c_size_t(0), _CREATE_RULESET_VERSION)
    except (OSError, AttributeError):
        return 0
    return max(found, 0)


def available() -> bool:
    return abi_version() >= 1


def restrict_writes(writable: Iterable[Path]) -> None:
    """From now on this process, and every program it executes, may change files only below
    the `writable` folders. Irreversible: call it in the process that is about to exec."""
    abi = abi_version()
    if abi < 1:
        raise OSError("this kernel has no Landlock (Linux 5.13 or later)")
    handled = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE
    if abi >= 2:
        handled |= _REFER
    if abi >= 3:
        handled |= _TRUNCATE
    attr = ctypes.c_uint64(handled)   # struct landlock_ruleset_attr, its first field only
    ruleset = _syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(8), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    try:
        for folder in writable:
            fd = os.open(folder, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(handled, fd)
                if _syscall(_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) < 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {folder}")
            finally:
                os.close(fd)
        # Required to restrict oneself without privileges; Wasmtime needs no setuid anyway.
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if _syscall(_RESTRICT_SELF, ruleset, 0) < 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
