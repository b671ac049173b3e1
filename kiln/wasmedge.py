"""WasmEdge, the seed demo's runtime, as a second runtime for the smoke checks.

Debian 13 packages WasmEdge 0.14.1; Debian 12 has none, and trixie's packages need glibc 2.38,
so they do not install there. Kiln uses the machine's own `wasmedge` where there is one, else a
Debian 13 root file system made by debootstrap from the machine's own apt sources with wasmedge
in it, kept under KILN_CACHE. That root's binary is run through the root's own dynamic loader
and libraries, not in a chroot: the module, the grants and the scratch folders stay at their host
paths, and no mount is needed (checked: WasmEdge 0.14.1 from such a root runs PHP 8.2.32 with
the exit codes it runs with natively).

WasmEdge interprets here (`wasmedge run`): its AOT compiler has no switch for the exception
handling PHP's setjmp/longjmp needs (../shared/notes/containers.md). This is about portability,
not speed.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import atomic, debroot, runner, settings
from .errors import KilnError

SUITE = debroot.SUITE
# The proposals PHP's modules use beyond WasmEdge's defaults: tail calls (the TAILCALL VM) and
# exception handling (setjmp/longjmp). --enable-all would add experimental ones and a warning.
FLAGS = ("--enable-tail-call", "--enable-exception-handling")
STATE = "wasmedge.json"  # in build-output: which WasmEdge the smoke checks use, or why none


@dataclass(frozen=True)
class WasmEdge:
    command: tuple[str, ...]   # what runs the wasmedge binary
    version: str               # "0.14.1"
    where: str                 # for people: "/usr/bin/wasmedge" or "Debian 13 root in ..."


def root_dir() -> Path:
    return settings.cache_dir() / f"debian-{SUITE}-wasmedge"


def _loader_command(root: Path) -> tuple[str, ...] | None:
    """The root's wasmedge run by the root's own ld.so with the root's libraries."""
    binary = root / "usr" / "bin" / "wasmedge"
    loaders = sorted(root.glob("usr/lib*/ld-linux*.so.*"))
    libraries = sorted(root.glob("usr/lib/*-linux-gnu"))
    if not binary.is_file() or not loaders or not libraries:
        return None
    return (str(loaders[0]), "--library-path", ":".join(map(str, libraries)), str(binary))


def _version(command: tuple[str, ...]) -> str | None:
    try:
        out = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = out.stdout.split()
    return words[words.index("version") + 1] if out.returncode == 0 and "version" in words else None


def find() -> WasmEdge | None:
    """The machine's own wasmedge, else the one in Kiln's Debian 13 root; None if neither runs."""
    native = shutil.which("wasmedge")
    if native and (version := _version((native,))):
        return WasmEdge((native,), version, native)
    command = _loader_command(root_dir())
    if command and (version := _version(command)):
        return WasmEdge(command, version, f"Debian 13 root in {root_dir()}")
    return None


def provision(log=print) -> WasmEdge:
    """find(), or make the Debian 13 root with wasmedge first (root, debootstrap and apt's
    sources needed; about two minutes). A one-line KilnError says why it cannot."""
    found = find()
    if found:
        return found
    try:
        seconds = debroot.make(root_dir(), ["wasmedge"], "wasmedge", log)
    except KilnError as exc:
        raise KilnError(f"no wasmedge here: {exc} (or set KILN_WASMEDGE=off)") from None
    found = find()
    if found is None:
        raise KilnError(f"{root_dir()} was made but its wasmedge does not run: remove it and try again")
    log(f"  wasmedge: {found.version} ready in {seconds:.0f} s")
    return found


def state_path() -> Path:
    return settings.build_output() / STATE


def write_state(log=print) -> dict:
    """Find or provision WasmEdge (unless KILN_WASMEDGE=off) and record the answer, which the
    smoke stage reads: {"available": true, "version", "where", "command"} or
    {"available": false, "reason"}."""
    if not settings.wasmedge_enabled():
        state = {"available": False, "reason": "KILN_WASMEDGE=off"}
    else:
        try:
            edge = provision(log)
            state = {"available": True, **asdict(edge)}
        except KilnError as exc:
            log(f"  wasmedge: not available: {exc}")
            state = {"available": False, "reason": str(exc)}
    atomic.write_json(state_path(), state)
    return state


def read_state() -> WasmEdge | str:
    """The WasmEdge recorded by write_state, or why there is none."""
    try:
        state = json.loads(state_path().read_text())
    except (OSError, ValueError):
        return "the wasmedge stage has not run"
    if not state.get("available"):
        return state.get("reason", "not available")
    return WasmEdge(tuple(state["command"]), state["version"], state["where"])


def run(edge: WasmEdge, timeout: float, module: Path, argv: list[str], env: dict[str, str],
        stdin: bytes, preopens: list[runner.Preopen]) -> runner.RunResult | None:
    """One run of `module` under WasmEdge, as runner.run reports it; None past `timeout`."""
    command = [*edge.command, *FLAGS]
    for grant in preopens:
        command += ["--dir", f"{grant.guest}:{grant.host}" + ("" if grant.writable else ":readonly")]
    for name, value in env.items():
        command += ["--env", f"{name}={value}"]
    # WasmEdge gives the guest the module's path as argv[0]; the rest is ours.
    command += [str(module), *argv[1:]]
    started = time.monotonic()
    try:
        proc = subprocess.run(command, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return runner.RunResult(proc.returncode, proc.stdout, proc.stderr, timed_out=False,
                            duration=time.monotonic() - started)
