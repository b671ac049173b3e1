"""Debian 13 root file systems for the runtimes Debian 12 does not package (WasmEdge, crun with
its WasmEdge handler, podman 5): debootstrap from the machine's own apt sources, then the root's
own apt installs the packages. Made once, kept under KILN_CACHE (kiln.wasmedge, kiln.crun).

Made under `<root>.part` and renamed into place when complete, so an interrupted make is never
mistaken for a root."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from . import settings
from .errors import KilnError

SUITE = "trixie"


def make(root: Path, packages: list[str], what: str, log=print) -> float:
    """debootstrap SUITE into `root`, then `apt-get install packages` inside it. `what` names
    the use in messages ("wasmedge", "crun"). Returns the seconds taken; a one-line KilnError
    says why it cannot (not root, no debootstrap, no Debian archive, a failed step)."""
    if os.geteuid() != 0:
        raise KilnError(f"making a Debian 13 root for {what} needs root (debootstrap, chroot): "
                        f"run as root, or install {' '.join(packages)} from Debian 13")
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(debootstrap).is_file():
        raise KilnError(f"no debootstrap to make a Debian 13 root for {what}: "
                        "apt-get install debootstrap (scripts/setup installs it)")
    archive = subprocess.run([str(settings.ROOT / "scripts" / "fill-mirror"), "--archive-uri"],
                             capture_output=True, text=True)
    if archive.returncode != 0:
        raise KilnError(f"no Debian archive in this machine's apt sources for a {SUITE} root: "
                        f"{archive.stderr.strip()}")
    partial = root.with_name(root.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    log(f"  {what}: debootstrap {SUITE}, then apt-get install {' '.join(packages)} in it, into "
        f"{root} (once; kept in KILN_CACHE)")
    started = time.monotonic()
    log_file = partial.with_suffix(".log")
    # debootstrap's --include does not resolve every dependency (libwasmedge0's libspdlog was
    # left out): the root's own apt installs the packages. apt needs only the machine's resolver.
    steps = [[debootstrap, "--variant=minbase", SUITE, str(partial), archive.stdout.strip()],
             ["chroot", str(partial), "apt-get", "install", "-y", "-q", "--no-install-recommends",
              *packages],
             ["chroot", str(partial), "apt-get", "clean"]]
    with open(log_file, "wb") as out:
        for step in steps:
            if step[0] == "chroot":
                shutil.copyfile("/etc/resolv.conf", partial / "etc" / "resolv.conf")
            done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if done.returncode != 0:
                tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
                raise KilnError(f"making a {SUITE} root for {what} failed at `{' '.join(step[:4])}` "
                                f"({tail[0][:160]}); see {log_file}")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    log_file.unlink(missing_ok=True)
    return time.monotonic() - started
