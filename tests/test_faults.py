"""Interruptions and contention: kill -9 or Ctrl-C at the worst moment, then rerun.

The final artifacts must equal an uninterrupted build's and the dependency store must
still work. Download faults use a private build-output and a slow loopback mirror;
the make fault uses the shared build tree (php_builds once by the build tests).
"""
from __future__ import annotations

import hashlib
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from doit_run import ROOT, doit, executed, plain
from kiln.layout import Build

MIRROR = ROOT / "build-output" / "mirror"
TARBALL = "php-7.4.33.tar.xz"
PINNED = "924846abf93bc613815c55dd3f5809377813ac62a9ec4eb3778675b82a27b927"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _default_sigint() -> None:
    # A shell without job control starts background commands with SIGINT ignored, and an
    # ignored signal stays ignored across exec: doit would then never see the Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_doit(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "doit", *args], cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)


@pytest.fixture
def slow_mirror():
    """Serves the mirror's files at ~1 MiB/s, so a download can be killed half-way."""
    if not (MIRROR / TARBALL).is_file():
        pytest.skip("no local mirror (scripts/setup fills build-output/mirror)")

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = MIRROR / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for start in range(0, len(data), 65536):
                    self.wfile.write(data[start:start + 65536])
                    time.sleep(0.06)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_download_leaves_nothing_and_the_rerun_is_whole(tmp_path, slow_mirror, how):
    env = {"KILN_BUILD_OUTPUT": str(tmp_path / "out"), "KILN_MIRROR": slow_mirror}
    process = start_doit("php_download:7.4.33", env=env)
    sources = tmp_path / "out" / "sources"
    deadline = time.monotonic() + 30
    while not (sources.is_dir() and any(p.name.endswith(".part") for p in sources.iterdir())):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.1)
    time.sleep(1.0)
    os.killpg(process.pid, how)
    output, _ = process.communicate(timeout=30)
    assert process.returncode != 0
    if how == signal.SIGINT:
        assert "Traceback" not in output, output[-2000:]
    assert not (sources / TARBALL).exists(), "a half-written tarball sits under its final name"
    # The rerun completes, from the same store, and leaves exactly the pinned bytes.
    _, tasks, _, _ = doit("php_download:7.4.33", env=env)
    assert tasks["php_download:7.4.33"] == "success"
    assert sha256(sources / TARBALL) == PINNED
    assert [p.name for p in sources.iterdir() if p.name.endswith(".part")] == []
    _, tasks, _, _ = doit("php_download:7.4.33", env=env)
    assert executed(tasks) == set()


def test_a_second_doit_on_the_same_tree_stops_with_a_clear_message(tmp_path, slow_mirror):
    env = {"KILN_BUILD_OUTPUT": str(tmp_path / "out"), "KILN_MIRROR": slow_mirror}
    first = start_doit("php_download:7.4.33", env=env)
    try:
        time.sleep(1.5)
        # Not queued, whatever the caller's environment says (a developer may export it).
        alone = {k: v for k, v in os.environ.items() if k != "KILN_WAIT_FOR_LOCK"}
        second = subprocess.run([sys.executable, "-m", "doit", "php_download:7.4.33"], cwd=ROOT,
                                env={**alone, **env}, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "another doit" in second.stderr and "KILN_WAIT_FOR_LOCK" in second.stderr
        assert first.poll() is None, "the first build was disturbed"
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0
    assert sha256(tmp_path / "out" / "sources" / TARBALL) == PINNED


def test_an_unwritable_build_output_is_one_clear_line(tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    env = {"KILN_BUILD_OUTPUT": str(locked / "out")}
    if os.geteuid() == 0:
        env["KILN_BUILD_OUTPUT"] = "/proc/kiln-cannot-write-here"
    result = subprocess.run([sys.executable, "-m", "doit", "php_download:7.4.33"], cwd=ROOT,
                            env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 2
    assert "cannot write to" in result.stderr and "KILN_BUILD_OUTPUT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_kill_9_during_make_then_rerun_gives_the_same_module(php_builds):
    build = Build("php", "8.2.32", "default")
    before = sha256(build.module("php"))
    assert plain("forget", "php_make:8.2.32").returncode == 0
    # Give make real work (main/ recompiles), so the kill lands mid-build, not after it.
    for product in build.src.glob("main/*.o"):
        product.unlink()
    for product in build.src.glob("main/*.lo"):
        product.unlink()
    log = build.logs / "make.log"
    log.unlink(missing_ok=True)
    process = start_doit("php_make:8.2.32")
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.stat().st_size > 0):
        assert process.poll() is None, "make finished before it could be interrupted"
        assert time.monotonic() < deadline, "make never got going"
        time.sleep(0.1)
    time.sleep(2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    _, tasks, _, _ = doit("php:8.2.32", env={"KILN_IMAGES": "off"})
    assert tasks["php_make:8.2.32"] == "success"
    assert sha256(build.module("php")) == before
    _, tasks, _, _ = doit("php:8.2.32", env={"KILN_IMAGES": "off"})
    assert {t for t in executed(tasks) if not t.startswith("php:")} == set()


def test_a_truncated_tarball_in_the_source_cache_is_not_up_to_date(tmp_path):
    """doit only checks that a target exists; php_download also checks the bytes it verified."""
    if not (MIRROR / TARBALL).is_file():
        pytest.skip("no local mirror (scripts/setup fills build-output/mirror)")
    env = {"KILN_BUILD_OUTPUT": str(tmp_path / "out"), "KILN_MIRROR": str(MIRROR)}
    tarball = tmp_path / "out" / "sources" / TARBALL
    doit("php_download:7.4.33", env=env)
    _, tasks, _, _ = doit("php_download:7.4.33", env=env)
    assert executed(tasks) == set()
    os.utime(tarball)  # touched, same bytes: still up to date (after a re-hash)
    _, tasks, _, _ = doit("php_download:7.4.33", env=env)
    assert executed(tasks) == set()
    with open(tarball, "r+b") as f:
        f.truncate(1 << 20)
    _, tasks, output, _ = doit("php_download:7.4.33", env=env)
    assert tasks["php_download:7.4.33"] == "success"
    assert "does not match its pin" in output
    assert sha256(tarball) == PINNED
