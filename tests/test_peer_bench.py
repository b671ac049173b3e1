"""bench/peer.py's reading of the peer (bench/peer.mjs, npm @php-wasm/node)."""
import importlib.util
import json
import shutil
import subprocess

import pytest

from doit_run import ROOT
from kiln.errors import KilnError

_spec = importlib.util.spec_from_file_location("peer_bench", ROOT / "bench" / "peer.py")
peer_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peer_bench)

REPORT = {"load": 0.5, "run": 1.25, "exit": 0, "php": "8.2.33", "package": "3.1.56", "mode": "asyncify"}


def test_the_report_is_the_last_marker_line_after_the_scripts_own_stderr():
    stderr = ("PHP Warning: kiln-peer is only a word here\n"
              f"kiln-peer {json.dumps({**REPORT, 'run': 9.0})}\n"  # an earlier one loses
              f"\nkiln-peer {json.dumps(REPORT)}\n")
    assert peer_bench.parse_peer(stderr) == REPORT


def test_a_peer_that_died_before_reporting_says_so_with_its_stderr():
    with pytest.raises(KilnError, match="reported nothing.*Cannot find package"):
        peer_bench.parse_peer("Error [ERR_MODULE_NOT_FOUND]: Cannot find package '@php-wasm/node'\n")


def test_a_report_missing_a_figure_is_refused():
    partial = {k: v for k, v in REPORT.items() if k != "run"}
    with pytest.raises(KilnError, match="lacks run"):
        peer_bench.parse_peer(f"kiln-peer {json.dumps(partial)}\n")


@pytest.mark.slow
def test_the_pinned_peer_runs_a_file_and_reports(tmp_path):
    if not (ROOT / "node_modules" / "@php-wasm" / "node").is_dir() or not shutil.which("node"):
        pytest.fail("@php-wasm/node is not installed: run scripts/setup (npm ci)")
    script = tmp_path / "hello.php"
    script.write_text("<?php echo 'hello ', 6 * 7;")
    proc = subprocess.run(["node", str(ROOT / "bench" / "peer.mjs"), str(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello 42"
    report = peer_bench.parse_peer(proc.stderr)
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["@php-wasm/node"]
    assert report["package"] == pinned and report["php"].startswith("8.2.") and report["exit"] == 0
    assert report["mode"] in ("jspi", "asyncify")
