"""Real services for the image tests: a Docker engine and an OCI registry, loopback only.

A service that already answers (DOCKER_HOST or the default socket; KILN_REGISTRY or
127.0.0.1:5000) is used as it is and never stopped. Otherwise Debian's /usr/sbin/dockerd and
/usr/bin/docker-registry are started in a private temporary folder (dockerd on its own unix
socket and data root, the registry on a free 127.0.0.1 port) and stopped, by PID, at the end.
Missing binaries skip the tests, except under CI=true where they fail: CI must run them
(scripts/services.sh installs both).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import requests

DOCKERD = "/usr/sbin/dockerd"
REGISTRY = "/usr/bin/docker-registry"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def _missing(what: str) -> None:
    message = f"{what} is not installed (scripts/services.sh installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def engine_answers(address: str, timeout: float = 3) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=address, timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def registry_answers(address: str, timeout: float = 2) -> bool:
    try:
        return requests.get(f"http://{address}/v2/", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _wait(check, seconds: float, process: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        if process.poll() is not None:
            break
        time.sleep(0.1)
    _stop(process)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    pytest.fail(f"{what} did not come up within {seconds:g} s; log tail:\n{tail}")


def _stop(process: subprocess.Popen, grace: float = 20) -> None:
    """Stop a process we started, by its PID only."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def docker_engine() -> Iterator[str]:
    """Yield a DOCKER_HOST value whose engine answers."""
    for address in filter(None, [os.environ.get("DOCKER_HOST"), DEFAULT_SOCKET]):
        if engine_answers(address):
            yield address
            return
    if not os.access(DOCKERD, os.X_OK):
        _missing(DOCKERD)
    # Short path: unix socket paths are limited to 108 bytes.
    state = Path(tempfile.mkdtemp(prefix="kd-", dir="/tmp"))
    address = f"unix://{state}/docker.sock"
    log = state / "dockerd.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [DOCKERD, "--host", address, "--data-root", str(state / "data"),
             "--exec-root", str(state / "x"), "--pidfile", str(state / "docker.pid"),
             "--iptables=false", "--bridge=none"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait(lambda: engine_answers(address, 1), 60, process, log, "dockerd")
        yield address
    finally:
        _stop(process)
        shutil.rmtree(state, ignore_errors=True)


@contextmanager
def registry() -> Iterator[str]:
    """Yield host:port of a registry that answers on loopback."""
    for address in filter(None, [os.environ.get("KILN_REGISTRY"), "127.0.0.1:5000"]):
        if registry_answers(address):
            yield address
            return
    if not os.access(REGISTRY, os.X_OK):
        _missing(REGISTRY)
    state = Path(tempfile.mkdtemp(prefix="kiln-registry-"))
    address = f"127.0.0.1:{_free_port()}"
    config = state / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                      f"    rootdirectory: {state / 'data'}\nhttp:\n  addr: {address}\n")
    log = state / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    try:
        _wait(lambda: registry_answers(address, 0.5), 20, process, log, "docker-registry")
        yield address
    finally:
        _stop(process)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_host() -> Iterator[str]:
    with docker_engine() as address:
        yield address


@pytest.fixture(scope="session")
def registry_address() -> Iterator[str]:
    with registry() as address:
        yield address
