"""How soon every sector of an I/O error storm is queryable, and how many
events it costs the store.

Needs root, bcc and the test harness' services (journald, udevd are started
if missing). A 128 MiB loop device over tests/faultyfs (FUSE returning EIO),
the real ``peripetyd --bpf=on --store journal``; each round fails N distinct
sectors with one O_DIRECT read each, then polls ``prpt query`` until every
failed sector is listed (a single's ``extension.sector`` or an aggregate's
``extension.sectors`` ranges) and prints the time from the last failing read
to that moment, with the number of events stored. Then a long storm (100
failing reads/s for 6 s): per failure, the time until it is queryable, and
events stored per second. Target: about 1.5 s
(doc/design.md, "Storms": "queryable within about a second"; issue 9 item 4), a few
events per second per device.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storm_sectors", description=__doc__.split("\n")[0])
    parser.add_argument("--sectors", type=int, default=200, help="distinct failing sectors per storm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--long-seconds", type=float, default=6.0, help="length of the long storm (0: none)")
    parser.add_argument("--rate", type=float, default=100.0, help="failing reads per second in the long storm")
    args = parser.parse_args(argv if argv is not None else [])
    if os.geteuid() != 0:
        print("storm_sectors: needs root (loop devices, FUSE, bcc); skipped")
        return
    sys.path.insert(0, str(ROOT))
    from tests.harness import services
    from tests.harness.daemon import DaemonProcess, query, since_now
    from tests.harness.faulty import FaultyDisk
    from tests.test_daemon_position import failed_sectors, total

    services.ensure_journald()
    services.ensure_udevd()
    latencies, counts = [], []
    with tempfile.TemporaryDirectory(prefix="peripety-storm-bench-") as tmp, FaultyDisk(workdir=Path(tmp)) as disk:
        daemon = DaemonProcess(Path(tmp) / "daemon", args=("--bpf=on",)).start()
        try:
            for rnd in range(args.rounds):
                first = 100_000 + rnd * 10 * args.sectors
                t0 = since_now()
                disk.fail_sectors(first, args.sectors, "read")
                results = disk.read_sectors(first, args.sectors)
                done = time.monotonic()
                assert all(r.error == 5 for r in results), "the faulty disk did not fail every read"
                want = set(range(first, first + args.sectors))
                q = ("--since", t0, "--blk", disk.loopdev, "--event-type", "BLK_IO_ERROR")
                while True:
                    events = query(*q)
                    if failed_sectors(events) >= want:
                        break
                    if time.monotonic() - done > 30:
                        raise SystemExit(f"round {rnd + 1}: sectors still missing after 30 s")
                    time.sleep(0.05)
                latency = time.monotonic() - done
                latencies.append(latency)
                counts.append(len(events))
                print(f"round {rnd + 1}: {args.sectors} sectors queryable {latency:.2f} s after the last failure; "
                      f"{len(events)} events stored, count {total(events)}", flush=True)
                disk.heal()
                time.sleep(6)  # a new storm, not the tail of this one (storm_window 5 s)
        finally:
            daemon.stop()
    print(f"median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s from the last failure to all "
          f"{args.sectors} sectors queryable (target about 1.5 s); events stored per storm: {counts}")
    if args.long_seconds > 0:
        long_storm(args.long_seconds, args.rate)


def long_storm(seconds: float, rate: float) -> None:
    """A storm that lasts: ``rate`` failing reads per second for ``seconds``;
    per failure, the time until ``prpt query`` lists its sector (polled, so
    the figure includes up to one query's duration), and the events stored
    per second."""
    import threading

    from tests.harness.daemon import DaemonProcess, query, since_now
    from tests.harness.faulty import FaultyDisk
    from tests.test_daemon_position import failed_sectors, total

    n = int(seconds * rate)
    read_at: dict[int, float] = {}
    seen_at: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="peripety-storm-bench-") as tmp, FaultyDisk(workdir=Path(tmp)) as disk:
        daemon = DaemonProcess(Path(tmp) / "daemon", args=("--bpf=on",)).start()
        try:
            first = 200_000
            disk.fail_sectors(first, n, "read")
            t0 = since_now()

            def reader():
                start = time.monotonic()
                for i in range(n):
                    time.sleep(max(0.0, start + i / rate - time.monotonic()))
                    disk.read_sectors(first + i, 1)
                    read_at[first + i] = time.monotonic()

            thread = threading.Thread(target=reader)
            thread.start()
            q = ("--since", t0, "--blk", disk.loopdev, "--event-type", "BLK_IO_ERROR")
            deadline = time.monotonic() + seconds + 30
            while len(seen_at) < n and time.monotonic() < deadline:
                events = query(*q)
                now = time.monotonic()
                for sector in failed_sectors(events):
                    seen_at.setdefault(sector, now)
            thread.join()
            events = query(*q)
        finally:
            daemon.stop()
    lat = sorted(seen_at[s] - read_at[s] for s in seen_at if s in read_at)
    print(f"long storm: {n} failures over {seconds:g} s; {len(seen_at)} sectors seen, count {total(events)}, "
          f"{len(events)} events stored ({len(events) / seconds:.1f}/s); failure -> queryable "
          f"p50 {lat[len(lat) // 2]:.2f} s, p99 {lat[int(len(lat) * 0.99)]:.2f} s, max {lat[-1]:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
