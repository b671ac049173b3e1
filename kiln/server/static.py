"""Static files: sent by the server itself, with conditional requests and single byte ranges."""
from __future__ import annotations

import email.utils
import mimetypes
import os
import re
import stat
from pathlib import Path

from .messages import Request, Response, error_response

# A few types Debian's /etc/mime.types (or its absence) gets wrong or lacks.
_MIME_OVERRIDES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".json": "application/json", ".svg": "image/svg+xml", ".wasm": "application/wasm",
    ".webp": "image/webp", ".woff": "font/woff", ".woff2": "font/woff2", ".ico": "image/x-icon",
    ".txt": "text/plain", ".html": "text/html", ".htm": "text/html", ".xml": "text/xml",
    ".map": "application/json", ".avif": "image/avif", ".md": "text/markdown",
}


def content_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    kind = _MIME_OVERRIDES.get(ext) or mimetypes.guess_type(name, strict=False)[0]
    if not kind:
        return "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "image/svg+xml"):
        kind += "; charset=utf-8"
    return kind


def static_response(req: Request, host: Path) -> Response:
    if req.method not in ("GET", "HEAD"):
        return error_response(405, headers=[("Allow", "GET, HEAD")])
    real = os.path.realpath(host)
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return error_response(404)
    f = os.fdopen(fd, "rb")
    try:
        # What was opened is what was checked (a folder swapped for a symlink in between
        # would show here).
        opened = os.readlink(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else real
        if opened != real:
            raise PermissionError(opened)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(real)
    except OSError:
        f.close()
        return error_response(403)
    etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
    headers = [("Content-Type", content_type(host.name)),
               ("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True)),
               ("ETag", etag), ("Accept-Ranges", "bytes")]
    if not_modified(req, etag, st.st_mtime):
        f.close()
        return Response(304, [h for h in headers if h[0] != "Content-Type"], content_length=False)
    offset, length, status = 0, st.st_size, 200
    ranges = req.header("Range")
    if_range = req.header("If-Range")
    if ranges and (if_range is None or if_range.strip() == etag):
        parsed = parse_range(ranges, st.st_size)
        if parsed == "unsatisfiable":
            f.close()
            return error_response(416, headers=[("Content-Range", f"bytes */{st.st_size}")])
        if parsed:
            offset, end = parsed
            length, status = end - offset + 1, 206
            headers.append(("Content-Range", f"bytes {offset}-{end}/{st.st_size}"))
    return Response(status, headers, file=f, file_offset=offset, file_length=length)


def not_modified(req: Request, etag: str, mtime: float) -> bool:
    inm = req.header("If-None-Match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or etag in tags
    ims = req.header("If-Modified-Since")
    if ims:
        try:
            since = email.utils.parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(mtime) <= since
    return False


def parse_range(spec: str, size: int):
    """(first, last) for one satisfiable byte range, "unsatisfiable", or None (ignore)."""
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", spec)
    if not match or match.group(1) == match.group(2) == "":
        return None       # several ranges or junk: send the whole file
    first, last = match.group(1), match.group(2)
    if first == "":
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable"
    return start, end
