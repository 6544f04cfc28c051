"""KmsgReader on the real /dev/kmsg (root)."""

from __future__ import annotations

import os
import select
import time
import uuid

import pytest

from peripety.sources.kmsg import KmsgReader, boot_id, kernel_usec_to_wallclock

pytestmark = pytest.mark.root


def write_kmsg(text: str) -> None:
    # The trailing newline matters: without it the kernel keeps the record
    # open for a continuation and readers do not see it yet.
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        os.write(fd, text.encode() + b"\n")
    finally:
        os.close(fd)


def wait_for(reader: KmsgReader, marker: str, deadline: float = 10.0):
    """Records read until one contains ``marker`` (waits on the fd, no sleeping)."""
    seen = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        select.select([reader], [], [], max(0.0, end - time.monotonic()))
        seen += reader.read()
        if any(marker in r.text for r in seen):
            return seen
    raise AssertionError(f"{marker!r} never appeared in /dev/kmsg")


def test_user_write_reads_back_untrusted_with_user_facility():
    marker = f"peripety-test {uuid.uuid4()}"
    with KmsgReader() as reader:
        reader.seek_end()
        before = time.time()
        write_kmsg(f"<3>I/O error, dev loop9, sector 1 {marker}")
        records = wait_for(reader, marker)
    record = next(r for r in records if marker in r.text)
    assert record.facility == 1  # the kernel forces user writes to LOG_USER
    assert record.level == 3
    assert record.trusted_kernel is False
    assert record.source == "kmsg" and record.seq is not None
    # kmsg time converts to the wall clock of the write (to well under a second)
    wall = kernel_usec_to_wallclock(record.kernel_usec).timestamp()
    assert abs(wall - before) < 1.0


def test_seek_after_resumes_after_a_sequence_number():
    first, second = f"peripety-first {uuid.uuid4()}", f"peripety-second {uuid.uuid4()}"
    with KmsgReader() as reader:
        reader.seek_end()
        write_kmsg(first)
        write_kmsg(second)
        records = wait_for(reader, second)
    first_seq = next(r.seq for r in records if r.text == first)
    with KmsgReader() as resumed:
        resumed.seek_after(first_seq)
        batch = resumed.read()
        # Other kernel messages may land between the two writes; none before.
        assert batch[0].seq == first_seq + 1
        assert all(r.text != first for r in batch)
        assert any(r.text == second for r in batch)
        assert resumed.take_missed() == 0


def overwrite_ring_past(seq: int) -> int:
    """Write user records to /dev/kmsg until the kernel has overwritten
    record ``seq``; return the oldest sequence number then kept.

    A new file per 10 writes stays inside the per-open-file ratelimit of
    /dev/kmsg writes, so the shared ``printk_devkmsg`` knob is left alone.
    """
    line = "peripety ring filler " + "x" * 800
    for _ in range(64 * 1024):
        oldest = oldest_kept_seq()
        if oldest > seq:
            return oldest
        for _ in range(20):
            for _ in range(10):
                write_kmsg(line)
    raise AssertionError(f"the kernel still keeps record {seq} after 64 MiB written")


def oldest_kept_seq() -> int:
    with KmsgReader() as reader:
        reader.seek_start()
        return reader.read(limit=1)[0].seq


def test_records_overwritten_before_they_were_read_count_as_missed():
    """The ring really wraps under an open reader: the next read jumps to
    the oldest kept record (EPIPE once) and the gap is counted exactly."""
    marker = f"peripety-gap {uuid.uuid4()}"
    with KmsgReader() as reader:
        reader.seek_end()
        write_kmsg(marker)
        last = next(r.seq for r in wait_for(reader, marker) if r.text == marker)
        oldest = overwrite_ring_past(last + 1)
        records = reader.read()
        assert records[0].seq >= oldest > last + 1
        assert reader.take_missed() == records[0].seq - (last + 1) > 0
        assert reader.take_missed() == 0
        assert reader.stats.missed == records[0].seq - (last + 1)


def test_resuming_before_the_oldest_kept_record_counts_the_gap_as_missed():
    with KmsgReader() as probe:
        probe.seek_end()
        newest = probe.last_seq
    oldest = overwrite_ring_past(max(newest or 0, 0))  # > 0: the ring has wrapped
    with KmsgReader() as reader:
        reader.seek_after(-1)  # "we had read nothing": every overwritten record is missed
        first = reader.read(limit=1)[0].seq
        assert first >= oldest > 0
        assert reader.take_missed() == first
        assert reader.take_missed() == 0
        assert reader.stats.missed == first


def test_boot_id_is_this_boots_uuid():
    assert str(uuid.UUID(boot_id())) == boot_id()
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert boot_id() == f.read().strip()
