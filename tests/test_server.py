"""Tests for kiln.server.

Three layers:
- fast tests drive the server with a stand-in CGI program (a /bin/sh script that runs the
  "script" file as shell code), through the same NativeBackend a native php-cgi uses: routing,
  the CGI environment, response parsing, static files, traversal, HTTP framing, limits, locks,
  shutdown;
- fast tests of the wasm path with a tiny C program standing in for php-cgi.wasm: it speaks
  plain CGI, not PHP's FastCGI loop, so they run with `isolation="request"`;
- `slow` tests run the real php-cgi module in Wasmtime (KILN_TEST_PHP_CGI, else build-output's
  php-8.2.32 php-cgi.cwasm/.wasm, built by the php_builds fixture), each in both isolations
  (`worker`, the default, and `request`), since what they check holds for both.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kiln import server as srv
from kiln.server import Mount, Server, ServerConfig


# ---------------------------------------------------------------------------------------------
# Helpers


class Client:
    def __init__(self, server: Server):
        self.server = server

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None, timeout: float = 30):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp, data
        finally:
            conn.close()

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)

    def raw(self, data: bytes, timeout: float = 10) -> bytes:
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=timeout) as s:
            s.sendall(data)
            chunks = []
            while True:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)


def raw_status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


@pytest.fixture
def started():
    servers: list[Server] = []

    def start(**options) -> tuple[Server, Client]:
        options.setdefault("port", 0)
        options.setdefault("access_log", io.StringIO())
        s = Server(ServerConfig(**options)).start()
        servers.append(s)
        return s, Client(s)

    yield start
    for s in servers:
        s.stop(grace=2)


# ---------------------------------------------------------------------------------------------
# Unit tests: no CGI program at all


def test_parse_cgi_output_status_location_cookies_and_hop_by_hop():
    out = (b"Status: 404 Gone Away\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
           b"Connection: keep-alive\r\nContent-Length: 99\r\nX-Ok: yes\r\n\r\nbody\r\n\r\nmore")
    r = srv.parse_cgi_output(out)
    assert (r.status, r.reason) == (404, "Gone Away")
    assert r.headers == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-Ok", "yes")]
    assert r.body == b"body\r\n\r\nmore"
    r = srv.parse_cgi_output(b"Location: /elsewhere\n\n")
    assert r.status == 302 and ("Location", "/elsewhere") in r.headers
    assert srv.parse_cgi_output(b"no header block") is None
    assert srv.parse_cgi_output(b"Status: abc\r\n\r\n") is None


def test_parse_cgi_output_strips_control_characters():
    r = srv.parse_cgi_output(b"X-A: one\rInjected: two\x00\r\nBad Name: x\r\n\r\n")
    assert r.headers == [("X-A", "oneInjected: two")]


@pytest.mark.parametrize("raw, ok", [
    ("/a/b", True), ("/a/./b", True), ("/.well-known/x", True), ("/%C3%A9t%C3%A9", True),
    ("/../x", False), ("/a/%2e%2e/x", False), ("/a%2f..%2fx", False), ("/a%2Fb", False),
    ("/a%00.php", False), ("/.ht.sqlite", False), ("/wp-content/.git/config", False),
    ("/%ff", False), ("/a%0d%0ab", False),
])
def test_decode_path_refuses_escapes(raw, ok):
    path, status = srv.Application._decode_path(raw)
    assert (path is not None) == ok, (raw, status)
    if not ok:
        assert status in (400, 403, 404)


def test_janitor_removes_a_lock_only_when_nobody_could_hold_it(tmp_path):
    (tmp_path / "db.sqlite").write_text("")
    lock = tmp_path / "db.sqlite.lock"
    logs: list[str] = []
    j = srv._LockJanitor(lambda: [tmp_path], logs.append)

    # Killed alone: cleared at once.
    a = j.begin()
    lock.mkdir()
    j.end(a, killed=True)
    assert not lock.exists() and "stale" in logs[-1]

    # Killed while another script runs: cleared once that one is done.
    a, b = j.begin(), j.begin()
    lock.mkdir()
    j.end(a, killed=True)
    assert lock.exists()
    j.end(b)
    assert not lock.exists()

    # The other script held the lock, released it, and a newer one holds a new lock: kept.
    a, b = j.begin(), j.begin()
    lock.mkdir()                 # b's lock
    j.end(a, killed=True)
    lock.rmdir()                 # b releases
    c = j.begin()
    lock.mkdir()                 # c's (a new folder)
    j.end(b)
    assert lock.exists()
    j.end(c)
    assert lock.exists()         # c ended normally: its lock is its business
    lock.rmdir()

    # Not a lock: no database beside it, or not empty.
    (tmp_path / "other.lock").mkdir()
    (tmp_path / "db.sqlite.lock").mkdir()
    (tmp_path / "db.sqlite.lock" / "keep").write_text("")
    a = j.begin()
    j.end(a, killed=True)
    assert (tmp_path / "other.lock").is_dir() and (tmp_path / "db.sqlite.lock" / "keep").exists()


def test_grants_are_spelled_as_docker_does_and_the_old_spelling_still_works(tmp_path, capsys):
    from kiln.server import cli
    (tmp_path / "data").mkdir()
    ns = cli.parser("kiln serve").parse_args([
        "--docroot", str(tmp_path), "--docroot-guest", "/srv", "--writable", "uploads",
        "-v", f"{tmp_path / 'data'}:/data:ro", "-v", f"{tmp_path}:/rw", "--writable", f"{tmp_path}:/old"])
    assert cli.mounts(ns, "kiln serve") == [
        srv.Mount(tmp_path / "uploads", "/srv/uploads", True), srv.Mount(tmp_path, "/old", True),
        srv.Mount(tmp_path / "data", "/data", False), srv.Mount(tmp_path, "/rw", True)]
    assert capsys.readouterr().err.strip().splitlines() == [
        f"kiln serve: --writable {tmp_path}:/old is the old spelling of a grant: use -v {tmp_path}:/old "
        "(Docker's HOST:GUEST[:ro], writable unless :ro)"]


def test_missing_module_is_a_one_line_error_naming_the_doit_task(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_BUILD_OUTPUT", str(tmp_path))
    with pytest.raises(srv.KilnError) as info:
        srv.find_php_cgi("8.2.32")
    message = str(info.value)
    assert "doit php:8.2.32" in message and "\n" not in message
    proc = subprocess.run([os.sys.executable, "-m", "kiln.server", "--docroot", str(tmp_path),
                           "--php", "8.2.32"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "KILN_BUILD_OUTPUT": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.startswith("kiln.server: ")
    assert "doit php:8.2.32" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# Fast tests: a shell script stands in for php-cgi (same NativeBackend, same server code)

FAKE_CGI = "#!/bin/sh\nexec /bin/sh \"$SCRIPT_FILENAME\"\n"

SCRIPTS = {
    "env.php": "printf 'Content-Type: text/plain\\r\\n\\r\\n'; /usr/bin/env",
    "index.php": "printf 'Content-Type: text/plain\\r\\nX-Front: 1\\r\\n\\r\\n'; /usr/bin/env",
    "echo.php": "printf 'Content-Type: application/octet-stream\\r\\n\\r\\n'; /bin/cat",
    "cookies.php": ("printf 'Status: 303 See Other\\r\\nLocation: /there\\r\\nSet-Cookie: a=1\\r\\n"
                    "Set-Cookie: b=2; HttpOnly\\r\\n\\r\\nmoved'"),
    "inject.php": ("printf 'X-Bad: a\\rInjected: yes\\r\\nConnection: keep-alive\\r\\n"
                   "Transfer-Encoding: chunked\\r\\nContent-Length: 1\\r\\n\\r\\nbody'"),
    "slow.php": "/bin/sleep 30",
    "sleep1.php": "/bin/sleep 1; printf 'Content-Type: text/plain\\r\\n\\r\\n%s' \"$QUERY_STRING\"",
    "lock.php": "/bin/mkdir \"$DOCUMENT_ROOT/data/db.sqlite.lock\"; /bin/sleep 30",
    "crash.php": "kill -SEGV $$",
    "garbage.php": "printf 'no headers here'",
    "big.php": "printf 'Content-Type: text/plain\\r\\n\\r\\n'; /usr/bin/head -c 3000000 /dev/zero",
    "wp-cron.php": "/usr/bin/touch \"$DOCUMENT_ROOT/data/cron-ran\"; printf 'Content-Type: text/plain\\r\\n\\r\\n'",
    "sub/index.php": "printf 'Content-Type: text/plain\\r\\n\\r\\nsub index'",
    "sub/page.html": "<p>static page</p>",
}


@pytest.fixture
def site(tmp_path):
    docroot = tmp_path / "www"
    for name, text in SCRIPTS.items():
        path = docroot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    (docroot / "data").mkdir()
    (docroot / "data" / "db.sqlite").write_text("")
    (docroot / "style.css").write_text("body { color: red }\n")
    (docroot / "blob.bin").write_bytes(bytes(range(256)) * 40)
    (docroot / ".ht.sqlite").write_text("secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (outside / "evil.php").write_text("printf 'Content-Type: text/plain\\r\\n\\r\\nEXECUTED'\n")
    os.symlink(outside / "secret.txt", docroot / "link-out.txt")
    os.symlink(outside, docroot / "dir-out")
    os.symlink(outside / "evil.php", docroot / "evil.php")
    os.symlink(docroot / "style.css", docroot / "link-in.css")
    cgi = tmp_path / "fake-cgi"
    cgi.write_text(FAKE_CGI)
    cgi.chmod(0o755)
    return docroot, cgi


def fake(started, site, **options):
    docroot, cgi = site
    options.setdefault("mounts", [Mount(docroot / "data", str(docroot / "data"), True)])
    return started(docroot=docroot, native_cgi=cgi, **options)


def env_of(body: bytes) -> dict[str, str]:
    return dict(line.split("=", 1) for line in body.decode().splitlines() if "=" in line)


def test_cgi_environment(started, site):
    s, c = fake(started, site)
    status, _, body = c.request("POST", "/env.php/extra/path?x=1&y=%20z", body=b"a=1&b=2",
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "Cookie": "c=1", "X-Custom": "v", "X_Under": "spoof",
                                         "Proxy": "http://evil"})
    env = env_of(body)
    docroot = str(site[0].resolve())
    assert status == 200
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["REQUEST_METHOD"] == "POST"
    assert env["QUERY_STRING"] == "x=1&y=%20z"
    assert env["REQUEST_URI"] == "/env.php/extra/path?x=1&y=%20z"
    assert env["SCRIPT_NAME"] == "/env.php"
    assert env["SCRIPT_FILENAME"] == docroot + "/env.php"
    assert env["PATH_INFO"] == "/extra/path"
    assert env["PATH_TRANSLATED"] == docroot + "/extra/path"
    assert env["DOCUMENT_ROOT"] == docroot
    assert env["CONTENT_LENGTH"] == "7"
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(s.port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["SERVER_SOFTWARE"].startswith("Kiln")
    assert env["REMOTE_ADDR"] == "127.0.0.1" and int(env["REMOTE_PORT"]) > 0
    assert env["REDIRECT_STATUS"] == "200"
    assert env["HTTP_COOKIE"] == "c=1" and env["HTTP_X_CUSTOM"] == "v"
    assert "HTTP_X_UNDER" not in env and "HTTP_PROXY" not in env and "HTTPS" not in env
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert Path(env["PHPRC"], "php.ini").is_file()
    status, _, body = c.get("/env.php")
    env = env_of(body)
    assert "CONTENT_LENGTH" not in env and "PATH_INFO" not in env and env["QUERY_STRING"] == ""


def test_trust_forwarded_sets_https(started, site):
    _, c = fake(started, site, trust_forwarded=True)
    _, _, body = c.get("/env.php", headers={"X-Forwarded-Proto": "https",
                                            "X-Forwarded-For": "203.0.113.9",
                                            "X-Forwarded-Host": "example.org"})
    env = env_of(body)
    assert env["HTTPS"] == "on" and env["REQUEST_SCHEME"] == "https"
    assert env["SERVER_PORT"] == "443" and env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["SERVER_NAME"] == "example.org"
    _, c = fake(started, site)  # not trusted by default
    env = env_of(c.get("/env.php", headers={"X-Forwarded-Proto": "https"})[2])
    assert "HTTPS" not in env


def test_request_body_round_trip_plain_and_chunked(started, site):
    _, c = fake(started, site)
    payload = os.urandom(300_000)
    status, _, body = c.request("POST", "/echo.php", body=payload)
    assert status == 200 and body == payload
    chunks = [payload[:1000], payload[1000:]]
    status, _, body = c.request("POST", "/echo.php", body=iter(chunks))  # sent chunked
    assert status == 200 and body == payload


def test_status_location_and_multiple_set_cookie(started, site):
    _, c = fake(started, site)
    status, resp, body = c.get("/cookies.php")
    assert status == 303 and resp.getheader("Location") == "/there" and body == b"moved"
    assert resp.headers.get_all("Set-Cookie") == ["a=1", "b=2; HttpOnly"]


def test_routing_front_controller_index_and_directory_redirect(started, site):
    _, c = fake(started, site)
    status, resp, body = c.get("/2024/01/hello-world/?p=1")
    env = env_of(body)
    assert status == 200 and resp.getheader("X-Front") == "1"
    assert env["SCRIPT_NAME"] == "/index.php" and env["REQUEST_URI"] == "/2024/01/hello-world/?p=1"
    assert "PATH_INFO" not in env
    status, resp, _ = c.get("/sub?a=b")
    assert status == 301 and resp.getheader("Location") == "/sub/?a=b"
    assert c.get("/sub/")[2] == b"sub index"
    status, _, body = c.get("/")
    assert env_of(body)["SCRIPT_NAME"] == "/index.php"
    assert c.get("/sub/page.html")[2] == b"<p>static page</p>\n"
    # a static file with a path after it does not exist: front controller
    assert env_of(c.get("/style.css/x")[2])["SCRIPT_NAME"] == "/index.php"


def test_no_front_controller_means_404(started, site):
    _, c = fake(started, site, front_controller=None)
    assert c.get("/missing")[0] == 404
    assert c.get("/data/")[0] == 403   # no listings


def test_static_files_types_head_conditional_and_range(started, site):
    _, c = fake(started, site)
    status, resp, body = c.get("/style.css")
    assert status == 200 and body == b"body { color: red }\n"
    assert resp.getheader("Content-Type") == "text/css; charset=utf-8"
    assert resp.getheader("Content-Length") == str(len(body))
    etag, modified = resp.getheader("ETag"), resp.getheader("Last-Modified")
    assert etag and modified
    status, resp, body = c.request("HEAD", "/style.css")
    assert status == 200 and body == b"" and resp.getheader("Content-Length") == "20"
    assert c.get("/style.css", headers={"If-None-Match": etag})[0] == 304
    assert c.get("/style.css", headers={"If-Modified-Since": modified})[0] == 304
    status, resp, body = c.get("/blob.bin", headers={"Range": "bytes=10-19"})
    assert status == 206 and body == bytes(range(10, 20))
    assert resp.getheader("Content-Range") == "bytes 10-19/10240"
    assert c.get("/blob.bin", headers={"Range": "bytes=-5"})[2] == bytes(range(251, 256))
    assert c.get("/blob.bin", headers={"Range": "bytes=99999-"})[0] == 416
    assert c.get("/blob.bin")[1].getheader("Content-Type") == "application/octet-stream"
    assert c.request("POST", "/style.css")[0] == 405
    assert c.get("/link-in.css")[0] == 200       # a symlink that stays inside is fine


@pytest.mark.parametrize("target", [
    "/../outside/secret.txt", "/%2e%2e/outside/secret.txt", "/sub/%2E%2E/%2e%2e/outside/secret.txt",
    "/..%2foutside%2fsecret.txt", "/sub%2f..%2f..%2foutside/secret.txt", "/style.css%00.php",
    "/link-out.txt", "/dir-out/secret.txt", "/dir-out/evil.php", "/evil.php", "/.ht.sqlite",
])
def test_traversal_and_symlinks_out_are_refused(started, site, target):
    _, c = fake(started, site)
    reply = c.raw(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert raw_status(reply) in (400, 403, 404), reply[:200]
    assert b"secret" not in reply and b"EXECUTED" not in reply


def test_response_headers_are_sanitized(started, site):
    _, c = fake(started, site)
    reply = c.raw(b"GET /inject.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert b"X-Bad: aInjected: yes" in lines
    assert not any(l.startswith(b"Injected") for l in lines)
    assert b"Transfer-Encoding" not in head and b"Content-Length: 4" in lines
    assert body == b"body"


def test_request_header_folding_cannot_inject(started, site):
    _, c = fake(started, site)
    reply = c.raw(b"GET /env.php HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b=c\r\n"
                  b"Connection: close\r\n\r\n")
    env = env_of(reply.partition(b"\r\n\r\n")[2])
    assert "b" not in env and env.get("HTTP_X_FOLD", "").startswith("a")


def test_body_cap_answers_413(started, site):
    _, c = fake(started, site, max_body=1000)
    assert c.request("POST", "/echo.php", body=b"x" * 1000)[0] == 200
    assert c.request("POST", "/echo.php", body=b"x" * 1001)[0] == 413
    status = c.request("POST", "/echo.php", body=iter([b"x" * 800, b"x" * 800]))[0]  # chunked
    assert status == 413
    reply = c.raw(b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n"
                  b"Expect: 100-continue\r\n\r\n")
    assert raw_status(reply) == 413 and b"100 Continue" not in reply
    reply = c.raw(b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert raw_status(reply) == 400   # smuggling shape refused


def test_time_limit_answers_504_and_server_stays_healthy(started, site):
    _, c = fake(started, site, timeout=1)
    t0 = time.monotonic()
    assert c.get("/slow.php")[0] == 504
    assert time.monotonic() - t0 < 10
    assert c.get("/style.css")[0] == 200
    assert c.get("/env.php")[0] == 200


def test_stale_lock_is_cleared_after_a_timeout(started, site):
    docroot, _ = site
    _, c = fake(started, site, timeout=1)
    assert c.get("/lock.php")[0] == 504
    assert not (docroot / "data" / "db.sqlite.lock").exists()


def test_crash_answers_500_and_server_stays_healthy(started, site):
    _, c = fake(started, site)
    assert c.get("/crash.php")[0] == 500
    assert c.get("/garbage.php")[0] == 502
    assert c.get("/env.php")[0] == 200


def test_output_cap_answers_502(started, site):
    _, c = fake(started, site, max_response=1_000_000)
    assert c.get("/big.php")[0] == 502
    _, c = fake(started, site)
    status, _, body = c.get("/big.php")
    assert status == 200 and len(body) == 3_000_000


def test_concurrent_requests_get_their_own_answers(started, site):
    _, c = fake(started, site, workers=8)
    results: dict[int, tuple] = {}

    def one(i: int) -> None:
        results[i] = c.get(f"/sleep1.php?n={i}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i][0] == 200 and results[i][2] == f"n={i}".encode() for i in range(8))
    assert time.monotonic() - t0 < 6    # in parallel, not 8 x 1 s


# Requests nginx refuses, refused the same way (the framing is h11's, kiln/server/front.py).
CHUNKED = "POST /echo.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
MALFORMED = [
    ("chunk size -1", CHUNKED + "-1\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size 0x10", CHUNKED + "0x10\r\n" + "a" * 16 + "\r\n0\r\n\r\n", 400),
    ("chunk size 1_0", CHUNKED + "1_0\r\n" + "a" * 16 + "\r\n0\r\n\r\n", 400),
    ("chunk size with a sign", CHUNKED + "+3\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk without its CRLF", CHUNKED + "3\r\nabcXY0\r\n\r\n", 400),
    ("bad request line", "GARBAGE\r\n\r\n", 400),
    ("request line without version", "GET /\r\nHost: x\r\n\r\n", 400),
    ("header without colon", "GET /env.php HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400),
    ("space before colon", "GET /env.php HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", 400),
    ("conflicting Content-Length", "POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
     "Content-Length: 2\r\n\r\nab", 400),
    ("negative Content-Length", "POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("Content-Length and chunked", "POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("unknown transfer coding", "POST /echo.php HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("HTTP/1.1 without Host", "GET /env.php HTTP/1.1\r\n\r\n", 400),
    ("raw non-ASCII target", "GET /\xe9t\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("oversized header block", "GET /env.php HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 70_000 + "\r\n\r\n", 431),
    ("oversized request line", "GET /" + "a" * 70_000 + " HTTP/1.1\r\nHost: x\r\n\r\n", 414),
]


@pytest.mark.parametrize("request_text, status", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_requests_are_refused_and_the_server_carries_on(started, site, request_text, status):
    _, c = fake(started, site)
    reply = c.raw(request_text.encode("latin-1"))
    assert raw_status(reply) == status, reply[:300]
    assert b"Connection: close" in reply.partition(b"\r\n\r\n")[0]
    assert c.get("/env.php")[0] == 200          # the next good request is served


def _head(lines: list[str], target: str = "/env.php") -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: x\r\n" + "".join(l + "\r\n" for l in lines)
            + "Connection: close\r\n\r\n").encode("latin-1")


def test_header_limits_answer_431_at_once_and_are_configurable(started, site):
    _, c = fake(started, site, max_header_lines=50, max_header_size=8 * 1024)
    assert raw_status(c.raw(_head([f"X-{i}: y" for i in range(48)]))) == 200   # + Host, Connection
    for lines, status in (([f"X-{i}: y" for i in range(49)], 431),
                          ([f"X-A: {'a' * 8_000}", f"X-B: {'b' * 200}"], 431),
                          ([], 414)):
        started_at = time.monotonic()
        reply = c.raw(_head(lines, "/env.php?" + "q" * 9_000 if status == 414 else "/env.php"))
        assert raw_status(reply) == status, reply[:200]
        assert time.monotonic() - started_at < 5
    assert c.get("/env.php")[0] == 200


def test_a_header_php_could_not_be_given_is_431_whatever_the_size_limit(started, site):
    # Lines of one name are joined into one CGI variable: two cookies of 40 KB are one of 80.
    _, c = fake(started, site, max_header_size=1024 * 1024, max_header_lines=10_000)
    assert raw_status(c.raw(_head([f"Cookie: a={'a' * 40_000}", f"Cookie: b={'b' * 40_000}"]))) == 431
    assert raw_status(c.raw(_head([], "/env.php?" + "q" * 70_000))) == 414
    assert raw_status(c.raw(_head([f"Cookie: a={'a' * 60_000}"]))) == 200
    assert raw_status(c.raw(_head([f"X-{i}: y" for i in range(9_000)]))) == 200


@pytest.mark.parametrize("argument, message", [
    ("--max-header-lines=0", "must be above 0"), ("--max-header-lines=many", "is not a whole number"),
    ("--max-header-size=100", "must be 1K or more"), ("--max-header-size=lots", "expected a size"),
])
def test_header_limit_options_refuse_bad_values_in_one_line(tmp_path, capsys, argument, message):
    from kiln.server import cli
    with pytest.raises(SystemExit) as exit:
        cli.main(["--docroot", str(tmp_path), argument])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_client_stalling_inside_a_request_gets_408(started, site):
    _, c = fake(started, site, keepalive_timeout=0.5)
    assert raw_status(c.raw(b"GET /env.php HTTP/1.1\r\nHost: x\r\n")) == 408
    assert raw_status(c.raw(CHUNKED.encode() + b"5\r\nab")) == 408
    assert c.raw(b"") == b""       # an idle connection is closed without an answer


def test_pipelined_requests_are_answered_in_order(started, site):
    _, c = fake(started, site)
    reply = c.raw(b"GET /env.php?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /env.php?n=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200 OK") == 3
    assert reply.index(b"QUERY_STRING=n=1") < reply.index(b"hello") < reply.index(b"QUERY_STRING=n=3")


def test_expect_100_continue_then_the_body(started, site):
    s, _ = fake(started, site)
    with socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"POST /echo.php HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")    # asked for before the body
        sock.sendall(b"hello")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert raw_status(reply) == 200 and reply.endswith(b"\r\n\r\nhello")


def test_head_of_a_script_sends_no_body(started, site):
    _, c = fake(started, site)
    reply = c.raw(b"HEAD /cookies.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert raw_status(reply) == 303 and body == b"" and b"Location: /there" in head


def test_keep_alive_serves_several_requests_on_one_connection(started, site):
    s, _ = fake(started, site)
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    for path in ("/style.css", "/env.php", "/cookies.php", "/missing-file.css"):
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (200, 303)
    conn.close()


def test_graceful_shutdown_lets_in_flight_requests_finish(started, site):
    s, c = fake(started, site)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", c.get("/sleep1.php?last")))
    t.start()
    time.sleep(0.3)
    assert s.stop(grace=5) is True
    t.join()
    assert result["r"][0] == 200 and result["r"][2] == b"last"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()


def test_graceful_shutdown_from_sigterm(site, tmp_path):
    docroot, cgi = site
    proc = subprocess.Popen(
        [os.sys.executable, "-m", "kiln.server", "--docroot", str(docroot), "--native-cgi", str(cgi),
         "--port", "0", "--grace", "5"],
        cwd=Path(__file__).resolve().parents[1], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "serving" in line, line
        port = int(line.split(" at ")[1].split(" ")[0].rsplit(":", 1)[1])
        result = {}

        def fetch():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/sleep1.php?bye")
            resp = conn.getresponse()
            result["r"] = (resp.status, resp.read())

        t = threading.Thread(target=fetch)
        t.start()
        time.sleep(0.3)
        proc.terminate()
        t.join()
        assert result["r"] == (200, b"bye")
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_cron_runs_internally_once_and_periodically(started, site):
    docroot, _ = site
    s, _ = fake(started, site)
    assert s.run_cron().status == 200
    marker = docroot / "data" / "cron-ran"
    assert marker.exists()
    marker.unlink()
    fake(started, site, cron_interval=0.2)
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()


def test_busy_workers_answer_503(started, site):
    _, c = fake(started, site, workers=1, queue_timeout=0.2)
    t = threading.Thread(target=lambda: c.get("/sleep1.php"))
    t.start()
    time.sleep(0.3)
    assert c.get("/env.php")[0] == 503
    t.join()
    assert c.get("/env.php")[0] == 200


def test_ini_file_and_settings_are_merged(started, site, tmp_path):
    ini = tmp_path / "my.ini"
    ini.write_text("[PATH=/somewhere]\nfoo = 1\n")
    s, c = fake(started, site, ini_file=ini, ini={"memory_limit": "64M"})
    env = env_of(c.get("/env.php")[2])
    text = Path(env["PHPRC"], "php.ini").read_text()
    assert "[PATH=/somewhere]" in text and text.index("[PATH") < text.rindex("[PHP]")
    assert text.rstrip().endswith("memory_limit = 64M")


def test_opcache_file_cache_gets_its_own_folder_created_if_missing(started, site, tmp_path):
    cache = tmp_path / "state" / "opcache"
    s, c = fake(started, site, opcache_dir=cache)
    assert cache.is_dir()
    text = Path(env_of(c.get("/env.php")[2])["PHPRC"], "php.ini").read_text()
    assert f'opcache.file_cache = "{cache.resolve()}"' in text   # native: guest path = host path
    assert "opcache.enable = 1" in text and "opcache.file_cache_only = 1" in text
    # Settings the user gives come later, so they win.
    s, c = fake(started, site, ini={"opcache.enable": "0"})
    text = Path(env_of(c.get("/env.php")[2])["PHPRC"], "php.ini").read_text()
    assert text.index("opcache.enable = 1") < text.rindex("opcache.enable = 0")
    s, c = fake(started, site, opcache=False)
    text = Path(env_of(c.get("/env.php")[2])["PHPRC"], "php.ini").read_text()
    assert "opcache" not in text


def test_tls(started, site, tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("no openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    s, _ = fake(started, site, tls_cert=cert, tls_key=key)
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    conn = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=10)
    conn.request("GET", "/env.php")
    env = env_of(conn.getresponse().read())
    conn.close()
    assert env["HTTPS"] == "on" and env["REQUEST_SCHEME"] == "https"


# ---------------------------------------------------------------------------------------------
# Slow tests: the real php-cgi in Wasmtime


def _php_cgi_module() -> Path | None:
    explicit = os.environ.get("KILN_TEST_PHP_CGI")
    if explicit:
        return Path(explicit)
    try:
        return srv.find_php_cgi("8.2.32")
    except srv.KilnError:
        return None


PHP = {
    "index.php": '<?php echo "front:", $_SERVER["REQUEST_URI"], "|", $_SERVER["SCRIPT_NAME"];',
    "info.php": """<?php
header("Content-Type: application/json");
echo json_encode(["get" => $_GET, "post" => $_POST, "cookie" => $_COOKIE,
    "path_info" => $_SERVER["PATH_INFO"] ?? null, "script" => $_SERVER["SCRIPT_FILENAME"],
    "self" => $_SERVER["PHP_SELF"], "method" => $_SERVER["REQUEST_METHOD"],
    "ini" => php_ini_loaded_file(), "tmp" => sys_get_temp_dir(),
    "upload_tmp_dir" => ini_get("upload_tmp_dir"), "https" => $_SERVER["HTTPS"] ?? null]);
""",
    "upload.php": """<?php
$f = $_FILES["file"];
echo json_encode(["name" => $f["name"], "size" => $f["size"], "error" => $f["error"],
    "tmp" => $f["tmp_name"], "sha1" => sha1_file($f["tmp_name"]), "field" => $_POST["field"] ?? null]);
""",
    "cookies.php": """<?php
setcookie("first", "1"); setcookie("second", "2", ["httponly" => true]);
header("Location: /elsewhere", true, 302); echo "redirecting";
""",
    "loop.php": "<?php while (true) { $x = 1; }",
    "lock.php": """<?php
@mkdir("/var/www/data/db.sqlite.lock"); while (true) { $x = 1; }""",
    # C recursion past Wasmtime's stack limit: a trap ("call stack exhausted")
    "crash.php": """<?php
ini_set("memory_limit", "-1");
$a = []; for ($i = 0; $i < 200000; $i++) { $a = [$a]; } echo count($a, COUNT_RECURSIVE);""",
    "memory.php": """<?php
ini_set("memory_limit", "-1"); $s = []; for ($i = 0; $i < 1000; $i++) { $s[] = str_repeat("x", 4 << 20); }
echo "survived";""",
    "header.php": """<?php
try { header("X-Test: a\\r\\nInjected: b"); } catch (Throwable $e) {}
header("X-Safe: ok"); echo "done";""",
    "hello.php": "<?php echo 'Hello, ', PHP_VERSION, ' ', $_GET['n'] ?? '';",
}


@pytest.fixture(scope="module")
def php_module(php_builds):
    """The real 8.2.32 php-cgi (built once per run by the php_builds fixture), or KILN_TEST_PHP_CGI."""
    module = _php_cgi_module()
    assert module is not None and module.is_file(), f"no php-cgi module at {module}"
    return module


@pytest.fixture(params=["worker", "request"])
def php(request, started, php_module, tmp_path):
    """Start the real php-cgi on a docroot of PHP pages, in each isolation in turn."""
    docroot = tmp_path / "www"
    docroot.mkdir()
    for name, text in PHP.items():
        (docroot / name).write_text(text)
    (docroot / "data").mkdir()
    (docroot / "data" / "db.sqlite").write_text("")
    (docroot / "style.css").write_text("p {}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.php").write_text("<?php echo 'EXECUTED';")
    os.symlink(outside / "evil.php", docroot / "evil.php")

    def start(**options):
        options.setdefault("mounts", [Mount(docroot / "data", "/var/www/data", True)])
        options.setdefault("timeout", 20)
        options.setdefault("isolation", request.param)
        s, c = started(docroot=docroot, module=php_module, **options)
        return s, c, docroot

    return start


@pytest.mark.slow
def test_php_get_post_cookies_path_info(php):
    _, c, _ = php()
    status, _, body = c.request("POST", "/info.php/a/b?q=1&r[]=2", body=b"x=1&y=%C3%A9",
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "Cookie": "k=v; k2=v2"})
    info = json.loads(body)
    assert status == 200, body
    assert info["get"] == {"q": "1", "r": ["2"]}
    assert info["post"] == {"x": "1", "y": "é"}
    assert info["cookie"] == {"k": "v", "k2": "v2"}
    assert info["path_info"] == "/a/b" and info["script"] == "/var/www/info.php"
    assert info["self"] == "/info.php/a/b" and info["method"] == "POST"
    assert info["ini"] == "/.kiln/php.ini" and info["upload_tmp_dir"] == "/tmp"


@pytest.mark.slow
def test_php_redirect_and_multiple_cookies(php):
    _, c, _ = php()
    status, resp, body = c.get("/cookies.php")
    assert status == 302 and resp.getheader("Location") == "/elsewhere"
    cookies = resp.headers.get_all("Set-Cookie")
    assert len(cookies) == 2 and cookies[0].startswith("first=1")
    assert cookies[1].startswith("second=2") and "HttpOnly" in cookies[1]


@pytest.mark.slow
def test_php_front_controller_and_static(php):
    _, c, _ = php()
    status, _, body = c.get("/2024/hello-world/?x=1")
    assert (status, body) == (200, b"front:/2024/hello-world/?x=1|/index.php")
    status, resp, body = c.get("/style.css")
    assert (status, body) == (200, b"p {}\n") and resp.getheader("Content-Type").startswith("text/css")
    assert c.get("/evil.php")[0] == 403


@pytest.mark.slow
def test_php_multipart_upload_arrives_intact(php):
    _, c, _ = php()
    payload = os.urandom(1_500_000)
    boundary = "kilnboundary1234"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + payload + \
        f"\r\n--{boundary}--\r\n".encode()
    status, _, out = c.request("POST", "/upload.php", body=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, out
    info = json.loads(out)
    import hashlib
    assert info["error"] == 0 and info["size"] == len(payload) and info["name"] == "x.bin"
    assert info["sha1"] == hashlib.sha1(payload).hexdigest()
    assert info["tmp"].startswith("/tmp/") and info["field"] == "value"


@pytest.mark.slow
def test_php_time_limit_504_then_healthy_and_lock_cleared(php):
    _, c, docroot = php(timeout=1.5)
    assert c.get("/loop.php")[0] == 504
    assert c.get("/hello.php?n=after")[2].endswith(b"after")
    assert c.get("/lock.php")[0] == 504
    assert not (docroot / "data" / "db.sqlite.lock").exists()
    assert c.get("/hello.php")[0] == 200


@pytest.mark.slow
def test_php_crash_is_500_then_healthy(php):
    _, c, _ = php()
    assert c.get("/crash.php")[0] == 500
    assert c.get("/hello.php?n=ok")[2].endswith(b"ok")


@pytest.mark.slow
def test_php_memory_cap(php):
    _, c, _ = php(memory_mb=96)
    status, _, body = c.get("/memory.php")
    assert status in (500, 503) and b"survived" not in body
    assert c.get("/hello.php")[0] == 200


@pytest.mark.slow
def test_php_header_injection_refused(php):
    _, c, _ = php()
    reply = c.raw(b"GET /header.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head = reply.partition(b"\r\n\r\n")[0]
    assert b"X-Safe: ok" in head and b"\r\nInjected" not in head


@pytest.mark.slow
def test_php_concurrent_requests(php):
    _, c, _ = php(workers=4)
    results: dict[int, tuple] = {}

    def one(i: int) -> None:
        results[i] = c.get(f"/hello.php?n={i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        status, _, body = results[i]
        assert status == 200 and body.startswith(b"Hello, ") and body.endswith(f" {i}".encode())


@pytest.mark.slow
def test_php_body_cap(php):
    _, c, _ = php(max_body=10_000)
    assert c.request("POST", "/info.php", body=b"x=" + b"a" * 20_000,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 413


@pytest.mark.slow
def test_php_malformed_requests_cost_no_worker(php):
    """Framing errors are refused in front of PHP: no script runs, no worker is replaced."""
    s, c, _ = php(workers=2)
    assert c.get("/hello.php?n=warm")[0] == 200
    pool = getattr(s.app.backend, "pool", None)
    before = pool.worker_pids() if pool else None
    for _, text, status in MALFORMED:
        assert raw_status(c.raw(text.encode("latin-1"))) == status, text[:60]
    for i in range(4):
        assert c.get(f"/hello.php?n={i}")[2].endswith(f" {i}".encode())
    if pool:
        assert pool.worker_pids() == before and pool.stats["replaced"] == 0


@pytest.mark.slow
def test_php_state_does_not_outlive_its_request(php):
    """What a script declares or sets is gone at the next request in both isolations: a fresh
    instance has nothing, and a worker runs PHP's request shutdown (as php-fpm does)."""
    s, c, docroot = php(workers=1)
    (docroot / "state.php").write_text(
        '<?php echo function_exists("kiln_seen") ? "kept" : "fresh", " ", $GLOBALS["n"] ?? 0, "\\n";'
        ' if (!function_exists("kiln_seen")) { function kiln_seen() {} } $GLOBALS["n"] = 1;')
    assert [c.get("/state.php")[2] for _ in range(3)] == [b"fresh 0\n"] * 3


HEADS_PHP = """<?php
$x = 0; $params = 0;
foreach ($_SERVER as $k => $v) {
    if (strncmp($k, "HTTP_X_", 7) == 0) $x++;
    // What this variable took in FastCGI params (PHP's own few, REQUEST_TIME..., add ~100).
    if (is_string($v)) $params += strlen($k) + strlen($v) + (strlen($k) > 127 ? 4 : 1) + (strlen($v) > 127 ? 4 : 1);
}
echo json_encode(["x" => $x, "cookie" => strlen($_COOKIE["k"] ?? ""), "params" => $params,
                  "body" => strlen(file_get_contents("php://input"))]);"""


def _heads(c: Client, lines: list[str], body: bytes = b"") -> dict:
    method = "POST" if body else "GET"
    head = (f"{method} /heads.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + (f"Content-Length: {len(body)}\r\n" if body else "")
            + "".join(line + "\r\n" for line in lines) + "\r\n")
    started = time.monotonic()
    reply = c.raw(head.encode("latin-1") + body, timeout=10)   # far from the 20 s time limit
    assert raw_status(reply) == 200, reply[:300]
    assert time.monotonic() - started < 10
    return json.loads(reply.partition(b"\r\n\r\n")[2])


def _pads(total: int) -> list[str]:
    """Four X-Pad lines whose CGI variables take `total` bytes of FastCGI params."""
    each = total // 4 - len("HTTP_X_PAD_0") - 5
    return [f"X-Pad-{i}: {'p' * each}" for i in range(4)]


@pytest.mark.slow
def test_php_large_heads_are_answered_and_hold_no_worker(php):
    """Issue 27: over 64 KiB of params hung the worker until the time limit (504, replaced)."""
    s, c, docroot = php(workers=2, max_header_lines=6_000, max_header_size=256 * 1024)
    (docroot / "heads.php").write_text(HEADS_PHP)
    base = _heads(c, [])["params"]
    assert _heads(c, [f"X-{i}: y" for i in range(5_000)])["x"] == 5_000
    assert _heads(c, [f"Cookie: k={'c' * 61_440}"])["cookie"] == 61_440
    under = _heads(c, _pads(65_000 - base))
    assert under["x"] == 4 and 64_000 < under["params"] <= 65_000       # one PARAMS record
    over = _heads(c, _pads(66_500 - base))
    assert over["x"] == 4 and 66_400 < over["params"] <= 66_500         # two
    post = _heads(c, [f"X-{i}: y" for i in range(5_000)] + [f"Cookie: k={'c' * 61_440}"],
                  body=os.urandom(5 * 1024 * 1024))
    assert post == {**post, "x": 5_000, "cookie": 61_440, "body": 5 * 1024 * 1024}
    assert post["params"] > 120_000          # several PARAMS records
    pool = getattr(s.app.backend, "pool", None)
    if pool:    # worker isolation: the pool's own counters
        assert pool.stats == {**pool.stats, "replaced": 0, "timeouts": 0, "crashes": 0}
        assert pool.stats["served"] == 6


@pytest.mark.slow
def test_php_heads_over_the_limits_are_refused_before_php(php):
    s, c, docroot = php(workers=2)          # the defaults: 100 lines, 64 KiB
    (docroot / "heads.php").write_text(HEADS_PHP)
    assert _heads(c, [f"X-{i}: y" for i in range(98)])["x"] == 98     # + Host, Connection
    # Too many lines; a head over 64 KiB; a head under it with one field PHP cannot be given.
    for lines in ([f"X-{i}: y" for i in range(99)], [f"X-A: {'a' * 66_000}"],
                  [f"Cookie: k={'c' * 65_000}"]):
        head = "GET /heads.php HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + \
            "".join(line + "\r\n" for line in lines) + "\r\n"
        assert raw_status(c.raw(head.encode())) == 431
    pool = getattr(s.app.backend, "pool", None)
    if pool:
        assert pool.stats == {**pool.stats, "served": 1, "replaced": 0}


# ---------------------------------------------------------------------------------------------
# The wasm path without PHP: a tiny CGI program built with zig stands in for php-cgi.wasm

WASM_CGI_C = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

extern char **environ;

int main(void) {
    const char *script = getenv("SCRIPT_FILENAME");
    const char *name = script ? strrchr(script, '/') + 1 : "";
    if (!strcmp(name, "env.php")) {
        printf("Content-Type: text/plain\r\n\r\n");
        for (char **e = environ; *e; e++) printf("%s\n", *e);
        return 0;
    }
    if (!strcmp(name, "cat.php")) {          /* the script file itself, read in the guest */
        FILE *f = fopen(script, "r");
        if (!f) { printf("Status: 500 Error\r\n\r\nopen %s: %s", script, strerror(errno)); return 1; }
        printf("Content-Type: text/plain\r\n\r\n");
        char buf[4096]; size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, got, stdout);
        return 0;
    }
    if (!strcmp(name, "echo.php")) {
        printf("Content-Type: application/octet-stream\r\n\r\n");
        char buf[4096]; size_t got;
        while ((got = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, got, stdout);
        return 0;
    }
    if (!strcmp(name, "write.php")) {        /* /tmp and the writable grant, not the docroot */
        const char *targets[] = {"/tmp/t.txt", "/var/www/data/d.txt", "/var/www/ro.txt"};
        printf("Content-Type: text/plain\r\n\r\n");
        for (int i = 0; i < 3; i++) {
            FILE *f = fopen(targets[i], "w");
            printf("%s:%s\n", targets[i], f ? "ok" : "refused");
            if (f) fclose(f);
        }
        return 0;
    }
    if (!strcmp(name, "loop.php")) { volatile unsigned long i = 0; for (;;) i++; }
    if (!strcmp(name, "lock.php")) {
        mkdir("/var/www/data/db.sqlite.lock", 0755);
        volatile unsigned long i = 0; for (;;) i++;
    }
    if (!strcmp(name, "alloc.php")) {
        char *volatile p = malloc(256u << 20);
        if (!p) { printf("Status: 500 Out Of Memory\r\n\r\n"); return 255; }
        memset(p, 1, 256u << 20);
        printf("Content-Type: text/plain\r\n\r\nallocated");
        return 0;
    }
    if (!strcmp(name, "trap.php")) __builtin_trap();
    if (!strcmp(name, "hello.php")) { printf("Content-Type: text/html\r\n\r\nHello, world!"); return 0; }
    printf("Status: 404 Not Found\r\n\r\nno such test script: %s", name);
    return 0;
}
"""


@pytest.fixture(scope="session")
def wasm_cgi(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("wasm-cgi")
    (build / "cgi.c").write_text(WASM_CGI_C)
    out = build / "cgi.wasm"
    proc = subprocess.run([os.sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi",
                           "-O2", "-s", str(build / "cgi.c"), "-o", str(out)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"zig cc failed:\n{proc.stderr}")
    return out


@pytest.fixture
def wasm_site(tmp_path, wasm_cgi, started):
    docroot = tmp_path / "www"
    (docroot / "data").mkdir(parents=True)
    (docroot / "data" / "db.sqlite").write_text("")
    for name in ("env.php", "cat.php", "echo.php", "write.php", "loop.php", "lock.php",
                 "alloc.php", "trap.php", "hello.php"):
        (docroot / name).write_text(f"script {name}\n")

    def start(**options):
        options.setdefault("mounts", [Mount(docroot / "data", "/var/www/data", True)])
        options.setdefault("isolation", "request")   # plain CGI: no FastCGI loop for a worker
        s, c = started(docroot=docroot, module=wasm_cgi, **options)
        return s, c, docroot

    return start


def test_wasm_guest_sees_docroot_grants_and_environment(wasm_site):
    s, c, docroot = wasm_site()
    status, _, body = c.get("/cat.php")
    assert (status, body) == (200, b"script cat.php\n")
    env = env_of(c.get("/env.php/x?a=1")[2])
    assert env["SCRIPT_FILENAME"] == "/var/www/env.php" and env["DOCUMENT_ROOT"] == "/var/www"
    assert env["PATH_TRANSLATED"] == "/var/www/x" and env["PHPRC"] == "/.kiln"
    assert env["TMPDIR"] == "/tmp" and "PATH" not in env   # nothing from the host
    body = c.get("/write.php")[2].decode()
    assert "/tmp/t.txt:ok" in body and "/var/www/data/d.txt:ok" in body
    assert "/var/www/ro.txt:refused" in body and not (docroot / "ro.txt").exists()
    assert (docroot / "data" / "d.txt").exists() and (s.tmp_host / "t.txt").exists()
    payload = os.urandom(200_000)
    assert c.request("POST", "/echo.php", body=payload)[2] == payload


def test_wasm_time_limit_lock_trap_and_memory(wasm_site):
    _, c, docroot = wasm_site(timeout=0.5, memory_mb=64)
    t0 = time.monotonic()
    assert c.get("/loop.php")[0] == 504
    assert time.monotonic() - t0 < 5
    assert c.get("/hello.php")[2] == b"Hello, world!"
    assert c.get("/lock.php")[0] == 504
    assert not (docroot / "data" / "db.sqlite.lock").exists()
    assert c.get("/trap.php")[0] == 500
    status, _, body = c.get("/alloc.php")
    assert status == 500 and b"allocated" not in body
    assert c.get("/hello.php")[0] == 200


def test_wasm_graceful_shutdown_and_concurrency(wasm_site):
    s, c, _ = wasm_site(workers=4)
    results: dict[int, tuple] = {}

    def one(i: int) -> None:
        results[i] = c.get(f"/env.php?n={i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(env_of(results[i][2])["QUERY_STRING"] == f"n={i}" for i in range(8))
    assert s.stop(grace=5)


def test_rootfs_config_serves_an_unpacked_image_like_shimrun(tmp_path, wasm_cgi, started):
    rootfs = tmp_path / "rootfs"
    (rootfs / "docroot").mkdir(parents=True)
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "hostname").write_text("box\n")
    (rootfs / "docroot" / "cat.php").write_text("from the image\n")
    (rootfs / "docroot" / "env.php").write_text("")
    shutil.copyfile(wasm_cgi, rootfs / "php-cgi.wasm")
    volume = tmp_path / "vol"
    volume.mkdir()
    config = srv.rootfs_config(rootfs, rootfs / "php-cgi.wasm", "/docroot", 0,
                               env={"HOSTNAME": "box", "PATH": "/bin"},
                               mounts=[(volume, "/docroot/uploads", True)],
                               access_log=io.StringIO(), isolation="request")
    s = Server(config).start()
    try:
        c = Client(s)
        assert c.get("/cat.php")[2] == b"from the image\n"
        env = env_of(c.get("/env.php")[2])
        assert env["HOSTNAME"] == "box" and env["SCRIPT_FILENAME"] == "/docroot/env.php"
    finally:
        s.stop(grace=2)
