"""How fast peripety reads its events back from the journal, against journalctl.

Starts a journald of its own (journal namespace ``prptbench``, removed at
the end, so the shared system journal is not filled), writes 200,000
ordinary log entries and 100,000 peripety events through the journal
store, interleaved, then times in the same run, best of 2 after a warm-up:

  journalctl  journalctl --namespace=prptbench IS_PERIPETY=TRUE EVENT_TYPE=X -o json
  library     JournalStore.query(EventFilter(event_types=(X,))) -> JSON lines, in process
  cli         prpt query --store journal:prptbench --event-type X --jsonl (when
              peripety/cli/query.py exists and takes those options)

All output goes to a file whose line count is checked against the number
of X events written. Target (issue 14): cli at most 0.5 of journalctl.

What the comparison is: the same entries selected by the same journal
matches, each read once. journalctl writes every field of each entry as
JSON (about 30, the event's JSON among them, escaped); prpt writes the
event's JSON, checks each entry's sender (journald's _UID/_COMM/
_SYSTEMD_UNIT) and sorts by event time. Both pay libsystemd's
decompression of the large JSON field (zstd; libsystemd 252 makes a new
context per field: 20 % of journalctl's time in perf, 17 us per entry
of prpt's). "library" is
JournalStore.query plus event.to_json() in process: the event API, not
the --jsonl path.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import importlib.util
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.stores import EventFilter
from peripety.stores.journal import JournalStore
from peripety.stores.journald_socket import JournaldSocket, runtime_dir

ROOT = Path(__file__).resolve().parent.parent
PRPT = Path(sys.executable).with_name("prpt")
NAMESPACE = "prptbench"
TYPES = [  # (event_type, sub_system, severity, weight): X is the first
    ("FS_ERROR", "ext4", Severity.Error, 20),
    ("BLK_IO_ERROR", "block", Severity.Error, 30),
    ("SCSI_CMD_FAILED", "SCSI", Severity.Error, 15),
    ("FS_MOUNTED", "xfs", Severity.Info, 15),
    ("FS_UNMOUNTED", "xfs", Severity.Info, 10),
    ("DM_MPATH_PATH_FAILED", "Multipath", Severity.Error, 10),
]


def make_event(rng: random.Random, at: dt.datetime) -> StorageEvent:
    event_type, sub_system, severity, _ = rng.choices(TYPES, weights=[t[3] for t in TYPES])[0]
    disk = rng.randrange(64)
    wwid = f"naa.6001405{disk:09x}abcdef01"
    info = BlkInfo(wwid=wwid, blk_type="SCSI", blk_path=f"/dev/sd{chr(97 + disk % 26)}",
                   preferred_blk_path=f"/dev/disk/by-id/wwn-0x{wwid[4:]}", dev_num=f"8:{disk * 16}",
                   diskseq=disk + 1, mount_point="/srv/data", owners_wwids=[wwid + "-p0", wwid + "-p1"],
                   owners_types=["SCSI", "SCSI"], owners_paths=["/dev/sdx", "/dev/sdy"])
    return StorageEvent(
        event_type=event_type, sub_system=sub_system, severity=severity, kdev=info.blk_path[5:],
        msg=f"{event_type} on {info.blk_path}", raw_msg=f"I/O error, dev {info.blk_path[5:]}, sector "
        f"{rng.randrange(1 << 30)} op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2",
        timestamp=at, hostname="bench", event_id=str(uuid.UUID(int=rng.getrandbits(128))),
        dev_num=info.dev_num, cur_blk_info=info, hierarchy_blk_info=[info],
        extension={"sector": str(rng.randrange(1 << 30)), "blk_status": "I/O error"}, sources=["kmsg"])


PR_SET_NAME = 15


def fill(namespace: str, events: int, noise: int, seed: int = 4) -> int:
    """Write the journal; return how many events of TYPES[0] were written."""
    rng = random.Random(seed)
    # Write as peripetyd: readers accept only entries journald says peripetyd
    # wrote (its comm, stores/provenance.py), and this process is the writer.
    ctypes.CDLL(None).prctl(PR_SET_NAME, b"peripetyd", 0, 0, 0)
    store = JournalStore(namespace)
    other = JournaldSocket(runtime_dir(namespace) / "socket")
    start = dt.datetime.now().astimezone()
    wanted = 0
    per_event = noise // events
    for i in range(events):
        for j in range(per_event):
            other.send({"MESSAGE": f"usb 1-{j}: new high-speed USB device number {i} using xhci_hcd",
                        "PRIORITY": "6", "SYSLOG_IDENTIFIER": "kernel-noise"})
        event = make_event(rng, start + dt.timedelta(microseconds=i))
        wanted += event.event_type == TYPES[0][0]
        store.append(event)
    store.sync()
    store.close()
    other.close()
    return wanted


def timed(label: str, run, out_path: Path, expected: int) -> float:
    best = None
    for attempt in range(3):  # the first is a warm-up of the page cache
        with open(out_path, "w") as out:
            t0 = time.perf_counter()
            run(out)
            elapsed = time.perf_counter() - t0
        lines = sum(1 for _ in open(out_path))
        if lines != expected:
            raise SystemExit(f"{label}: {lines} lines, expected {expected}")
        if attempt:
            best = elapsed if best is None else min(best, elapsed)
    print(f"{label:<11} {best:7.3f} s  {expected / best:9.0f} events/s")
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--noise", type=int, default=200_000)
    args = parser.parse_args(argv if argv is not None else [])
    sys.path.insert(0, str(ROOT))
    from tests.harness.services import private_journald

    x = TYPES[0][0]
    with private_journald(NAMESPACE) as ns, tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        expected = fill(ns, args.events, args.noise)
        print(f"wrote {args.events} events + {args.noise} other entries in "
              f"{time.perf_counter() - t0:.1f} s; {expected} are {x}")
        out = Path(tmp) / "out"

        def journalctl(f):
            subprocess.run(["journalctl", f"--namespace={ns}", "--no-pager", "IS_PERIPETY=TRUE",
                            f"EVENT_TYPE={x}", "-o", "json"], stdout=f, check=True)

        def library(f):
            store = JournalStore(ns)
            for event in store.query(EventFilter(event_types=(x,))):
                f.write(event.to_json() + "\n")

        base = timed("journalctl", journalctl, out, expected)
        lib = timed("library", library, out, expected)
        print(f"library / journalctl = {lib / base:.2f}")
        if importlib.util.find_spec("peripety.cli.query") is None:
            print("cli: peripety/cli/query.py does not exist yet; the library figure stands in for it")
            return

        def cli(f):
            subprocess.run([str(PRPT), "query", "--store", f"journal:{ns}", "--event-type", x, "--jsonl"],
                           stdout=f, check=True)

        try:
            command = timed("cli", cli, out, expected)
        except subprocess.CalledProcessError as exc:
            print(f"cli: prpt query failed ({exc}); the library figure stands in for it")
            return
        print(f"cli / journalctl = {command / base:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
