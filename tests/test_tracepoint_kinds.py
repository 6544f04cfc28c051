"""The one table of tracepoint kinds (peripety/tracepoints/kinds.toml)
against the C program it describes, and a round trip per row: sample bytes
built the way the C compiler lays the struct out (with ``struct``, not the
ctypes mirror under test) decode to the fields that were packed."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from peripety.event_types import EVENT_TYPES
from peripety.pipeline import hit_to_event
from peripety.tracepoints import decode, kinds
from peripety.tracepoints.aggregates import DESCRIBERS
from peripety.tracepoints.loader import defines
from peripety.tracepoints.plan import AttachPlan

C_SOURCE = (Path(__file__).resolve().parents[1] / "bpf" / "scsi_trace.c").read_text()
C_CODE = re.sub(r"/\*.*?\*/|^#error [^\n]*", "", C_SOURCE, flags=re.S | re.M)
"""The program without its comments and #error text (which name ``PRPT_KIND_*``)."""


# -- the table against the C ----------------------------------------------------


def test_every_kind_the_c_names_has_exactly_one_row():
    in_c = set(re.findall(r"\bPRPT_KIND_([A-Z0-9_]+)\b", C_CODE)) - {"COUNT"}
    rows = [k.name.upper() for k in kinds.KINDS.values()]
    assert len(rows) == len(set(rows))
    assert sorted(in_c) == sorted(rows), "a kind in bpf/scsi_trace.c without its row, or a row no probe fills"
    numbers = [k.number for k in kinds.KINDS.values()]
    assert len(numbers) == len(set(numbers)) and min(numbers) >= 1
    assert kinds.KIND_COUNT == max(numbers) + 1


def test_every_probe_the_c_compiles_has_its_row_and_every_row_its_probe():
    """The C compiles a probe in under `#ifdef PRPT_X` / `defined(PRPT_X)`;
    each such macro is a probe (or its optional define) of exactly one row."""
    in_c = set(re.findall(r"(?:#ifdef\s+|#elif\s+defined\(|defined\()(PRPT_[A-Z0-9_]+)", C_CODE))
    in_table = [d for p in kinds.probe_specs() for d in (p.define, p.optional_define) if d]
    assert len(in_table) == len(set(in_table))
    assert in_c == set(in_table)
    for probe in kinds.probe_specs():
        assert re.search(rf"TRACEPOINT_PROBE\({probe.category}, {probe.event}\)", C_SOURCE), probe.tracepoint


def _c_structs() -> dict[str, list[tuple[str, str]]]:
    """`struct NAME { ... };` of the C program -> [(field, type)] in the
    table's spelling (u32, char[16], u8[16], or a layout's name)."""
    c_to_layout = {layout.c_name: layout.name for layout in kinds.LAYOUTS.values()}
    out = {}
    for name, body in re.findall(r"^struct (\w+) \{\n(.*?)^\};", C_SOURCE, re.M | re.S):
        fields = []
        for line in body.splitlines():
            line = re.sub(r"/\*.*?\*/", "", line).strip()
            if not line:
                continue
            m = re.fullmatch(r"(struct \w+|\w+) (\w+)(?:\[(\w+)\])?;", line)
            assert m, f"struct {name}: cannot read {line!r}"
            ctype, field, n = m.groups()
            if ctype.startswith("struct "):
                ctype = c_to_layout.get(ctype.split()[1], ctype)
            fields.append((field, f"{ctype}[{n}]" if n else ctype))
        out[name] = fields
    return out


def test_every_layout_matches_its_c_struct_field_for_field():
    structs = _c_structs()
    for layout in kinds.LAYOUTS.values():
        assert layout.c_name in structs, f"struct {layout.c_name} is not in bpf/scsi_trace.c"
        assert list(layout.fields) == structs[layout.c_name], layout.name
    # and every struct the C checks against a size define is a layout
    asserted = set(re.findall(r"sizeof\(struct (\w+)\) == PRPT_SIZEOF_(\w+)", C_SOURCE))
    assert asserted == {(layout.c_name, layout.name.upper()) for layout in kinds.LAYOUTS.values()}


def test_the_compiler_gets_every_number_and_size_from_the_table():
    table = defines(AttachPlan(mode="on"))
    for kind in kinds.KINDS.values():
        assert table[kind.define] == str(kind.number)
    for layout in kinds.LAYOUTS.values():
        assert int(table[layout.size_define]) == _c_size(layout)
    # every other macro the C reads is one the loader passes (or its own)
    used = set(re.findall(r"\bPRPT_[A-Z0-9_]+\b", C_CODE))
    own = set(re.findall(r"#define (PRPT_[A-Z0-9_]+)", C_CODE))
    probes = {d for p in kinds.probe_specs() for d in (p.define, p.optional_define) if d}
    assert used - own - probes == set(table) - probes


def test_every_row_names_functions_and_types_that_exist():
    for kind in kinds.KINDS.values():
        assert kind.decoder in decode.DECODERS, kind.name
        assert kind.describe in DESCRIBERS, kind.name
        assert kind.probes, f"{kind.name} has no probe"
        assert kind.tracepoint in {p.tracepoint for p in kind.probes}
        if kind.event_type is not None:
            assert kind.event_type in EVENT_TYPES, kind.event_type
    # nothing registered that no row uses (dead code)
    assert set(decode.DECODERS) == {k.decoder for k in kinds.KINDS.values()}
    assert set(DESCRIBERS) == {k.describe for k in kinds.KINDS.values()}


def test_table_mistakes_are_refused():
    layouts = kinds.LAYOUTS
    row = {"name": "a", "number": 1, "layout": "block", "decoder": "block", "describe": "block",
           "tracepoint": "block:block_rq_error", "sub_system": "block"}
    with pytest.raises(kinds.KindTableError, match="two rows"):
        kinds._build_kinds([row, dict(row, number=2)], layouts)
    with pytest.raises(kinds.KindTableError, match="share number 1"):
        kinds._build_kinds([row, dict(row, name="b")], layouts)
    with pytest.raises(kinds.KindTableError, match="no layout 'nope'"):
        kinds._build_kinds([dict(row, layout="nope")], layouts)
    with pytest.raises(kinds.KindTableError, match="unknown type 'u7'"):
        kinds._build_layouts({"x": {"c": "x", "fields": [["a", "u7"]]}})


# -- one round trip per row -------------------------------------------------------

_FORMAT = {"u8": "B", "u16": "H", "u32": "I", "u64": "Q", "s32": "i", "s64": "q"}
_ALIGN = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "s32": 4, "s64": 8}


def _c_align(type_name: str) -> int:
    if type_name in _ALIGN:
        return _ALIGN[type_name]
    if "[" in type_name:
        return _ALIGN.get(type_name.split("[")[0], 1)
    return max(_c_align(t) for _, t in kinds.LAYOUTS[type_name].fields)


def _c_size(layout) -> int:
    """sizeof() by the C rules: members at their alignment, the end padded."""
    return len(_pack(layout, {}))


def _pack(layout, values: dict) -> bytes:
    """The struct's bytes as the C compiler lays them out (x86-64, LE)."""
    out = b""
    for name, type_name in layout.fields:
        out += b"\0" * (-len(out) % _c_align(type_name))
        if type_name in _FORMAT:
            out += struct.pack("<" + _FORMAT[type_name], values.get(name, 0))
        elif "[" in type_name:
            element, n = type_name.split("[")[0], int(type_name.split("[")[1].rstrip("]"))
            if element in _FORMAT and element != "u8":  # u8[N] packs as bytes
                out += struct.pack(f"<{n}{_FORMAT[element]}", *values.get(name, [0] * n))
            else:
                out += struct.pack(f"<{n}s", values.get(name, b""))
        else:
            out += _pack(kinds.LAYOUTS[type_name], values.get(name, {}))
    align = max(_c_align(t) for _, t in layout.fields)
    return out + b"\0" * (-len(out) % align)


READ10 = bytes([0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 8, 0])
# Values per field, as the probes fill them (anything else: a distinct number).
VALUES = {
    "rwbs": b"RM", "error": -61, "cdb": READ10, "cmd_len": len(READ10), "opcode": 0x28, "has_sense": 1,
    "sense_key": 3, "asc": 0x11, "ascq": 0, "result": 0x02, "disk": b"nvme1c1n1", "status": 0x0281,
    "function": b"ext4_find_entry", "from_complete": 0, "flags": 1, "_pad": 0,
}
# What each decoder must make of VALUES (besides the kind, time and fields).
EXPECT = {
    "block": {"kdev": "8:16", "dev_num": "8:16", "sector": 7, "op": "READ", "errno": 61,
              "blk_status": "critical medium"},
    "scsi": {"kdev": "2:0:4:5", "scsi.lba": 0x1234, "scsi.opcode_name": "READ(10)", "scsi.transfer_length": 8},
    "scsi_host": {"kdev": "host2"},
    "nvme": {"kdev": "nvme1c1n1", "nvme.status_name": "Unrecovered Read Error", "nvme.cid": 9},
    "ext4": {"kdev": "8:16", "fs.function": "ext4_find_entry", "fs.line": 1234},
    "xfs": {"kdev": "8:16", "sector": 64, "fs.daddr": 64, "errno": 61},
}


def _values(kind) -> dict:
    values = {}
    for i, (name, type_name) in enumerate(kind.layout.fields):
        if name == "head":
            continue
        values[name] = VALUES.get(name, i + 1)
    values.update({"host_no": 2, "channel": 0, "id": 4, "lun": 5, "sector": 7, "bno": 64, "line": 1234,
                   "cid": 9, "length": 8})
    return {k: v for k, v in values.items() if k in dict(kind.layout.fields)}


def _attr(hit, dotted: str):
    for part in dotted.split("."):
        hit = getattr(hit, part)
    return hit


@pytest.mark.parametrize("kind", kinds.KINDS.values(), ids=list(kinds.KINDS))
def test_round_trip_per_row(kind):
    values = _values(kind)
    head = {"kind": kind.number, "dev": 8 << 20 | 16, "ktime_ns": 5_000_123_456}
    raw = _pack(kind.layout, {**values, "head": head})
    assert len(raw) == len(bytes(kind.layout.struct())), "the ctypes mirror's size differs from the C layout's"

    name, fields = decode.sample_fields(raw)
    assert name == kind.name
    assert (fields["dev"], fields["ktime_ns"]) == (head["dev"], head["ktime_ns"])
    for field, value in values.items():
        tp_name = kind.rename.get(field, field)
        if field == "_pad" or field in ("from_complete", "has_sense"):
            assert field not in fields  # flags of the sample, not tracepoint fields
        elif field == "cdb":
            assert fields["cmnd"] == value[: values["cmd_len"]]
        elif isinstance(value, bytes) and field not in ("cdb",):
            assert fields[tp_name] == value.decode(), field
        else:
            assert fields[tp_name] == value, field

    hit = decode.decode_sample(raw)
    assert (hit.kind, hit.kernel_usec, hit.tracepoint) == (kind.name, 5_000_123, kind.tracepoint)
    for key, expected in EXPECT[kind.decoder].items():
        assert _attr(hit, key) == expected, key

    if kind.event_type is not None:
        event = hit_to_event(hit, kind.event_type, kind.sub_system, hostname="h")
        assert (event.event_type, event.sub_system) == (kind.event_type, kind.sub_system)
        for key in kind.pair_keys:  # what the merge pairs a kernel line by
            assert key in event.extension, (kind.name, key, event.extension)


def test_a_sample_shorter_than_its_layout_is_refused():
    kind = kinds.KINDS["nvme_complete_rq"]
    raw = _pack(kind.layout, {**_values(kind), "head": {"kind": kind.number}})
    with pytest.raises(decode.SampleError, match=f"nvme_complete_rq sample of {len(raw) - 8} bytes"):
        decode.decode_sample(raw[:-8])
