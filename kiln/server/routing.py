"""URL path -> what serves it, the way `php -S` and Apache with WordPress's rewrite rules do.

The path is decoded and checked once (decode_path), then walked segment by segment on the
host: the first `.php` file is the script and the rest PATH_INFO, a folder serves its index,
another file is static, and anything missing goes to the front controller. Whatever is
served or run must resolve, symlinks followed, inside the grant it was found in.
"""
from __future__ import annotations

import os
import re
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..cgi import CTL
from .config import Mount, guest_parts

_ENCODED_SLASH = re.compile(r"%2f", re.IGNORECASE)


@dataclass
class Route:
    kind: str                     # "script", "static", "redirect", "error"
    host: Path | None = None      # file on the host
    guest: str = ""               # script path in the guest
    script_name: str = ""         # URL path of the script
    path_info: str = ""
    status: int = 0
    location: str = ""


def decode_path(raw: str) -> tuple[str | None, int]:
    """(decoded path, 0) or (None, HTTP status refusing it)."""
    if _ENCODED_SLASH.search(raw):
        return None, 404          # like Apache's AllowEncodedSlashes Off
    data = urllib.parse.unquote_to_bytes(raw)
    if b"\0" in data:
        return None, 400
    try:
        path = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, 400
    if CTL.search(path):
        return None, 400
    for segment in path.split("/"):
        if segment == "..":
            return None, 403
        if segment.startswith(".") and segment not in (".", ".well-known"):
            return None, 403      # .htaccess, .ht.sqlite, .git, ...
    return path, 0


class FileSystem:
    """Maps URL paths under the docroot to host files through the grants, refusing escapes."""

    def __init__(self, docroot_guest: str, mounts: Sequence[Mount]):
        self.docroot_guest = docroot_guest
        base = guest_parts(docroot_guest)
        # Grants at or under the docroot, longest first: (segments below the docroot, host root).
        mapped = []
        for m in mounts:
            parts = guest_parts(m.guest)
            if parts[: len(base)] == base:
                mapped.append((parts[len(base):], Path(os.path.realpath(m.host))))
        self.mapped = sorted(mapped, key=lambda item: -len(item[0]))

    def locate(self, segments: Sequence[str]) -> tuple[Path, Path]:
        """(host path, host root of the grant it belongs to) for URL segments."""
        for rel, root in self.mapped:
            if tuple(segments[: len(rel)]) == rel:
                return root.joinpath(*segments[len(rel):]), root
        raise LookupError("/".join(segments))  # not reachable: the docroot itself is mapped

    @staticmethod
    def inside(path: Path, root: Path) -> bool:
        real = os.path.realpath(path)
        return real == str(root) or real.startswith(str(root).rstrip("/") + "/")

    def guest_path(self, segments: Sequence[str]) -> str:
        return (self.docroot_guest.rstrip("/") + "/" + "/".join(segments)) if segments \
            else self.docroot_guest


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


class Router:
    def __init__(self, fs: FileSystem, index_files: Sequence[str], script_extensions: Sequence[str],
                 front_controller: str | None):
        self.fs = fs
        self.index_files = index_files
        self.script_extensions = tuple(script_extensions)
        self.front_controller = front_controller

    def _is_script(self, name: str) -> bool:
        return name.endswith(self.script_extensions)

    def route(self, path: str) -> Route:
        """`path`: the decoded URL path, already checked by decode_path."""
        segments = [s for s in path.split("/") if s not in ("", ".")]
        trailing = path.endswith("/") and bool(segments)
        norm = "/" + "/".join(segments) + ("/" if trailing else "")
        for i in range(len(segments) + 1):
            host, root = self.fs.locate(segments[:i])
            st = _stat(host)
            if st is None:
                break
            if stat.S_ISDIR(st.st_mode):
                if i < len(segments):
                    continue
                if not self.fs.inside(host, root):
                    return Route("error", status=403)
                return self._directory(segments, trailing, norm)
            if not stat.S_ISREG(st.st_mode) or not self.fs.inside(host, root):
                return Route("error", status=403)
            if self._is_script(segments[i - 1]):
                script_name = "/" + "/".join(segments[:i])
                return Route("script", host, self.fs.guest_path(segments[:i]), script_name,
                             norm[len(script_name):])
            if i == len(segments):
                return Route("static", host)
            break   # a static file with more path after it: missing
        return self._fallback()

    def _directory(self, segments: list[str], trailing: bool, norm: str) -> Route:
        if segments and not trailing:
            return Route("redirect", status=301, location=norm + "/")
        for index in self.index_files:
            host, root = self.fs.locate([*segments, index])
            st = _stat(host)
            if st is None or not stat.S_ISREG(st.st_mode) or not self.fs.inside(host, root):
                continue
            if self._is_script(index):
                return Route("script", host, self.fs.guest_path([*segments, index]),
                             norm + index, "")
            return Route("static", host)
        return Route("error", status=403)   # no listings

    def _fallback(self) -> Route:
        if self.front_controller:
            segments = [s for s in self.front_controller.split("/") if s]
            host, root = self.fs.locate(segments)
            st = _stat(host)
            if st is not None and stat.S_ISREG(st.st_mode) and self.fs.inside(host, root):
                return Route("script", host, self.fs.guest_path(segments), "/" + "/".join(segments))
        return Route("error", status=404)
