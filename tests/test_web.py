"""The browser site (php_web, kiln/web.py): the build's modules unchanged, the pinned WASI shim,
the playground; and the playground itself in Debian's Chromium, headless, driven by
playwright-core (tests/browser.mjs), served from a loopback static server."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from doit_run import ROOT, build
from kiln.layout import Build
from static_server import StaticServer

BUILD = Build("php", "8.2.32", "default")
# Not a PHP module: make_site copies modules without reading them, which is the point.
FAKE_WASM = b"\0asm\x01\0\0\0" + bytes(range(256))


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no chromium on PATH: install it (apt-get install chromium; scripts/setup does)")


def drive(visits: list[dict], tmp_path: Path) -> list[dict]:
    """Each visit in a fresh browser context; returns what the page showed when its run ended."""
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is not installed: run scripts/setup (npm ci)")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"visits": visits}))
    result = subprocess.run(["node", str(ROOT / "tests" / "browser.mjs"), chromium(), str(job)],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def run_url(server: StaticServer, code: str) -> str:
    return f"{server.url}/index.html?run={urllib.parse.quote(code)}"


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_BUILD_OUTPUT", str(tmp_path / "out"))
    from kiln import web
    bins = tmp_path / "bin"
    bins.mkdir()
    modules = {"php": bins / "php.wasm", "php-cgi": bins / "php-cgi.wasm"}
    modules["php"].write_bytes(FAKE_WASM)
    modules["php-cgi"].write_bytes(FAKE_WASM[::-1])
    return web, modules


def test_the_site_holds_the_modules_unchanged_and_the_pinned_shim(fake_site):
    web, modules = fake_site
    manifest = web.make_site(BUILD, modules)
    site = web.site_folder(BUILD)
    assert site == Path(os.environ["KILN_BUILD_OUTPUT"]).resolve() / "web" / "php-8.2.32"
    for name, path in modules.items():
        assert (site / path.name).read_bytes() == path.read_bytes()
        assert manifest["modules"][name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["@bjorn3/browser_wasi_shim"]
    assert json.loads((site / "shim" / "package.json").read_text())["version"] == pinned
    assert {"index.js", "wasi.js", "fs_mem.js", "LICENSE-MIT", "LICENSE-APACHE"} <= {
        p.name for p in (site / "shim").iterdir()}
    assert {"index.html", "worker.js", "playground.js", "fs.js", "style.css", "site.json"} <= {p.name for p in site.iterdir()}
    assert not list(site.glob("*.j2"))
    page = (site / "index.html").read_text()
    assert manifest["modules"]["php"]["sha256"] in page and 'id="output"' in page
    assert json.loads((site / "site.json").read_text()) == manifest


def test_a_rebuild_swaps_the_whole_folder(fake_site):
    web, modules = fake_site
    web.make_site(BUILD, modules)
    site = web.site_folder(BUILD)
    (site / "left-over.txt").write_text("from an older site")
    modules["php"].write_bytes(FAKE_WASM + b"changed")
    web.make_site(BUILD, modules)
    assert not (site / "left-over.txt").exists()
    assert (site / "php.wasm").read_bytes() == FAKE_WASM + b"changed"
    assert not list(site.parent.glob(".*"))  # no staging or old folder left beside it


def test_the_static_server_sends_wasm_as_application_wasm(fake_site):
    web, modules = fake_site
    web.make_site(BUILD, modules)
    with StaticServer(web.site_folder(BUILD)) as server:
        with urllib.request.urlopen(f"{server.url}/php.wasm") as response:
            assert response.headers["Content-Type"] == "application/wasm"
            assert response.read() == FAKE_WASM
        with urllib.request.urlopen(f"{server.url}/worker.js") as response:
            assert response.headers["Content-Type"] == "text/javascript"


def test_the_build_chain_includes_the_site():
    from tasks.group import stages_of
    assert "php_web:8.2.32" in stages_of("8.2.32")


# ---------------------------------------------------------------------------------------------
# In Chromium, on a real build


@pytest.fixture(scope="module")
def site():
    build(f"php_web:{BUILD.id}")
    from kiln import web
    folder = web.site_folder(BUILD)
    assert (folder / "index.html").is_file(), folder
    return folder


@pytest.mark.slow
def test_the_playground_runs_php_in_chromium(site, tmp_path):
    server_sha = hashlib.sha256(BUILD.module("php").read_bytes()).hexdigest()
    assert (site / "php.wasm").read_bytes() == BUILD.module("php").read_bytes()
    assert (site / "php-cgi.wasm").read_bytes() == BUILD.module("php-cgi").read_bytes()
    written = ("file_put_contents('/tmp/kiln.txt', 'kept in memory'); mkdir('/tmp/d');"
               " echo file_get_contents('/tmp/kiln.txt'), ' ', implode(',', scandir('/tmp')),"
               " ' ', var_export(is_writable('/tmp') && is_readable('/tmp/kiln.txt'), true);")
    script = "<?php\necho 'tagged ', strtoupper('script'), \"\\n\";\n"
    with StaticServer(site) as server:
        version, fatal, typed, tagged = drive([
            {"url": run_url(server, "echo PHP_VERSION;")},
            {"url": run_url(server, "echo 'before'; kiln_no_such_function();")},
            {"url": f"{server.url}/index.html", "type": written},
            {"url": run_url(server, script)},
        ], tmp_path)
    assert "/php.wasm" in server.requests

    assert (version["output"], version["exit"]) == (BUILD.version, "0"), version
    assert version["version"] == BUILD.version
    assert version["uname"].startswith("wasi "), version["uname"]
    # The page hashed the bytes it compiled: the server's module, byte for byte.
    assert version["sha256"] == server_sha and version["sameModule"] == "true"

    assert fatal["exit"] == "255" and "exit status 255" in fatal["exitText"], fatal
    assert "before" in fatal["output"]
    assert "Call to undefined function kiln_no_such_function()" in fatal["output"]

    assert typed["exit"] == "0", typed
    # is_writable(): the shim's directories carry no rights; templates/web/fs.js grants them.
    assert typed["output"] == "kept in memory .,..,d,kiln.txt true"
    assert tagged["output"] == "tagged SCRIPT\n" and tagged["exit"] == "0", tagged

    for seen in (version, fatal, typed, tagged):
        assert not [line for line in seen["console"] if line.startswith(("error", "pageerror"))], seen["console"]
        assert seen["wasmBytes"] == BUILD.module("php").stat().st_size
        # The page counts what it downloaded: at least the module, and it says so.
        assert seen["bytes"] >= seen["wasmBytes"] and f"{seen['bytes']} bytes" in seen["shownBytes"]
        assert seen["firstOutputMs"] > 0 and "ms after navigation start" in seen["shownFirstOutput"]
    # The measurements docs/web.md reports (pytest -s shows them; never asserted).
    print(f"\nweb {BUILD.id}: " + "; ".join(
        f"{name}: {s['bytes']} bytes, first output {s['firstOutputMs']:.0f} ms, compile {s['compileMs']:.0f} ms"
        for name, s in zip(("version", "fatal", "typed", "script"), (version, fatal, typed, tagged))))
