"""Run the smoke checks a recipe declares (languages/<name>/smoke/checks.toml)."""
from __future__ import annotations

import functools
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import cgi, runner
from .errors import KilnError
from .when import When

_FIELDS = {"name", "why", "module", "argv", "env", "stdin", "grants", "when", "exit",
           "stdout", "stdout_file", "contains", "lacks", "status", "headers"}


@dataclass
class Outcome:
    name: str
    why: str
    passed: bool
    exit_code: int | None = None
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    output: str = ""


def load_checks(path: Path) -> list[dict]:
    try:
        checks = tomllib.loads(path.read_text()).get("check", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise KilnError(f"{path}: cannot read smoke checks: {exc}") from None
    for check in checks:
        unknown = set(check) - _FIELDS
        if unknown or "name" not in check or "module" not in check:
            raise KilnError(f"{path}: check {check.get('name', '?')!r} needs name and module and "
                            f"has unknown fields {sorted(unknown)}")
    return checks


def applies(check: dict, version: str, variants=()) -> bool:
    """`when` limits a check to releases and variants, as a recipe's `when` does ("@8.1:",
    "+gd", "@8.2 +opcache": kiln/when.py) given the build's `variants`: a check says what it
    needs, never which flavours (a flavour is only a set of variants)."""
    try:
        when = When.parse(check.get("when", "@:"))
    except ValueError as exc:
        raise KilnError(f"smoke check {check.get('name', '?')!r}: {exc}") from None
    return when.satisfied_by(version, variants)


def parse_cgi(stdout: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a CGI response, read by the server's own parser (kiln.cgi);
    status 0 when the output is not a CGI response at all."""
    response = cgi.parse(stdout)
    if response is None:
        return 0, {}, stdout
    return response.status, dict(response.headers), response.body


CHECK_LIMIT = 60.0  # seconds; a check that takes longer has failed


def _run_within(limit: float, module: Path, argv: list[str], **options) -> runner.RunResult | None:
    """runner.run, given at most `limit` seconds; None when it did not finish. With epoch checks
    (KILN_TIME_LIMITS=on) the guest stops itself; without them (the default) nothing can stop
    it inside this process, so it runs in a thread that is waited for `limit` seconds and then
    left behind: the check fails, the build stops on it, and the thread ends with the process."""
    if runner.limit(limit) is not None:
        return runner.run(module, argv, timeout=limit, **options)
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = runner.run(module, argv, **options)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    worker = runner.start_guest_thread(target, "kiln-smoke-check")
    worker.join(limit)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("result")  # type: ignore[return-value]


def _first_difference(actual: str, expected: str) -> str:
    """The first line where a long output departs from the expected one, for a one-line problem."""
    actual_lines, expected_lines = actual.splitlines(), expected.splitlines()
    for number, (got, wanted) in enumerate(zip(actual_lines, expected_lines), start=1):
        if got != wanted:
            return f"line {number} is {got[:160]!r}, expected {wanted[:160]!r}"
    if len(actual_lines) != len(expected_lines):
        return f"{len(actual_lines)} lines, expected {len(expected_lines)}"
    return "differs in line endings or the final newline"


def run_check(check: dict, version: str, modules: dict[str, Path], fixtures: Path,
              execute=None) -> Outcome:
    """Run one check and judge what it printed. `execute(module, argv, env=, stdin=, preopens=)`
    runs the guest on another runtime (kiln/wasmedge.py); the default is Kiln's Wasmtime runner
    with CHECK_LIMIT. Either returns a runner.RunResult, or None when the guest did not end."""
    execute = execute or functools.partial(_run_within, CHECK_LIMIT)
    outcome = Outcome(check["name"], check.get("why", ""), passed=False)
    # A check left running (below) may still hold its scratch folder: removing it is best effort.
    with tempfile.TemporaryDirectory(prefix="kiln-smoke-", ignore_cleanup_errors=True) as scratch:
        grants = []
        for grant in check.get("grants", []):
            host = Path(scratch) if grant["host"] == "@tmp" else fixtures / grant["host"]
            grants.append(runner.Preopen(host, grant["guest"], writable=grant.get("writable", False)))
        module = modules[check["module"]]
        result = execute(module, [check["module"], *check.get("argv", [])],
                         env=check.get("env", {}), stdin=check.get("stdin", "").encode(),
                         preopens=grants)
    if result is None:
        outcome.problems.append(f"no answer within {CHECK_LIMIT:g} s (left running until this build ends)")
        return outcome
    outcome.exit_code, outcome.seconds = result.exit_code, round(result.duration, 3)
    text = (result.stdout + result.stderr).decode(errors="replace")
    outcome.output = text[-2000:]
    problems = outcome.problems
    if "exit" in check and result.exit_code != check["exit"]:
        problems.append(f"exit code {result.exit_code}, expected {check['exit']}")
    if "stdout" in check:
        expected = check["stdout"].format(version=version)
        if result.stdout.decode(errors="replace") != expected:
            problems.append(f"stdout {result.stdout[:200]!r}, expected {expected!r}")
    if "stdout_file" in check:
        # Long expected outputs (produced once by native PHP) live beside the scripts.
        expected = (fixtures / check["stdout_file"]).read_text()
        actual = result.stdout.decode(errors="replace")
        if actual != expected:
            problems.append(f"stdout differs from {check['stdout_file']}: {_first_difference(actual, expected)}")
    for needle in check.get("contains", []):
        if needle.format(version=version) not in text:
            problems.append(f"output lacks {needle!r}")
    for needle in check.get("lacks", []):
        if needle in text:
            problems.append(f"output has {needle!r}")
    if "status" in check or "headers" in check:
        status, headers, _ = parse_cgi(result.stdout)
        if "status" in check and status != check["status"]:
            problems.append(f"CGI status {status}, expected {check['status']}")
        for name, value in check.get("headers", {}).items():
            if headers.get(name) != value:
                problems.append(f"CGI header {name}: {headers.get(name)!r}, expected {value!r}")
    outcome.passed = not problems
    return outcome
