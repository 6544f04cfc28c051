"""What ``prpt top`` costs while events pour in.

Fills a SQLite store with 10,000 events from the last hour (50 devices),
starts the real ``prpt top`` on a pseudo-terminal of 160x45, and while a
writer thread appends 100 events/s for DURATION seconds measures:

  cpu      the prpt process's CPU time (user + system, /proc) over wall time
  redraws  full frames written per second (each frame starts with the
           cursor-home sequence Rich's full-screen Live writes)
  startup  time from exec to the first frame (seeding from 10,000 events)

Targets: cpu < 10 % of one core, redraws >= 1/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import os
import random
import select
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from peripety.event import BlkInfo, Severity, StorageEvent, now
from peripety.stores.sqlite import SqliteStore

PRPT = Path(sys.executable).with_name("prpt")
FRAME_START = b"\x1b[H"
SEVERITIES = [Severity.Error] * 3 + [Severity.Warning] * 3 + [Severity.Info] * 3 + [Severity.Critical]
TYPES = ["BLK_IO_ERROR", "SCSI_CMD_FAILED", "FS_ERROR", "SCSI_SENSE_KEY", "FS_MOUNTED"]


def make_event(rng: random.Random, when: dt.datetime, devices: int = 50) -> StorageEvent:
    n = rng.randrange(devices)
    kdev = f"sd{chr(97 + n % 26)}{n // 26 or ''}"
    info = BlkInfo(wwid=f"naa.bench{n:04d}", blk_type="SCSI", blk_path=f"/dev/{kdev}",
                   preferred_blk_path=f"/dev/{kdev}", mount_point=f"/mnt/{kdev}" if n % 3 == 0 else None)
    event_type = rng.choice(TYPES)
    return StorageEvent(event_type=event_type, sub_system="block", severity=rng.choice(SEVERITIES), kdev=kdev,
                        cur_blk_info=info, msg=f"{event_type.lower()} on {kdev} sector {rng.randrange(1 << 30)}",
                        timestamp=when, count=rng.choice([1, 1, 1, 1, 5]))


def fill(store: SqliteStore, count: int, rng: random.Random) -> None:
    start = now() - dt.timedelta(hours=1)
    for i in range(count):
        store.append(make_event(rng, start + dt.timedelta(seconds=3600 * i / count)))


def writer(store: SqliteStore, rate: float, stop: threading.Event, rng: random.Random, written: list) -> None:
    """Append ``rate`` events per second, on schedule, until stopped."""
    started = time.monotonic()
    while not stop.is_set():
        due = started + written[0] / rate
        delay = due - time.monotonic()
        if delay > 0:
            stop.wait(delay)
            continue
        store.append(make_event(rng, now()))
        written[0] += 1


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_on_pty(command: list[str], width: int, height: int):
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    return proc, master


def read_frames(master: int, until: float) -> int:
    """Frames written to the terminal until the monotonic time ``until``."""
    frames, tail = 0, b""
    while (left := until - time.monotonic()) > 0:
        if select.select([master], [], [], left)[0]:
            data = tail + os.read(master, 1 << 16)
            frames += data.count(FRAME_START)
            tail = data[-(len(FRAME_START) - 1):]
    return frames


def run(duration: float, rate: float, seed_events: int) -> dict:
    rng = random.Random(6)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "events.db"
        store = SqliteStore(db, write=True)
        fill(store, seed_events, rng)
        command = [str(PRPT), "top", "--store", f"sqlite:{db}", "--status-file", str(Path(tmp) / "none.json")]
        t0 = time.monotonic()
        proc, master = start_on_pty(command, 160, 45)
        try:
            while not select.select([master], [], [], 30)[0] or FRAME_START not in os.read(master, 1 << 16):
                if proc.poll() is not None:
                    raise SystemExit(f"prpt top exited with {proc.returncode} before its first frame")
            startup = time.monotonic() - t0
            read_frames(master, time.monotonic() + 1.0)  # let the seeding settle
            stop, written = threading.Event(), [0]
            thread = threading.Thread(target=writer, args=(store, rate, stop, rng, written), daemon=True)
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            thread.start()
            frames = read_frames(master, wall0 + duration)
            cpu1, wall1 = cpu_seconds(proc.pid), time.monotonic()
            stop.set()
            thread.join()
            os.write(master, b"q")
            status = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.close(master)
            store.close()
    wall = wall1 - wall0
    return {
        "startup_s": startup,
        "cpu_percent": 100 * (cpu1 - cpu0) / wall,
        "redraws_per_s": frames / wall,
        "events_per_s": written[0] / wall,
        "exit_status": status,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of measurement")
    parser.add_argument("--rate", type=float, default=100.0, help="events appended per second")
    parser.add_argument("--seed-events", type=int, default=10_000)
    args = parser.parse_args(argv if argv is not None else [])
    figures = run(args.duration, args.rate, args.seed_events)
    print(f"prpt top, 160x45, {args.seed_events} stored events, "
          f"{figures['events_per_s']:.0f} events/s arriving for {args.duration:.0f} s")
    print(f"  startup (first frame)  {figures['startup_s']:.2f} s")
    print(f"  cpu                    {figures['cpu_percent']:.1f} % of one core   (target < 10 %)")
    print(f"  redraws                {figures['redraws_per_s']:.1f} /s             (target >= 1 /s)")
    print(f"  exit status after q    {figures['exit_status']}")


if __name__ == "__main__":
    main(sys.argv[1:])
