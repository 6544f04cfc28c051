"""Byte offsets of struct members, read from the running kernel's BTF.

A RAW_TRACEPOINT program gets the tracepoint's raw arguments (``struct
request *`` for the block tracepoints) and must read kernel structs itself;
bcc compiles against whatever header tree /lib/modules/$(uname -r)/build
points at (scripts/kernel-headers.sh may link a near-version one), so the
offsets are taken from /sys/kernel/btf/vmlinux instead and passed to the
program as -D flags.

Format: Documentation/bpf/btf.rst (header, type section, string section;
each type a 12-byte ``struct btf_type`` followed by kind-specific data).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F
KIND_STRUCT = 4
# Bytes after struct btf_type: fixed per kind, and per member (vlen) per kind.
FIXED = {1: 4, 3: 12, 14: 4, 17: 4}  # INT, ARRAY, VAR, DECL_TAG
PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # STRUCT, UNION, ENUM, FUNC_PROTO, DATASEC, ENUM64


class BTFError(RuntimeError):
    """The BTF could not be read or lacks a wanted member."""


@dataclass(frozen=True)
class BTFType:
    kind: int
    name: str
    vlen: int
    kflag: bool
    data: int  # offset of the kind-specific data that follows struct btf_type


class BTF:
    """A raw BTF blob: its types in order, with their names."""

    def __init__(self, data: bytes, path: Path = VMLINUX_BTF) -> None:
        if len(data) < 24 or struct.unpack_from("<H", data)[0] != BTF_MAGIC:
            raise BTFError(f"{path}: not BTF")
        self.data = data
        _magic, _version, _flags, hdr_len, type_off, type_len, str_off, _ = struct.unpack_from("<HBBIIIII", data)
        self.types_at, self.types_end, self.strings = hdr_len + type_off, hdr_len + type_off + type_len, hdr_len + str_off

    def name(self, off: int) -> str:
        start = self.strings + off
        return self.data[start:self.data.index(b"\0", start)].decode()

    def types(self):
        pos = self.types_at
        while pos < self.types_end:
            name_off, info, _size = struct.unpack_from("<III", self.data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            yield BTFType(kind, self.name(name_off) if name_off else "", vlen, bool(info >> 31), pos + 12)
            pos += 12 + FIXED.get(kind, 0) + PER_MEMBER.get(kind, 0) * vlen

    def members(self, t: BTFType):
        """(name, byte offset) of a struct's members."""
        for i in range(t.vlen):
            m_name, _m_type, m_off = struct.unpack_from("<III", self.data, t.data + 12 * i)
            # With kflag, the high 8 bits hold a bitfield's size, the low 24 its bit offset.
            yield (self.name(m_name) if m_name else ""), (m_off & 0xFFFFFF if t.kflag else m_off) // 8


def member_offsets(wanted: set[tuple[str, str]], path: Path = VMLINUX_BTF) -> dict[tuple[str, str], int]:
    """{(struct name, member name): byte offset} for every wanted member."""
    try:
        btf = BTF(path.read_bytes(), path)
    except OSError as err:
        raise BTFError(f"{path}: {err.strerror}") from err
    structs = {s for s, _ in wanted}
    found: dict[tuple[str, str], int] = {}
    for t in btf.types():
        if t.kind == KIND_STRUCT and t.name in structs:
            for member, offset in btf.members(t):
                if (t.name, member) in wanted:
                    found.setdefault((t.name, member), offset)
    missing = wanted - found.keys()
    if missing:
        raise BTFError(f"{path}: no member {', '.join(f'{s}.{m}' for s, m in sorted(missing))}")
    return found
