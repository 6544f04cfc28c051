"""benchmarks/_btf.py: struct member offsets from a BTF blob built here by the
format's rules (Documentation/bpf/btf.rst), not by the code under test."""

from __future__ import annotations

import struct

import pytest

from benchmarks._btf import BTF, BTFError, member_offsets

STRINGS = ["", "int", "request", "__sector", "part", "block_device", "bd_dev", "other", "A", "B"]


def _str_offsets() -> tuple[bytes, dict[str, int]]:
    blob, offsets = b"", {}
    for s in STRINGS:
        offsets[s] = len(blob)
        blob += s.encode() + b"\0"
    return blob, offsets


def _type(name_off: int, kind: int, vlen: int, size_or_type: int, kflag: int = 0) -> bytes:
    return struct.pack("<III", name_off, kflag << 31 | kind << 24 | vlen, size_or_type)


def build_btf() -> bytes:
    strings, at = _str_offsets()
    types = b"".join([
        _type(at["int"], 1, 0, 4) + struct.pack("<I", 32),  # [1] INT, 4 extra bytes
        _type(0, 2, 0, 1),  # [2] PTR -> int
        _type(0, 6, 2, 4) + struct.pack("<Ii", at["A"], 0) + struct.pack("<Ii", at["B"], 1),  # [3] ENUM, 8 per value
        _type(at["other"], 4, 1, 16) + struct.pack("<III", at["__sector"], 1, 64),  # [4] another struct, same member name
        _type(0, 13, 1, 1) + struct.pack("<II", 0, 1),  # [5] FUNC_PROTO, 8 per parameter
        _type(at["request"], 4, 2, 248)  # [6] STRUCT request: offsets in bits
        + struct.pack("<III", at["__sector"], 1, 384) + struct.pack("<III", at["part"], 2, 704),
        _type(0, 3, 0, 0) + struct.pack("<III", 1, 1, 4),  # [7] ARRAY, 12 extra bytes
        # [8] STRUCT block_device with kflag: offset = bitfield size << 24 | bit offset
        _type(at["block_device"], 4, 2, 64, kflag=1)
        + struct.pack("<III", at["A"], 1, 3 << 24 | 40) + struct.pack("<III", at["bd_dev"], 1, 0 << 24 | 416),
    ])
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_offsets_in_bytes_from_the_named_struct(tmp_path):
    path = tmp_path / "vmlinux"
    path.write_bytes(build_btf())
    wanted = {("request", "__sector"), ("request", "part"), ("block_device", "bd_dev"), ("block_device", "A")}
    assert member_offsets(wanted, path) == {("request", "__sector"): 48, ("request", "part"): 88,
                                            ("block_device", "bd_dev"): 52, ("block_device", "A"): 5}


def test_every_kind_is_stepped_over_by_its_size():
    assert [(t.kind, t.name) for t in BTF(build_btf()).types()] == [
        (1, "int"), (2, ""), (6, ""), (4, "other"), (13, ""), (4, "request"), (3, ""), (4, "block_device")]


def test_missing_member_is_named(tmp_path):
    path = tmp_path / "vmlinux"
    path.write_bytes(build_btf())
    with pytest.raises(BTFError, match=r"request\.tag"):
        member_offsets({("request", "__sector"), ("request", "tag")}, path)


def test_not_btf(tmp_path):
    path = tmp_path / "vmlinux"
    path.write_bytes(b"\x7fELF" + bytes(40))
    with pytest.raises(BTFError, match="not BTF"):
        member_offsets({("request", "__sector")}, path)
