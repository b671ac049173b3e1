"""Conformance: PHP's own run-tests.php, driven by native PHP, against a wasm build.

The driver is the host's PHP (kiln/native.py: Debian's php8.2-cli or php8.4-cli); the binary
under test is a small wrapper (templates/php-under-test.sh.j2) that runs the build's
precompiled module through `python -m kiln.runner`. The selected test folders and run-tests.php are copied out of the
build's source tree into a scratch folder (run-tests writes its .php/.out/.diff files beside
each test; the build tree stays clean), and that folder is granted to the guest at the same
path, so the absolute paths run-tests passes resolve inside the sandbox.

Tests for what WASI cannot have are not run: they are listed with their reason in
languages/<lang>/conformance-skips.toml, removed from the scratch copy, and reported in the
results as `skipped_by_kiln`, never silently.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from . import atomic, native, settings, templating
from .errors import KilnError
from .layout import Build
from .versions import Version, VersionRange

DEFAULT_FOLDERS = ("tests/lang", "tests/basic", "tests/func", "tests/output")
WRAPPER_TEMPLATE = "php-under-test.sh.j2"
# Files outside the test folders that tests include (`../quicktester.inc` in 7.4).
SUPPORT_FILES = ("tests/quicktester.inc", "sapi/cli/tests/skipif.inc")
TEST_TIMEOUT = 60  # seconds per test (run-tests' own limit; the runner gets a little more)


@dataclass(frozen=True)
class Skip:
    pattern: str  # glob, relative to the source tree: "tests/lang/*fiber*.phpt"
    reason: str
    when: VersionRange

    def matches(self, test: str, version: str) -> bool:
        return Version.parse(version) in self.when and fnmatch.fnmatchcase(test, self.pattern)


def load_skips(path: Path) -> list[Skip]:
    """[[skip]] tables: `tests` (a glob or a list of globs), `reason`, optional `when`."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise KilnError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise KilnError(f"{path}: not valid TOML: {exc}") from None
    skips = []
    for index, entry in enumerate(data.get("skip", []), 1):
        unknown = set(entry) - {"tests", "reason", "when"}
        if unknown:
            raise KilnError(f"{path}: skip #{index}: unknown key(s) {', '.join(sorted(unknown))}")
        reason = entry.get("reason", "").strip()
        if not reason:
            raise KilnError(f"{path}: skip #{index} has no reason: every skip states why")
        tests = entry.get("tests")
        tests = [tests] if isinstance(tests, str) else tests
        if not tests or not all(isinstance(t, str) for t in tests):
            raise KilnError(f"{path}: skip #{index}: `tests` must be a glob or a list of globs")
        try:
            when = VersionRange.parse(entry.get("when", "@:"))
        except ValueError as exc:
            raise KilnError(f"{path}: skip #{index}: {exc}") from None
        skips.extend(Skip(t, reason, when) for t in tests)
    return skips


def driver() -> str:
    """The native PHP that runs run-tests.php (any PHP >= 8.0: languages/php/native.toml)."""
    return native.binary("cli")


def _copy_tests(src: Path, work: Path, folders: list[str], skips: list[Skip], version: str):
    """Copy run-tests.php and the folders into `work`; leave out the tests we skip.
    Returns ({folder: [tests run]}, [{test, folder, reason}] skipped by us)."""
    if not (src / "run-tests.php").is_file():
        raise KilnError(f"{src} has no run-tests.php: run the patch stage first")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy2(src / "run-tests.php", work / "run-tests.php")
    for support in SUPPORT_FILES:
        if (src / support).is_file():
            (work / support).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / support, work / support)
    selected: dict[str, list[str]] = {}
    ours: list[dict] = []
    for folder in folders:
        if not (src / folder).is_dir():
            raise KilnError(f"conformance folder {folder!r} does not exist in {src}")
        shutil.copytree(src / folder, work / folder, symlinks=True)
        selected[folder] = []
        for phpt in sorted((work / folder).rglob("*.phpt")):
            test = phpt.relative_to(work).as_posix()
            reason = next((s.reason for s in skips if s.matches(test, version)), None)
            if reason is None:
                selected[folder].append(test)
            else:
                phpt.unlink()
                ours.append({"test": test, "folder": folder, "reason": reason})
    return selected, ours


def render_wrapper(path: Path, module: Path, build_id: str, work: Path, tmp: Path) -> Path:
    """`path` becomes the guest's argv[0] (PHP_BINARY): it lies inside the granted `work`."""
    from . import runner  # imported late: loading wasmtime is not free
    text = templating.render(WRAPPER_TEMPLATE, module=module, build_id=build_id, work=work,
                             tmp=tmp, argv0=path, python=sys.executable, root=settings.ROOT,
                             timeout=runner.limit(TEST_TIMEOUT + 30))
    atomic.write_text(path, text, mode=0o755)
    return path


def _folder_of(test: str, folders: list[str]) -> str:
    return max((f for f in folders if test.startswith(f.rstrip("/") + "/")), key=len, default="?")


def run_on_a_terminal(command: list[str], cwd: Path, env: dict) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as stdin, stdout and stderr; its output as text.

    PHP's suite is written for a terminal: the stream_isatty tests expect every stream that
    --CAPTURE_STDIO-- leaves alone to be one, and run-tests hands its own down to the test.
    Under a pipe (doit, CI) native PHP would fail them as surely as the wasm build."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True)
    finally:
        os.close(slave)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        returncode = proc.wait()
    return returncode, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def parse_junit(path: Path, work: Path, folders: list[str]) -> list[dict]:
    """Every <testcase> of run-tests' JUnit log as {test, folder, outcome, message}."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise KilnError(f"run-tests left no readable JUnit log at {path}: {exc}") from None
    cases = []
    for case in root.iter("testcase"):
        # run-tests names a case "<path relative to its cwd> (<test title>)".
        name = case.get("name", "")
        test = name.split(" (", 1)[0].strip()
        if test.startswith(str(work)):
            test = os.path.relpath(test, work)
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped", "warning"):
            node = case.find(kind)
            if node is not None:
                outcome = {"failure": "failed", "error": "failed", "skipped": "skipped",
                           "warning": "passed"}[kind]
                message = (node.get("message") or "").strip() or _first_diff_lines(node.text)
                break
        cases.append({"test": test, "folder": _folder_of(test, folders), "outcome": outcome,
                      "message": message[:300]})
    return cases


def _first_diff_lines(text: str | None, lines: int = 4) -> str:
    """The first lines of run-tests' diff (+ got, - expected): enough to see the cause."""
    return "\n".join((text or "").strip().splitlines()[:lines])


def summarize(cases: list[dict], ours: list[dict], folders: list[str]) -> tuple[dict, dict]:
    per_folder = {}
    for folder in folders:
        mine = [c for c in cases if c["folder"] == folder]
        skipped_ours = [s for s in ours if s["folder"] == folder]
        per_folder[folder] = _counts(mine, skipped_ours)
        per_folder[folder]["failing"] = sorted(c["test"] for c in mine if c["outcome"] == "failed")
    totals = _counts(cases, ours)
    return per_folder, totals


def _counts(cases: list[dict], ours: list[dict]) -> dict:
    passed = sum(c["outcome"] == "passed" for c in cases)
    failed = sum(c["outcome"] == "failed" for c in cases)
    skipped_upstream = sum(c["outcome"] == "skipped" for c in cases)
    ran = passed + failed
    return {
        "passed": passed, "failed": failed,
        "skipped": skipped_upstream + len(ours),
        "skipped_by_tests": skipped_upstream,   # the test's own SKIPIF said so
        "skipped_by_kiln": len(ours),           # conformance-skips.toml said so
        "rate": round(passed / ran, 4) if ran else 0.0,  # of the tests that ran
    }


def run(build: Build, modules: dict[str, Path], folders: list[str], skips_file: Path,
        jobs: int = 2, out: Path | None = None, log=print) -> dict:
    """Run the folders' tests against the build's modules; write and return conformance.json."""
    from . import runner  # imported late: loading wasmtime is not free

    skips = load_skips(skips_file)
    scratch = build.root / "conformance"
    work, tmp = scratch / "tree", scratch / "tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    selected, ours = _copy_tests(build.src, work, folders, skips, build.version)
    tmp.mkdir(parents=True)
    php = render_wrapper(scratch / "php", modules["php"], build.id, scratch, tmp)
    env = {**os.environ, "TEST_PHP_EXECUTABLE": str(php), "NO_INTERACTION": "1",
           "TEST_PHP_JUNIT": str(scratch / "junit.xml"), "TZ": "UTC", "LC_ALL": "C", "NO_COLOR": "1"}
    env.pop("TEST_PHP_CGI_EXECUTABLE", None)
    if "php-cgi" in modules and modules["php-cgi"].is_file():
        cgi = render_wrapper(scratch / "php-cgi", modules["php-cgi"], build.id, scratch, tmp)
        env["TEST_PHP_CGI_EXECUTABLE"] = str(cgi)
    command = [driver(), "-n", str(work / "run-tests.php"), "-p", str(php), "-q",
               "--set-timeout", str(TEST_TIMEOUT), *([f"-j{jobs}"] if jobs > 1 else []),
               *[str(work / f) for f in folders]]
    log(f"  run-tests: {sum(map(len, selected.values()))} tests in {', '.join(folders)} "
        f"({len(ours)} skipped by Kiln), -j{jobs}")
    started = time.monotonic()
    returncode, output = run_on_a_terminal(command, cwd=work, env=env)
    seconds = time.monotonic() - started
    atomic.write_text(scratch / "run-tests.log", output)
    cases = parse_junit(scratch / "junit.xml", work, folders)
    if not cases:
        raise KilnError(f"run-tests ran no tests (exit {returncode}); see {scratch / 'run-tests.log'}")
    per_folder, totals = summarize(cases, ours, folders)
    result = {
        "version": build.version,
        "flavour": build.flavour,
        "engine": runner.engine_fingerprint(),
        "driver": native.version(driver()),
        "folders": folders,
        "jobs": jobs,
        "seconds": round(seconds, 1),
        "totals": totals,
        "per_folder": per_folder,
        "failing": [{"test": c["test"], "message": c["message"]} for c in cases
                    if c["outcome"] == "failed"],
        "skipped_by_kiln": ours,
        "skipped_by_tests": [{"test": c["test"], "reason": c["message"]} for c in cases
                             if c["outcome"] == "skipped"],
    }
    atomic.write_json(out or build.root / "conformance.json", result)
    return result
