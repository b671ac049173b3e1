"""Drive doit the way a user does, and read its own JSON report of what ran."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(*targets: str):
    """Bring `targets` up to date for a test's fixture. KILN_TEST_PREBUILT=1 skips doit and
    uses what KILN_BUILD_OUTPUT already holds: for a second checkout (a git worktree) testing
    Python-only changes against builds made from another, whose doit records name the other
    checkout's files and would rebuild everything."""
    if os.environ.get("KILN_TEST_PREBUILT", "").strip() in ("", "0"):
        doit(*targets)


def doit(*args: str, env: dict | None = None, check: bool = True, timeout: float = 3600):
    """Run `doit ARGS` in the project; returns (exit code, {task: result}, stdout+stderr, seconds)."""
    command = [sys.executable, "-m", "doit", "--reporter", "json", *args]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **(env or {})})
    seconds = time.monotonic() - started
    tasks = {}
    try:
        report = json.loads(result.stdout)
        tasks = {t["name"]: t["result"] for t in report["tasks"]}
    except (json.JSONDecodeError, KeyError):
        pass
    if check and result.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.returncode, tasks, result.stdout + result.stderr, seconds


def executed(tasks: dict) -> set[str]:
    return {name for name, outcome in tasks.items() if outcome not in ("up-to-date", "ignore")}


def plain(*args: str, env: dict | None = None):
    """doit without the JSON reporter: what a user sees."""
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def images_dodo(output: Path) -> Path:
    """A dodo file with only the image and publish tasks, its store in `output`: the build
    chain's tasks are absent, so a prepared bin/ folder is taken as it is."""
    dodo = output / "dodo_images.py"
    if not dodo.exists():
        dodo.write_text(
            "from tasks.image import task_php_image  # noqa: F401\n"
            "from tasks.publish import task_php_publish  # noqa: F401\n"
            f"DOIT_CONFIG = {{'backend': 'sqlite3', 'dep_file': {str(output / '.doit.sqlite3')!r},"
            " 'verbosity': 2}\n")
    return dodo
