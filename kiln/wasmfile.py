"""Just enough of the WebAssembly binary format to drop debug sections.

zig's libc objects carry DWARF, and PHP's libtool drops `-s` from the link line, so the
linked module holds ~1.5 MB of `.debug_*` custom sections nobody runs. Dropping them is a
pure function of the bytes (the same input gives the same output), so reproducibility holds.
The `name` section stays: traps and profilers use it to name functions.
"""
from __future__ import annotations

MAGIC = b"\0asm\x01\0\0\0"
CUSTOM = 0
IMPORT = 2
EXPORT = 7


def _leb128(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, offset


def _uleb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


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


def exports(data: bytes) -> list[tuple[str, int, int]]:
    """(name, kind, index) of every export, in order (kind 0 function, 1 table, 2 memory, 3 global)."""
    for section_id, _, start, end in sections(data):
        if section_id == EXPORT:
            _, offset = _leb128(data, start + 1)
            count, offset = _leb128(data, offset)
            found = []
            for _ in range(count):
                length, offset = _leb128(data, offset)
                name = data[offset:offset + length].decode("utf-8")
                kind = data[offset + length]
                index, offset = _leb128(data, offset + length + 1)
                found.append((name, kind, index))
            if offset != end:
                raise ValueError("malformed export section")
            return found
    return []


def keep_exports(data: bytes, keep: set[str]) -> bytes:
    """The module with only the exports named in `keep`; the rest of the bytes unchanged.

    A module linked with -export-dynamic (PHP's own link line, for dl(); Kiln's wl-build turns
    it off) exports ~2,000 functions, and no optimizer may drop them; a WASI command is only
    ever entered through `_start` (and the host reads `memory`), so an optimized module can let
    the others go and lose the code only they reached."""
    missing = keep - {name for name, _, _ in exports(data)}
    if missing:
        raise ValueError(f"the module exports none of {sorted(missing)}")
    out = [MAGIC]
    for section_id, _, start, end in sections(data):
        if section_id != EXPORT:
            out.append(data[start:end])
            continue
        body = bytearray()
        kept = [e for e in exports(data) if e[0] in keep]
        body += _uleb128(len(kept))
        for name, kind, index in kept:
            raw = name.encode("utf-8")
            body += _uleb128(len(raw)) + raw + bytes([kind]) + _uleb128(index)
        out.append(bytes([EXPORT]) + _uleb128(len(body)) + bytes(body))
    return b"".join(out)


def _skip_limits(data: bytes, offset: int) -> int:
    flags = data[offset]
    _, offset = _leb128(data, offset + 1)
    if flags & 1:  # a maximum follows
        _, offset = _leb128(data, offset)
    return offset


def _import_entries(data: bytes, start: int):
    """(module, name, kind, desc_start, desc_end) of each entry of the import section at `start`,
    then the offset after the last as a final int."""
    _, offset = _leb128(data, start + 1)
    count, offset = _leb128(data, offset)
    for _ in range(count):
        fields = []
        for _ in range(2):
            length, offset = _leb128(data, offset)
            fields.append(data[offset:offset + length].decode("utf-8"))
            offset += length
        desc_start, kind = offset, data[offset]
        offset += 1
        if kind in (0, 4):      # function: type index; tag: attribute, type index
            offset = _leb128(data, offset + (kind == 4))[1]
        elif kind == 1:         # table: reference type, limits
            offset = _skip_limits(data, offset + 1)
        elif kind == 2:         # memory: limits
            offset = _skip_limits(data, offset)
        elif kind == 3:         # global: value type, mutability
            offset += 2
        else:
            raise ValueError(f"unknown import kind {kind}")
        yield fields[0], fields[1], kind, desc_start, offset
    yield offset


def imports(data: bytes) -> list[tuple[str, str, int]]:
    """(module, name, kind) of every import, in order."""
    found = []
    for section_id, _, start, _ in sections(data):
        if section_id == IMPORT:
            found += [entry[:3] for entry in _import_entries(data, start) if isinstance(entry, tuple)]
    return found


def rename_import(data: bytes, module: str, name: str, new_module: str, new_name: str) -> bytes:
    """The module with import `module.name` taken from `new_module.new_name` instead, every
    other byte unchanged (the import keeps its index and type, so no call site changes).
    Unchanged when the module has no such import."""
    out = [MAGIC]
    for section_id, _, start, end in sections(data):
        if section_id != IMPORT:
            out.append(data[start:end])
            continue
        entries = list(_import_entries(data, start))
        offset = entries.pop()
        body = bytearray(_uleb128(len(entries)))
        for entry_module, entry_name, kind, desc_start, desc_end in entries:
            fields = [entry_module, entry_name]
            if fields == [module, name] and kind == 0:
                fields = [new_module, new_name]
            for text in fields:
                raw = text.encode("utf-8")
                body += _uleb128(len(raw)) + raw
            body += data[desc_start:desc_end]
        if offset != end:
            raise ValueError("malformed import section")
        out.append(bytes([IMPORT]) + _uleb128(len(body)) + bytes(body))
    return b"".join(out)
