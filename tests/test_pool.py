"""kiln.pool behind Debian's real nginx: persistent php-cgi.wasm workers, php-fpm's controls.

The pool runs as a user would run it (`python -m kiln.pool`, its own process), nginx in front
with a stock php-fpm site. Faults are real: an endless loop, kill -9 of a worker, a memory
bomb, a trap, a malformed FastCGI stream.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from doit_run import build
from kiln.layout import Build
from kiln.pool import fastcgi
from nginx import Nginx, PoolProcess, served_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BUILD = Build("php", "8.2.32", "wordpress")
LIMIT = 3.0   # request_terminate_timeout of the pool under test

PAGES = {
    "index.php": '<?php echo "front ", $_SERVER["REQUEST_URI"], "\\n";',
    "info.php": '<?php echo getenv("KILN_WORKER_PID") ?: "?", " ", $_SERVER["SCRIPT_FILENAME"], " [",'
                ' $_SERVER["PATH_INFO"] ?? "", "] ", file_get_contents("php://input"), "\\n";',
    "counter.php": '<?php static $n = 0; $GLOBALS["k"] = ($GLOBALS["k"] ?? 0) + 1;'
                   ' echo function_exists("kiln_seen") ? "kept" : "fresh", "\\n";'
                   ' if (!function_exists("kiln_seen")) { function kiln_seen() {} }',
    "loop.php": '<?php while (true) {}',
    "sleep.php": '<?php $t = microtime(true); while (microtime(true) - $t < 1.0) {} echo "slept\\n";',
    "bomb.php": '<?php ini_set("memory_limit", "-1"); $a = []; while (true) { $a[] = str_repeat("x", 1 << 20); }',
    "trap.php": '<?php function f($n) { return f($n + 1) + 1; } f(0);',
    "heads.php": '<?php $x = 0; foreach ($_SERVER as $k => $v) { if (strncmp($k, "HTTP_X_", 7) == 0) $x++; }'
                 ' echo json_encode(["x" => $x, "cookie" => strlen($_COOKIE["k"] ?? ""),'
                 ' "pad" => strlen($_SERVER["HTTP_PAD"] ?? ""), "body" => strlen(file_get_contents("php://input"))]);',
}


def pool_process(module: Path, docroot: Path, workers: int = 2, max_requests: int = 500) -> PoolProcess:
    return PoolProcess(module, docroot, [
        "--workers", str(workers), "--max-requests", str(max_requests),
        "--request-terminate-timeout", str(LIMIT), "--memory", "512"])


@pytest.fixture(scope="module")
def module():
    explicit = os.environ.get("KILN_TEST_PHP_CGI")   # as tests/test_server.py: no build
    if explicit:
        return Path(explicit)
    build(f"php_smoke:{BUILD.id}")
    path = BUILD.module("php-cgi", aot=True)
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def docroot():
    with served_folder({**PAGES, "static.txt": "static file\n"}, prefix="kiln-pool-www-") as root:
        yield root


@pytest.fixture(scope="module")
def served(module, docroot):
    pool = pool_process(module, docroot, workers=2, max_requests=4)
    nginx = Nginx(docroot, pool.socket)
    yield pool, nginx
    nginx.stop()
    pool.stop()


def get(nginx, path, **kw):
    return requests.get(nginx.url + path, timeout=LIMIT + 30, **kw)


def test_a_stock_php_fpm_site_works_unchanged(served, docroot):
    pool, nginx = served
    assert get(nginx, "/static.txt").text == "static file\n"
    page = get(nginx, "/no/such/page?x=1")        # try_files ... /index.php?$args
    assert page.status_code == 200 and page.text == "front /no/such/page?x=1\n", nginx.error_log()
    info = requests.post(nginx.url + "/info.php/extra/path", data=b"posted body", timeout=30)
    assert info.status_code == 200, nginx.error_log()
    assert f"{docroot}/info.php [/extra/path] posted body" in info.text


def test_each_request_starts_clean_and_workers_are_recycled(served):
    pool, nginx = served
    before = pool.workers()
    seen = [get(nginx, "/counter.php").text.strip() for _ in range(8)]
    # The instance is kept, but PHP's request shutdown drops what a script declared (user
    # functions, globals), as under php-fpm: no request sees the previous one's.
    assert set(seen) == {"fresh"}, seen
    deadline = time.monotonic() + 10
    while pool.workers() == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pool.workers() != before and len(pool.workers()) == 2
    assert "served max_requests (4)" in pool.text()


def test_an_endless_loop_gets_504_and_a_new_worker(served):
    pool, nginx = served
    started = time.monotonic()
    response = get(nginx, "/loop.php")
    assert response.status_code == 504, response.text
    assert time.monotonic() - started < LIMIT + 1.5
    assert "ran past request_terminate_timeout" in pool.text()
    assert get(nginx, "/index.php").status_code == 200
    assert len(pool.workers()) == 2


def test_kill_9_mid_request_is_a_502_for_that_request_only(served):
    pool, nginx = served
    with ThreadPoolExecutor(2) as ex:
        slow = ex.submit(get, nginx, "/sleep.php")
        time.sleep(0.4)
        busy = [pid for pid in pool.workers() if _cpu_busy(pid)]
        assert busy, "no busy worker found"
        os.kill(busy[0], signal.SIGKILL)
        other = ex.submit(get, nginx, "/index.php")
        assert other.result().status_code == 200
        assert slow.result().status_code == 502
    assert get(nginx, "/index.php").status_code == 200
    assert "died mid-request" in pool.text()


def _cpu_busy(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    first = int(fields[11]) + int(fields[12])
    time.sleep(0.1)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]) > first


@pytest.mark.parametrize("page", ["bomb.php", "trap.php"])
def test_a_memory_bomb_or_a_trap_costs_one_request(served, page):
    pool, nginx = served
    response = get(nginx, "/" + page)
    assert response.status_code in (500, 502), response.text
    for _ in range(4):
        assert get(nginx, "/index.php").status_code == 200
    assert len(pool.workers()) == 2


def test_malformed_fastcgi_is_refused_and_no_worker_is_lost(served):
    pool, nginx = served
    host, port = pool.tcp.rsplit(":", 1)
    before = pool.workers()
    for garbage in (b"\x02" + b"\x00" * 15, b"\x01\x01\x00\x01\x00\x08\x00\x00\x00\x05" + b"\x00" * 6,
                    b"\x01\x05\x00\x01\x00\x00\x00\x00", b"\x01\x01\x00"):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(garbage)
            s.shutdown(socket.SHUT_WR)
            assert s.recv(100) == b""       # closed, nothing sent
    assert pool.workers() == before
    assert get(nginx, "/index.php").status_code == 200
    assert "bad FastCGI" in pool.text()


def test_n_slow_requests_on_n_workers_run_side_by_side(served):
    pool, nginx = served
    get(nginx, "/sleep.php")                   # warm
    started = time.monotonic()
    with ThreadPoolExecutor(2) as ex:
        results = list(ex.map(lambda _: get(nginx, "/sleep.php").text, range(2)))
    took = time.monotonic() - started
    assert results == ["slept\n", "slept\n"]
    print(f"two 1-second requests on two workers: {took:.2f} s")


def _thread_cpus(pid: int) -> list[set[int]]:
    """The CPU set of each thread of a process (Wasmtime's blocking-pool threads included)."""
    return [os.sched_getaffinity(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")]


def test_each_worker_and_its_threads_run_on_one_cpu_unless_told_otherwise(module, docroot):
    cpus = sorted(os.sched_getaffinity(0))
    pinned = pool_process(module, docroot, workers=2)
    free = PoolProcess(module, docroot, ["--workers", "1", "--no-cpu-affinity"])
    try:
        nginx = Nginx(docroot, pinned.socket)
        try:
            for _ in range(4):   # PHP's file-system calls start Wasmtime's blocking-pool threads
                assert get(nginx, "/index.php").status_code == 200
        finally:
            nginx.stop()
        deadline = time.monotonic() + 30
        while True:             # both workers up to their threads (the idle one may still start)
            sets = [_thread_cpus(pid) for pid in pinned.workers()]
            if len(sets) == 2 and all(len(threads) > 1 for threads in sets):
                break
            assert time.monotonic() < deadline, sets
            time.sleep(0.2)
        chosen = [threads[0] for threads in sets]
        assert all(threads == [chosen[i]] * len(threads) for i, threads in enumerate(sets))
        assert sorted(min(c) for c in chosen) == sorted(cpus[i % len(cpus)] for i in range(2))
        assert all(len(c) == 1 for c in chosen)
        (unpinned,) = free.workers()
        assert all(c == set(cpus) for c in _thread_cpus(unpinned))
    finally:
        free.stop()
        pinned.stop()


def test_keep_alive_connections_from_nginx(module, docroot):
    pool = pool_process(module, docroot, workers=1)
    nginx = Nginx(docroot, pool.tcp, keep_conn=True)
    try:
        texts = [get(nginx, f"/x{i}").text for i in range(5)]
        assert texts == [f"front /x{i}\n" for i in range(5)], nginx.error_log()
    finally:
        nginx.stop()
        pool.stop()


def test_kiln_server_with_worker_isolation(module, docroot):
    """`kiln.server --isolation worker`: the same HTTP server, kiln.pool underneath."""
    from kiln.server import Server, ServerConfig
    config = ServerConfig(docroot=docroot, module=module, port=0, access_log=None,
                          isolation="worker", workers=2, timeout=LIMIT)
    with Server(config) as server:
        assert requests.get(server.url + "/x?y=1", timeout=30).text == "front /x?y=1\n"
        info = requests.post(server.url + "/info.php/p", data=b"abc", timeout=30)
        assert info.status_code == 200 and info.text.endswith("[/p] abc\n"), info.text
        started = time.monotonic()
        assert requests.get(server.url + "/loop.php", timeout=30).status_code == 504
        assert time.monotonic() - started < LIMIT + 1.5
        assert requests.get(server.url + "/", timeout=30).status_code == 200


# ---------------------------------------------------------------------------------------------
# Clients that leave mid-request. Malformed HTTP stops at nginx; what reaches the pool is nginx
# closing its FastCGI connection when the client goes away (nginx never sends ABORT_REQUEST,
# other front servers may). Either way no worker may be lost or left out of step.


def _both_workers_answer(nginx) -> None:
    """Two 1-second requests at once both finish: both workers are there and in step."""
    started = time.monotonic()
    with ThreadPoolExecutor(2) as ex:
        texts = list(ex.map(lambda _: get(nginx, "/sleep.php").text, range(2)))
    assert texts == ["slept\n", "slept\n"]
    assert time.monotonic() - started < 2 * 1.0 + 1.5, "the two requests did not run side by side"


def test_clients_leaving_mid_request_cost_no_worker(served):
    pool, nginx = served
    count, logged = len(pool.workers()), len(pool.text())
    # More leavers than workers: some leave while their request runs, some while it waits.
    leavers = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", nginx.port), timeout=5)
        s.sendall(b"GET /sleep.php HTTP/1.1\r\nHost: localhost\r\n\r\n")
        leavers.append(s)
    time.sleep(0.3)
    for s in leavers:
        s.close()   # nginx sees the client gone and closes its FastCGI connection (499)
    time.sleep(2.5)  # the running scripts finish into closed connections
    assert len(pool.workers()) == count
    new = pool.text()[logged:]
    assert "died" not in new and "bad FastCGI" not in new and "ran past" not in new, new
    _both_workers_answer(nginx)
    assert get(nginx, "/x?after=leavers").text == "front /x?after=leavers\n"


def _fcgi_params(docroot: Path, script: str) -> dict:
    return {"SCRIPT_FILENAME": str(docroot / script), "SCRIPT_NAME": "/" + script,
            "REQUEST_METHOD": "GET", "REQUEST_URI": "/" + script, "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1", "GATEWAY_INTERFACE": "CGI/1.1", "REDIRECT_STATUS": "200"}


def _read_answer(s: socket.socket, request_id: int) -> tuple[bytes, bytes]:
    """STDOUT of one request up to its END_REQUEST, and END_REQUEST's body."""
    from kiln.pool import fastcgi
    stream = s.makefile("rb")
    out = b""
    while True:
        record = fastcgi.read_record(stream)
        assert record is not None, f"connection closed before END_REQUEST; got {out[:200]!r}"
        assert record.request_id == request_id
        if record.type == fastcgi.END_REQUEST:
            return out, record.content
        if record.type == fastcgi.STDOUT:
            out += record.content


def test_abort_request_and_closed_fastcgi_connections_cost_no_worker(served, docroot):
    from kiln.pool import fastcgi
    pool, nginx = served
    host, port = pool.tcp.rsplit(":", 1)
    address = (host, int(port))
    count, logged = len(pool.workers()), len(pool.text())
    params = fastcgi.encode(fastcgi.PARAMS, 1, fastcgi.encode_params(_fcgi_params(docroot, "sleep.php")))

    # The connection closes inside a request (params sent, no end of STDIN): no worker used.
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(fastcgi.begin_request(1, keep_conn=False) + params)
    # A whole request, then the client aborts it and leaves while the worker runs it.
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(fastcgi.request(1, _fcgi_params(docroot, "sleep.php")))
        time.sleep(0.2)
        s.sendall(fastcgi.encode(fastcgi.ABORT_REQUEST, 1))
    # ABORT_REQUEST before the request is whole, on a kept connection: the pool answers it
    # with END_REQUEST (the specification's rule) and the connection serves the next request.
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(fastcgi.begin_request(1, keep_conn=True) + params
                  + fastcgi.encode(fastcgi.ABORT_REQUEST, 1))
        assert _read_answer(s, 1) == (b"", fastcgi.end_request_body(0))
        s.sendall(fastcgi.request(2, _fcgi_params(docroot, "index.php"), keep_conn=True))
        out, _ = _read_answer(s, 2)
        assert out.endswith(b"front /index.php\n"), out
        # An abort arriving after its request was answered is ignored, not an error.
        s.sendall(fastcgi.encode(fastcgi.ABORT_REQUEST, 2)
                  + fastcgi.request(3, _fcgi_params(docroot, "index.php"), keep_conn=True))
        out, _ = _read_answer(s, 3)
        assert out.endswith(b"front /index.php\n"), out
    time.sleep(1.5)   # the abandoned sleep.php finishes
    assert len(pool.workers()) == count
    new = pool.text()[logged:]
    assert "died" not in new and "ran past" not in new, new
    assert new.count("bad FastCGI") == 1 and "connection closed inside a request" in new, new
    _both_workers_answer(nginx)


# ---------------------------------------------------------------------------------------------
# SQLite's dot-file lock (the WASI build's only cross-process lock: a folder `<db>.lock`) left by
# a worker killed mid-transaction: the pool removes it, or the database stays locked for good.


@pytest.fixture(scope="module")
def sqlite_served(module):
    root = Path(tempfile.mkdtemp(prefix="kiln-pool-sqlite-"))
    root.chmod(0o755)
    www, data = root / "www", root / "data"
    www.mkdir()
    data.mkdir()
    db = data / "t.sqlite"
    (www / "lock-and-loop.php").write_text(
        f"<?php $pdo = new PDO('sqlite:{db}', null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);"
        " $pdo->exec('CREATE TABLE IF NOT EXISTS t (a)'); $pdo->exec('BEGIN IMMEDIATE');"
        " $pdo->exec('INSERT INTO t VALUES (1)'); while (true) {}")
    (www / "count.php").write_text(
        f"<?php $pdo = new PDO('sqlite:{db}', null, null,"
        " [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION, PDO::ATTR_TIMEOUT => 2]);"
        " echo $pdo->query('SELECT count(*) FROM t')->fetchColumn(), \"\\n\";")
    pool = PoolProcess(module, www, ["--workers", "2", "--request-terminate-timeout", str(LIMIT),
                                     "-v", f"{data}:{data}"])
    nginx = Nginx(www, pool.socket)
    yield pool, nginx, db
    nginx.stop()
    pool.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_a_killed_worker_leaves_no_sqlite_lock_behind(sqlite_served):
    pool, nginx, db = sqlite_served
    lock = db.with_name(db.name + ".lock")
    for _ in range(2):
        assert get(nginx, "/lock-and-loop.php").status_code == 504
        assert "ran past request_terminate_timeout" in pool.text()
        assert not lock.exists(), "the killed worker's lock folder is still there"
        # The transaction it never committed is rolled back from the journal; nothing waits.
        started = time.monotonic()
        response = get(nginx, "/count.php")
        assert response.status_code == 200 and response.text == "0\n", (response.text, nginx.error_log())
        assert time.monotonic() - started < 1.5
    assert "removed the stale SQLite lock" in pool.text()


# -- issue 27: large heads -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def counted(module, docroot):
    """A pool in this process (its own counters readable), real nginx in front with its header
    buffers raised from 4 8k to 4 64k."""
    from kiln.pool.__main__ import config_from, parser
    from kiln.pool.supervisor import Pool
    state = Path(tempfile.mkdtemp(prefix="kiln-pool-heads-"))
    state.chmod(0o755)
    address = str(state / "pool.sock")
    pool = Pool(config_from(parser().parse_args([
        "--module", str(module), "--docroot", str(docroot), "--listen", address, "--workers", "2",
        "--request-terminate-timeout", "20"])), log=lambda line: None).start()
    nginx = Nginx(docroot, address, header_buffers="4 64k")
    yield pool, nginx, address
    nginx.stop()
    pool.stop()
    shutil.rmtree(state, ignore_errors=True)


def _untouched(pool) -> None:
    assert pool.stats == {**pool.stats, "replaced": 0, "timeouts": 0, "crashes": 0}, pool.stats


def test_large_heads_through_nginx_are_answered_and_hold_no_worker(counted):
    pool, nginx, _ = counted
    served = pool.stats["served"]
    cookie = requests.get(nginx.url + "/heads.php", cookies={"k": "c" * 61_440}, timeout=10)
    assert cookie.status_code == 200 and cookie.json()["cookie"] == 61_440, nginx.error_log()
    # Just under 64 KiB in nginx's one PARAMS record: re-cut into two for PHP.
    near = requests.get(nginx.url + "/heads.php", headers={"Pad": "p" * 64_000}, timeout=10)
    assert near.status_code == 200 and near.json()["pad"] == 64_000, nginx.error_log()
    big = requests.post(nginx.url + "/heads.php", cookies={"k": "c" * 61_440},
                        headers={f"X-{i}": "y" for i in range(50)}, data=os.urandom(5 * 1024 * 1024),
                        timeout=10)
    assert big.status_code == 200, nginx.error_log()[-400:]
    assert big.json() == {"x": 50, "cookie": 61_440, "pad": 0,
                                                     "body": 5 * 1024 * 1024}
    # Thousands of lines nginx refuses itself even with 4 64k buffers (400 "Request Header Or
    # Cookie Too Large"), and over 64 KiB of params it cannot send in its one PARAMS record
    # (500, "fastcgi request record is too big"): either way no worker sees the request.
    many = requests.get(nginx.url + "/heads.php", headers={f"X-{i}": "y" for i in range(5_000)}, timeout=10)
    assert many.status_code in (400, 500), many.text
    assert pool.stats["served"] == served + 3
    _untouched(pool)


def _fastcgi_get(address: str, params_records: bytes, body: bytes = b"") -> bytes:
    """One request straight to the pool's socket: BEGIN, the given PARAMS records, STDIN."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(address)
        s.sendall(fastcgi.begin_request(1, keep_conn=False) + params_records
                  + fastcgi.encode(fastcgi.PARAMS, 1) + fastcgi.encode(fastcgi.STDIN, 1, body)
                  + (fastcgi.encode(fastcgi.STDIN, 1) if body else b""))
        out, stream = b"", s.makefile("rb")
        while (record := fastcgi.read_record(stream)) and record.type != fastcgi.END_REQUEST:
            out += record.content if record.type == fastcgi.STDOUT else b""
        return out


def _raw_record(rtype: int, content: bytes) -> bytes:
    """A record as nginx writes one: padded to 8 however long it is."""
    pad = -len(content) % 8
    return struct.pack("!BBHHBx", 1, rtype, 1, len(content), pad) + content + b"\0" * pad


@pytest.mark.parametrize("total", [65_528, 65_529, 65_535])
def test_params_records_php_would_refuse_are_recut_by_the_pool(counted, docroot, total):
    """nginx's one PARAMS record of 65,529 to 65,535 bytes has 1 to 7 bytes of padding: over PHP's
    65,535-byte buffer (php-fpm refuses it). A pair may also continue into the next record."""
    pool, _, address = counted
    params = {"SCRIPT_FILENAME": str(docroot / "heads.php"), "REQUEST_METHOD": "GET", "HTTP_PAD": ""}
    pad = total - len(fastcgi.encode_params(params)) - 3
    params["HTTP_PAD"] = "p" * pad
    data = fastcgi.encode_params(params)
    assert len(data) == total
    for records in (_raw_record(fastcgi.PARAMS, data),
                    _raw_record(fastcgi.PARAMS, data[:100]) + _raw_record(fastcgi.PARAMS, data[100:])):
        out = _fastcgi_get(address, records)
        assert b'"pad":%d' % pad in out, out[:300]
    _untouched(pool)
