"""Mirrors, retries and checksums, against folders and a loopback HTTP server."""
import hashlib
import http.server
import threading
import time

import pytest

from kiln import fetch
from kiln.errors import KilnError

PAYLOAD = b"pretend this is php-8.2.32.tar.xz\n" * 1000
SHA = hashlib.sha256(PAYLOAD).hexdigest()
NAME = "php-8.2.32.tar.xz"


class Handler(http.server.BaseHTTPRequestHandler):
    behaviours: dict = {}  # path prefix -> "ok" | "404" | "500" | "hang" | "bad"
    hits: list = []

    def do_GET(self):
        prefix = self.path.split("/")[1]
        self.hits.append(prefix)
        mode = self.behaviours.get(prefix, "404")
        if mode == "hang":
            time.sleep(3)
            return
        if mode in ("404", "500"):
            self.send_error(int(mode))
            return
        body = PAYLOAD if mode == "ok" else PAYLOAD[:-10] + b"tampered!\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(fetch, "BACKOFF", 0.01)
    monkeypatch.setattr(fetch, "READ_TIMEOUT", 0.5)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.hits = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def no_leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name != NAME]


def test_mirrors_come_before_upstream_in_the_given_order(tmp_path):
    found = fetch.origins(NAME, ["https://upstream.invalid/" + NAME], [str(tmp_path), "http://m.invalid/dist/"])
    assert [o.location for o in found] == [
        str(tmp_path / NAME), "http://m.invalid/dist/" + NAME, "https://upstream.invalid/" + NAME]


def test_a_local_mirror_is_used_and_verified(tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    (mirror / NAME).write_bytes(PAYLOAD)
    origin = fetch.fetch(NAME, SHA, cache / NAME, ["http://127.0.0.1:9/" + NAME], [str(mirror)])
    assert origin == str(mirror / NAME)
    assert (cache / NAME).read_bytes() == PAYLOAD
    assert no_leftovers(cache) == []


def test_checksum_mismatch_leaves_nothing_in_the_cache(tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    (mirror / NAME).write_bytes(PAYLOAD + b"extra")
    with pytest.raises(KilnError, match="checksum mismatch") as info:
        fetch.fetch(NAME, SHA, cache / NAME, [], [str(mirror)])
    assert "KILN_MIRROR" in str(info.value)
    assert not (cache / NAME).exists()
    assert list(cache.iterdir()) == []


def test_404_500_hang_and_tampering_fall_through_to_the_next_mirror(server, tmp_path):
    Handler.behaviours = {"missing": "404", "broken": "500", "slow": "hang", "evil": "bad", "good": "ok"}
    mirrors = [f"{server}/{name}" for name in ("missing", "broken", "slow", "evil", "good")]
    origin = fetch.fetch(NAME, SHA, tmp_path / NAME, [], mirrors)
    assert origin == f"{server}/good/{NAME}"
    assert (tmp_path / NAME).read_bytes() == PAYLOAD
    # 404 is final at once; 500 and time-outs are retried with back-off.
    assert Handler.hits.count("missing") == 1
    assert Handler.hits.count("broken") == fetch.ATTEMPTS
    assert Handler.hits.count("slow") == fetch.ATTEMPTS
    assert Handler.hits.count("evil") == 1
    assert no_leftovers(tmp_path) == []


def test_when_every_origin_fails_the_error_says_what_each_answered(server, tmp_path):
    Handler.behaviours = {"missing": "404"}
    with pytest.raises(KilnError) as info:
        fetch.fetch(NAME, SHA, tmp_path / NAME, ["http://127.0.0.1:9/" + NAME], [f"{server}/missing"])
    text = str(info.value)
    assert "HTTP 404" in text and "cannot connect" in text and "\n" not in text
    assert list(tmp_path.iterdir()) == []


def test_a_bad_mirror_copy_is_named_even_when_a_later_mirror_has_a_good_one(server, tmp_path, capsys):
    Handler.behaviours = {"evil": "bad", "good": "ok"}
    origin = fetch.fetch(NAME, SHA, tmp_path / NAME, [], [f"{server}/evil", f"{server}/good"])
    assert origin == f"{server}/good/{NAME}"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [f"  kiln: warning: {server}/evil/{NAME} is a bad copy: checksum mismatch "
                        f"(sha256 {hashlib.sha256(PAYLOAD[:-10] + b'tampered!' + bytes([10])).hexdigest()[:16]}..., "
                        f"pinned {SHA[:16]}...); trying the next origin"]


def test_a_corrupt_copy_in_the_source_cache_is_fetched_again(tmp_path, capsys):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    mirror.mkdir()
    cache.mkdir()
    (mirror / NAME).write_bytes(PAYLOAD)
    (cache / NAME).write_bytes(PAYLOAD[:100])  # truncated
    assert fetch.fetch(NAME, SHA, cache / NAME, [], [str(mirror)]) == str(mirror / NAME)
    assert (cache / NAME).read_bytes() == PAYLOAD
    assert "the copy in the source cache does not match its pin" in capsys.readouterr().err
