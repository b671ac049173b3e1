"""Run a long build command: full output to a log, a heartbeat on the terminal.

On failure the log's last lines are printed with its path, and a KilnError
names the step, so a broken build reads the same in a terminal and in CI.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from .errors import KilnError

TAIL_LINES = 40
HEARTBEAT = 15.0  # seconds between progress lines
_COMPILING = re.compile(r"--mode=compile|^\s*CC\s|\bcc\b.* -c ")


def run_logged(command: list[str], log: Path, label: str, env: dict | None = None,
               cwd: Path | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    counts = {"lines": 0, "compiled": 0}
    done = threading.Event()

    def heartbeat():
        while not done.wait(HEARTBEAT):
            elapsed = int(time.monotonic() - started)
            print(f"  {label}: {elapsed // 60}m{elapsed % 60:02d}s, "
                  f"{counts['compiled']} files compiled, {counts['lines']} log lines", file=sys.stderr)

    print(f"  {label}: log at {log}", file=sys.stderr)
    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        with open(log, "wb", buffering=0) as out:  # unbuffered: tail -f shows it live
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       env={**os.environ, **(env or {})}, cwd=cwd)
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                counts["lines"] += 1
                if _COMPILING.search(line.decode(errors="replace")):
                    counts["compiled"] += 1
            code = process.wait()
    except KeyboardInterrupt:
        process.kill()
        process.wait()
        raise
    finally:
        done.set()
    elapsed = time.monotonic() - started
    if code != 0:
        tail = log.read_text(errors="replace").splitlines()[-TAIL_LINES:]
        print(f"----- last {len(tail)} lines of {log} -----", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
        print("-----", file=sys.stderr)
        raise KilnError(f"{label} failed (exit {code}) after {elapsed:.0f}s: full log in {log}")
    print(f"  {label}: done in {elapsed:.0f}s", file=sys.stderr)
