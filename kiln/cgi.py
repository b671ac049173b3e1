"""php-cgi's output read back as a CGI/1.1 response (RFC 3875 section 6).

The one parser of CGI output: kiln.server answers HTTP clients with it and kiln.smoke checks
php-cgi's status and headers with it, so what a smoke check sees is what a browser would get.
It decides syntax only (what the script said); which headers the server forwards is the
server's business (kiln/server/messages.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")   # control characters but TAB
_STATUS = re.compile(r"^(\d{3})(?:\s+(.*))?$")


def clean(value: str) -> str:
    """A header value without CR, LF or other control characters (no header injection)."""
    return CTL.sub("", value).strip()


@dataclass
class CgiResponse:
    status: int
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)   # in order, repeats kept
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)


def parse(out: bytes) -> CgiResponse | None:
    """The response a CGI script wrote, or None when its output is not one (no header block,
    or a Status that is not a 3-digit code from 100 to 599)."""
    ends = [i for i in (out.find(b"\r\n\r\n"), out.find(b"\n\n")) if i >= 0]
    if not ends:
        return None
    end = min(ends)
    head, body = out[:end], out[end + (4 if out[end:end + 4] == b"\r\n\r\n" else 2):]
    response = CgiResponse(200, body=body)
    has_status = has_location = False
    for raw in head.split(b"\n"):
        name, sep, value = raw.rstrip(b"\r").decode("latin-1").partition(":")
        if not sep or not TOKEN.match(name):
            continue  # folded or malformed line: dropped rather than guessed at
        value = clean(value)
        if name.lower() == "status":
            match = _STATUS.match(value)
            if not match or not 100 <= int(match.group(1)) <= 599:
                return None
            response.status, response.reason = int(match.group(1)), clean(match.group(2) or "")
            has_status = True
            continue
        has_location = has_location or name.lower() == "location"
        response.headers.append((name, value))
    if has_location and not has_status:
        response.status = 302   # RFC 3875 6.2.3: a client redirect
    return response
