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
            if "gpg-agent" in imported.stderr:  # gpg 2.4 (Debian 13) imports through the agent
                raise KilnError(f"gpg cannot import the release keys in {keys} without gpg-agent: "
                                "apt-get install gpg-agent (scripts/setup installs it)")
            raise KilnError(f"cannot read the release keys in {keys}: {imported.stderr.strip()[:200]}")
        # --status-fd: machine-readable outcome lines, so the message says what happened in
        # Kiln's words instead of quoting a fragment of gpgv's prose.
        checked = subprocess.run([gpgv, "--homedir", home, "--keyring", str(keyring), "--status-fd", "1",
                                  str(signature), str(archive)], capture_output=True, text=True)
    if checked.returncode != 0:
        raise KilnError(
            f"{archive.name}: OpenPGP signature {signature.name} does not verify against {keys.name} "
            f"({_reason(checked.stdout)}); the file or its signature was tampered with: "
            f"delete both and fetch again")
    for line in checked.stderr.splitlines():
        if "Good signature from" in line:
            return line.split("Good signature from", 1)[1].strip().strip('"')
    return "a release key"


_STATUS_REASONS = {  # gpg's DETAILS file, "[GNUPG:] KEYWORD"; the first one found wins
    "BADSIG": "the signature does not match the file's bytes",
    "NO_PUBKEY": "it was made by a key that is not among the release keys",
    "ERRSIG": "it cannot be checked (unknown key or algorithm)",
    "NODATA": "it is not an OpenPGP signature",
    "EXPKEYSIG": "it was made by an expired key",
    "REVKEYSIG": "it was made by a revoked key",
}


def _reason(status: str) -> str:
    words = {line.split()[1] for line in status.splitlines()
             if line.startswith("[GNUPG:] ") and len(line.split()) > 1}
    for keyword, reason in _STATUS_REASONS.items():
        if keyword in words:
            return reason
    return "gpgv refused it"
