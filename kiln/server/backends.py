"""What runs php-cgi for a request: a fresh Wasmtime instance (WasmBackend), a persistent
worker of kiln.pool (PoolBackend), or a native php-cgi process (NativeBackend, benchmarks).

Each returns a CgiResult; turning it into an HTTP answer is the application's job, so every
backend fails the same way (504 timeout, 500 crash, 502 bad output)."""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .. import native, runner, wasmtime_cli
from ..errors import KilnError
from ..pool import fastcgi
from ..pool.supervisor import Pool, PoolConfig


@dataclass
class CgiResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    crashed: bool = False       # trapped (wasm), worker died (pool) or killed by a signal (native)
    truncated: bool = False     # output went past max_response
    error: str = ""             # could not run at all


def check_php_cgi(path: Path, module=None) -> None:
    """Refuse a module that is PHP's CLI rather than php-cgi: it would start, then answer
    every request with 502 (it treats the CGI environment as nothing and prints no headers).
    Both SAPIs are the same kind of module, so ask it: `-v` names the SAPI, "(cli)" or
    "(cgi-fcgi)"."""
    if module is None and wasmtime_cli.artifact_for(path, ()) is not None:
        # The pool's workers run on the command line: ask there (the only engine that runs a
        # module with stack switching, the fibers flavour's), which also compiles it for them.
        r = wasmtime_cli.run_captured(path, ["php", "-v"])
    else:
        r = runner.run(module or runner.load_cached(path), ["php", "-v"], max_output=4096)
    if r is not None and b"(cli)" in r.stdout.split(b"\n", 1)[0]:
        cgi = path.with_name(path.name.replace("php", "php-cgi", 1))
        raise KilnError(f"{path} is the php CLI module; serve php-cgi: --module "
                        f"{cgi if cgi.is_file() else path.parent / 'php-cgi.cwasm'}")


class WasmBackend:
    """php-cgi as a wasm32-wasi module: one fresh Store + instance per request."""

    kind = "wasm"

    def __init__(self, module: Path, preopens: Sequence[runner.Preopen],
                 memory_limit: int | None, max_output: int | None):
        self.path = Path(module)
        # Compiled/mapped once, shared by threads. Each request's time is limited inside this
        # process, so this one backend pays for epoch checks (a .cwasm without them is
        # replaced by its .wasm, compiled with them once into KILN_CACHE).
        try:
            self.module = runner.load_cached(self.path, need_time_limits=True)
        except runner.StackSwitchingRefused:
            raise KilnError(runner.stack_switching_refused(
                self.path, "--isolation request (an instance per request in wasmtime-py)",
                "serve it with --isolation worker (the default), whose workers run the Wasmtime "
                "command line")) from None
        check_php_cgi(self.path, self.module)
        self.preopens = list(preopens)
        self.memory_limit = memory_limit
        self.max_output = max_output

    def run(self, env: Mapping[str, str], body: bytes, timeout: float | None) -> CgiResult:
        try:
            r = runner.run(self.module, ["php-cgi"], env=env, stdin=body, preopens=self.preopens,
                           timeout=timeout, memory_limit=self.memory_limit,
                           max_output=self.max_output)
        except runner.RunnerError as e:
            return CgiResult(-1, b"", b"", error=str(e))
        crashed = r.exit_code == runner.EXIT_TRAP and not r.timed_out
        return CgiResult(r.exit_code, r.stdout, r.stderr, r.timed_out, crashed,
                         r.output_truncated)


class PoolBackend:
    """php-cgi.wasm in persistent worker processes (kiln.pool): PHP's request start-up and
    shutdown per request, the instance (and OPcache's memory) kept; time limits kill the worker."""

    kind = "wasm"

    def __init__(self, module: Path, preopens: Sequence[runner.Preopen], memory_limit: int | None,
                 max_output: int | None, workers: int, timeout: float, env: Mapping[str, str],
                 log: Callable[[str], None]):
        self.path = Path(module)
        self.max_output = max_output
        # The pool compiles a .wasm once into the module cache before its workers start; this
        # check loads it from there first, so that compile happens here.
        check_php_cgi(self.path)
        self.pool = Pool(PoolConfig(module=self.path, preopens=list(preopens), listen=[],
                                    workers=workers, request_terminate_timeout=timeout or 0,
                                    memory_limit=memory_limit, env=dict(env)), log=log).start()

    def run(self, env: Mapping[str, str], body: bytes, timeout: float | None) -> CgiResult:
        out, err = bytearray(), bytearray()

        def send(rtype: int, content: bytes) -> None:
            if rtype == fastcgi.STDOUT:
                out.extend(content)
            elif rtype == fastcgi.STDERR:
                err.extend(content)
        try:
            # FCGI_KEEP_CONN: the worker's stream stays open for the next request (patch 0013).
            records = fastcgi.request(1, env, body, keep_conn=True)
        except fastcgi.ParamTooLarge as e:   # the front refuses such heads first (431, 414)
            return CgiResult(-1, b"", b"", error=str(e))
        outcome = self.pool.handle(1, records, send)
        truncated = self.max_output is not None and len(out) > self.max_output
        return CgiResult(0, bytes(out), bytes(err), timed_out=outcome == "timeout",
                         crashed=outcome == "crash", truncated=truncated)

    def close(self) -> None:
        self.pool.stop()


class NativeBackend:
    """A native php-cgi process per request, behind the same server code (benchmarks).
    No sandbox: the script sees the host file system (guest paths are host paths)."""

    kind = "native"

    def __init__(self, binary: Path, max_output: int | None, cwd: Path):
        self.path = Path(binary)
        if not os.access(self.path, os.X_OK):
            raise KilnError(f"{self.path}: not an executable php-cgi "
                            f"(apt-get install php{native.release()}-cgi)")
        self.max_output = max_output
        self.cwd = cwd

    def run(self, env: Mapping[str, str], body: bytes, timeout: float | None) -> CgiResult:
        try:
            # Own process group: a timeout kills the script's children too (they would hold
            # the output pipes open).
            proc = subprocess.Popen([str(self.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=dict(env), cwd=self.cwd,
                                    close_fds=True, start_new_session=True)
        except OSError as e:
            return CgiResult(-1, b"", b"", error=f"{self.path}: {e.strerror}")
        try:
            out, err = proc.communicate(body, timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            timed_out = True
        code = proc.returncode
        truncated = self.max_output is not None and len(out) > self.max_output
        if truncated:
            out = out[: self.max_output]
        return CgiResult(runner.EXIT_TIMEOUT if timed_out else code & 0xFF, out, err, timed_out,
                         not timed_out and code < 0, truncated)
