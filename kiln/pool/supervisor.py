"""The pool: FastCGI listeners, a set of worker processes, and php-fpm's controls over them.

One thread per client connection. A request is read whole from the front server (nginx
buffers bodies the same way) before it is given to a worker, so a worker never waits on a
slow client and the pool always knows where one request ends and the next begins on the
worker's single stream. Answers are streamed back record by record as PHP writes them.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kiln import atomic, runner, wasmtime_cli
from kiln.engine import Preopen
from kiln.pool import fastcgi
from kiln.pool.locks import StaleLocks

MiB = 1024 * 1024


@dataclass
class PoolConfig:
    module: Path                      # php-cgi .wasm or .cwasm
    preopens: list[Preopen]
    listen: list[str]                 # "/path/to.sock", "127.0.0.1:9000"
    workers: int = 2                  # php-fpm: pm = static, pm.max_children
    max_requests: int = 500           # php-fpm: pm.max_requests (PHP_FCGI_MAX_REQUESTS)
    request_terminate_timeout: float = 30.0   # php-fpm's name; seconds, 0 = none
    memory_limit: int | None = 512 * MiB      # linear memory cap per worker, bytes
    max_request_size: int = 256 * MiB         # a request (params + body) larger is refused
    args: list[str] = field(default_factory=list)   # php-cgi arguments (e.g. -c php.ini)
    env: dict[str, str] = field(default_factory=dict)
    # Host folders where SQLite dot-file locks a killed worker left are cleared (kiln.pool.locks);
    # empty: none (kiln.server clears them itself when it runs the pool).
    stale_lock_roots: list[Path] = field(default_factory=list)
    # Each worker on one CPU of this process's set, round robin. On the Wasmtime command line a
    # worker and its runtime's threads stay on one CPU; in process, Wasmtime's C API hands every
    # WASI file-system call to a thread pool and waits (docs/benchmarks.md, "WASI file-system
    # calls"), and with the worker and those threads on one CPU the hand-off does not cross cores.
    cpu_affinity: bool = True


class Worker:
    """One worker process and its pipes. Used by one request at a time."""

    def __init__(self, config_file: Path, log, slot: int = 0, cpu: int | None = None):
        self.slot = slot  # its place in the pool, kept by the worker that replaces it
        pin = [] if cpu is None else ["--cpu", str(cpu)]
        self.proc = subprocess.Popen([sys.executable, "-m", "kiln.pool.worker", str(config_file), *pin],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     # Unbuffered: select() must see every byte not yet read.
                                     bufsize=0, env={**os.environ, "PYTHONPATH": _pythonpath()})
        self.served = 0
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


def _send_error(send, status: str, text: str) -> None:
    """A whole answer in the pool's own name, for a request no worker finished."""
    body = (text + "\n").encode()
    head = f"Status: {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    send(fastcgi.STDOUT, head.encode() + body)
    send(fastcgi.END_REQUEST, fastcgi.end_request_body(1))


def _pythonpath() -> str:
    here = str(Path(__file__).resolve().parents[2])
    rest = os.environ.get("PYTHONPATH")
    return here + (os.pathsep + rest if rest else "")


class Pool:
    def __init__(self, config: PoolConfig, log=None):
        self.config = config
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._state = Path(tempfile.mkdtemp(prefix="kiln-pool-"))
        self._worker_config = self._state / "worker.json"   # written by start()
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._all: set[Worker] = set()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._stopping = threading.Event()
        self._locks = StaleLocks(config.stale_lock_roots, self.log) if config.stale_lock_roots else None
        self.stats = {"served": 0, "replaced": 0, "timeouts": 0, "crashes": 0}
        self._cpus = sorted(os.sched_getaffinity(0)) if config.cpu_affinity else []

    # -- workers ------------------------------------------------------------------------------

    def _spawn(self, slot: int) -> Worker:
        cpu = self._cpus[slot % len(self._cpus)] if self._cpus else None
        worker = Worker(self._worker_config, self.log, slot, cpu)
        with self._lock:
            self._all.add(worker)
        return worker

    def _retire(self, worker: Worker, why: str) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)
        self.stats["replaced"] += 1
        self.log(f"pool: worker {worker.pid} {why}; starting another")
        if not self._stopping.is_set():
            self._idle.put(self._spawn(worker.slot))

    def _release(self, worker: Worker) -> None:
        worker.served += 1
        self.stats["served"] += 1
        if worker.served >= self.config.max_requests:
            # PHP ends its loop by itself after PHP_FCGI_MAX_REQUESTS; wait for that exit.
            try:
                worker.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self._retire(worker, f"served max_requests ({self.config.max_requests})")
        else:
            self._idle.put(worker)

    def worker_pids(self) -> list[int]:
        with self._lock:
            return sorted(w.pid for w in self._all)

    # -- one request ----------------------------------------------------------------------------

    def handle(self, request_id: int, records: bytes, send) -> str:
        """Run one whole request (its records, BEGIN through the empty STDIN) on a worker,
        calling `send(type, content)` for each answer record (STDOUT, STDERR, END_REQUEST).
        Returns "ok", "timeout" or "crash"; the last two have sent a whole 504 or 502."""
        worker = self._idle.get()
        if self._locks is None:
            return self._serve(worker, records, send)
        ticket = self._locks.begin()
        outcome = "crash"
        try:
            outcome = self._serve(worker, records, send)
            return outcome
        finally:
            self._locks.end(ticket, killed=outcome != "ok")

    def _serve(self, worker: Worker, records: bytes, send) -> str:
        deadline = time.monotonic() + self.config.request_terminate_timeout \
            if self.config.request_terminate_timeout else None
        try:
            worker.proc.stdin.write(records)
            worker.proc.stdin.flush()
        except OSError:
            self.stats["crashes"] += 1
            self._retire(worker, "died before its request")
            _send_error(send, "502 Bad Gateway", "the PHP worker died")
            return "crash"
        out = worker.proc.stdout
        while True:
            if deadline is not None:
                wait = deadline - time.monotonic()
                ready = wait > 0 and select.select([out], [], [], wait)[0]
                if not ready:
                    self.stats["timeouts"] += 1
                    self._retire(worker, f"ran past request_terminate_timeout "
                                         f"({self.config.request_terminate_timeout:g} s)")
                    _send_error(send, "504 Gateway Timeout", "the PHP script ran past its time limit")
                    return "timeout"
            try:
                record = fastcgi.read_record(out)
            except fastcgi.ProtocolError as e:
                record, note = None, str(e)
            else:
                note = "ended its stream"
            if record is None:
                status = worker.proc.poll()
                self.stats["crashes"] += 1
                self._retire(worker, f"died mid-request ({note}; exit {status})")
                _send_error(send, "502 Bad Gateway", "the PHP worker died while serving this request")
                return "crash"
            if record.type == fastcgi.END_REQUEST:
                send(fastcgi.END_REQUEST, fastcgi.end_request_body(
                    int.from_bytes(record.content[:4], "big")))
                self._release(worker)
                return "ok"
            send(record.type, record.content)

    # -- connections ----------------------------------------------------------------------------

    def _connection(self, conn: socket.socket) -> None:
        stream = conn.makefile("rb")
        try:
            while True:
                got = self._read_request(stream, conn)
                if got is None:
                    return
                request_id, records, keep = got
                sent = []

                def send(rtype: int, content: bytes) -> None:
                    if not sent or sent[-1]:
                        try:
                            conn.sendall(fastcgi.encode(rtype, request_id, content))
                            sent.append(True)
                        except OSError:
                            sent.append(False)   # the client left; the worker still finishes
                if isinstance(records, str):
                    self.log(f"pool: request refused: {records}")
                    _send_error(send, "431 Request Header Fields Too Large", records)
                else:
                    self.handle(request_id, records, send)
                if not keep or (sent and not sent[-1]):
                    return
        except fastcgi.ProtocolError as e:
            self.log(f"pool: bad FastCGI from the front server: {e}; connection closed")
        finally:
            stream.close()
            conn.close()

    def _read_request(self, stream, conn):
        """(request_id, records for the worker or why it is refused, keep_conn), or None at
        the end of the connection."""
        parts: list[bytes] = []
        size = 0
        request_id = None
        keep = False
        params_done = False
        params = bytearray()
        refused = ""     # why no worker can be given this request (answered 431 instead)
        while True:
            record = fastcgi.read_record(stream)
            if record is None:
                if request_id is not None:
                    raise fastcgi.ProtocolError("connection closed inside a request")
                return None
            if record.type == fastcgi.GET_VALUES and record.request_id == 0:
                conn.sendall(fastcgi.encode(fastcgi.GET_VALUES_RESULT, 0, fastcgi.encode_params(
                    {"FCGI_MAX_CONNS": "1024", "FCGI_MAX_REQS": str(self.config.workers),
                     "FCGI_MPXS_CONNS": "0"})))
                continue
            if request_id is None:
                if record.type == fastcgi.ABORT_REQUEST:
                    continue   # for a request already answered: nothing left to abort
                if record.type != fastcgi.BEGIN_REQUEST or len(record.content) != 8:
                    raise fastcgi.ProtocolError(f"expected BEGIN_REQUEST, got record type {record.type}")
                role = int.from_bytes(record.content[:2], "big")
                if role != fastcgi.RESPONDER:
                    raise fastcgi.ProtocolError(f"role {role} not supported (responder only)")
                request_id = record.request_id
                keep = bool(record.content[2] & fastcgi.KEEP_CONN)
                # The worker's stream must stay open between requests (patch 0013).
                parts.append(fastcgi.begin_request(request_id, keep_conn=True))
                continue
            if record.request_id != request_id:
                raise fastcgi.ProtocolError("multiplexed requests are not supported (FCGI_MPXS_CONNS=0)")
            if record.type == fastcgi.ABORT_REQUEST:
                # Not yet given to a worker: dropped here, and answered as the specification
                # says (an aborted request still ends with END_REQUEST).
                conn.sendall(fastcgi.encode(fastcgi.END_REQUEST, request_id, fastcgi.end_request_body(0)))
                return self._read_request(stream, conn) if keep else None
            size += len(record.content)
            if size > self.config.max_request_size:
                raise fastcgi.ProtocolError(f"request larger than {self.config.max_request_size} bytes")
            if record.type == fastcgi.PARAMS and not params_done:
                if record.content:
                    params += record.content
                    continue
                # Re-cut as PHP reads them (kiln/pool/fastcgi.py): nginx sends up to 65,535
                # bytes in one record, which with its padding PHP refuses; the specification
                # lets a pair continue into the next record, which PHP cannot decode.
                # Malformed pairs are refused here, not in PHP.
                params_done = True
                try:
                    parts.append(fastcgi.encode_params_records(
                        request_id, fastcgi.decode_pairs(bytes(params))))
                except fastcgi.ParamTooLarge as e:
                    refused = str(e)
                parts.append(record.encode())
            elif record.type == fastcgi.STDIN and params_done:
                parts.append(record.encode())
            else:
                raise fastcgi.ProtocolError(f"unexpected record type {record.type} in a request")
            if record.type == fastcgi.STDIN and not record.content:
                return request_id, refused or b"".join(parts), keep

    def _listen(self, address: str) -> socket.socket:
        if "/" in address:
            try:
                os.unlink(address)
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(address)
            os.chmod(address, 0o666)
        else:
            host, _, port = address.rpartition(":")
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]") or "127.0.0.1", int(port)))
        sock.listen(128)
        return sock

    def _accept_loop(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def start(self) -> "Pool":
        # The module is compiled here, once, into the cache the workers load from: compiled
        # by each worker instead, inside its first request's time limit, a slow compile would
        # end in a 504 and a replacement that starts compiling again.
        cli = wasmtime_cli.artifact_for(self.config.module, self.config.preopens)
        if cli is None:
            runner.load_cached(self.config.module)
        config = self.config
        atomic.write_text(self._worker_config, json.dumps({
            "module": str(config.module), "cli_artifact": str(cli) if cli else None,
            "args": config.args, "env": config.env,
            "max_requests": config.max_requests, "memory_limit": config.memory_limit,
            "preopens": [{"host": str(p.host), "guest": p.guest, "writable": p.writable}
                         for p in config.preopens]}))
        for slot in range(self.config.workers):
            self._idle.put(self._spawn(slot))
        for address in self.config.listen:
            sock = self._listen(address)
            self._sockets.append(sock)
            threading.Thread(target=self._accept_loop, args=(sock,), daemon=True).start()
        return self

    def addresses(self) -> list[str]:
        out = []
        for s in self._sockets:
            name = s.getsockname()
            out.append(name if isinstance(name, str) else f"{name[0]}:{name[1]}")
        return out

    def stop(self) -> None:
        self._stopping.set()
        for sock in self._sockets:
            sock.close()
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            worker.kill()

    def serve_forever(self) -> int:
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        self.log(f"pool: {self.config.workers} workers of {self.config.module}, FastCGI on "
                 + ", ".join(self.addresses()))
        done.wait()
        self.stop()
        return 0
