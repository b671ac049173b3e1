"""The HTTP/1.1 front: connections, request framing, keep-alive and writing responses.

Framing is h11's: request line, header fields, Content-Length and chunk sizes are parsed by its
grammar (a chunk size is 1-20 hex digits, so `-1`, `0x10` and `1_0` are refused, and the CRLF
after each chunk is checked), never by int(). What h11 refuses is answered with its status hint
(400, 501 for transfer codings other than chunked; a head over --max-header-size is measured
here: 414 or 431) and the connection closed: after a framing error nobody knows where the next
request would start. The thread and the server carry on. On top of h11 this layer refuses what h11 accepts but
nginx does not: Transfer-Encoding together with Content-Length (request smuggling) and a
malformed Host. Heads are limited here, before any worker is involved (docs/server.md): the
whole head's size and the number of header lines (431), and one field or target that could not
reach PHP in one FastCGI record (431, 414).
"""
from __future__ import annotations

import email.utils
import re
import socket
import socketserver
import ssl
import time
import traceback
from typing import TYPE_CHECKING

import h11

from ..cgi import clean
from ..pool import fastcgi
from .config import SERVER_SOFTWARE
from .messages import Request, Response, error_response

if TYPE_CHECKING:
    from .lifecycle import Server

# One header (its lines of one name, joined as the CGI variable is) or the request target: PHP
# reads each FastCGI name-value pair from one record (kiln/pool/fastcgi.py, MAX_PART); 1 KiB is
# left for the variable's name and the docroot that PATH_TRANSLATED puts before the path.
MAX_FIELD = fastcgi.MAX_PART - 1024
_RECV = 64 * 1024
_HOST_HEADER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


class _Refused(Exception):
    """A request answered with `response`, after which the connection closes."""

    def __init__(self, response: Response):
        self.response = response


class _FileBody:
    """Stands for a file's bytes in h11's Data event: h11 counts `len()` against the
    Content-Length and hands the object back (send_with_data_passthrough), and the bytes go
    out by sendfile instead of through Python."""

    def __init__(self, response: Response):
        self.response = response

    def __len__(self) -> int:
        return self.response.file_length


class Connection(socketserver.BaseRequestHandler):
    server: "HTTPServer"

    def setup(self) -> None:
        kiln = self.server.kiln
        try:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see wordpress.md
        except OSError:
            pass
        self.request.settimeout(kiln.config.keepalive_timeout)
        if self.server.ssl_context is not None:
            self.request = self.server.ssl_context.wrap_socket(self.request, server_side=True)
        self.connection = self.request
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=kiln.config.max_header_size)
        self.started = time.monotonic()
        self.linger = False
        kiln._register(self)

    def finish(self) -> None:
        self.server.kiln._unregister(self)
        if self.linger and self.server.ssl_context is None:
            self._lingering_close()

    def _lingering_close(self) -> None:
        # After a refusal the client may still be sending the body; closing with unread data
        # makes the kernel reset the connection, which can destroy the answer in flight. Read
        # and drop a little first, as nginx's lingering_close does.
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and self.connection.recv(_RECV):
                pass
        except OSError:
            pass

    def handle(self) -> None:
        try:
            while self._one_request():
                self.h11.start_next_cycle()
        except (ConnectionError, TimeoutError, ssl.SSLError, OSError, h11.LocalProtocolError):
            pass

    # -- reading -------------------------------------------------------------------------------

    def _check_head(self) -> None:
        # h11 only measures a head it is still waiting for; one that arrived whole in a
        # single read would pass at any size, so it is measured here before h11 parses it.
        limit = self.server.kiln.config.max_header_size
        pending = self.h11.trailing_data[0]
        ends = [i for i in (pending.find(b"\r\n\r\n"), pending.find(b"\n\n")) if i >= 0]
        if (min(ends) if ends else len(pending)) <= limit:
            return
        line = pending.find(b"\n")
        if line < 0 or line > limit:
            raise _Refused(error_response(414, "request line over the limit"))
        raise _Refused(error_response(431, "header block over --max-header-size"))

    def _check_fields(self, target: str, headers: list[tuple[str, str]]) -> None:
        if len(headers) > self.server.kiln.config.max_header_lines:
            raise _Refused(error_response(431, "more header lines than --max-header-lines"))
        if len(target) > MAX_FIELD:
            raise _Refused(error_response(414, "request target over what PHP can be given"))
        joined: dict[str, int] = {}
        for name, value in headers:
            key = name.lower()
            joined[key] = joined.get(key, -2) + 2 + len(name) + len(value)
        if max(joined.values(), default=0) > MAX_FIELD:
            raise _Refused(error_response(431, "a header over what PHP can be given"))

    def _next_event(self):
        while True:
            if self.h11.their_state is h11.IDLE:
                self._check_head()
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = self.connection.recv(_RECV)
            except (TimeoutError, socket.timeout):
                if self.h11.their_state is h11.IDLE and not self.h11.trailing_data[0]:
                    raise ConnectionError("idle keep-alive connection") from None
                raise _Refused(error_response(408, "client too slow")) from None
            self.h11.receive_data(data)

    def _one_request(self) -> bool:
        """Serve one request; True when the connection can carry another."""
        kiln = self.server.kiln
        self.target, self.method = "", "-"
        try:
            event = self._next_event()
            if isinstance(event, h11.ConnectionClosed):
                return False
            self.started = time.monotonic()
            kiln._mark(self, busy=True)
            req = self._request(event)
            response = self._dispatch(req)
            keep = self._respond(response, close=kiln.draining)
        except _Refused as refused:
            self._refuse(refused.response)
            keep, self.linger = False, True
        except h11.RemoteProtocolError as e:
            self._refuse(error_response(e.error_status_hint, str(e)))
            keep, self.linger = False, True
        finally:
            if kiln._mark(self, busy=False):    # draining: this connection is done
                keep = False
        return keep and self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def _request(self, event: h11.Request) -> Request:
        self.method = event.method.decode("ascii")
        self.target = event.target.decode("ascii")
        headers = [(n.decode("ascii"), v.decode("latin-1")) for n, v in event.headers.raw_items()]
        self._check_fields(self.target, headers)
        names = {n.lower() for n, _ in headers}
        if "transfer-encoding" in names and "content-length" in names:
            raise _Refused(error_response(400, "both Transfer-Encoding and Content-Length"))
        host = next((v for n, v in headers if n.lower() == "host"), None)
        if host is not None and not _HOST_HEADER.match(host.strip()):
            raise _Refused(error_response(400, "bad Host"))
        body, has_body = self._body(event, headers)
        client = self.client_address
        local = self.connection.getsockname()
        return Request(method=self.method, target=self.target, headers=headers, body=body,
                       has_body=has_body, remote_addr=str(client[0]),
                       remote_port=int(client[1]) if len(client) > 1 else 0,
                       server_addr=str(local[0]), server_port=int(local[1]),
                       scheme="https" if self.server.ssl_context is not None else "http",
                       protocol="HTTP/" + event.http_version.decode("ascii"))

    def _body(self, event: h11.Request, headers) -> tuple[bytes, bool]:
        cap = self.server.kiln.config.max_body
        lengths = [v for n, v in headers if n.lower() == "content-length"]
        chunked = any(n.lower() == "transfer-encoding" for n, _ in headers)
        if lengths and int(lengths[0].split(",")[0]) > cap:
            raise _Refused(error_response(413, "body cap"))   # before any 100 Continue
        if self.h11.they_are_waiting_for_100_continue:
            self.connection.sendall(self.h11.send(h11.InformationalResponse(
                status_code=100, headers=[])))
        parts, total = [], 0
        while True:
            event = self._next_event()
            if isinstance(event, h11.EndOfMessage):   # also what ends a request without body
                return b"".join(parts), bool(lengths) or chunked
            if isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("client left inside the body")
            total += len(event.data)
            if total > cap:
                raise _Refused(error_response(413, "body cap"))
            parts.append(bytes(event.data))

    def _dispatch(self, req: Request) -> Response:
        kiln = self.server.kiln
        try:
            return kiln.app.handle(req)
        except Exception:   # a bug here must not take the connection's thread down silently
            kiln.log("kiln.server: internal error: "
                     + traceback.format_exc().strip().replace("\n", " | "))
            return error_response(500, "internal error")

    # -- writing -------------------------------------------------------------------------------

    def _refuse(self, response: Response) -> None:
        """Answer a request this connection cannot go on from, if h11 still lets us."""
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            try:
                self._respond(response, close=True)
                return
            except (OSError, h11.LocalProtocolError):
                pass
        response.close()

    def _respond(self, response: Response, close: bool) -> bool:
        """Send `response`; True when h11 keeps the connection open after it."""
        sent = 0
        try:
            headers = [("Date", email.utils.formatdate(usegmt=True)), ("Server", SERVER_SOFTWARE)]
            headers += [(name, clean(value)) for name, value in response.headers]
            no_body = response.status in (204, 304)
            if response.content_length and not no_body:
                headers.append(("Content-Length", str(response.length)))
            if close:
                headers.append(("Connection", "close"))
            self.connection.sendall(self.h11.send(h11.Response(
                status_code=response.status, reason=clean(response.reason).encode("latin-1", "replace"),
                headers=[(n.encode("latin-1"), v.encode("latin-1", "replace")) for n, v in headers])))
            if self.method != "HEAD" and not no_body:
                sent = self._send_body(response)
            self.connection.sendall(self.h11.send(h11.EndOfMessage()) or b"")
        finally:
            response.close()
            self.server.kiln.access(self.client_address[0], self.method, self.target, response,
                                    sent, self.started)
        return self.h11.our_state is h11.DONE

    def _send_body(self, response: Response) -> int:
        if response.file is not None:
            if not response.file_length:
                return 0
            for piece in self.h11.send_with_data_passthrough(h11.Data(data=_FileBody(response))):
                if isinstance(piece, _FileBody):
                    self.connection.sendfile(response.file, response.file_offset, response.file_length)
                else:
                    self.connection.sendall(piece)
            return response.file_length
        if response.body:
            for piece in self.h11.send_with_data_passthrough(h11.Data(data=response.body)):
                self.connection.sendall(piece)
        return len(response.body)


class HTTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, kiln: "Server", ssl_context: ssl.SSLContext | None):
        self.kiln = kiln
        self.ssl_context = ssl_context
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Connection)

    @property
    def server_port(self) -> int:
        return self.server_address[1]

    def process_request(self, request, client_address) -> None:
        if self.kiln.connection_count() >= self.kiln.config.max_connections:
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Retry-After: 5\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        self.kiln.log("kiln.server: connection error: " + traceback.format_exc().strip().splitlines()[-1])
