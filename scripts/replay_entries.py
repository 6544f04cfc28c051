"""Every journald entry ``peripetyd --replay`` sends, byte for byte and the
same on every run: a check that a change to the pipeline left the stored
events as they were.

    .venv/bin/python scripts/replay_entries.py run TREE OUT
    .venv/bin/python scripts/replay_entries.py compare BEFORE AFTER [BEFORE_AGAIN]

``run`` imports peripety from the source tree TREE (a checkout or ``git
archive`` of the commit to check) and replays, in this process, the
benchmark's logs (``benchmarks/pipeline.py``: this machine's disks but its
loop devices, with ``storm_window = 0`` and with the default storms; loop0;
676 unknown disks) and the saved logs of TREE's ``tests/fixtures/recorded``
and ``tests/fixtures/logs``, with the device timeline as the udev database
has it when each replay starts (no uevents during it). It
writes each native-protocol datagram the journal store would send (hex, one
a line, under a ``# log`` line) to OUT instead of sending it. Event ids come
from a seeded ``os.urandom`` (per log), wall-clock times from a fixed
CLOCK_REALTIME - CLOCK_MONOTONIC and a fixed "now": two runs of one tree
write the same file.

Devices resolve as the machine has them at the time (the udev database,
sysfs, mounts), and the other users of a shared machine change loop devices
under a run: ``compare`` takes a third file, the first tree run again after
the second, and calls a log's entries the same when the second tree's equal
either run of the first; a log whose two runs of the first tree differ is
reported as changed meanwhile, not as a difference. Exit status: 0 same,
1 different, 2 only changed meanwhile (run again).

Needs root (the state directory) and no journald: nothing is sent.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def run(tree: Path, out_path: Path) -> None:
    import datetime as _dtm
    import hashlib
    import os
    import random
    import time

    sys.path.insert(0, str(tree))
    rng = random.Random(0)
    os.urandom = lambda n: rng.randbytes(n)  # event ids
    real_clock = time.clock_gettime
    time.clock_gettime = lambda clock: 1_780_000_000.25 if clock == time.CLOCK_REALTIME else (
        100.0 if clock == time.CLOCK_MONOTONIC else real_clock(clock))
    fixed_now = _dtm.datetime(2026, 5, 4, 3, 2, 1, 123456)

    class FixedNow(_dtm.datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed_now.astimezone(tz) if tz else fixed_now

    _dtm.datetime = FixedNow
    time.time = lambda: fixed_now.timestamp()

    import peripety.stores.journal as journal_store
    import peripety.stores.journald_socket as journald_socket

    sent: list[bytes] = []
    journald_socket.JournaldSocket.send_entry = lambda self, data: sent.append(bytes(data))
    journal_store.synchronize = journald_socket.synchronize = lambda *args, **kwargs: True
    journald_socket.RUN_DIR = Path(tempfile.mkdtemp())
    (journald_socket.RUN_DIR / "journal.replayentries").mkdir()
    (journald_socket.RUN_DIR / "journal.replayentries" / "socket").touch()  # the store checks it is there

    from benchmarks import pipeline as bench
    from peripety.daemon import Daemon, DaemonOptions
    from peripety.sources.udev import UdevSource

    # The device timeline as the udev database has it at the start: uevents
    # of the machine's other users do not reach the replay.
    UdevSource.read = lambda self: []

    with tempfile.TemporaryDirectory() as tmp, open(out_path, "w") as out:
        tmp = Path(tmp)
        stable = [d for d in bench.known_disks() if not d.startswith("loop")]
        logs = []
        for name, disks, suffix, config in (("known-storm0", stable, "", "[daemon]\nstorm_window = 0\n"),
                                            ("known", stable, "1", ""), ("loop0", ["loop0"], "", ""),
                                            ("unknown", bench.DISKS, "1", "")):
            bench.generate(tmp / f"{name}.kmsg", 20_000, disks, suffix)
            (tmp / f"{name}.conf").write_text(config)
            logs.append((tmp / f"{name}.kmsg", tmp / f"{name}.conf"))
        (tmp / "empty.conf").write_text("")
        for path in sorted([*(tree / "tests/fixtures/recorded").glob("*.kmsg"), *(tree / "tests/fixtures/logs").iterdir()]):
            logs.append((path, tmp / "empty.conf"))
        for log, config in logs:
            rng.seed(log.name)  # each log its own ids: a difference stays in its log
            before = len(sent)
            options = DaemonOptions(config_path=config, config_explicit=True, store="journal:replayentries",
                                    replay=log, blk_info_dump=False, state_dir=tmp / "state")
            status = ""
            try:
                Daemon(options).replay()
            except Exception as exc:  # not a log (a README): the same for both trees
                status = f" ({type(exc).__name__})"
            out.write(f"# {log.relative_to(tree) if log.is_relative_to(tree) else log.name}{status}\n")
            out.writelines(data.hex() + "\n" for data in sent[before:])
        digest = hashlib.sha256(b"".join(sent)).hexdigest()[:16]
    print(f"{len(logs)} logs, {len(sent)} entries, sha256 {digest}")


def _logs(path: Path) -> dict[str, list[str]]:
    logs: dict[str, list[str]] = {}
    current: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("# "):
            current = logs.setdefault(line, [])
        else:
            current.append(line)
    return logs


def compare(before: Path, after: Path, again: Path | None) -> int:
    first, second = _logs(before), _logs(after)
    third = _logs(again) if again else first
    different = changed = 0
    for name in sorted(set(first) | set(second)):
        if second.get(name) in (first.get(name), third.get(name)):
            continue
        if first.get(name) != third.get(name):
            changed += 1
            print(f"changed meanwhile (the machine's devices): {name[2:]}")
        else:
            different += 1
            print(f"DIFFERENT: {name[2:]}")
    entries = sum(len(v) for v in second.values())
    print(f"{len(second)} logs, {entries} entries: {different} different, {changed} changed meanwhile")
    return 1 if different else 2 if changed else 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "run":
        run(Path(argv[1]).resolve(), Path(argv[2]))
        return 0
    if len(argv) in (3, 4) and argv[0] == "compare":
        return compare(*(Path(a) for a in argv[1:3]), Path(argv[3]) if len(argv) == 4 else None)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
