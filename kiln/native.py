"""The machine's own PHP: which release to install, and where its binaries are.

Native PHP is a tool here (Zend/zend_vm_gen.php, run-tests.php's driver) and the benchmarks'
baseline. Debian 12 ships PHP 8.2, Debian 13 PHP 8.4 and no 8.2 (languages/php/native.toml
says which): nothing else in Kiln names a versioned binary such as `php8.2` or `php-fpm8.2`.

Stdlib only, because scripts/setup asks it what to install before the virtualenv exists:

    python3 -m kiln.native packages     # php8.2-cli php8.2-cgi ... (on Debian 12)
    python3 -m kiln.native describe     # PHP 8.2.36 (/usr/bin/php8.2)
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from .errors import KilnError

TABLE = Path(__file__).resolve().parent.parent / "languages" / "php" / "native.toml"
OS_RELEASE = Path("/etc/os-release")
# Debian puts php-fpm in /usr/sbin, which is not on every PATH (CI's, a user's shell).
EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin")
# The binary of each kind for release X.Y, as Debian names them.
NAMES = {"cli": "php{release}", "cgi": "php-cgi{release}", "fpm": "php-fpm{release}"}
_VERSIONED = re.compile(r"^php(\d+\.\d+)$")
_CLI_PACKAGE = re.compile(r"^php(\d+\.\d+)-cli$")


def _key(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.split("."))


@functools.cache
def table() -> dict:
    return tomllib.loads(TABLE.read_text())


def os_release(path: Path = OS_RELEASE) -> dict[str, str]:
    """/etc/os-release as a dict (ID, VERSION_ID, PRETTY_NAME...); empty if there is none."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    return fields


def apt_releases() -> list[str]:
    """The X.Y of every phpX.Y-cli package apt knows of (after apt-get update)."""
    try:
        names = subprocess.run(["apt-cache", "pkgnames", "php"], capture_output=True, text=True,
                               check=False).stdout.split()
    except OSError:
        return []
    return [m[1] for m in map(_CLI_PACKAGE.match, names) if m]


def release_for(system: dict[str, str], available: list[str] | None = None) -> str:
    """The PHP release to install on `system` (os-release fields): the table's for a Debian
    release it names, else the newest of `available` (default: apt's phpX.Y-cli packages)."""
    data = table()
    if system.get("ID") == "debian" and system.get("VERSION_ID") in data["debian"]:
        return data["debian"][system["VERSION_ID"]]
    if available is None:
        available = apt_releases()
    usable = [r for r in available if _key(r) >= _key(data["minimum"])]
    if usable:
        return max(usable, key=_key)
    name = system.get("PRETTY_NAME") or "this system (no /etc/os-release)"
    known = ", ".join(f"Debian {v}" for v in data["debian"])
    raise KilnError(f"no native PHP package for {name}: Kiln knows {known} ({TABLE.name}) and apt "
                    f"knows no phpX.Y-cli >= {data['minimum']} here; run apt-get update, or add "
                    f"this release to languages/php/{TABLE.name}")


def packages(release: str) -> list[str]:
    return [f"php{release}-{suffix}" for suffix in table()["packages"]]


def _search_path() -> list[str]:
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return [*dirs, *(d for d in EXTRA_DIRS if d not in dirs)]


def installed_releases() -> list[str]:
    """The X.Y of every phpX.Y binary on the search path, newest first."""
    found = set()
    for folder in _search_path():
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        found.update(m[1] for m in map(_VERSIONED.match, entries) if m)
    return sorted(found, key=_key, reverse=True)


@functools.cache
def release() -> str:
    """The installed release Kiln uses: this distribution's (native.toml) if it is installed,
    else the newest installed one at or above the minimum, else the one setup would install."""
    system = os_release()
    wanted = table()["debian"].get(system.get("VERSION_ID", ""), "") if system.get("ID") == "debian" else ""
    installed = [r for r in installed_releases() if _key(r) >= _key(table()["minimum"])]
    if wanted in installed or not installed:
        return wanted or "X.Y"
    return installed[0]


def binary(kind: str = "cli") -> str:
    """The path of the native php (cli), php-cgi (cgi) or php-fpm (fpm); a one-line error if
    none is installed."""
    versioned = NAMES[kind].format(release=release())
    search = os.pathsep.join(_search_path())
    for name in (versioned, NAMES[kind].format(release="")):
        found = shutil.which(name, path=search)
        if found:
            return found
    raise KilnError(f"no native {versioned}: apt-get install php{release()}-{kind} "
                    "(scripts/setup installs it)")


@functools.cache
def version(path: str) -> str:
    """The PHP version a native binary reports (`-v`'s first line: "PHP 8.2.36 (cli) ...")."""
    try:
        out = subprocess.run([path, "-n", "-v"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KilnError(f"{path} -v failed: {exc}") from None
    match = re.match(r"PHP (\S+)", out)
    if not match:
        raise KilnError(f"{path} -v printed no PHP version: is it PHP?")
    return match[1]


def describe(kind: str = "cli") -> str:
    """"PHP 8.2.36 (/usr/bin/php8.2)": what reports and benchmarks say they compared with."""
    path = binary(kind)
    return f"PHP {version(path)} ({path})"


def main(argv: list[str]) -> int:
    usage = "usage: python3 -m kiln.native packages|release|describe [cli|cgi|fpm]"
    if not argv or argv[0] not in ("packages", "release", "describe") or \
            (argv[0] == "describe" and argv[1:2] and argv[1] not in NAMES):
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[0] == "describe":
            print(describe(*argv[1:2]))
        else:
            chosen = release_for(os_release())
            print(" ".join(packages(chosen)) if argv[0] == "packages" else chosen)
    except KilnError as exc:
        print(f"kiln.native: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
