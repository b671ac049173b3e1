"""OpenPGP check of a release against its managers' public keys (offline, with gpgv).

The sha256 pin already proves the bytes are the ones the recipe expects; the signature
proves those bytes are what the release managers signed, which matters the day a pin is
added or bumped. Keys live beside the recipe (for PHP: taken from Debian's packaging,
debian/upstream/signing-key.asc, which carries php.net's release-manager keys).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import KilnError


def verify(archive: Path, signature: Path, keys: Path) -> str:
    """Return who signed `archive`; raise KilnError if the signature does not verify."""
    gpg, gpgv = shutil.which("gpg"), shutil.which("gpgv")
    if not gpg or not gpgv:
        raise KilnError("gpg/gpgv are not installed: apt-get install gpg gpgv (or remove the .asc)")
    with tempfile.TemporaryDirectory(prefix="kiln-gpg-") as home:
        keyring = Path(home) / "release-keys.gpg"
        imported = subprocess.run(
            [gpg, "--homedir", home, "--batch", "--quiet", "--no-default-keyring",
             "--keyring", str(keyring), "--import", str(keys)], capture_output=True, text=True)
        if imported.returncode != 0 or not keyring.exists():
            raise KilnError(f"cannot read the release keys in {keys}: {imported.stderr.strip()[:200]}")
        checked = subprocess.run([gpgv, "--homedir", home, "--keyring", str(keyring),
                                  str(signature), str(archive)], capture_output=True, text=True)
    if checked.returncode != 0:
        raise KilnError(
            f"{archive.name}: OpenPGP signature {signature.name} does not verify against {keys.name} "
            f"({_last_line(checked.stderr)}); the file or its signature was tampered with: "
            f"delete both and fetch again")
    for line in checked.stderr.splitlines():
        if "Good signature from" in line:
            return line.split("Good signature from", 1)[1].strip().strip('"')
    return "a release key"


def _last_line(text: str) -> str:
    lines = [line.removeprefix("gpgv: ").strip() for line in text.strip().splitlines()]
    return lines[-1] if lines else "no output"
