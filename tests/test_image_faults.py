"""Image and registry faults: kill -9 mid-build and mid-push, registries that refuse or are
absent, and the wasip1/wasm image's digest across builds.

Like tests/test_images.py, these run doit on a dodo file holding only the image and publish
tasks, in private build-outputs holding copies of the real 8.2.32 modules, against the real
Docker engine and the real loopback registry. The images go under a repository of their own
for this run (`kiln-faults-<pid>/php-wasm`), removed from the engine at the end, so nothing
of the user's or of the other image tests is touched, and the registry has never seen the
blobs, so a push really uploads them. "Mid-build" and "mid-push" are made deterministic with
a throttling byte proxy put in front of the engine's socket or the registry's port.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from kiln import images, oci
from kiln.layout import Build

from doit_run import images_dodo
from services import docker_host, registry_address  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
VERSION = "8.2.32"
REPO = f"kiln-faults-{os.getpid()}/php-wasm"
EPOCH = "1700000000"
REAL_BIN = ROOT / "build-output" / "php" / f"php-{VERSION}" / "bin"
BUILD = Build("php", VERSION, "default")
KINDS = images.kinds_for(BUILD)
MB = 1_000_000

pytestmark = [pytest.mark.docker, pytest.mark.slow]


# ---------------------------------------------------------------------------------------------
# Helpers


def _env(output: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KILN_", "DOCKER_HOST"))}
    env.update(KILN_BUILD_OUTPUT=str(output), KILN_IMAGE_REPO=REPO, SOURCE_DATE_EPOCH=EPOCH,
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def _doit_command(output: Path, *args: str) -> list[str]:
    dodo = images_dodo(output)
    command = args[0] if args[0] in ("run", "list") else "run"
    rest = args[1:] if args[0] == command else args
    return [sys.executable, "-m", "doit", command, "-f", str(dodo), *rest]


def run_doit(output: Path, *args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(_doit_command(output, *args), cwd=ROOT, env=_env(output, **env),
                          capture_output=True, text=True, timeout=600)


def start_doit(output: Path, log: Path, *args: str, **env) -> subprocess.Popen:
    """doit in its own process group (so kill -9 reaches every process it started)."""
    with open(log, "wb") as out:
        return subprocess.Popen(_doit_command(output, *args), cwd=ROOT, env=_env(output, **env),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def ran(result: subprocess.CompletedProcess) -> set[str]:
    """Tasks doit executed (verbosity 2 prints `.  name` for those, `-- name` when up to date)."""
    return set(re.findall(r"^\.  (\S+)", result.stdout, flags=re.M))


def make_tree(output: Path) -> Path:
    """A private build-output holding copies of the real 8.2.32 modules."""
    bin_dir = output / "php" / f"php-{VERSION}" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("php.wasm", "php-cgi.wasm", "php.cwasm", "php.cwasm.json"):
        shutil.copy2(REAL_BIN / name, bin_dir / name)
    return output


def remove_test_images(docker_host: str) -> None:  # noqa: F811
    import docker

    client = docker.DockerClient(base_url=docker_host)
    try:
        for kind in KINDS:
            try:
                client.images.remove(f"{REPO}:{VERSION}-{kind}", force=True)
            except docker.errors.ImageNotFound:
                pass
    finally:
        client.close()


def engine_id(docker_host: str, kind: str) -> str | None:  # noqa: F811
    import docker

    client = docker.DockerClient(base_url=docker_host)
    try:
        return client.images.get(f"{REPO}:{VERSION}-{kind}").id
    except docker.errors.ImageNotFound:
        return None
    finally:
        client.close()


def images_dir(output: Path) -> Path:
    return output / "php" / f"php-{VERSION}" / "images"


def records(output: Path) -> dict:
    return {kind: json.loads((images_dir(output) / f"{kind}.json").read_text()) for kind in KINDS}


def comparable(record: dict) -> dict:
    """An image record without what differs between two equal builds: the engine's image ID
    (Docker's classic builder stamps the build time into it) and the folder the layout is in."""
    record = json.loads(json.dumps(record))
    del record["engine"]["id"]
    del record["oci"]["layout"]
    return record


def store_is_intact(output: Path) -> None:
    """doit's sqlite3 store passes SQLite's own check and doit can still read the graph."""
    with sqlite3.connect(output / ".doit.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    listed = run_doit(output, "list", "--all")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"php_image:{VERSION}-cli" in listed.stdout and f"php_publish:{VERSION}" in listed.stdout


class ThrottledProxy:
    """A byte-for-byte proxy (unix socket or loopback TCP in front of either) that forwards at
    `rate` bytes per second (None: full speed) and counts, per HTTP request line seen, the
    bytes that went up and down on its connection: the test's clock for "mid-transfer"."""

    def __init__(self, target: str | tuple[str, int], rate: float | None):
        self.target, self.rate = target, rate
        self.exchanges: list[dict] = []  # {"line": "POST /v1.41/build?...", "up": n, "down": n}
        self._lock = threading.Lock()
        if isinstance(target, str):
            self._dir = tempfile.mkdtemp(prefix="kp-", dir="/tmp")  # unix paths: 108 bytes at most
            self.path = os.path.join(self._dir, "docker.sock")
            self._server = socket.socket(socket.AF_UNIX)
            self._server.bind(self.path)
            self.address = f"unix://{self.path}"
        else:
            self._dir = None
            self._server = socket.socket()
            self._server.bind(("127.0.0.1", 0))
            self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._server.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _connect(self) -> socket.socket:
        if isinstance(self.target, str):
            upstream = socket.socket(socket.AF_UNIX)
        else:
            upstream = socket.socket()
        upstream.connect(self.target)
        return upstream

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = self._connect()
            current: list[dict | None] = [None]
            threading.Thread(target=self._pump, args=(client, upstream, current, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, current, "down"), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, current: list, direction: str) -> None:
        try:
            while True:
                data = source.recv(16384)
                if not data:
                    break
                if direction == "up":
                    found = re.search(rb"^(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.[01]\r\n", data)
                    if found:
                        with self._lock:
                            current[0] = {"line": found.group(0).decode().strip(), "up": 0, "down": 0}
                            self.exchanges.append(current[0])
                if self.rate:
                    time.sleep(len(data) / self.rate)
                sink.sendall(data)
                if current[0] is not None:
                    with self._lock:
                        current[0][direction] += len(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def moved(self, pattern: str, direction: str) -> int:
        """The most bytes that went `direction` for one request whose line matches `pattern`."""
        with self._lock:
            return max([e[direction] for e in self.exchanges if re.search(pattern, e["line"])], default=0)

    def close(self) -> None:
        self._server.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def kill_when(process: subprocess.Popen, log: Path, condition, what: str, seconds: float = 180) -> None:
    """SIGKILL doit's whole process group as soon as `condition()` holds, while it still runs."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"doit ended before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} never happened:\n{log.read_text()[-3000:]}"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def reference(tmp_path_factory, docker_host):  # noqa: F811
    """An uninterrupted `doit php_image:8.2.32` in a fresh tree, the engine holding none of our
    images before; the run's test images are removed from the engine at the end."""
    remove_test_images(docker_host)
    output = make_tree(tmp_path_factory.mktemp("reference"))
    result = run_doit(output, f"php_image:{VERSION}", DOCKER_HOST=docker_host)
    assert result.returncode == 0, result.stdout + result.stderr
    yield output, records(output)
    remove_test_images(docker_host)


# ---------------------------------------------------------------------------------------------
# kill -9 during an image build


@pytest.mark.parametrize("phase", ["context-upload", "image-save"])
def test_kill_9_during_an_image_build_then_rerun_gives_the_same_image(reference, docker_host, tmp_path, phase):  # noqa: F811
    """Killed while the engine receives the build context, or while Kiln reads the built image
    back to re-pack it (the engine has tagged it, the record is not written): the rerun
    finishes, and every image and record equals the uninterrupted build's."""
    _, expected = reference
    output = make_tree(tmp_path / "out")
    remove_test_images(docker_host)  # so the engine really builds, from nothing
    socket_path = docker_host.removeprefix("unix://")
    proxy = ThrottledProxy(socket_path, rate=2 * MB)
    log = tmp_path / "killed.log"
    try:
        process = start_doit(output, log, f"php_image:{VERSION}", DOCKER_HOST=proxy.address)
        if phase == "context-upload":
            kill_when(process, log, lambda: proxy.moved(r"^POST /v[\d.]+/build", "up") > MB,
                      "the build context upload")
        else:
            kill_when(process, log, lambda: proxy.moved(r"^GET /v[\d.]+/images/.*/get", "down") > MB,
                      "reading the built image back")
    finally:
        proxy.close()
    # Killed mid-way through the first image: nothing recorded for it.
    first = images_dir(output)
    assert not (first / "cli.json").exists(), "a record exists for an image that was never finished"
    assert not (first / "oci" / "cli" / "index.json").exists()

    rerun = run_doit(output, f"php_image:{VERSION}", DOCKER_HOST=docker_host)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert {f"php_image:{VERSION}-{kind}" for kind in KINDS} <= ran(rerun)
    got = records(output)
    for kind in KINDS:
        assert comparable(got[kind]) == comparable(expected[kind]), kind
        # The record names the image the engine now holds under the tag.
        assert got[kind]["engine"]["id"] == engine_id(docker_host, kind)
        layout = oci.Layout(output / "php" / f"php-{VERSION}" / "images" / "oci" / kind)
        assert layout.built(got[kind]["tag"]).digest == expected[kind]["oci"]["digest"]  # blobs verify
    # Nothing a killed run left behind is mistaken for anything: no temporaries remain.
    leftovers = [p for p in first.rglob(".*") if p.name != ".doit.sqlite3"]
    assert leftovers == [], leftovers
    # The store is intact: a following run does nothing, and doit still reads the graph.
    again = run_doit(output, f"php_image:{VERSION}", DOCKER_HOST=docker_host)
    assert again.returncode == 0 and ran(again) == set(), again.stdout + again.stderr
    store_is_intact(output)


# ---------------------------------------------------------------------------------------------
# kill -9 during a push


def test_kill_9_during_a_push_then_rerun_publishes_the_same_bytes(reference, docker_host, registry_address, tmp_path):  # noqa: F811
    """Killed while a layer blob is half uploaded (a slow proxy in front of the registry):
    nothing is recorded as published; the rerun completes and what the registry serves is
    byte for byte what the build made."""
    output = make_tree(tmp_path / "out")
    built = run_doit(output, f"php_image:{VERSION}", DOCKER_HOST=docker_host)
    assert built.returncode == 0, built.stdout + built.stderr
    host, port = registry_address.rsplit(":", 1)
    proxy = ThrottledProxy((host, int(port)), rate=1 * MB)
    log = tmp_path / "killed.log"
    published = output / "php" / f"php-{VERSION}" / "published.json"
    try:
        process = start_doit(output, log, f"php_publish:{VERSION}", DOCKER_HOST=docker_host,
                             KILN_REGISTRY=proxy.address)
        kill_when(process, log, lambda: proxy.moved(r"^PUT /v2/.*/blobs/uploads/", "up") > 300_000,
                  "a blob upload")
        assert not published.exists(), "a push that never finished is recorded as published"
        proxy.rate = None  # the same registry address, at full speed now
        rerun = run_doit(output, f"php_publish:{VERSION}", DOCKER_HOST=docker_host,
                         KILN_REGISTRY=proxy.address)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert f"php_publish:{VERSION}" in ran(rerun)
        record = json.loads(published.read_text())
        registry = oci.Registry(registry_address)
        repository = oci.repository_path(REPO)
        for kind in KINDS:
            layout = oci.Layout(output / "php" / f"php-{VERSION}" / "images" / "oci" / kind)
            local = layout.built(f"{REPO}:{VERSION}-{kind}")
            pulled = registry.pull_image(repository, f"{VERSION}-{kind}")
            assert (pulled.manifest, pulled.config, pulled.layers) == (local.manifest, local.config, local.layers)
            assert record["images"][kind]["digest"] == local.digest == pulled.digest
        for sapi in ("php", "php-cgi"):
            reference_ = f"{VERSION}-{sapi}.wasm"
            module = (output / "php" / f"php-{VERSION}" / "bin" / f"{sapi}.wasm").read_bytes()
            assert registry.pull_wasm_artifact(repository, reference_) == module
            assert record["modules"][sapi]["digest"] == registry.manifest_digest(repository, reference_)
        again = run_doit(output, f"php_publish:{VERSION}", DOCKER_HOST=docker_host, KILN_REGISTRY=proxy.address)
        assert again.returncode == 0 and ran(again) == set(), again.stdout + again.stderr
    finally:
        proxy.close()
    store_is_intact(output)


# ---------------------------------------------------------------------------------------------
# A registry that refuses, fails, or is not there


class Refusing(http.server.BaseHTTPRequestHandler):
    """Answers every registry call with one status, the way the distribution API words it."""
    status = 401
    CODES = {401: ("UNAUTHORIZED", "authentication required"), 403: ("DENIED", "requested access to the resource is denied"),
             500: ("UNKNOWN", "unknown error")}

    def _answer(self):
        code, message = self.CODES[self.status]
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self.send_response(self.status)
        if self.status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="kiln-test"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("status, says", [
    (401, "HTTP 401 Unauthorized (UNAUTHORIZED: authentication required): set KILN_REGISTRY_USER and "
          "KILN_REGISTRY_PASSWORD to an account the registry accepts"),
    (403, "HTTP 403 Forbidden (DENIED: requested access to the resource is denied): use credentials with "
          "access to that repository (KILN_REGISTRY_USER, KILN_REGISTRY_PASSWORD) or another KILN_IMAGE_REPO"),
    (500, "HTTP 500 Internal Server Error (UNKNOWN: unknown error): the registry itself failed: "
          "check its logs, then rerun"),
    (None, "unreachable (Connection refused): start one (scripts/services.sh) or check KILN_REGISTRY"),
], ids=["401", "403", "500", "nothing-listening"])
def test_a_refusing_or_absent_registry_is_one_line_and_nothing_is_published(reference, docker_host, status, says):  # noqa: F811
    output, _ = reference
    if status is None:
        with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"
        server = None
    else:
        handler = type("Handler", (Refusing,), {"status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        address = f"127.0.0.1:{server.server_address[1]}"
    try:
        result = run_doit(output, f"php_publish:{VERSION}", DOCKER_HOST=docker_host, KILN_REGISTRY=address)
    finally:
        if server:
            server.shutdown()
            server.server_close()
    text = result.stdout + result.stderr
    assert result.returncode != 0, text
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("kiln: ")]
    assert len(lines) == 1, text
    assert lines[0].startswith(f"kiln: registry {address}"), lines[0]
    assert lines[0].endswith(says), lines[0]
    assert not (output / "php" / f"php-{VERSION}" / "published.json").exists()


# ---------------------------------------------------------------------------------------------
# The reproducible image path


def test_the_wasm_image_digest_is_the_same_on_every_build(reference, docker_host, tmp_path):  # noqa: F811
    """Built again from nothing (the engine's images removed) in another folder, every kind's
    wasip1/wasm OCI image has the same manifest digest, config and layers, and the layout's
    index.json is the same bytes."""
    first_tree, expected = reference
    output = make_tree(tmp_path / "another" / "folder")
    remove_test_images(docker_host)
    result = run_doit(output, f"php_image:{VERSION}", DOCKER_HOST=docker_host)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {f"php_image:{VERSION}-{kind}" for kind in KINDS} <= ran(result)
    got = records(output)
    for kind in KINDS:
        assert got[kind]["oci"]["digest"] == expected[kind]["oci"]["digest"], kind
        assert comparable(got[kind]) == comparable(expected[kind]), kind
        index = Path("php") / f"php-{VERSION}" / "images" / "oci" / kind / "index.json"
        assert (output / index).read_bytes() == (first_tree / index).read_bytes()
