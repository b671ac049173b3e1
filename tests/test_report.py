"""`doit report`: JSON, Markdown and a self-contained HTML page, rendered by a real browser."""
import json
import shutil
import subprocess

import pytest

from doit_run import ROOT, doit

pytestmark = pytest.mark.slow
OUT = ROOT / "build-output"


@pytest.fixture(scope="module")
def report(php_builds):
    _, tasks, output, _ = doit("report")
    assert tasks.get("report") == "success", output[-2000:]
    return json.loads((OUT / "report.json").read_text())


def test_every_built_version_has_stages_sizes_and_smoke(report):
    by_build = {b["build"]: b for b in report["builds"]}
    for version in ("7.4.33", "8.2.32"):
        entry = by_build[version]
        assert {"configure", "make", "collect", "smoke"} <= set(entry["stages"]), entry["stages"]
        assert entry["smoke"]["passed"] is True
        assert 1e6 < entry["sizes"]["php"]["wasm"] < entry["sizes"]["php"]["cwasm"]
    assert "8.4.1" in report["not_built"]


def test_each_configured_build_shows_its_spec(report):
    """The spec configure rendered the build from (kiln/spec.py), as the report's own words."""
    by_build = {b["build"]: b for b in report["builds"]}
    spec = by_build["8.2.32"]["spec"]
    assert (spec["release"], spec["flavour"], spec["variants"], spec["vm_kind"]) == ("8.2.32", "default", ["goto"], "GOTO")
    assert "--disable-all" in spec["configure"] and "0015-long64-wasm32.patch" in spec["patches"]
    assert "| 8.2.32 | goto | GOTO |" in (OUT / "report.md").read_text()


def test_the_markdown_has_the_tables(report):
    text = (OUT / "report.md").read_text()
    assert "| build | download |" in text and "| 8.2.32 | php |" in text


def test_the_html_renders_its_tables_in_chromium(report, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium is not installed: run scripts/setup")
    page = OUT / "report.html"
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert '<table id="stages">' in dom, result.stderr[-2000:]
    assert "<td>8.2.32</td>" in dom and "<td>7.4.33</td>" in dom
    assert '<svg id="sizes"' in dom and "<rect" in dom
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={screenshot}",
         "--window-size=1000,800", page.as_uri()], capture_output=True, timeout=120)
    assert screenshot.is_file() and screenshot.stat().st_size > 5000
