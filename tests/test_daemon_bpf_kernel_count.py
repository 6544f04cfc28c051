"""peripetyd --bpf: the probes' maps plus the failures the kernel's own count
saw beyond them (PERIPETY_BPF_LOST missed, cause no_probe_run) are every
failure.

A fio storm of failing reads on a faulty loop device (request merging off,
so one failed I/O of fio is one failed block request). This test keeps its
own counting perf events on block_rq_error (as ``perf stat`` would): one for
the loop device and one for every device, as the daemon's is. After the
daemon stopped (its shutdown reads both generations of the maps and the
kernel's count a last time):

- the daemon's missed failures equal the kernel's count minus what its maps
  counted, over every device;
- the device's counted failures plus that missed figure equal fio's failures.

Whether any failure reaches no probe depends on the kernel (on the project
VM's sandbox kernel: those completing on top of a thread of PID 1, a few in
10^5): the test asserts the invariant, not that misses occur.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from peripety.tracepoints import plan_attach
from peripety.tracepoints.perfcount import KernelCounts, TracepointCounter
from tests.harness.daemon import DaemonProcess

pytestmark = [pytest.mark.root, pytest.mark.bpf, pytest.mark.usefixtures("tracefs")]


def _store_rows(db: Path) -> list[dict]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [json.loads(r[0]) for r in conn.execute("SELECT json FROM events")]
    finally:
        conn.close()


class SqliteDaemon(DaemonProcess):
    def command(self) -> list[str]:
        return [c for c in super().command() if c != "--stdout"]


def test_maps_plus_missed_is_every_failure_the_kernel_traced(tmp_path, faulty_disk, tracefs):
    if not shutil.which("fio"):
        pytest.fail("fio is missing (scripts/setup.sh installs it)")
    from benchmarks.storm import fio_storm

    event = tracefs / "events/block/block_rq_error"
    if not event.is_dir():
        pytest.fail("this kernel has no block:block_rq_error (the test needs it)")
    faulty_disk.fail(0, faulty_disk.size, "read")
    Path(f"/sys/block/{faulty_disk.name}/queue/nomerges").write_text("2")
    major, minor = (int(x) for x in faulty_disk.dev_num.split(":"))
    db = tmp_path / "events.db"
    daemon = SqliteDaemon(tmp_path / "daemon", store=f"sqlite:{db}", args=("--bpf=on",))
    with TracepointCounter(event, f"dev == {major << 20 | minor}") as mine, TracepointCounter(event) as every:
        daemon.start(timeout=180)
        try:
            status = json.loads(daemon.status_file.read_text())
            assert "block_rq_error" in status["bpf"]["kernel_counted"]
            assert status["bpf"]["unprobed"] == {}
            at_start = every.read()
            failed = fio_storm(faulty_disk.loopdev, 2)
            kernel_dev, kernel_all = mine.read(), every.read() - at_start
        finally:
            code = daemon.stop()
    assert code == 0, daemon.log_text()[-3000:]
    assert failed > 1000, f"fio failed only {failed} reads"
    # The kernel's count is the block layer's truth: one hit per failed I/O.
    assert kernel_dev == failed

    rows = _store_rows(db)
    counted_dev = sum(e["count"] for e in rows
                      if e["event_type"] == "BLK_IO_ERROR" and e.get("dev_num") == faulty_disk.dev_num)
    counted_all = sum(e["count"] for e in rows if e["event_type"] == "BLK_IO_ERROR")
    lost = [e["extension"] for e in rows if e["event_type"] == "PERIPETY_BPF_LOST" and "missed" in e["extension"]]
    unprobed = [x for x in lost if x.get("cause") == "no_probe_run"]
    assert all(x.get("kind") == "block_rq_error" for x in unprobed), unprobed
    missed = sum(int(x["missed"]) for x in unprobed)
    recursion = sum(int(x["missed"]) for x in lost if x.get("cause") == "recursion")
    print(f"fio failures {failed}, kernel count {kernel_dev}, maps {counted_dev}, missed {missed} "
          f"(recursion skips {recursion})")
    # The daemon's missed figure is the kernel's count minus its maps'...
    assert missed == kernel_all - counted_all
    # ...so maps plus missed (plus skips the kernel counted, which perf never sees) is every failure.
    assert counted_dev + missed + recursion == failed
    # The journal-style message names the kind and says the device is unknown.
    for e in rows:
        if e["event_type"] == "PERIPETY_BPF_LOST" and e["extension"].get("cause") == "no_probe_run":
            assert "block_rq_error failures happened that no probe saw (device unknown)" in e["msg"]


def test_every_planned_failure_probe_opens_its_kernel_count_with_its_filter(tracefs):
    """The filters of kinds.toml are valid tracefs filters on this kernel for
    every probe whose tracepoint exists here (also the fallbacks not
    attached, such as block_rq_complete's ``error != 0``)."""
    from bcc.utils import get_online_cpus

    plan = plan_attach("on")
    counts = KernelCounts.open(plan.probes)
    try:
        for probe in plan.probes:
            if probe.spec.perf_filter is not None:
                assert probe.spec.kind in counts.counters, counts.without
                assert len(counts.counters[probe.spec.kind].fds) == len(get_online_cpus())
        assert set(counts.read()) == set(counts.counters)
    finally:
        counts.close()
    from peripety.tracepoints.kinds import probe_specs

    tried = 0
    for spec in probe_specs():
        if spec.perf_filter is not None and (tracefs / "events" / spec.category / spec.event).is_dir():
            with TracepointCounter(tracefs / "events" / spec.category / spec.event, spec.perf_filter) as c:
                assert c.read() >= 0
            tried += 1
    assert tried >= 3  # block_rq_error, block_rq_complete, ext4_error at least
