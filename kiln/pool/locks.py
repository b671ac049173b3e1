"""Stale SQLite locks left by a worker the pool killed.

SQLite on WASI has no fcntl locks; the wordpress flavour's default VFS is unix-dotfile
(libraries/sqlite/recipe.toml), which locks `X` by creating the folder `X.lock` with mkdir and
removes it when the connection lets go. Every lock is exclusive, readers' too. A worker killed
mid-transaction (request_terminate_timeout, a trap, kill -9) never removes it, and every later
request then waits out its busy timeout and fails with "database is locked".

So when the pool kills or loses a worker, every `X.lock` folder beside a file `X` in the
writable grants is a suspect, noted with its identity (device, inode, ctime). It may belong to
a request still running on another worker, so it is removed only once every request that was
running at that moment has finished, and only if it is still the very same folder: a request
started later cannot own it (mkdir would have failed while it existed), and one that released
it made it disappear (a new folder has a new identity).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

SUFFIX = ".lock"


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_ctime_ns


def find_locks(roots: Iterable[Path]) -> dict[Path, tuple]:
    """Every dot-file lock folder (`X.lock` beside a file `X`) under `roots`, by identity."""
    found: dict[Path, tuple] = {}
    for root in roots:
        for folder, dirs, _ in os.walk(root):   # does not follow symlinks
            for name in dirs:
                if len(name) <= len(SUFFIX) or not name.endswith(SUFFIX):
                    continue
                lock = Path(folder, name)
                try:
                    st = os.lstat(lock)
                    db = os.lstat(Path(folder, name[:-len(SUFFIX)]))
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode) and stat.S_ISREG(db.st_mode):
                    found[lock] = _identity(st)
    return found


class StaleLocks:
    """Requests in flight, and the lock folders found when one was killed. kiln.pool uses it
    for its workers, kiln.server (as LockJanitor) for every request it runs; `roots` may be a
    callable, for grants known only once the server has set its sandbox up."""

    def __init__(self, roots: Iterable[Path] | Callable[[], Iterable[Path]],
                 log: Callable[[str], None], who: str = "pool"):
        self._roots = roots if callable(roots) else list(roots)
        self._log = log
        self._who = who
        self._mutex = threading.Lock()
        self._idle = threading.Condition(self._mutex)
        self._next = 0
        self._running: set[int] = set()
        self._suspects: list[tuple[dict[Path, tuple], set[int]]] = []

    def _root_list(self) -> list[Path]:
        return list(self._roots()) if callable(self._roots) else self._roots

    def begin(self) -> int:
        with self._mutex:
            self._next += 1
            self._running.add(self._next)
            return self._next

    def end(self, ticket: int, killed: bool = False) -> None:
        """The request `ticket` is over; `killed`: it was killed, or its worker died under it."""
        roots = self._root_list() if killed else []
        found = find_locks(roots) if roots else {}
        with self._mutex:
            self._running.discard(ticket)
            if found:
                self._suspects.append((found, set(self._running)))
            ready = [s for s, waiting in self._suspects if not waiting & self._running]
            self._suspects = [(s, w) for s, w in self._suspects if w & self._running]
            if not self._running:
                self._idle.notify_all()
        for suspects in ready:
            self._clear(suspects)

    @property
    def active(self) -> int:
        with self._mutex:
            return len(self._running)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request runs (a graceful stop); False if `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._mutex:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    def _clear(self, suspects: dict[Path, tuple]) -> None:
        for lock, identity in suspects.items():
            try:
                if _identity(os.lstat(lock)) != identity:
                    continue        # released since, perhaps taken again by a live request
                os.rmdir(lock)      # SQLite's lock folder is empty; a full one is not ours
                self._log(f"{self._who}: removed the stale SQLite lock {lock} of a killed request")
            except FileNotFoundError:
                continue
            except OSError as e:
                self._log(f"{self._who}: could not remove the stale SQLite lock {lock}: {e.strerror}")
