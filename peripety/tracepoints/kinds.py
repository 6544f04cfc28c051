"""The tracepoint kinds, one row each: ``kinds.toml`` read into ``KINDS``.

Per kind: its number (the contract with bpf/scsi_trace.c), the C struct of
its samples (``Layout``, built into a ctypes structure from the row), the
names of its decoder (``decode.py``) and of its map-key describer
(``aggregates.py``), the event type and sub-system a hit becomes, the merge
key, and the probes that produce it. Every other module reads this table:
the attach plan (``plan.py``), the loader's -D flags, decoding, the maps, the
pipeline, the merge and the map ledger (doc/design.md, "Adding a probe").
"""

from __future__ import annotations

import ctypes as ct
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources

_SCALARS = {
    "u8": ct.c_uint8, "u16": ct.c_uint16, "u32": ct.c_uint32, "u64": ct.c_uint64,
    "s32": ct.c_int32, "s64": ct.c_int64,
}
_ARRAY = re.compile(r"^(u8|u16|u32|u64|s32|s64|char)\[(\d+)\]$")


@dataclass(frozen=True)
class Layout:
    """A C struct bpf/scsi_trace.c shares with Python, field for field."""

    name: str
    c_name: str
    """``struct <c_name>`` in the C program."""
    fields: tuple[tuple[str, str], ...]
    """(field, type) in C order; types as in kinds.toml."""
    struct: type[ct.Structure]
    """The ctypes mirror (same alignment rules as the C compiler's)."""
    sample: str = ""
    """decode.py's sample-to-tracepoint-fields function, if any."""

    @property
    def size_define(self) -> str:
        """The -D macro the loader passes the size in (checked by the C)."""
        return f"PRPT_SIZEOF_{self.name.upper()}"


@dataclass(frozen=True)
class ProbeSpec:
    """One tracepoint a kind can be attached to."""

    tracepoint: str
    define: str
    kind: str
    fields: tuple[str, ...]
    why: str
    optional_define: str = ""
    optional_fields: tuple[str, ...] = ()
    module: str = ""
    """The kernel module that defines the tracepoint, when one does."""
    perf_filter: str | None = None
    """The probe's condition of a failure as a tracefs filter (``""``: every
    hit is one) for the kernel's own count (perfcount.py); None: no count."""
    no_perf_count: str = ""
    """Why a probe has no ``perf_filter``."""

    @property
    def slot(self) -> str:
        """Probes of one kind are alternatives: the first the kernel has wins."""
        return self.kind

    @property
    def category(self) -> str:
        return self.tracepoint.split(":", 1)[0]

    @property
    def event(self) -> str:
        return self.tracepoint.split(":", 1)[1]


@dataclass(frozen=True)
class Kind:
    """Everything Python knows about one sample kind."""

    name: str
    number: int
    layout: Layout
    decoder: str
    describe: str
    tracepoint: str
    sub_system: str
    event_type: str | None = None
    """None: decoded, but no event of its own (context for other hits)."""
    pair_keys: tuple[str, ...] = ()
    """Extension keys a kernel line and a hit share for one failure."""
    rename: dict[str, str] = field(default_factory=dict)
    """Sample field -> the tracepoint's own field name."""
    line_unit: str = ""
    """A kernel line of ``event_type`` and ``sub_system`` is a failure this
    probe also counts, under the unit this field of the line's event names
    (``dev_num``, ``kdev`` or an extension key); "": lines are not counted."""
    probes: tuple[ProbeSpec, ...] = ()

    @property
    def define(self) -> str:
        return f"PRPT_KIND_{self.name.upper()}"


class KindTableError(ValueError):
    """kinds.toml contradicts itself (a packaging or editing mistake)."""


def _build_layouts(table: dict) -> dict[str, Layout]:
    layouts: dict[str, Layout] = {}

    def ctype(layout: str, type_name: str):
        if type_name in _SCALARS:
            return _SCALARS[type_name]
        m = _ARRAY.match(type_name)
        if m:
            return (ct.c_char if m.group(1) == "char" else _SCALARS[m.group(1)]) * int(m.group(2))
        if type_name in layouts:
            return layouts[type_name].struct
        raise KindTableError(f"layout {layout}: unknown type {type_name!r} (a layout must be defined before use)")

    for name, spec in table.items():
        fields = tuple((f, t) for f, t in spec["fields"])
        struct = type(f"Layout_{name}", (ct.Structure,), {"_fields_": [(f, ctype(name, t)) for f, t in fields]})
        layouts[name] = Layout(name=name, c_name=spec["c"], fields=fields, struct=struct,
                               sample=spec.get("sample", ""))
    return layouts


def _build_kinds(rows: list[dict], layouts: dict[str, Layout]) -> dict[str, Kind]:
    kinds: dict[str, Kind] = {}
    numbers: dict[int, str] = {}
    for row in rows:
        name = row["name"]
        if name in kinds:
            raise KindTableError(f"kind {name} has two rows")
        if row["number"] in numbers:
            raise KindTableError(f"kinds {numbers[row['number']]} and {name} share number {row['number']}")
        if row["layout"] not in layouts:
            raise KindTableError(f"kind {name}: no layout {row['layout']!r}")
        numbers[row["number"]] = name
        probes = tuple(
            ProbeSpec(tracepoint=p["tracepoint"], define=p["define"], kind=name, fields=tuple(p["fields"]),
                      why=p["why"], optional_define=p.get("optional_define", ""),
                      optional_fields=tuple(p.get("optional_fields", ())), module=p.get("module", ""),
                      perf_filter=p.get("perf_filter"), no_perf_count=p.get("no_perf_count", ""))
            for p in row.get("probe", ()))
        for p in probes:
            if (p.perf_filter is None) == (not p.no_perf_count):
                raise KindTableError(f"kind {name}, probe {p.tracepoint}: give either perf_filter (the probe's "
                                     "failure condition as a tracefs filter) or no_perf_count (why none)")
        kinds[name] = Kind(
            name=name, number=row["number"], layout=layouts[row["layout"]], decoder=row["decoder"],
            describe=row["describe"], tracepoint=row["tracepoint"], sub_system=row["sub_system"],
            event_type=row.get("event_type"), pair_keys=tuple(row.get("pair_keys", ())),
            rename=dict(row.get("rename", {})), line_unit=row.get("line_unit", ""), probes=probes)
    return kinds


def _load() -> tuple[dict[str, Layout], dict[str, Kind]]:
    table = tomllib.loads(resources.files(__package__).joinpath("kinds.toml").read_text())
    layouts = _build_layouts(table["layout"])
    return layouts, _build_kinds(table["kind"], layouts)


LAYOUTS, KINDS = _load()
"""Layout name -> Layout; kind name -> Kind (in table order)."""

BY_NUMBER: dict[int, Kind] = {k.number: k for k in KINDS.values()}

HEAD = LAYOUTS["head"].struct
"""The common head of every sample: kind, dev, ktime_ns."""

def _by_event(attr: str, key) -> dict:
    """One value per event type (or key) from the rows that set ``attr``;
    two rows giving one event type different values is a table error."""
    out: dict = {}
    for k in KINDS.values():
        value = getattr(k, attr)
        if not (k.event_type and value):
            continue
        if out.setdefault(key(k), value) != value:
            raise KindTableError(f"kind {k.name}: {attr} {value!r} differs from another kind's for {key(k)}")
    return out


PAIR_KEYS: dict[str, tuple[str, ...]] = _by_event("pair_keys", lambda k: k.event_type)
"""Event type -> merge key, for events of either source (line or hit)."""

LINE_UNITS: dict[tuple[str, str], str] = _by_event("line_unit", lambda k: (k.event_type, k.sub_system))
"""(event type, sub-system) of kernel lines the probes count one for one ->
the field naming their unit (mapcounts.MapLedger)."""

KIND_COUNT = max(BY_NUMBER) + 1
"""Size of the C program's per-kind arrays (numbers index them)."""

KIND_STRIDE = -(-KIND_COUNT // 8) * 8
"""A row of per-kind u64 counters in the mmapped ``cpu_counters``: the kinds
rounded up to 64 bytes, so two CPUs' rows never share a cache line."""

CPU_COUNTERS = ("lost", "sampled_out", "agg_full")
"""The per-CPU rows of ``cpu_counters``, in order (``-DPRPT_COUNTER_<NAME>``):
samples the ring buffer had no room for, samples left out by the budget,
and failures counted without a unit (every slot of the epoch taken)."""


def probe_specs() -> tuple[ProbeSpec, ...]:
    """Every probe, in the table's order of preference."""
    return tuple(p for k in KINDS.values() for p in k.probes)
