"""perfcount.Shortfall: the kernel's count against the maps', epoch by epoch
(synthetic readings; the live comparison is tests/test_daemon_bpf_kernel_count.py)."""

from __future__ import annotations

import pytest

from peripety.tracepoints.kinds import KindTableError, _build_kinds, _load
from peripety.tracepoints.perfcount import Shortfall

B = "block_rq_error"


def test_nothing_is_compared_until_the_maps_caught_up_with_a_reading():
    s = Shortfall()
    # collect 1 drains nothing; the reading covers epoch 0 (live), which
    # the maps deliver only at collect 2.
    assert s.update({}, {B: 100}) == {}
    assert s.update({B: 100}, {B: 250}) == {}
    assert s.update({B: 150}, {B: 250}) == {}
    assert s.total() == 0


def test_a_lag_of_one_epoch_is_not_a_shortfall():
    """The reading at collect k includes hits of the live epoch that the
    maps deliver only at k+1: comparing at k would invent a shortfall."""
    s = Shortfall()
    s.update({}, {B: 10})
    # the maps delivered epoch 0 (10); the kernel is at 30 already, 20 of
    # them in the live epoch
    assert s.update({B: 10}, {B: 30}) == {}
    assert s.update({B: 20}, {B: 30}) == {}


def test_failures_no_probe_saw_are_reported_once_across_epochs():
    s = Shortfall()
    s.update({}, {B: 10})
    assert s.update({B: 8}, {B: 40}) == {B: 2}  # epoch 0: 10 hits, 8 in the maps
    assert s.update({B: 29}, {B: 41}) == {B: 1}  # epoch 1: 30 more, 29 counted
    assert s.update({B: 1}, {B: 41}) == {}  # epoch 2: 1 more, counted
    assert s.update({}, {B: 41}) == {}  # quiet: nothing new
    assert s.reported == {B: 3} and s.total() == 3
    assert s.maps == {B: 38}


def test_a_reading_behind_the_maps_reports_nothing_and_is_caught_up_later():
    """A probe that counted in the live epoch just before the flip but had
    not reached perf yet when the reading was taken makes the kernel's
    count look short; that is never reported as negative, and the next
    comparison, complete again, reports the true figure."""
    s = Shortfall()
    s.update({}, {B: 10})
    assert s.update({B: 11}, {B: 20}) == {}  # 11 counted, 10 read: one in flight
    assert s.update({B: 8}, {B: 20}) == {B: 1}  # 19 counted of 20: one reached no probe
    assert s.total() == 1


def test_kinds_are_compared_separately():
    s = Shortfall()
    s.update({}, {B: 5, "ext4_error": 2})
    assert s.update({B: 5, "ext4_error": 1}, {B: 5, "ext4_error": 2}) == {"ext4_error": 1}
    # map counts of a kind without a kernel count are kept, never compared
    assert s.update({"xfs_buf_ioerror": 3}, {B: 5, "ext4_error": 2}) == {}
    assert s.reported == {"ext4_error": 1}


def test_without_a_reading_nothing_is_pending():
    s = Shortfall()
    s.update({}, {B: 5})
    assert s.update({B: 4}, None) == {B: 1}
    assert s.update({B: 100}, {B: 0}) == {}
    assert s.pending == {B: 0}


def test_every_failure_probe_has_a_kernel_count_or_says_why_not():
    _, kinds = _load()
    for kind in kinds.values():
        for probe in kind.probes:
            if kind.event_type:
                assert probe.perf_filter is not None, f"{probe.tracepoint}: a failure kind without a kernel count"
            else:
                assert probe.no_perf_count


def test_the_table_refuses_a_probe_that_says_nothing_about_its_kernel_count():
    layouts, kinds = _load()
    row = {"name": "x", "number": 99, "layout": "block", "decoder": "block", "describe": "block",
           "tracepoint": "block:x", "sub_system": "block",
           "probe": [{"tracepoint": "block:x", "define": "X", "fields": ["dev"], "why": "test"}]}
    with pytest.raises(KindTableError, match="perf_filter"):
        _build_kinds([row], layouts)
    row["probe"][0]["perf_filter"] = "error != 0"
    assert _build_kinds([row], layouts)["x"].probes[0].perf_filter == "error != 0"


def test_missed_failures_become_lost_notices_naming_the_kind_and_cause():
    from peripety.sources.bpf import BpfSource
    from peripety.tracepoints.aggregates import Aggregates

    source = BpfSource(tracepoints=None)
    notices = source.missed_notices(Aggregates(missed=2, unprobed={"block_rq_error": 15, "ext4_error": 0}))
    assert [(n.event_type, n.extension) for n in notices] == [
        ("PERIPETY_BPF_LOST", {"missed": "2", "cause": "recursion"}),
        ("PERIPETY_BPF_LOST", {"missed": "15", "cause": "no_probe_run", "kind": "block_rq_error"}),
    ]
    assert notices[1].msg.startswith("15 more block_rq_error failures happened that no probe saw (device unknown)")
    assert source.missed_notices(Aggregates()) == []
