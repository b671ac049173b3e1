"""The browser site (php_web, kiln/web.py): the build's modules unchanged, the pinned WASI shim,
the playground, the wordpress flavour's docroot archive and service worker; then the playground
(tests/browser.mjs) and WordPress (tests/browser-wordpress.mjs) in Debian's Chromium, headless,
driven by playwright-core, served from a loopback static server (tests/static_server.py)."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
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


def test_the_wordpress_flavour_site_carries_the_docroot_and_the_service_worker(fake_site, tmp_path):
    web, modules = fake_site
    from kiln import wordpress
    docroot = wordpress.docroot_dir()
    (docroot / "wp-admin").mkdir(parents=True)
    (docroot / "wp-content" / "database").mkdir(parents=True)
    (docroot / "index.php").write_text("<?php echo 'front';\n")
    (docroot / "wp-admin" / "install.php").write_text("<?php echo 'install';\n")
    deep = docroot / ("d" * 90) / ("e" * 60) / "f.css"   # past ustar's 100-character name field
    deep.parent.mkdir(parents=True)
    deep.write_bytes(b"body{}")
    build = Build("php", "8.2.32", "wordpress")
    manifest = web.make_site(build, modules)
    site = web.site_folder(build)
    assert (site / "wordpress.html").is_file() and (site / "wordpress" / "sw.js").is_file()
    assert 'href="wordpress.html"' in (site / "index.html").read_text()
    assert manifest["wordpress"]["files"] == 3
    with tarfile.open(site / web.DOCROOT_ARCHIVE) as archive:
        names = {m.name: m for m in archive.getmembers()}
        # Plain ustar, what the service worker's reader knows: no pax or GNU long-name records.
        assert all(m.type in (tarfile.REGTYPE, tarfile.DIRTYPE) and not m.pax_headers for m in names.values())
    assert gzip.decompress((site / web.DOCROOT_ARCHIVE).read_bytes())[257:265] == b"ustar\x0000"
    with tarfile.open(site / web.DOCROOT_ARCHIVE) as archive:
        assert archive.extractfile(names["wp-admin/install.php"]).read() == b"<?php echo 'install';\n"
        assert archive.extractfile(names[deep.relative_to(docroot).as_posix()]).read() == b"body{}"
        assert names["wp-content/database"].isdir()
    # The same docroot packs to the same bytes (no times, no owners).
    again = tmp_path / "again.tar.gz"
    web.pack_docroot(docroot, again)
    assert again.read_bytes() == (site / web.DOCROOT_ARCHIVE).read_bytes()
    # The default flavour's site has no WordPress.
    web.make_site(BUILD, modules)
    plain = web.site_folder(BUILD)
    assert not (plain / "wordpress.html").exists() and not (plain / web.DOCROOT_ARCHIVE).exists()
    assert "wordpress.html" not in (plain / "index.html").read_text()


def test_the_build_chain_includes_the_site():
    from tasks.group import stages_of
    assert "php_web:8.2.32" in stages_of("8.2.32")


# ---------------------------------------------------------------------------------------------
# In Chromium, on a real build


def built_site(of: Build, page: str) -> Path:
    """The site php_web writes for `of`, built (or found up to date), holding `page`."""
    build(f"php_web:{of.id}")
    from kiln import web
    folder = web.site_folder(of)
    assert (folder / page).is_file(), folder
    return folder


@pytest.fixture(scope="module")
def site():
    return built_site(BUILD, "index.html")


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
        version, fatal, typed, tagged, stopped = drive([
            {"url": run_url(server, "echo PHP_VERSION;")},
            {"url": run_url(server, "echo 'before'; kiln_no_such_function();")},
            {"url": f"{server.url}/index.html", "type": written},
            {"url": run_url(server, script)},
            {"url": f"{server.url}/index.html", "stop": "while (true) {}", "type": "echo 'after stop';"},
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
    # The page answered while PHP looped; after Stop a new worker runs the next script.
    assert "status while the endless script ran: running…" in stopped["console"], stopped
    assert (stopped["output"], stopped["exit"]) == ("after stop", "0"), stopped

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


# ---------------------------------------------------------------------------------------------
# WordPress in the browser (the wordpress flavour's site)

WORDPRESS = Build("php", "8.2.32", "wordpress")


@pytest.fixture(scope="module")
def wordpress_site():
    return built_site(WORDPRESS, "wordpress.html")


@pytest.mark.slow
def test_wordpress_installs_logs_in_publishes_and_survives_a_restart_in_chromium(wordpress_site, tmp_path):
    assert (wordpress_site / "php-cgi.wasm").read_bytes() == WORDPRESS.module("php-cgi").read_bytes()
    if not (ROOT / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is not installed: run scripts/setup (npm ci)")
    with StaticServer(wordpress_site) as server:
        result = subprocess.run(["node", str(ROOT / "tests" / "browser-wordpress.mjs"), chromium(),
                                 server.url, str(tmp_path / "profile")],
                                capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    seen = json.loads(result.stdout)
    # The static server holds no WordPress page (only wordpress/sw.js under wordpress/), so each
    # page below came from the service worker. (After a browser restart Chromium may also send
    # the first navigation to the network while the worker starts; the worker's answer wins.)
    assert seen["installer"]["title"] == "WordPress › Installation", seen["installer"]
    assert "WordPress has been installed" in seen["installed"]["text"], seen["installed"]
    assert seen["login"]["url"].endswith("/wordpress/wp-admin/"), seen["login"]
    assert seen["login"]["title"].startswith("Dashboard"), seen["login"]
    assert seen["post"]["status"] == 201, seen["post"]
    title = seen["post"]["body"]["title"]["rendered"]
    assert title == "Written in the browser by php-cgi.wasm"
    assert title in seen["front"]["text"] and seen["front"]["title"].startswith("Kiln in the browser")
    # A new browser on the same profile: the worker started from nothing, the database and the
    # login came back from IndexedDB.
    assert title in seen["reloaded"]["text"], seen["reloaded"]
    assert seen["dashboard"]["title"].startswith("Dashboard"), seen["dashboard"]
    assert not seen["errors"], seen["errors"]
    print(f"\nwordpress {WORDPRESS.id}: installer after {seen['installer']['ms']} ms (cold), "
          f"install {seen['installed']['ms']} ms, login {seen['login']['ms']} ms, "
          f"post {seen['post']['ms']} ms, front page after a restart {seen['reloaded']['ms']} ms")
