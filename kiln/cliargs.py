"""Command-line pieces the runner and the image runner share: one grant syntax, one error style.

Grants are spelled as Docker spells bind mounts, `-v HOST:GUEST[:ro|:rw]`, so what works with
`docker run` works here. Every mistake is one line on stderr and exit status 2, like the rest
of Kiln (kiln/errors.py): argparse's default prints the whole usage first, which buries it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
# typing is imported for type checkers only: its import was as costly as Python's own start-up
# (docs/benchmarks.md, "Start-up"), and `kiln run` imports this module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

from .errors import KilnError
from .engine import Preopen

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse, but an error is `PROG: what is wrong (PROG --help)` on one line."""

    def error(self, message: str) -> NoReturn:
        label = self.prog.removeprefix("python -m ")  # as the program's other messages say
        print(f"{label}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def formatter(prog: str) -> argparse.HelpFormatter:
    # The descriptions and epilogs below are laid out by hand (examples, lists).
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def host_folder(text: str) -> Path:
    """A grant's HOST: an existing folder (WASI preopens folders, never single files)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise KilnError(f"{text}: no such folder on this machine: create it or fix the path")
    if not path.is_dir():
        raise KilnError(f"{text} is a file, and only folders can be granted: grant its folder, "
                        f"-v {path.resolve().parent}:GUEST")
    return path.resolve()


def parse_grant(spec: str, relative_guest: bool = False) -> Preopen:
    """HOST:GUEST[:ro|:rw], writable unless :ro (as with Docker). GUEST is absolute (or `.`, the guest's relative paths, when
    `relative_guest`). HOST may contain colons; GUEST may not (the last one splits them)."""
    rest, writable = spec, True
    for suffix, mode in ((":ro", False), (":rw", True)):
        if rest.endswith(suffix):
            rest, writable = rest[: -len(suffix)], mode
            break
    host, sep, guest = rest.rpartition(":")
    guest_ok = guest.startswith("/") or (relative_guest and guest == ".")
    if not sep or not host or not guest_ok:
        where = "an absolute path" + (" or ." if relative_guest else "")
        raise KilnError(f"-v {spec}: expected HOST:GUEST[:ro] with GUEST {where}, "
                        f"e.g. -v .:/app:ro")
    guest = guest.rstrip("/") or "/"
    return Preopen(host_folder(host), guest, writable)


def grant_type(relative_guest: bool = False):
    """parse_grant as an argparse `type` (its one-line error becomes the usage error)."""
    def convert(spec: str) -> Preopen:
        try:
            return parse_grant(spec, relative_guest)
        except KilnError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"-v {spec}: ")) from None
    convert.__name__ = "grant"  # argparse names the type in "invalid grant value"
    return convert


def env_pair(spec: str) -> tuple[str, str]:
    name, sep, value = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {spec!r}")
    return name, value


def number(kind, minimum, what: str, above: bool = False, unit: str = ""):
    """An argparse type: a finite number of `kind` (int, float), at least `minimum` (above it
    when `above`). Errors: "'x' is not WHAT", "x must be UNIT above 0" (or "0 or more")."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value != value or value in (float("inf"), float("-inf")) or \
                (value <= minimum if above else value < minimum):
            bound = f"above {minimum:g}" if above else f"{minimum:g} or more"
            raise argparse.ArgumentTypeError(f"{text} must be {unit}{bound}")
        return value
    convert.__name__ = what
    return convert


positive_float = number(float, 0, "a number", above=True, unit="a number of seconds ")
positive_int = number(int, 0, "a whole number", above=True)


def port_type(any_free: bool = False):
    """An argparse type: a TCP port, 1-65535 (or 0, "any free port", when `any_free`)."""
    lowest, span = (0, "1-65535, or 0: any free port") if any_free else (1, "1-65535")

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
        if not lowest <= value <= 65535:
            raise argparse.ArgumentTypeError(f"{text} is not a port number ({span})")
        return value
    convert.__name__ = "port"
    return convert


port = port_type()
