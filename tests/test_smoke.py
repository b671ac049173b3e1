"""The smoke checks' own time limit, now that modules carry no epoch checks by default."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from kiln import smoke
print(smoke._run_within(0.5, sys.argv[1], ["tool", "loop"]))
print(smoke._run_within(30, sys.argv[1], ["tool", "exit", "3"]).exit_code)
"""


def test_a_check_that_never_ends_fails_at_its_limit_and_the_build_process_still_exits(tool):
    # In a process of its own: the runaway guest is left spinning in a thread until that
    # process ends, which must then be at once (a hang here is the subprocess timeout).
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tool)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "3"]


def test_a_check_against_an_expected_output_file_names_the_first_line_that_differs(tool, tmp_path):
    from kiln import smoke
    (tmp_path / "expected.txt").write_text("one\ntwo\nthree\n")
    check = {"name": "echo", "module": "tool", "argv": ["echo"], "stdout_file": "expected.txt"}
    modules = {"tool": tool}

    same = smoke.run_check({**check, "stdin": "one\ntwo\nthree\n"}, "1.0", modules, tmp_path)
    assert same.passed, same.problems

    changed = smoke.run_check({**check, "stdin": "one\n2\nthree\n"}, "1.0", modules, tmp_path)
    assert not changed.passed
    assert changed.problems == ["stdout differs from expected.txt: line 2 is '2', expected 'two'"]

    shorter = smoke.run_check({**check, "stdin": "one\ntwo\n"}, "1.0", modules, tmp_path)
    assert shorter.problems == ["stdout differs from expected.txt: 2 lines, expected 3"]
