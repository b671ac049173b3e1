"""WasmEdge, the seed's runtime, as the smoke checks' second runtime (kiln/wasmedge.py).

The slow tests read what the smoke stage of both testable releases recorded: on this machine
(Debian 12, root, apt) the wasmedge stage makes a Debian 13 root with WasmEdge in KILN_CACHE,
so every check must have run under it and passed; a machine where that fails fails here."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln import runner, wasmedge  # noqa: E402
from kiln.errors import KilnError  # noqa: E402


def test_turned_off_it_records_why_and_the_checks_say_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_BUILD_OUTPUT", str(tmp_path))
    monkeypatch.setenv("KILN_WASMEDGE", "off")
    assert wasmedge.write_state() == {"available": False, "reason": "KILN_WASMEDGE=off"}
    assert wasmedge.read_state() == "KILN_WASMEDGE=off"
    (tmp_path / "wasmedge.json").unlink()
    assert wasmedge.read_state() == "the wasmedge stage has not run"


def test_a_bad_setting_is_one_line_naming_it(monkeypatch):
    monkeypatch.setenv("KILN_WASMEDGE", "sometimes")
    with pytest.raises(KilnError, match=r"^KILN_WASMEDGE='sometimes' is not one of auto, off"):
        wasmedge.write_state()


@pytest.mark.slow
@pytest.mark.parametrize("version", ["7.4.33", "8.2.32"])
def test_every_smoke_check_ran_and_passed_under_wasmedge_too(php_builds, version):
    report = json.loads(php_builds[version].smoke_report.read_text())
    edge = report["runtimes"]["wasmedge"]
    assert edge.get("version"), f"WasmEdge did not run: {edge}"
    assert report["passed"] is True
    assert {c["name"]: c["runtimes"] for c in report["checks"]} == {
        c["name"]: {"wasmtime": "passed", "wasmedge": "passed"} for c in report["checks"]}
    assert [c["name"] for c in report["wasmedge_checks"]] == [c["name"] for c in report["checks"]]


@pytest.mark.slow
def test_wasmedge_keeps_the_modules_exit_codes_and_grants(php_builds, tmp_path):
    edge = wasmedge.read_state()
    assert isinstance(edge, wasmedge.WasmEdge), edge
    module = php_builds["8.2.32"].module("php")
    (tmp_path / "in.txt").write_text("from the host")
    run = lambda *argv, **kw: wasmedge.run(edge, 60, module, ["php", *argv], kw.get("env", {}), b"",  # noqa: E731
                                           kw.get("grants", []))
    fatal = run("-r", "echo 'a'; undefined_function();")
    assert fatal.exit_code == 255 and fatal.stdout.startswith(b"a")
    assert run("-r", "exit(7);").exit_code == 7
    read = run("-r", "echo file_get_contents('/data/in.txt'), getenv('KILN_X');",
               env={"KILN_X": "!"}, grants=[runner.Preopen(tmp_path, "/data")])
    assert (read.exit_code, read.stdout) == (0, b"from the host!")
    refused = run("-r", "var_dump(@file_put_contents('/data/out.txt', 'x'));",
                  grants=[runner.Preopen(tmp_path, "/data", writable=False)])
    assert refused.stdout.strip() == b"bool(false)" and not (tmp_path / "out.txt").exists()


@pytest.mark.slow
def test_the_report_shows_the_wasmedge_column(php_builds):
    from doit_run import doit
    doit("report")
    text = (ROOT / "build-output" / "report.md").read_text()
    assert "| under WasmEdge |" in text and "passed, 0 failed (WasmEdge " in text
