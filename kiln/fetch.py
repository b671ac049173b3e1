"""Fetch a pinned upstream file: mirrors first, upstream last, sha256 always.

Order (Buildroot/Yocto PREMIRRORS style): every KILN_MIRROR entry (local folder
or http(s) base URL laid out like upstream's folder), then the recipe's URL.
A file is accepted only when its sha256 matches the recipe's pin, whatever
its origin; until then it lives under a temporary name.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from . import atomic
from .atomic import atomic_path
from .errors import KilnError

CHUNK = 1 << 16
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 30
ATTEMPTS = 3
BACKOFF = 1.0  # seconds, doubled after every failed attempt


class _TryNext(Exception):
    """This origin cannot give us the file; say why and move on."""


class _BadCopy(_TryNext):
    """This origin has the file, but not the pinned bytes: worth a warning even if another
    origin has them."""


@dataclass
class Origin:
    location: str  # folder path or URL of the file itself

    @property
    def is_http(self) -> bool:
        return self.location.startswith(("http://", "https://"))


def origins(filename: str, upstream_urls: list[str], mirrors: list[str]) -> list[Origin]:
    found = []
    for mirror in mirrors:
        if mirror.startswith(("http://", "https://")):
            found.append(Origin(mirror.rstrip("/") + "/" + filename))
        else:
            found.append(Origin(str(Path(mirror.removeprefix("file://")).expanduser() / filename)))
    found.extend(Origin(url) for url in upstream_urls)
    return found


class Progress:
    """Bytes so far, on one line in a terminal and every ~10% in logs."""

    def __init__(self, label: str, total: int | None, stream=None):
        self.label, self.total, self.done = label, total, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_step = -1
        self.started = time.monotonic()

    def update(self, count: int) -> None:
        self.done += count
        if self.tty:
            self.stream.write(f"\r  {self.label}: {self._text()}")
            self.stream.flush()
            return
        step = int(self.done * 10 / self.total) if self.total else self.done >> 22
        if step != self.last_step:
            self.last_step = step
            self.stream.write(f"  {self.label}: {self._text()}\n")

    def _text(self) -> str:
        mib = self.done / 1048576
        rate = mib / max(time.monotonic() - self.started, 1e-3)
        if self.total:
            return f"{mib:6.1f} / {self.total / 1048576:.1f} MiB ({self.done * 100 // self.total:3d}%) {rate:.1f} MiB/s"
        return f"{mib:6.1f} MiB {rate:.1f} MiB/s"

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _copy_local(origin: Origin, tmp: Path, label: str) -> str:
    source = Path(origin.location)
    if not source.is_file():
        raise _TryNext("not there")
    digest = hashlib.sha256()
    progress = Progress(label, source.stat().st_size)
    with open(source, "rb") as src, open(tmp, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            progress.update(len(chunk))
    progress.finish()
    return digest.hexdigest()


def _download(origin: Origin, tmp: Path, label: str, session: requests.Session) -> str:
    delay = BACKOFF
    problem = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with session.get(origin.location, stream=True,
                             timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)) as response:
                if response.status_code in (404, 410, 403):
                    raise _TryNext(f"HTTP {response.status_code}")
                if response.status_code >= 400:
                    raise OSError(f"HTTP {response.status_code}")
                total = int(response.headers.get("Content-Length") or 0) or None
                digest = hashlib.sha256()
                progress = Progress(label, total)
                with open(tmp, "wb") as dst:
                    for chunk in response.iter_content(CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                        progress.update(len(chunk))
                progress.finish()
                if total is not None and progress.done != total:
                    raise OSError(f"truncated: got {progress.done} of {total} bytes")
                return digest.hexdigest()
        except (requests.RequestException, OSError) as exc:
            problem = _short(exc)
        if attempt < ATTEMPTS:
            print(f"  {label}: {origin.location}: {problem}; retrying in {delay:.0f}s", file=sys.stderr)
            time.sleep(delay)
            delay *= 2
    raise _TryNext(problem)


def _short(exc: Exception) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect"
    return str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__


def fetch(filename: str, sha256: str, dest: Path, upstream_urls: list[str],
          mirrors: list[str]) -> str:
    """Place `filename` at `dest` once its sha256 matches; returns where it came from."""
    failures = []
    atomic.clear_stale(dest)
    if dest.is_file():
        got = file_sha256(dest)
        if got == sha256:
            return f"{dest} (already in the source cache)"
        print(f"  {filename}: the copy in the source cache does not match its pin (sha256 {got[:16]}..., "
              f"pinned {sha256[:16]}...): fetching it again", file=sys.stderr)
    session = requests.Session()
    for origin in origins(filename, upstream_urls, mirrors):
        try:
            with atomic_path(dest) as tmp:
                if origin.is_http:
                    got = _download(origin, tmp, filename, session)
                else:
                    got = _copy_local(origin, tmp, filename)
                if got != sha256:
                    raise _BadCopy(f"checksum mismatch (sha256 {got[:16]}..., pinned {sha256[:16]}...)")
            return origin.location
        except _BadCopy as why:
            # Said now, by name, even if a later origin has a good copy: someone should fix
            # or drop this mirror, and it would be tried first again next time.
            print(f"  kiln: warning: {origin.location} is a bad copy: {why}; trying the next origin",
                  file=sys.stderr)
            failures.append(f"{origin.location}: {why}")
        except _TryNext as why:
            failures.append(f"{origin.location}: {why}")
    tried = "; ".join(failures)
    raise KilnError(
        f"cannot fetch {filename} with sha256 {sha256[:16]}...: {tried}. "
        f"Fix: point KILN_MIRROR at a folder or URL holding it (scripts/fill-mirror makes one), "
        f"or correct the pin in the recipe"
    )


def fetch_companion(location: str, dest: Path) -> bool:
    """Fetch a small file that may or may not exist beside a fetched one (e.g. its .asc)."""
    try:
        with atomic_path(dest) as tmp:
            if location.startswith(("http://", "https://")):
                response = requests.get(location, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
                if response.status_code != 200:
                    raise _TryNext(f"HTTP {response.status_code}")
                tmp.write_bytes(response.content)
            else:
                if not Path(location).is_file():
                    raise _TryNext("not there")
                shutil.copyfile(location, tmp)
        return True
    except (_TryNext, requests.RequestException, OSError):
        return False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
