"""In-flight tracking, and the SQLite lock folders a killed script leaves behind."""
from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Callable, Iterable


class LockJanitor:
    """Tracks running scripts; clears SQLite dotfile locks a killed script left behind.

    SQLite's unix-dotfile VFS (the WASI default) locks `<db>` by creating the folder
    `<db>.lock`; a script killed mid-transaction never removes it. When a script is killed,
    every `X.lock` folder beside a file `X` in the writable grants is a suspect, recorded with
    its identity (device, inode, ctime). It may also belong to a script still running, so it
    is only removed once every script that was running at the kill has finished, and only if
    it is still the very same folder: a script started after the kill cannot own it (it could
    not have created it while it existed), and one that ran at the kill and released it made
    the folder go away (a new one has a new identity).
    """

    def __init__(self, roots: Callable[[], Iterable[Path]], log: Callable[[str], None]):
        self._roots = roots
        self._log = log
        self._lock = threading.Lock()
        self._next = 0
        self._active: set[int] = set()
        self._pending: list[tuple[dict[Path, tuple], set[int]]] = []
        self._idle = threading.Condition(self._lock)

    def begin(self) -> int:
        with self._lock:
            self._next += 1
            self._active.add(self._next)
            return self._next

    def end(self, ticket: int, killed: bool = False) -> None:
        suspects = self._scan() if killed else None
        with self._lock:
            self._active.discard(ticket)
            if suspects:
                self._pending.append((suspects, set(self._active)))
            ready = [p for p in self._pending if not (p[1] & self._active)]
            self._pending = [p for p in self._pending if p[1] & self._active]
            if not self._active:
                self._idle.notify_all()
        for suspects, _ in ready:
            self._clear(suspects)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
            return True

    @staticmethod
    def _identity(st: os.stat_result) -> tuple:
        return (st.st_dev, st.st_ino, st.st_ctime_ns)

    def _scan(self) -> dict[Path, tuple]:
        found: dict[Path, tuple] = {}
        for root in self._roots():
            for folder, dirs, files in os.walk(root):   # never follows symlinks
                for name in dirs:
                    if not name.endswith(".lock") or len(name) <= 5:
                        continue
                    lock = Path(folder, name)
                    try:
                        st = os.lstat(lock)
                        db = os.lstat(Path(folder, name[:-5]))
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode) and stat.S_ISREG(db.st_mode):
                        found[lock] = self._identity(st)
        return found

    def _clear(self, suspects: dict[Path, tuple]) -> None:
        for lock, identity in suspects.items():
            try:
                if self._identity(os.lstat(lock)) != identity:
                    continue    # released, maybe re-taken by a live script: not stale
                os.rmdir(lock)  # SQLite's lock folder is empty; anything else is not ours
                self._log(f"kiln.server: removed stale SQLite lock {lock}")
            except FileNotFoundError:
                continue
            except OSError as e:
                self._log(f"kiln.server: could not remove stale lock {lock}: {e.strerror}")
