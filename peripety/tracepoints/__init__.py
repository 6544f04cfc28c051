"""``--bpf``: storage error tracepoints through bcc (bpf/scsi_trace.c).

    plan = plan_attach("auto")          # what can attach here, and why not
    print(describe_plan(plan))          # for peripetyd --check
    with TracepointSource.open("on", plan) as source:
        selector.register(source, EVENT_READ)
        ... source.read() -> [TracepointHit, ...]  (detail: the first few per unit)
        ... source.collect() -> Aggregates | None   (each tick: exact counts)
"""

from .aggregates import Aggregate, Aggregates, MapReader
from .decode import FsDetail, NvmeDetail, ScsiDetail, TracepointHit, decode_sample, hit_from_fields
from .loader import program_text
from .plan import AttachPlan, PlannedProbe, Problem, SkippedProbe, describe_plan, plan_attach
from .source import TracepointSource

__all__ = [
    "Aggregate",
    "Aggregates",
    "MapReader",
    "AttachPlan",
    "FsDetail",
    "NvmeDetail",
    "PlannedProbe",
    "Problem",
    "ScsiDetail",
    "SkippedProbe",
    "TracepointHit",
    "TracepointSource",
    "decode_sample",
    "describe_plan",
    "hit_from_fields",
    "plan_attach",
    "program_text",
]
