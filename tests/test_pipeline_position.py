"""Exactly once across restarts, storms and ratelimit summaries, on the
pipeline alone (no root): kmsg records in the real format (the block line
recorded on Linux 6.18, tests/fixtures/recorded/linux-6.18-loop-faults.kmsg),
a store that is a list, a clock the test moves."""

from __future__ import annotations

import pytest

from peripety.sources.kmsg.record import parse_record
from peripety.pipeline import Pipeline
from peripety.position import ResumeIndex, kmsg_event_id, storm_event_id
from peripety.rules import RuleSet

BOOT = "2f1a3c5e-0000-4000-8000-000000000001"
LINE = "3,{seq},{usec},-;I/O error, dev loop0, sector {sector} op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2"
SUMMARY = "4,{seq},{usec},-;blk_print_req_error: {count} callbacks suppressed"


@pytest.fixture(scope="module")
def rules():
    return RuleSet.builtin()


class Run:
    """One daemon run: a pipeline whose clock is the records' kernel time
    (as in the daemon, where both are CLOCK_MONOTONIC)."""

    def __init__(self, rules, store: list, resume: ResumeIndex | None = None, after_seq: int = -1):
        self.now = 0.0
        self.store = store
        self.pipeline = Pipeline(rules, None, store.append, boot_id=BOOT, hostname="h", hold=0.0,
                                 clock=lambda: self.now)
        self.pipeline.resume(after_seq, resume)

    def feed(self, raw: str) -> None:
        record = parse_record(raw)
        self.now = max(self.now, record.kernel_usec / 1e6)
        self.pipeline.add_record(record)
        self.pipeline.tick()

    def position(self) -> int:
        return self.pipeline.read_position()


def storm_records(first_seq: int, count: int, start_usec: int, sector: int = 2048, step_usec: int = 5000):
    return [(first_seq + i, LINE.format(seq=first_seq + i, usec=start_usec + i * step_usec, sector=sector + i))
            for i in range(count)]


def counted(store) -> int:
    return sum(e.count for e in store if e.event_type == "BLK_IO_ERROR")


def test_kill_9_after_an_aggregate_was_stored_but_before_the_position_was_saved(rules):
    """The hard case: slice 1 of a storm is in the store, slice 2 is only in
    memory, the last saved position is from before the storm. The new run
    re-reads everything: slice 1's records are recognised inside the stored
    aggregate, slice 2's are counted anew; nothing twice, nothing lost."""
    store: list = []
    records = storm_records(1000, 400, start_usec=50_000_000)  # 2 s of storm, 200/s
    run1 = Run(rules, store)
    saved = run1.position()
    for seq, raw in records[:300]:
        run1.feed(raw)
        if seq == 1005:
            saved = run1.position()  # the last position save before the kill
    aggregates = [e for e in store if e.count > 1]
    assert aggregates, "the first slice must be stored before the kill for this test to mean anything"
    assert counted(store) < 300  # a slice was still in memory
    # kill -9: run1's memory is gone. Restart from the saved position.
    run2 = Run(rules, store, ResumeIndex(BOOT, list(store)), after_seq=saved)
    for seq, raw in records:
        if seq > saved:
            run2.feed(raw)
    run2.now += 10
    run2.pipeline.drain()
    assert counted(store) == 400
    assert len({e.event_id for e in store}) == len(store)
    assert run2.pipeline.stats["skipped_duplicates"] > 0


def test_sigterm_between_runs_then_more_failures_counts_exactly(rules):
    """40 + 5 + 5 failures over three runs with stops in between."""
    store: list = []
    saved = -1
    seq, usec = 2000, 10_000_000
    for batch in (40, 5, 5):
        run = Run(rules, store, ResumeIndex(BOOT, list(store)), after_seq=saved)
        for s, raw in storm_records(seq, batch, usec):
            run.feed(raw)
        run.now += 10
        run.pipeline.drain()
        saved = run.position()
        assert saved == seq + batch - 1  # everything handled: the position is the last record
        seq, usec = seq + batch, usec + 30_000_000
    assert counted(store) == 50


def test_idle_run_keeps_the_position_it_was_given(rules):
    run = Run(rules, [], after_seq=777)
    run.pipeline.drain()
    assert run.position() == 777


def test_a_held_record_keeps_the_position_before_it(rules):
    """A storm slice in memory holds the resume position before its first
    record; once it is stored the position moves past it."""
    store: list = []
    run = Run(rules, store)
    for seq, raw in storm_records(3000, 15, 5_000_000):
        run.feed(raw)
    assert run.position() == 3009  # records 3010.. are in an open slice
    run.now += 5
    run.pipeline.tick()
    assert run.position() == 3014
    assert counted(store) == 15


def test_aggregate_of_another_boot_does_not_hide_records(rules):
    agg_seq = 5000
    store: list = []
    run = Run(rules, store)
    for seq, raw in storm_records(agg_seq, 30, 1_000_000):
        run.feed(raw)
    run.now += 10
    run.pipeline.drain()
    [agg] = [e for e in store if e.count > 1]
    assert agg.event_id == storm_event_id(BOOT, agg_seq + 10)
    assert agg.event_id != kmsg_event_id(BOOT, agg_seq + 10)
    assert ResumeIndex(BOOT, [agg]).covers(_event_for(rules, agg_seq + 20))
    assert not ResumeIndex("another-boot", [agg]).covers(_event_for(rules, agg_seq + 20))


def _event_for(rules, seq):
    store: list = []
    run = Run(rules, store)
    run.pipeline.storm.burst = 1_000
    run.feed(LINE.format(seq=seq, usec=1_000_000 + seq, sector=1))
    run.pipeline.drain()
    [event] = store
    event.origin_seq = seq
    return event


def test_ratelimit_summary_is_an_event_named_by_the_next_line(rules):
    store: list = []
    run = Run(rules, store)
    run.feed(SUMMARY.format(seq=1256, usec=591963924, count=41))
    assert not store  # waiting for the line that names the device
    assert run.position() == 1255
    run.feed(LINE.format(seq=1257, usec=591963931, sector=6000))
    summary, line = store
    assert summary.event_type == "PERIPETY_KMSG_SUPPRESSED"
    assert summary.extension["function"] == "blk_print_req_error"
    assert summary.extension["count"] == "41"
    assert summary.kdev == "loop0" and summary.sub_system == "block"
    assert summary.event_id == kmsg_event_id(BOOT, 1256)
    assert line.event_type == "BLK_IO_ERROR"
    assert run.position() == 1257


def test_ratelimit_summary_without_a_following_line_is_emitted_after_a_bound(rules):
    store: list = []
    run = Run(rules, store)
    run.feed(SUMMARY.format(seq=10, usec=5_000_000, count=3))
    run.now += 0.5
    run.pipeline.tick()
    assert not store
    run.now += 1.0
    run.pipeline.tick()
    [summary] = store
    assert summary.kdev == "" and summary.extension["count"] == "3"


def test_non_storage_ratelimit_summaries_are_not_events(rules):
    for line in ("net_ratelimit: 23807 callbacks suppressed", "show_signal_msg: 4 callbacks suppressed",
                 "warn_alloc: 3 callbacks suppressed", "__ratelimit: 7 callbacks suppressed"):
        assert rules.match(line) is None, line


def test_aggregate_that_starts_with_a_hit_is_still_recognised_after_a_restart(rules):
    """A storm slice may open with a BPF hit (no kmsg seq) and fold kernel
    lines later: its id comes from the lowest seq folded in, so a resume
    trusts its seq range."""
    from tests.test_merge import blk_error

    store: list = []
    pipeline = Pipeline(rules, None, store.append, boot_id=BOOT, hostname="h", hold=0.0, clock=lambda: 0.0)
    pipeline.storm.burst = 0
    hit = blk_error(1, source="bpf", usec=1_000_000)
    lines = [blk_error(2 + i, usec=1_000_100 + i) for i in range(3)]
    for i, line in enumerate(lines):
        line.origin_seq = 700 + i
    for event in [hit, *lines]:
        pipeline._finish([event])
    pipeline.drain()
    [agg] = store
    assert agg.count == 4 and agg.extension["kmsg_seq_range"] == "700-702"
    assert agg.event_id == storm_event_id(BOOT, 700)
    again = blk_error(3, usec=1_000_101)
    again.origin_seq = 701
    assert ResumeIndex(BOOT, store).covers(again)


def test_root_cause_points_at_the_stored_id_of_an_aggregate(rules):
    """A device error remembered as a root cause that becomes a storm
    aggregate's first member: collateral events point at the aggregate's id."""
    from peripety.event import StorageEvent
    from tests.test_merge import blk_error

    store: list = []
    pipeline = Pipeline(rules, None, store.append, boot_id=BOOT, hostname="h", hold=0.0, clock=lambda: 0.0)
    pipeline.storm.burst = 0
    first = blk_error(1, usec=1_000_000)
    first.origin_seq = 900
    pipeline._finish([first, blk_error(2, usec=1_000_001)])
    pipeline.drain()
    fs = StorageEvent(event_type="FS_IO_ERROR", sub_system="ext4", kdev="loop0", dev_num="7:0")
    fs.kernel_usec = 1_500_000
    pipeline._finish([fs])
    pipeline.drain()
    [agg, fs_stored] = store
    assert fs_stored.root_cause_event_id == agg.event_id == storm_event_id(BOOT, 900)


def test_slice_opened_by_a_hit_holds_the_position_before_the_lines_it_folds(rules):
    """Lines folded into an aggregate that a BPF hit opened (no kmsg seq)
    keep the saved position before them until the aggregate is stored."""
    from tests.test_merge import blk_error

    store: list = []
    pipeline = Pipeline(rules, None, store.append, boot_id=BOOT, hostname="h", hold=0.0, clock=lambda: 0.0)
    pipeline.storm.burst = 0
    pipeline.resume(805)
    hit = blk_error(1, source="bpf", usec=1_000_000)
    lines = [blk_error(2 + i, usec=1_000_100 + i) for i in range(3)]
    for i, line in enumerate(lines):
        line.origin_seq = 803 - i  # and out of order
        pipeline.in_flight.hold(line.origin_seq)
    for event in [hit, *lines]:
        pipeline._finish([event])
    assert not store
    assert pipeline.read_position() == 800
    pipeline.drain()
    assert pipeline.read_position() == 805
    [agg] = store
    assert agg.extension["kmsg_seq_range"] == "801-803"
