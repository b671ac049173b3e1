"""Just enough of the WebAssembly binary format to drop debug sections.

zig's libc objects carry DWARF, and PHP's libtool drops `-s` from the link line, so the
linked module holds ~1.5 MB of `.debug_*` custom sections nobody runs. Dropping them is a
pure function of the bytes (the same input gives the same output), so reproducibility holds.
The `name` section stays: traps and profilers use it to name functions.
"""
from __future__ import annotations

MAGIC = b"\0asm\x01\0\0\0"
CUSTOM = 0


def _leb128(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, offset


def sections(data: bytes):
    """Yield (id, custom name or None, start, end) for every section, in order."""
    if data[:8] != MAGIC:
        raise ValueError("not a WebAssembly 1.0 module")
    offset = 8
    while offset < len(data):
        start = offset
        section_id = data[offset]
        size, body = _leb128(data, offset + 1)
        end = body + size
        if end > len(data):
            raise ValueError("truncated module")
        name = None
        if section_id == CUSTOM:
            length, at = _leb128(data, body)
            name = data[at:at + length].decode("utf-8", "replace")
        yield section_id, name, start, end
        offset = end


def strip_debug(data: bytes) -> bytes:
    kept = [data[start:end] for section_id, name, start, end in sections(data)
            if not (section_id == CUSTOM and name.startswith(".debug_"))]
    return MAGIC + b"".join(kept)
