"""FastCGI records (the FastCGI 1.0 specification): strict reading, writing, name-value pairs.

Only what a responder pool needs: records are read whole, with every field checked, so a
malformed or hostile stream is refused with ProtocolError instead of being guessed at.

Records are written as PHP's reader (main/fastcgi.c, fcgi_read_request) can take them, which is
narrower than the specification: it reads a record's content and padding into one 65,535-byte
buffer and refuses a record whose length + padding is larger, and it decodes each PARAMS record
on its own, so a name-value pair may not continue into the next record. Hence content is cut
at 65,528 bytes (a multiple of 8: no padding), and PARAMS only between pairs. Written any other
way, PHP drops the request and its loop goes on reading inside the broken stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Mapping

VERSION = 1
BEGIN_REQUEST, ABORT_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR, DATA = range(1, 9)
GET_VALUES, GET_VALUES_RESULT, UNKNOWN_TYPE = 9, 10, 11
RESPONDER = 1
KEEP_CONN = 1
REQUEST_COMPLETE = 0
MAX_CONTENT = 0xFFFF        # the specification's limit on one record's content
MAX_PART = 0xFFF8           # what Kiln writes: with its padding still within PHP's 65,535
_HEADER = struct.Struct("!BBHHBx")


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed FastCGI record stream."""


class ParamTooLarge(ValueError):
    """One name-value pair longer than a PARAMS record can carry to PHP."""


@dataclass(frozen=True)
class Record:
    type: int
    request_id: int
    content: bytes

    def encode(self) -> bytes:
        return encode(self.type, self.request_id, self.content)


def encode(rtype: int, request_id: int, content: bytes = b"") -> bytes:
    """One or more records carrying `content` (split at MAX_PART), padded to 8 bytes."""
    out = []
    view = memoryview(content)
    while True:
        part, view = view[:MAX_PART], view[MAX_PART:]
        pad = -len(part) % 8
        out.append(_HEADER.pack(VERSION, rtype, request_id, len(part), pad) + bytes(part) + b"\0" * pad)
        if not view:
            return b"".join(out)


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            if data:
                raise ProtocolError(f"stream ended inside a record ({len(data)} of {n} bytes)")
            return None
        data += chunk
    return data


def read_record(stream: BinaryIO) -> Record | None:
    """The next record, or None at a clean end of stream (between records)."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    version, rtype, request_id, length, pad = _HEADER.unpack(header)
    if version != VERSION:
        raise ProtocolError(f"FastCGI version {version}, expected 1")
    if not BEGIN_REQUEST <= rtype <= UNKNOWN_TYPE:
        raise ProtocolError(f"unknown record type {rtype}")
    body = _read_exactly(stream, length + pad) if length + pad else b""
    if body is None:
        raise ProtocolError("stream ended after a record header")
    return Record(rtype, request_id, body[:length])


def _length(n: int) -> bytes:
    return bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)


def _pairs(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> Iterable[tuple[str, bytes]]:
    items = params.items() if isinstance(params, Mapping) else params
    for name, value in items:
        n, v = name.encode("latin-1"), value.encode("utf-8", "surrogateescape")
        yield name, _length(len(n)) + _length(len(v)) + n + v


def encode_params(params: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    return b"".join(pair for _, pair in _pairs(params))


def encode_params_records(request_id: int, params) -> bytes:
    """PARAMS records carrying `params`, each holding whole pairs (at most MAX_PART bytes), and
    no end-of-params record. Raises ParamTooLarge for a pair that no record can hold."""
    out, part = [], bytearray()
    for name, pair in _pairs(params):
        if len(pair) > MAX_PART:
            raise ParamTooLarge(f"parameter {name[:40]} is {len(pair)} bytes encoded, over the "
                                f"{MAX_PART} that one FastCGI record carries to PHP")
        if len(part) + len(pair) > MAX_PART:
            out.append(encode(PARAMS, request_id, bytes(part)))
            part = bytearray()
        part += pair
    if part:
        out.append(encode(PARAMS, request_id, bytes(part)))
    return b"".join(out)


def decode_pairs(data: bytes) -> list[tuple[str, str]]:
    """The name-value pairs of PARAMS content, in order, a name sent twice kept twice."""
    pairs, i = [], 0

    def length() -> int:
        nonlocal i
        if i >= len(data):
            raise ProtocolError("truncated name-value pair")
        if data[i] < 128:
            i += 1
            return data[i - 1]
        if i + 4 > len(data):
            raise ProtocolError("truncated name-value length")
        i += 4
        return struct.unpack("!I", data[i - 4:i])[0] & 0x7FFFFFFF

    while i < len(data):
        nlen, vlen = length(), length()
        if i + nlen + vlen > len(data):
            raise ProtocolError("name-value pair longer than its record")
        name = data[i:i + nlen].decode("latin-1")
        value = data[i + nlen:i + nlen + vlen].decode("utf-8", "surrogateescape")
        pairs.append((name, value))
        i += nlen + vlen
    return pairs


def decode_params(data: bytes) -> dict[str, str]:
    return dict(decode_pairs(data))


def begin_request(request_id: int, keep_conn: bool) -> bytes:
    return encode(BEGIN_REQUEST, request_id, struct.pack("!HB5x", RESPONDER, KEEP_CONN if keep_conn else 0))


def end_request_body(app_status: int = 0) -> bytes:
    return struct.pack("!IB3x", app_status & 0xFFFFFFFF, REQUEST_COMPLETE)


def request(request_id: int, params, body: bytes = b"", keep_conn: bool = False) -> bytes:
    """Every record of one request, BEGIN through the empty STDIN."""
    out = [begin_request(request_id, keep_conn), encode_params_records(request_id, params),
           encode(PARAMS, request_id)]
    if body:
        out.append(encode(STDIN, request_id, body))
    out.append(encode(STDIN, request_id))
    return b"".join(out)
