"""Requests and responses as the application sees them, apart from HTTP's wire format: the
internal wp-cron request is one too, and a script's CGI answer becomes one."""
from __future__ import annotations

import html
import http
from dataclasses import dataclass, field
from typing import Iterable

from .. import cgi

REASONS = {s.value: s.phrase for s in http.HTTPStatus}

# Request headers that describe one hop, never forwarded to the script (RFC 9110 7.6.1), and
# response headers the server owns. "Proxy" is dropped so HTTP_PROXY can never be set (httpoxy).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "proxy-authenticate",
                        "proxy-authorization", "proxy"})
SERVER_OWNED = frozenset({"content-length", "date", "server"})


@dataclass
class Request:
    method: str
    target: str                                 # raw request-target ("/a%20b?x=1")
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    has_body: bool = False                      # Content-Length or chunked body was sent
    remote_addr: str = "127.0.0.1"
    remote_port: int = 0
    server_port: int = 0
    server_addr: str = "127.0.0.1"
    scheme: str = "http"
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        name = name.lower()
        values = [v for k, v in self.headers if k.lower() == name]
        return ", ".join(values) if values else None


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: object | None = None       # open binary file to send instead of body
    file_offset: int = 0
    file_length: int = 0
    reason: str = ""
    note: str = ""                    # for the access log ("timeout", "trap", ...)
    content_length: bool = True       # send Content-Length (not for HEAD of a script)

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = REASONS.get(self.status, "Unknown")

    @property
    def length(self) -> int:
        return self.file_length if self.file is not None else len(self.body)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def error_response(status: int, note: str = "", headers: Iterable[tuple[str, str]] = ()) -> Response:
    reason = REASONS.get(status, "Error")
    body = (f"<!DOCTYPE html>\n<html><head><title>{status} {reason}</title></head>"
            f"<body><h1>{status} {html.escape(reason)}</h1></body></html>\n").encode()
    return Response(status, [("Content-Type", "text/html; charset=utf-8"), *headers], body,
                    note=note)


def parse_cgi_output(out: bytes) -> Response | None:
    """A CGI script's stdout as the Response sent on (None when it is not a CGI response):
    hop-by-hop headers and those the server sets itself are not the script's to send."""
    parsed = cgi.parse(out)
    if parsed is None or parsed.status < 200:
        return None   # a 1xx is not a final answer, and the script cannot switch protocols
    headers = [(k, v) for k, v in parsed.headers
               if k.lower() not in HOP_BY_HOP and k.lower() not in SERVER_OWNED]
    return Response(parsed.status, headers, parsed.body, reason=parsed.reason)
