"""WordPress on SQLite, end to end, on the wordpress flavour's php-cgi.wasm behind kiln.server.

One site per test run, built by doit like everything else (`php_smoke:8.2.32-wordpress`, whose
smoke checks prove the libraries, and `wordpress_docroot`), served from a fresh copy of the
docroot with wp-content/ granted writable. The tests run in file order, each on the state the
previous one left: install over HTTP, front page, login, upload, restart, headless browser,
in the server's default isolation (persistent workers). Then OPcache's file cache (built into
this flavour): filled by the first pages, and, with an instance per request
(`isolation="request"`, where it is the only cache), read by later fresh instances and safe
when concurrent instances race on a cold cache.
"""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from doit_run import build
from kiln import wordpress
from kiln.layout import Build
from kiln.server import Mount, Server, ServerConfig

pytestmark = pytest.mark.slow

BUILD = Build("php", "8.2.32", "wordpress")
GUEST_DOCROOT = "/var/www"
TITLE = "Kiln WordPress"
USER, PASSWORD = "kiln", "correct horse battery staple"
POST_TITLE = "Persisted by Kiln"
TIMEOUT = 120  # seconds per HTTP request: the installer is the slowest page


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG, made here (no image library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes([200, 80, 20]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


class Site:
    """A docroot copy and the server on it; restartable on the same port."""

    def __init__(self, root: Path, module: Path):
        self.root, self.module = root, module
        self.docroot = wordpress.fresh_copy(root / "docroot")
        self.opcache = root / "opcache"   # kept across the restart, like a deployment would
        self.log = open(root / "server.log", "a")
        self.port = 0
        self.server: Server | None = None
        self.http = requests.Session()
        self.state: dict = {}

    def start(self) -> None:
        config = ServerConfig(
            docroot=self.docroot, module=self.module, docroot_guest=GUEST_DOCROOT,
            port=self.port, timeout=TIMEOUT, access_log=self.log, opcache_dir=self.opcache,
            mounts=[Mount(self.docroot / wordpress.WRITABLE, f"{GUEST_DOCROOT}/{wordpress.WRITABLE}", True)])
        self.server = Server(config).start()
        self.port = self.server.port  # the restart binds the same one: WordPress keeps its URL

    def stop(self) -> None:
        if self.server is not None:
            assert self.server.stop(), "requests were still running at shutdown"
            self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.url + path, timeout=TIMEOUT, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.http.post(self.url + path, timeout=TIMEOUT, **kw)

    def rest_nonce(self) -> str:
        response = self.get("/wp-admin/admin-ajax.php", params={"action": "rest-nonce"})
        assert response.status_code == 200 and re.fullmatch(r"[0-9a-f]{10}", response.text), \
            (response.status_code, response.text[:200])
        return response.text

    def server_log(self) -> str:
        self.log.flush()
        return (self.root / "server.log").read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def module():
    build(f"php_smoke:{BUILD.id}", "wordpress_docroot")
    module = BUILD.module("php-cgi", aot=True)
    assert module.is_file(), module
    return module


@pytest.fixture(scope="module")
def site(module):
    root = Path(tempfile.mkdtemp(prefix="kiln-wordpress-"))
    site = Site(root, module)
    site.start()
    try:
        yield site
    finally:
        site.stop()
        site.log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_an_uninstalled_site_sends_visitors_to_the_installer(site):
    response = site.get("/", allow_redirects=False)
    assert response.status_code == 302, site.server_log()
    assert response.headers["Location"].endswith("/wp-admin/install.php")
    form = site.get("/wp-admin/install.php")
    assert form.status_code == 200 and 'name="weblog_title"' in form.text, form.text[:2000]


def test_the_installer_runs_over_http(site):
    response = site.post("/wp-admin/install.php?step=2", data={
        "weblog_title": TITLE, "user_name": USER, "admin_password": PASSWORD,
        "admin_password2": PASSWORD, "pw_weak": "1", "admin_email": "kiln@example.com",
        "blog_public": "0", "language": ""})
    assert response.status_code == 200, site.server_log()
    assert "Success!" in response.text, response.text[-3000:]
    assert (site.docroot / "wp-content" / "database" / ".ht.sqlite").is_file()


def test_the_front_page_shows_the_first_post(site):
    response = site.get("/")
    assert response.status_code == 200, site.server_log()
    assert "Hello world!" in response.text
    assert f"<title>{TITLE}" in response.text


def test_logging_in_reaches_the_dashboard(site):
    site.get("/wp-login.php")  # sets wordpress_test_cookie
    response = site.post("/wp-login.php", data={
        "log": USER, "pwd": PASSWORD, "wp-submit": "Log In", "redirect_to": site.url + "/wp-admin/",
        "testcookie": "1"}, allow_redirects=False)
    assert response.status_code == 302, response.text[-2000:]
    assert response.headers["Location"].rstrip("/").endswith("/wp-admin")
    assert any(c.name.startswith("wordpress_logged_in_") for c in site.http.cookies)
    dashboard = site.get("/wp-admin/")
    assert dashboard.status_code == 200
    assert "<title>Dashboard" in dashboard.text, dashboard.text[:2000]


def test_a_media_upload_and_a_new_post_are_stored(site):
    headers = {"X-WP-Nonce": site.rest_nonce()}
    image = tiny_png()
    # Multipart: PHP writes the upload to a temp file in /tmp (mkstemp), WordPress moves it
    # into wp-content/uploads/.
    uploaded = site.post("/index.php", params={"rest_route": "/wp/v2/media"}, headers=headers,
                         files={"file": ("kiln-upload.png", image, "image/png")},
                         data={"title": "Kiln upload"})
    assert uploaded.status_code == 201, (uploaded.text[:2000], site.server_log())
    media = uploaded.json()
    assert media["mime_type"] == "image/png"
    served = site.get(media["source_url"].removeprefix(site.url))
    assert served.status_code == 200 and served.content == image
    assert served.headers["Content-Type"] == "image/png"

    post = site.post("/index.php", params={"rest_route": "/wp/v2/posts"}, headers=headers, json={
        "title": POST_TITLE, "content": f'<img src="{media["source_url"]}" alt="upload">',
        "status": "publish", "featured_media": media["id"]})
    assert post.status_code == 201, post.text[:2000]
    site.state.update(media=media, image=image, post_id=post.json()["id"])


def test_everything_persists_across_a_restart(site):
    assert site.state, "the upload test did not run"
    old_port = site.port
    site.stop()
    site.start()
    assert site.port == old_port

    front = site.get("/")
    assert front.status_code == 200
    assert POST_TITLE in front.text and "Hello world!" in front.text
    media = site.state["media"]
    served = site.get(media["source_url"].removeprefix(site.url))
    assert served.status_code == 200 and served.content == site.state["image"]
    # The login cookie is still valid: the session lives in the database, the salts too.
    dashboard = site.get("/wp-admin/", allow_redirects=False)
    assert dashboard.status_code == 200 and "<title>Dashboard" in dashboard.text
    listed = site.get("/index.php", params={"rest_route": "/wp/v2/media"},
                      headers={"X-WP-Nonce": site.rest_nonce()})
    assert media["id"] in [item["id"] for item in listed.json()]
    single = site.get("/", params={"p": site.state["post_id"]})
    assert single.status_code == 200 and POST_TITLE in single.text


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no chromium on PATH: install it (apt-get install chromium; scripts/setup does)")


def test_a_headless_browser_renders_the_front_page(site, tmp_path):
    profile = tmp_path / "profile"
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", f"--user-data-dir={profile}",
         "--virtual-time-budget=20000", "--dump-dom", site.url + "/"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    title = re.search(r"<title>(.*?)</title>", result.stdout, re.S)
    assert title, result.stdout[:2000]
    assert title.group(1).strip().startswith(TITLE)
    # The page the browser built holds the posts, so its HTML came through whole.
    assert POST_TITLE in result.stdout and "Hello world!" in result.stdout


# ---------------------------------------------------------------------------------------------
# OPcache's file cache


def cached_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.php.bin"))


def test_the_first_pages_fill_the_file_cache(site):
    entries = cached_files(site.opcache)
    names = {p.name for p in entries}
    # WordPress's own files and the SQLite plugin, each compiled once and kept.
    assert len(entries) > 100, (len(entries), site.server_log())
    assert {"wp-settings.php.bin", "class-wp-query.php.bin", "db.php.bin"} <= names, sorted(names)[:50]
    assert all(p.stat().st_size > 0 for p in entries)
    # Inside the page: OPcache is on, with the file cache at the granted folder; workers keep
    # scripts in memory too, an instance per request only in files.
    probe = site.docroot / "kiln-opcache.php"
    probe.write_text("<?php header('Content-Type: application/json');\n"
                     "$c = opcache_get_configuration()['directives'];\n"
                     "echo json_encode(['enable' => $c['opcache.enable'],"
                     " 'only' => $c['opcache.file_cache_only'], 'dir' => $c['opcache.file_cache']]);\n")
    try:
        response = site.get("/kiln-opcache.php")
    finally:
        probe.unlink()
    assert response.status_code == 200, (response.text[:2000], site.server_log())
    only = site.server.config.effective_isolation() == "request"
    assert response.json() == {"enable": True, "only": only, "dir": "/.opcache"}


def test_later_instances_run_scripts_from_the_file_cache(module, tmp_path):
    """Proof that a fresh instance reads the cache: with timestamps not checked, a script whose
    source changed still runs its cached compiled form; with them checked (the server's
    default, so WordPress's updates are seen), the new source runs."""
    docroot, cache = tmp_path / "www", tmp_path / "opcache"
    docroot.mkdir()
    script = docroot / "v.php"

    def serve(**ini) -> Server:
        # OPcache does not cache a file changed in the last 2 s (it may still be being
        # written); these are written just before.
        ini["opcache.file_update_protection"] = "0"
        return Server(ServerConfig(docroot=docroot, module=module, port=0, access_log=None,
                                   opcache_dir=cache, ini=ini, isolation="request")).start()

    def fetch(server: Server) -> str:
        response = requests.get(f"{server.url}/v.php", timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return response.text

    script.write_text("<?php echo 'first';\n")
    server = serve(**{"opcache.validate_timestamps": "0"})
    try:
        assert fetch(server) == "first"
        assert [p.name for p in cached_files(cache)] == ["v.php.bin"]
        script.write_text("<?php echo 'second, and longer';\n")
        # OPcache compares whole seconds: make the change visible whatever the clock did.
        later = script.stat().st_mtime + 10
        os.utime(script, (later, later))
        assert fetch(server) == "first"   # compiled form from the file, in a new instance
    finally:
        server.stop()
    server = serve()
    try:
        assert fetch(server) == "second, and longer"
        assert fetch(server) == "second, and longer"
    finally:
        server.stop()


def test_concurrent_instances_on_a_cold_cache_all_answer_whole_pages(site, module, tmp_path):
    """Eight front pages at once on an empty cache: the instances race to store the same
    entries (O_CREAT|O_EXCL; readers check size and checksum). Every page must be whole,
    on the cold wave and on the warm one after it."""
    cache = tmp_path / "opcache"
    config = ServerConfig(
        docroot=site.docroot, module=module, docroot_guest=GUEST_DOCROOT, port=0,
        timeout=TIMEOUT, access_log=site.log, opcache_dir=cache, workers=8, isolation="request",
        mounts=[Mount(site.docroot / wordpress.WRITABLE, f"{GUEST_DOCROOT}/{wordpress.WRITABLE}", True)])
    server = Server(config).start()

    def front(_: int) -> tuple[int, str]:
        response = requests.get(f"{server.url}/", timeout=TIMEOUT * 2)
        return response.status_code, response.text

    try:
        for wave in ("cold", "warm"):
            with ThreadPoolExecutor(8) as pool:
                pages = list(pool.map(front, range(8)))
            for status, text in pages:
                assert status == 200, (wave, status, text[:2000], site.server_log())
                assert "Hello world!" in text and POST_TITLE in text, (wave, text[-2000:])
                assert f"<title>{TITLE}" in text and text.rstrip().endswith("</html>"), wave
            if wave == "cold":
                assert len(cached_files(cache)) > 100
    finally:
        assert server.stop(), "requests were still running at shutdown"
