"""peripetyd --bpf reads its kernel counts without a bpf() syscall.

While a process is inside a bpf() map syscall on a CPU, the kernel runs no
tracepoint program there (bpf_prog_active): a failure completing on that CPU
meanwhile is never counted (6.18 counts the skip in recursion_misses, the
lab guest's 6.1 not at all). So, once started, the daemon must count a
storm, read the counts and retire their epochs with loads and stores in
mapped memory only. strace, attached to the running daemon, watches every
bpf() it makes (and epoll_wait, to prove it was watching the loop).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.harness.daemon import DaemonProcess, since_now, wait_for_events
from tests.test_daemon_position import failed_sectors

pytestmark = [pytest.mark.root, pytest.mark.bpf, pytest.mark.usefixtures("journald", "udevd", "tracefs")]


def test_counting_a_storm_takes_the_daemon_no_bpf_syscall(tmp_path, faulty_disk):
    if not shutil.which("strace"):
        pytest.fail("strace is missing (apt-get install strace)")
    daemon = DaemonProcess(tmp_path / "daemon", args=("--bpf=on",)).start()
    log = tmp_path / "strace.log"
    tracer = None
    try:
        tracer = subprocess.Popen(["strace", "-f", "-e", "trace=bpf,epoll_wait", "-o", str(log),
                                   "-p", str(daemon.proc.pid)], stderr=subprocess.PIPE, text=True)
        # strace says so on stderr once it has attached to every thread
        assert "attached" in tracer.stderr.readline()
        t0 = since_now()
        first, n = 4096, 300
        faulty_disk.fail_sectors(first, n + 1, "read")
        assert [r.error for r in faulty_disk.read_sectors(first, n)] == [5] * n
        args = ("--since", t0, "--blk", faulty_disk.loopdev, "--event-type", "BLK_IO_ERROR")
        wait_for_events(args, lambda evs: sum(e["count"] for e in evs) >= n, what=f"{n} counted failures")
        # A sentinel failure after the storm: once it is stored, the daemon
        # has read at least one more epoch after the storm's.
        sentinel = first + n
        assert faulty_disk.read_sectors(sentinel, 1)[0].error == 5
        events = wait_for_events(args, lambda evs: sentinel in failed_sectors(evs), what="the sentinel")
        assert sum(e["count"] for e in events) == n + 1
        assert any(e["extension"].get("counted_by") == "bpf-maps" for e in events)
    finally:
        if tracer is not None:
            tracer.terminate()  # detaches from the daemon, which runs on
            tracer.wait(timeout=30)
        code = daemon.stop()
    assert code == 0
    calls = log.read_text().splitlines()
    assert any("epoll_wait(" in line for line in calls), "strace saw nothing of the daemon's loop"
    bpf_calls = [line for line in calls if " bpf(" in line or line.split(None, 1)[-1].startswith("bpf(")]
    assert bpf_calls == [], f"{len(bpf_calls)} bpf() syscalls while counting, e.g. {bpf_calls[:3]}"
