"""WordPress on SQLite, end to end, on the wordpress flavour's php-cgi.wasm, behind each of Kiln's
front ends.

One site per front end and test run, built by doit like everything else
(`php_smoke:8.2.32-wordpress`, whose smoke checks prove the libraries, and `wordpress_docroot`),
served from a fresh copy of the docroot with wp-content/ granted writable:

- `server`: kiln.server in this process, a fresh instance per request (`--isolation request`);
- `worker`: `python -m kiln.server --isolation worker`, persistent kiln.pool workers under it;
- `pool`: Debian's nginx with the stock php-fpm site (templates/nginx-php-fpm.conf.j2) in front
  of `python -m kiln.pool` (its defaults, but 2 workers).

The tests run in file order, each on the state the previous one left: install over HTTP, front
page, login, upload, concurrent writers, restart, headless browser. Then OPcache's file cache
(built into this flavour): filled by the first pages, read by later fresh instances, and safe
when concurrent instances race on a cold cache.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from doit_run import build
from kiln import wordpress
from kiln.layout import Build
from kiln.server import Mount, Server, ServerConfig
from nginx import ROOT, Nginx, PoolProcess, free_port

pytestmark = pytest.mark.slow

BUILD = Build("php", "8.2.32", "wordpress")
GUEST_DOCROOT = "/var/www"
TITLE = "Kiln WordPress"
USER, PASSWORD = "kiln", "correct horse battery staple"
POST_TITLE = "Persisted by Kiln"
TIMEOUT = 120  # seconds per HTTP request: the installer is the slowest page
FRONTS = ("server", "worker", "pool")
DATABASE = Path("wp-content", "database", ".ht.sqlite")


def tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG, made here (no image library needed)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes([200, 80, 20]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


class Site:
    """A docroot copy and a front end serving it; restartable on the same port."""

    front = ""
    opcache_only = False   # opcache.file_cache_only as the page sees it

    def __init__(self, root: Path, module: Path):
        self.root, self.module = root, module
        self.docroot = wordpress.fresh_copy(root / "docroot")
        self.opcache = root / "opcache"   # kept across the restart, like a deployment would
        self.log_path = root / "server.log"
        self.log = open(self.log_path, "a")
        self.port = 0
        self.http = requests.Session()
        self.state: dict = {}

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()
        self.log.close()

    @property
    def opcache_guest(self) -> str:
        return "/.opcache"

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
        return self.log_path.read_text(errors="replace")[-3000:]


class InProcessSite(Site):
    """kiln.server in this process with a fresh instance per request (`isolation="request"`)."""

    front = "server"
    opcache_only = True

    def __init__(self, root: Path, module: Path):
        super().__init__(root, module)
        self.server: Server | None = None

    def start(self) -> None:
        config = ServerConfig(
            docroot=self.docroot, module=self.module, docroot_guest=GUEST_DOCROOT,
            port=self.port, timeout=TIMEOUT, access_log=self.log, opcache_dir=self.opcache,
            isolation="request",
            mounts=[Mount(self.docroot / wordpress.WRITABLE, f"{GUEST_DOCROOT}/{wordpress.WRITABLE}", True)])
        self.server = Server(config).start()
        self.port = self.server.port  # the restart binds the same one: WordPress keeps its URL

    def stop(self) -> None:
        if self.server is not None:
            assert self.server.stop(), "requests were still running at shutdown"
            self.server = None


def _wait_listening(port: int, proc: subprocess.Popen, what: str, log) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, f"{what} exited ({proc.returncode}): {log()}"
            time.sleep(0.1)
    pytest.fail(f"{what} did not listen on {port}: {log()}")


class WorkerSite(Site):
    """`python -m kiln.server --isolation worker`, as a user starts it: kiln.pool underneath."""

    front = "worker"

    def __init__(self, root: Path, module: Path):
        super().__init__(root, module)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kiln.server", "--isolation", "worker", "--workers", "2",
             "--module", str(self.module), "--docroot", str(self.docroot),
             "--docroot-guest", GUEST_DOCROOT, "--writable", wordpress.WRITABLE,
             "--opcache-dir", str(self.opcache), "--port", str(self.port),
             "--timeout", str(TIMEOUT)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        _wait_listening(self.port, self.proc, "kiln.server", self.server_log)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            code = self.proc.wait(timeout=60)
            self.proc = None
            assert code == 0, f"kiln.server exited {code}: requests were still running? {self.server_log()}"


class PoolSite(Site):
    """Debian's nginx, the stock php-fpm site, `python -m kiln.pool` behind it (2 workers,
    everything else the pool's defaults). The docroot is granted at its own host path."""

    front = "pool"

    def __init__(self, root: Path, module: Path):
        root.chmod(0o755)   # nginx's workers (user nobody) serve the static files
        super().__init__(root, module)
        self.pool: PoolProcess | None = None
        self.nginx: Nginx | None = None

    @property
    def opcache_guest(self) -> str:
        return str(self.opcache.resolve())

    def start(self) -> None:
        writable = self.docroot / wordpress.WRITABLE
        self.pool = PoolProcess(self.module, self.docroot, [
            "--workers", "2", "-v", f"{writable}:{writable}", "--opcache-dir", str(self.opcache)])
        self.nginx = Nginx(self.docroot, self.pool.socket, port=self.port)
        self.port = self.nginx.port

    def stop(self) -> None:
        if self.nginx is not None:
            self.log.write(self.nginx.error_log())
            self.nginx.stop()
            self.nginx = None
        if self.pool is not None:
            self.log.write(self.pool.text())
            code = self.pool.proc.poll()
            self.pool.stop()
            self.pool = None
            assert code is None, f"kiln.pool had exited ({code}) before it was stopped"

    def server_log(self) -> str:
        live = (self.nginx.error_log() if self.nginx else "") + (self.pool.text() if self.pool else "")
        return (super().server_log() + live)[-3000:]


SITES = {"server": InProcessSite, "worker": WorkerSite, "pool": PoolSite}


@pytest.fixture(scope="module")
def module():
    build(f"php_smoke:{BUILD.id}", "wordpress_docroot")
    module = BUILD.module("php-cgi", aot=True)
    assert module.is_file(), module
    return module


@pytest.fixture(scope="module", params=FRONTS)
def site(request, module):
    root = Path(tempfile.mkdtemp(prefix=f"kiln-wordpress-{request.param}-"))
    site = SITES[request.param](root, module)
    site.start()
    try:
        yield site
    finally:
        site.close()
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
    assert (site.docroot / DATABASE).is_file()


def test_the_database_file_is_never_served(site):
    """wp-content/database/ is in the docroot, and its .htaccess means nothing to nginx."""
    assert (site.docroot / DATABASE).is_file()
    response = site.get("/" + DATABASE.as_posix(), allow_redirects=False)
    assert response.status_code in (403, 404), response.status_code
    assert b"SQLite format 3" not in response.content
    listing = site.get("/wp-content/database/", allow_redirects=False)   # the plugin's empty index.php
    assert ".ht.sqlite" not in listing.text and b"SQLite format 3" not in listing.content


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
    assert media["mime_type"] == "image/png", media
    served = site.get(media["source_url"].removeprefix(site.url))
    assert served.status_code == 200 and served.content == image
    assert served.headers["Content-Type"] == "image/png"

    post = site.post("/index.php", params={"rest_route": "/wp/v2/posts"}, headers=headers, json={
        "title": POST_TITLE, "content": f'<img src="{media["source_url"]}" alt="upload">',
        "status": "publish", "featured_media": media["id"]})
    assert post.status_code == 201, post.text[:2000]
    site.state.update(media=media, image=image, post_id=post.json()["id"])


PHOTO = ROOT / "tests" / "fixtures" / "media" / "photo-640x480.jpg"   # made once with gd


def image_size(data: bytes) -> tuple[str, int, int]:
    """Format, width and height of a PNG or baseline/progressive JPEG, read from its header."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    assert data.startswith(b"\xff\xd8"), data[:16]
    at = 2
    while at < len(data):
        marker, length = data[at + 1], struct.unpack(">H", data[at + 2:at + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):   # start of frame: precision, height, width
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return "jpeg", width, height
        at += 2 + length
    raise AssertionError("no JPEG frame header")


def test_uploaded_photos_get_their_thumbnails(site):
    """gd (#30): WordPress makes its registered sizes from an uploaded JPEG and PNG, on disk and served."""
    headers = {"X-WP-Nonce": site.rest_nonce()}
    for name, data, mime in (("kiln-photo.jpg", PHOTO.read_bytes(), "image/jpeg"),
                             ("kiln-drawing.png", tiny_png(400, 300), "image/png")):
        uploaded = site.post("/index.php", params={"rest_route": "/wp/v2/media"}, headers=headers,
                             files={"file": (name, data, mime)}, data={"title": name})
        assert uploaded.status_code == 201, (uploaded.text[:2000], site.server_log())
        details = uploaded.json()["media_details"]
        sizes = details["sizes"]
        # 640x480 and 400x300 originals: a 150x150 crop and a medium size of 300 wide.
        assert sizes["thumbnail"]["width"] == 150 and sizes["thumbnail"]["height"] == 150, sizes
        assert sizes["medium"]["width"] == 300 and sizes["medium"]["height"] == 225, sizes
        folder = site.docroot / "wp-content" / "uploads" / Path(details["file"]).parent
        kind = "jpeg" if mime == "image/jpeg" else "png"
        for size in ("thumbnail", "medium"):
            on_disk = folder / sizes[size]["file"]
            assert on_disk.is_file(), sorted(p.name for p in folder.iterdir())
            served = site.get(sizes[size]["source_url"].removeprefix(site.url))
            assert served.status_code == 200 and served.content == on_disk.read_bytes()
            assert image_size(served.content) == (kind, sizes[size]["width"], sizes[size]["height"])


SITE_HEALTH = r"""<?php
// Site Health's "PHP extensions" test, as the dashboard runs it: what is missing, and how much it matters.
require __DIR__ . '/wp-load.php';
require_once ABSPATH . 'wp-admin/includes/class-wp-site-health.php';
header('Content-Type: application/json');
$result = WP_Site_Health::get_instance()->get_test_php_extensions();
preg_match_all('/The (required|optional) module, ([^,]+), is not installed/', $result['description'], $found, PREG_SET_ORDER);
echo json_encode(['status' => $result['status'], 'missing' => array_map(fn($m) => [$m[1], $m[2]], $found)]);
"""


def test_site_health_lists_what_is_still_missing(site):
    """Recorded in docs/wordpress.md: gd, zip, exif and the others are no longer in the list."""
    if site.front != "pool":
        pytest.skip("one front end is enough: the list depends on the module, not on who serves it")
    (site.docroot / "kiln-site-health.php").write_text(SITE_HEALTH)
    try:
        response = site.get("/kiln-site-health.php")
    finally:
        (site.docroot / "kiln-site-health.php").unlink()
    assert response.status_code == 200, response.text[:2000]
    report = response.json()
    missing = {module for _, module in report["missing"]}
    assert not missing & {"gd", "zip", "exif", "fileinfo", "mbstring", "dom", "xml", "json"}, report
    assert not [module for kind, module in report["missing"] if kind == "required"], report
    print(json.dumps(report, indent=1))


# SQLite locking across workers: on WASI there are no fcntl locks; the build's default VFS is
# unix-dotfile (libraries/sqlite/recipe.toml), whose lock is the folder `<db>.lock`, created with
# mkdir (atomic on the host, so it excludes other worker processes and instances too). Every
# lock is exclusive: readers queue like writers, and the plugin waits up to 5 s (PDO timeout).
# The test has teeth: with the hammer's DSN made 'sqlite:file:' . $db . '?vfs=unix-none' (no
# locking) it failed on every run tried (docs/wordpress.md).
HAMMER = r"""<?php
// Read-modify-write transactions on WordPress's own database, as a lost-update detector:
// without a lock that excludes other processes, two writers read the same n.
header('Content-Type: application/json');
$start = microtime(true);
$db = __DIR__ . '/wp-content/database/.ht.sqlite';
$pdo = new PDO('sqlite:' . $db, null, null,
               [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_TIMEOUT => 60]);
if (isset($_GET['check'])) {
    echo json_encode($pdo->query('PRAGMA integrity_check')->fetchAll(PDO::FETCH_COLUMN));
    exit;
}
$pdo->exec('CREATE TABLE IF NOT EXISTS kiln_hammer (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)');
$pdo->exec('INSERT OR IGNORE INTO kiln_hammer VALUES (1, 0)');
$errors = $seen = [];
for ($i = 0; $i < (int) $_GET['rounds']; $i++) {
    try {
        $pdo->exec('BEGIN');
        $n = (int) $pdo->query('SELECT n FROM kiln_hammer WHERE id = 1')->fetchColumn();
        $pdo->exec('UPDATE kiln_hammer SET n = ' . ($n + 1) . ' WHERE id = 1');
        $pdo->exec('COMMIT');
        $seen[] = $n;
        usleep(5000);   // room for the other workers: transactions interleave, not just queue
    } catch (PDOException $e) {
        $errors[] = $e->getMessage();
        try { $pdo->exec('ROLLBACK'); } catch (PDOException $ignored) {}
    }
}
echo json_encode(['start' => $start, 'end' => microtime(true), 'errors' => $errors, 'seen' => $seen]);
"""
CONCURRENT_POSTS = 8   # with the two posts before them, still all on the front page (10 a page)
HAMMERS, HAMMER_ROUNDS = 8, 60


def _database_rows(site: Site, sql: str) -> list[tuple]:
    """Native SQLite, read-only, while no request runs (native SQLite locks with fcntl and
    does not see the guests' dot-file locks)."""
    uri = f"file:{site.docroot / DATABASE}?mode=ro"
    with sqlite3.connect(uri, uri=True) as db:
        return db.execute(sql).fetchall()


def test_concurrent_writers_lose_nothing_and_keep_the_database_intact(site):
    """Posts saved through the REST API (the block editor's way) by several workers at once,
    with read-modify-write transactions hammering the same database beside them: every post
    is there, no increment is lost, and SQLite finds its file intact."""
    assert site.state, "the upload test did not run"
    (site.docroot / "kiln-hammer.php").write_text(HAMMER)
    nonce = site.rest_nonce()
    titles = sorted(f"Concurrent post {i}" for i in range(CONCURRENT_POSTS))

    def client() -> requests.Session:
        http = requests.Session()
        http.cookies.update(site.http.cookies)
        return http

    def save(title: str) -> tuple[int, str]:
        response = client().post(site.url + "/index.php", params={"rest_route": "/wp/v2/posts"},
                                 headers={"X-WP-Nonce": nonce}, timeout=TIMEOUT * 2,
                                 json={"title": title, "content": f"<p>{title}: body</p>",
                                       "status": "publish"})
        return response.status_code, response.text

    def hammer(_: int) -> tuple[int, str]:
        response = client().get(site.url + "/kiln-hammer.php", params={"rounds": HAMMER_ROUNDS},
                                timeout=TIMEOUT * 2)
        return response.status_code, response.text

    try:
        with ThreadPoolExecutor(CONCURRENT_POSTS + HAMMERS) as ex:
            # Two hammers first, on the two idle workers at once; then posts and the other
            # hammers interleaved, so they reach the workers mixed.
            futures = [("hammer", ex.submit(hammer, 0)), ("hammer", ex.submit(hammer, 1))]
            for i in range(max(CONCURRENT_POSTS, HAMMERS)):
                if i < CONCURRENT_POSTS:
                    futures.append(("post", ex.submit(save, titles[i])))
                if 2 <= i < HAMMERS:
                    futures.append(("hammer", ex.submit(hammer, i)))
            results = [(kind, f.result()) for kind, f in futures]
        posts = [text for kind, (status, text) in results if kind == "post" and status == 201]
        assert len(posts) == CONCURRENT_POSTS, \
            ([(s, t[:300]) for k, (s, t) in results if k == "post" and s != 201], site.server_log())
        runs = []
        for kind, (status, text) in results:
            if kind == "hammer":
                assert status == 200, (status, text[:1000], site.server_log())
                runs.append(json.loads(text))
        assert [r["errors"] for r in runs] == [[]] * HAMMERS
        # Some two hammers ran side by side, in two workers (else this test would prove
        # nothing); which two is up to the scheduler (the first two once queued behind a post).
        # Whether other writers got in between one hammer's transactions (gaps in what it
        # read) is up to the busy handler's timing: dot-file locks are not fair.
        assert any(a["start"] < b["end"] and b["start"] < a["end"]
                   for i, a in enumerate(runs) for b in runs[i + 1:]), runs
        gaps = sum(b - a != 1 for r in runs for a, b in zip(r["seen"], r["seen"][1:]))
        print(f"{site.front}: {gaps} interleavings between hammer transactions")

        check = site.get("/kiln-hammer.php", params={"check": "1"})
        assert check.status_code == 200 and check.json() == ["ok"], check.text[:2000]
    finally:
        (site.docroot / "kiln-hammer.php").unlink()

    assert _database_rows(site, "PRAGMA integrity_check") == [("ok",)]
    assert _database_rows(site, "SELECT n FROM kiln_hammer") == [(HAMMERS * HAMMER_ROUNDS,)]
    stored = _database_rows(site, "SELECT post_title FROM wp_posts WHERE post_type = 'post' "
                                  "AND post_status = 'publish' AND post_title LIKE 'Concurrent post %'")
    assert sorted(t for (t,) in stored) == sorted(titles)
    assert not (site.docroot / "wp-content" / "database" / ".ht.sqlite.lock").exists()
    listed = site.get("/index.php", params={"rest_route": "/wp/v2/posts", "per_page": "100",
                                            "search": "Concurrent post"})
    assert sorted(p["title"]["rendered"] for p in listed.json()) == sorted(titles)
    site.state["concurrent"] = titles


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
    concurrent = site.get("/index.php", params={"rest_route": "/wp/v2/posts", "per_page": "100",
                                                "search": "Concurrent post"})
    assert sorted(p["title"]["rendered"] for p in concurrent.json()) == site.state["concurrent"]
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
    # Per request: file cache only (an instance's memory dies with it); in workers: memory
    # first, the file cache behind it.
    assert response.json() == {"enable": True, "only": site.opcache_only, "dir": site.opcache_guest}


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


@pytest.mark.parametrize("site", FRONTS[:1], indirect=True)   # instances per request only
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
