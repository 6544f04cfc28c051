"""Run the real ``peripetyd`` and ``prpt`` as a user would, for end-to-end tests."""

from __future__ import annotations

import datetime as _dt
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
PERIPETYD = str(VENV_BIN / "peripetyd")
PRPT = str(VENV_BIN / "prpt")


class DaemonProcess:
    """``peripetyd`` in a subprocess with its own state directory."""

    def __init__(self, workdir: Path, *, store: str = "journal", args: tuple[str, ...] = ()):
        self.workdir = Path(workdir)
        self.store = store
        self.args = args
        self.state_dir = self.workdir / "state"
        self.status_file = self.workdir / "status.json"
        self.log_path = self.workdir / "peripetyd.log"
        self.stdout_path = self.workdir / "peripetyd.stdout"
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            PERIPETYD,
            "--store", self.store,
            "--no-blk-info-dump",
            "--state-dir", str(self.state_dir),
            "--status-file", str(self.status_file),
            "--stdout",
            "-vv",
            *self.args,
        ]

    def start(self, timeout: float = 60.0) -> "DaemonProcess":
        """Start and return once the daemon says it is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        out = open(self.stdout_path, "ab")
        rfd, wfd = os.pipe()
        # stderr goes through a pipe we watch for "ready" and copy to the log.
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=wfd, start_new_session=True
        )
        os.close(wfd)
        out.close()
        self._stderr = os.fdopen(rfd, "rb", buffering=0)
        self._log = log
        deadline = time.monotonic() + timeout
        seen = b""
        sel = selectors.DefaultSelector()
        sel.register(self._stderr, selectors.EVENT_READ)
        while b"ready" not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"peripetyd not ready in {timeout}s: {seen.decode(errors='replace')}")
            chunk = self._stderr.read(65536)
            if not chunk:
                raise AssertionError(
                    f"peripetyd exited ({self.proc.wait()}) before ready: {seen.decode(errors='replace')}"
                )
            seen += chunk
            log.write(chunk)
            log.flush()
        sel.close()
        self._start_log_copier()
        return self

    def _start_log_copier(self) -> None:
        import threading

        def copy():
            for chunk in iter(lambda: self._stderr.read(65536), b""):
                self._log.write(chunk)
                self._log.flush()

        threading.Thread(target=copy, daemon=True).start()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def prpt(*args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess:
    proc = subprocess.run([PRPT, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"prpt {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def query(*args: str) -> list[dict]:
    out = prpt("query", "--jsonl", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_for_events(args: tuple[str, ...], predicate, timeout: float = 30.0, what: str = "events") -> list[dict]:
    """Query the store until ``predicate(events)`` holds (bounded poll on the
    real condition: the events being readable through ``prpt query``)."""
    deadline = time.monotonic() + timeout
    events: list[dict] = []
    while time.monotonic() < deadline:
        events = query(*args)
        if predicate(events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last query returned: "
                         + json.dumps([(e['event_type'], e['kdev'], e.get('extension')) for e in events])[:3000])


def since_now() -> str:
    # Event times come from the kernel's record time, which runs ~1 ms behind
    # CLOCK_MONOTONIC here; a small margin keeps the first event in range.
    start = _dt.datetime.now().astimezone() - _dt.timedelta(milliseconds=50)
    return start.isoformat(timespec="microseconds")


class Retrigger:
    """Cause a read error on a fresh sector each call (the kernel may drop a
    rate-limited line, but never the next one once the window has passed)."""

    def __init__(self, disk, first=2048, op="read"):
        self.disk, self.next, self.op = disk, first, op
        self.sectors: list[int] = []

    def __call__(self):
        sector = self.next
        self.next += 8
        self.disk.fail_sectors(sector, 1, self.op)
        if self.op == "read":
            result = self.disk.read_sectors(sector, 1)
        else:
            result = self.disk.write_sectors(sector, 1)
        assert result[0].error == 5  # EIO, really
        self.sectors.append(sector)


def wait_for_line(stream, text: str, timeout: float = 20.0) -> str:
    """The first line of a child's binary ``stream`` that holds ``text``
    (a command's "following" notice, its first event), waited for on the
    pipe itself, never by sleeping."""
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(max(0.0, deadline - time.monotonic())):
            line = stream.readline().decode()
            if text in line:
                return line
            if not line:
                break
    raise AssertionError(f"no line with {text!r}")
