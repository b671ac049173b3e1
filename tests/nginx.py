"""Debian's nginx in the foreground on a loopback port, with the php-fpm site template, and
`python -m kiln.pool` behind it as a user runs it (its own process)."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jinja2
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_folder(pages: dict[str, str], prefix: str):
    """A temporary document root holding `pages` (file name: text), which nginx's workers (user
    nobody) may read; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        root.chmod(0o755)
        for name, text in pages.items():
            (root / name).write_text(text)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Nginx:
    def __init__(self, docroot: Path, fastcgi: str, keep_conn: bool = False, port: int = 0,
                 header_buffers: str | None = None):
        """`port` 0: a free one; give the old one to restart a site at the same address.
        `header_buffers`: large_client_header_buffers, e.g. "4 64k" (nginx's default 4 8k)."""
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            pytest.fail("nginx is not installed: run scripts/setup")
        self.state = Path(tempfile.mkdtemp(prefix="kiln-nginx-"))
        self.state.chmod(0o711)   # nginx's workers (user nobody) reach body/ for bodies over 16k
        self.port = port or free_port()
        target = f"unix:{fastcgi}" if fastcgi.startswith("/") else fastcgi
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "templates"))
        conf = env.get_template("nginx-php-fpm.conf.j2").render(
            state=self.state, port=self.port, docroot=docroot, keep_conn=keep_conn,
            fastcgi=target, upstream="php" if keep_conn else target,
            header_buffers=header_buffers)
        (self.state / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen([binary, "-c", str(self.state / "nginx.conf"), "-p", str(self.state)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    pytest.fail(f"nginx did not start: {self.proc.stderr.read().decode()}")
                time.sleep(0.05)
        pytest.fail("nginx did not listen")

    def error_log(self) -> str:
        path = self.state / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.state, ignore_errors=True)


class PoolProcess:
    """`python -m kiln.pool` on a Unix socket and a loopback TCP port, its output in a log."""

    def __init__(self, module: Path, docroot: Path, args: list[str]):
        self.state = Path(tempfile.mkdtemp(prefix="kiln-pool-test-"))
        self.state.chmod(0o755)   # nginx's workers (user nobody) reach the socket
        self.socket = str(self.state / "pool.sock")
        self.log = open(self.state / "pool.log", "w+")
        self.tcp = f"127.0.0.1:{free_port()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kiln.pool", "--module", str(module), "--docroot", str(docroot),
             "--listen", self.socket, "--listen", self.tcp, *args],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(self.socket):
                break
            assert self.proc.poll() is None, self.text()
            time.sleep(0.05)

    def text(self) -> str:
        self.log.flush()
        return (self.state / "pool.log").read_text()

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return sorted(int(p) for p in out.stdout.split())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)
        self.log.close()
        shutil.rmtree(self.state, ignore_errors=True)
