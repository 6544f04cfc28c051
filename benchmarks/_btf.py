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
from pathlib import Path

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F
KIND_STRUCT = 4
# Bytes after struct btf_type: fixed per kind, and per member (vlen) per kind.
FIXED = {1: 4, 3: 12, 14: 4, 17: 4}  # INT, ARRAY, VAR, DECL_TAG
PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # STRUCT, UNION, ENUM, FUNC_PROTO, DATASEC, ENUM64


class BTFError(RuntimeError):
    """The BTF could not be read or lacks a wanted member."""


def member_offsets(wanted: set[tuple[str, str]], path: Path = VMLINUX_BTF) -> dict[tuple[str, str], int]:
    """{(struct name, member name): byte offset} for every wanted member."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BTFError(f"{path}: {err.strerror}") from err
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, _str_len = struct.unpack_from("<HBBIIIII", data)
    if magic != BTF_MAGIC:
        raise BTFError(f"{path}: not BTF (magic {magic:#x})")
    strings = hdr_len + str_off

    def name(off: int) -> str:
        return data[strings + off:data.index(b"\0", strings + off)].decode()

    structs = {s for s, _ in wanted}
    found: dict[tuple[str, str], int] = {}
    pos, end = hdr_len + type_off, hdr_len + type_off + type_len
    while pos < end:
        name_off, info, _size = struct.unpack_from("<III", data, pos)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        pos += 12
        if kind == KIND_STRUCT and name_off and name(name_off) in structs:
            sname = name(name_off)
            for i in range(vlen):
                m_name, _m_type, m_off = struct.unpack_from("<III", data, pos + 12 * i)
                key = (sname, name(m_name) if m_name else "")
                if key in wanted and key not in found:
                    found[key] = (m_off & 0xFFFFFF if kflag else m_off) // 8
        pos += FIXED.get(kind, 0) + PER_MEMBER.get(kind, 0) * vlen
    missing = wanted - found.keys()
    if missing:
        raise BTFError(f"{path}: no member {', '.join(f'{s}.{m}' for s, m in sorted(missing))}")
    return found
