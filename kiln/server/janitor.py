"""Requests in flight, and the SQLite lock folders a killed script leaves behind: the same
bookkeeping as kiln.pool's (kiln/pool/locks.py, where the reasoning is), in kiln.server's name."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from kiln.pool.locks import StaleLocks


class LockJanitor(StaleLocks):
    def __init__(self, roots: Callable[[], Iterable[Path]], log: Callable[[str], None]):
        super().__init__(roots, log, who="kiln.server")
