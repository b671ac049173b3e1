"""Which Wasmtime runs a guest in process, with which settings, and which artifacts it loads.

Pure facts, no Wasmtime imported: kiln/runner.py builds its engines from them (and re-exports
them), kiln/wasmtime_cli.py reads them to tell whether an artifact the aot stage made is current
without paying for wasmtime-py's import (most of a `kiln run`'s start-up otherwise).
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
# typing is imported for type checkers only: its import was as costly as Python's own start-up
# (docs/benchmarks.md, "Start-up"), and `kiln run` imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

try:  # CPython's own SHA-256: hashlib's import loads OpenSSL, a tenth of `kiln run`'s Python start-up
    from _sha256 import sha256
except ImportError:  # another interpreter, or Python 3.12+ (_sha2)
    from hashlib import sha256

from kiln import settings

EXIT_TIMEOUT = 124  # wall-clock limit reached (same value as coreutils `timeout`)
EXIT_TRAP = 134     # wasm trapped for a reason other than exiting (128 + SIGABRT)


class Preopen:
    """Grant the guest access to host directory `host`, visible at `guest` (immutable).

    Written out rather than a frozen dataclass: importing dataclasses (and inspect with it) was
    a fifth of `kiln run`'s Python start-up (docs/benchmarks.md, "Start-up")."""

    __slots__ = ("host", "guest", "writable")

    def __init__(self, host: Path, guest: str, writable: bool = False):
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "guest", guest)
        object.__setattr__(self, "writable", writable)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def _key(self) -> tuple:
        return (self.host, self.guest, self.writable)

    def __eq__(self, other) -> bool:
        return self._key() == other._key() if isinstance(other, Preopen) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Preopen(host={self.host!r}, guest={self.guest!r}, writable={self.writable!r})"


# Engine settings that change generated code, hence what a precompiled artifact contains.
# Any change here changes engine_fingerprint(), which invalidates every artifact.
ENGINE_SETTINGS: dict[str, object] = {
    "wasm_exceptions": True,             # PHP's zend_try/zend_bailout (setjmp/longjmp)
    "cranelift_opt_level": "speed",      # "none" measured 7-28% slower on PHP
    "max_wasm_stack": 2 * 1024 * 1024,   # deep recursion in PHP; >2 MiB crashed Python
    # Wall-clock limits inside the guest: checks compiled into every function entry and loop
    # back-edge (bench.php 30% slower with the GOTO VM). Off unless KILN_TIME_LIMITS=on, or a
    # caller asks for an engine with them (kiln.server's instance-per-request mode); the
    # worker pool and the command line stop a guest from outside instead.
    "epoch_interruption": False,
}


@functools.lru_cache(maxsize=None)
def wasmtime_py_version() -> str:
    """The installed wasmtime package's version (every stage's task generator asks for the
    fingerprint, and so does every run of a precompiled artifact)."""
    # From the .dist-info folder beside the package: importlib.metadata gives the same answer,
    # but importing it (email, zipfile, csv...) was a quarter of `python -m kiln.runner`'s
    # start-up (docs/benchmarks.md, "Start-up"). find_spec locates without importing.
    from importlib.util import find_spec

    spec = find_spec("wasmtime")
    if spec is None or not spec.origin:
        return "not installed"
    site = os.path.dirname(os.path.dirname(os.path.realpath(spec.origin)))
    found = [name[len("wasmtime-"):-len(".dist-info")] for name in os.listdir(site)
             if name.startswith("wasmtime-") and name.endswith(".dist-info")]
    if len(found) == 1:
        return found[0]
    import importlib.metadata  # an egg, an odd layout, or several versions side by side
    return importlib.metadata.version("wasmtime")


def engine_settings(time_limits: bool | None = None) -> dict[str, object]:
    """ENGINE_SETTINGS for an engine with or without epoch checks; None: what Kiln compiles
    by default (KILN_TIME_LIMITS, off unless set on)."""
    if time_limits is None:
        time_limits = settings.time_limits()
    return {**ENGINE_SETTINGS, "epoch_interruption": bool(time_limits)}


def machine() -> str:
    """Artifacts are native code: never shared across CPU architectures (= platform.machine())."""
    return os.uname().machine


def fingerprint_of(wasmtime_version: str, engine: Mapping[str, object], machine_name: str) -> str:
    key = json.dumps({"wasmtime": wasmtime_version, "settings": dict(engine), "machine": machine_name},
                     sort_keys=True)
    return sha256(key.encode()).hexdigest()[:16]


def engine_fingerprint(time_limits: bool | None = None) -> str:
    """Short stable hash of everything a precompiled artifact depends on."""
    return fingerprint_of(wasmtime_py_version(), engine_settings(time_limits), machine())
