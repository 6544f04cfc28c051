"""tracefs: where it is, which events exist, what their records hold.

The attach plan asks tracefs (not the kernel version) which storage events
exist and whether their format carries the fields the probe reads. The same
format parser reads raw tracepoint records back into field values, which is
how recorded SCSI/NVMe records are decoded on machines that have neither.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

# bcc looks in the same two places, in the same order.
TRACEFS_CANDIDATES = (Path("/sys/kernel/debug/tracing"), Path("/sys/kernel/tracing"))
MOUNT_HINT = "mount -t tracefs nodev /sys/kernel/tracing"

_FIELD_LINE = re.compile(
    r"field:(?P<decl>[^;]+);\s*offset:(?P<offset>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>-?\d+);"
)
_ARRAY = re.compile(r"\[(\d*)\]$")


def find_tracefs() -> Path | None:
    """The mounted tracefs this process can read, or None."""
    for root in TRACEFS_CANDIDATES:
        events = root / "events"
        if os.access(events, os.R_OK | os.X_OK) and events.is_dir():
            return root
    return None


def unreadable_tracefs() -> Path | None:
    """A tracefs that is mounted but closed to this user (tracefs is 0700)."""
    for root in TRACEFS_CANDIDATES:
        try:
            if os.path.ismount(root) and not os.access(root / "events", os.R_OK | os.X_OK):
                return root
        except OSError:
            return root
    return None


def tracepoint_exists(root: Path, category: str, event: str) -> bool:
    return (root / "events" / category / event).is_dir()


@dataclass(frozen=True)
class FormatField:
    """One ``field:`` line of a tracepoint format file."""

    name: str
    c_type: str
    offset: int
    size: int
    signed: bool
    array_len: int | None = None
    """Element count of a fixed array (``char rwbs[10]``)."""
    data_loc: bool = False
    """``__data_loc``: a u32 holding (length << 16 | offset) of dynamic data."""


@dataclass(frozen=True)
class TracepointFormat:
    name: str
    event_id: int | None
    fields: tuple[FormatField, ...]

    def field(self, name: str) -> FormatField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def missing_fields(self, names) -> list[str]:
        """The names in ``names`` this format lacks (empty: all present)."""
        present = {f.name for f in self.fields}
        return [n for n in names if n not in present]


def parse_format(text: str) -> TracepointFormat:
    """Read a tracefs ``format`` file (``events/<cat>/<event>/format``)."""
    name, event_id, fields = "", None, []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("ID:"):
            event_id = int(line.split(":", 1)[1])
        m = _FIELD_LINE.match(line)
        if m:
            fields.append(_parse_field(m))
    return TracepointFormat(name=name, event_id=event_id, fields=tuple(fields))


def _parse_field(m: re.Match) -> FormatField:
    decl = m["decl"].strip()
    data_loc = decl.startswith("__data_loc ")
    if data_loc:
        decl = decl[len("__data_loc ") :]
    c_type, _, name = decl.rpartition(" ")
    array_len = None
    arr = _ARRAY.search(name)
    if arr:
        name = name[: arr.start()]
        array_len = int(arr.group(1)) if arr.group(1) else None
    return FormatField(
        name=name,
        c_type=c_type.strip(),
        offset=int(m["offset"]),
        size=int(m["size"]),
        signed=m["signed"] == "1",
        array_len=array_len,
        data_loc=data_loc,
    )


def read_format(root: Path, category: str, event: str) -> TracepointFormat:
    path = root / "events" / category / event / "format"
    return parse_format(path.read_text())


_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}


def unpack_record(fmt: TracepointFormat, raw: bytes) -> dict[str, object]:
    """Field values of one raw tracepoint record (little-endian host).

    Integers come back as int, char arrays as str, other arrays and
    ``__data_loc`` fields as bytes; this is what the kernel would hand a
    BPF program as ``args->field``.
    """
    values: dict[str, object] = {}
    for f in fmt.fields:
        if f.name.startswith("common_"):
            continue
        chunk = raw[f.offset : f.offset + f.size]
        if f.data_loc:
            (loc,) = struct.unpack_from("<I", raw, f.offset)
            start, length = loc & 0xFFFF, loc >> 16
            values[f.name] = bytes(raw[start : start + length])
        elif f.array_len is not None or f.size not in _INT_CODES:
            values[f.name] = _array_value(f, chunk)
        else:
            code = _INT_CODES[f.size]
            values[f.name] = struct.unpack("<" + (code if f.signed else code.upper()), chunk)[0]
    return values


def _array_value(f: FormatField, chunk: bytes) -> object:
    # Plain char arrays are names (rwbs, disk); anything else stays bytes.
    if f.c_type == "char":
        return chunk.split(b"\0", 1)[0].decode("ascii", "replace")
    return bytes(chunk)


def pack_record(fmt: TracepointFormat, values: dict[str, object]) -> bytes:
    """Build a raw record from field values: the inverse of unpack_record.

    Used to turn a recorded ``trace_pipe`` line (text) back into the bytes
    the kernel stored, laid out by the event's real format file.
    """
    fixed = max(f.offset + f.size for f in fmt.fields)
    raw = bytearray(fixed)
    tail = bytearray()
    for f in fmt.fields:
        if f.name not in values:
            continue
        value = values[f.name]
        if f.data_loc:
            data = bytes(value)
            struct.pack_into("<I", raw, f.offset, (len(data) << 16) | (fixed + len(tail)))
            tail += data
        elif isinstance(value, (bytes, str)):
            data = value.encode() if isinstance(value, str) else value
            raw[f.offset : f.offset + f.size] = data[: f.size].ljust(f.size, b"\0")
        else:
            code = _INT_CODES[f.size]
            struct.pack_into("<" + (code if f.signed else code.upper()), raw, f.offset, value)
    return bytes(raw + tail)
