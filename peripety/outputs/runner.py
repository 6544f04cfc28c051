"""Run alert programs without ever waiting for them.

Each program starts in its own session (so its whole process group can be
killed), reads the event JSON from an in-memory file on stdin (a memfd:
nothing to write while it runs, so a program that never reads stdin cannot
block anybody), writes its output to an unnamed temporary file (only the
tail is logged) and is reaped by ``poll()``, which the daemon calls every
tick. At most ``max_children`` run at once; more wait in a bounded queue;
beyond that ``submit`` says no and the caller counts the drop.

A program still running at ``timeout`` gets SIGTERM on its process group,
and SIGKILL ``KILL_GRACE`` seconds later.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

log = logging.getLogger("peripety.outputs.notify")

MAX_CHILDREN = 4
MAX_QUEUED = 256
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
OUTPUT_TAIL = 2048  # bytes of a program's output kept for the log


@dataclass
class Job:
    """One program to run: its command, environment and stdin."""

    id: str
    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    stdin: bytes
    timeout: float
    data: object = None
    """The caller's (the alert it stands for)."""


@dataclass
class Finished:
    job: Job
    status: int | None = None
    """Exit status; negative: killed by that signal; None: never started."""
    timed_out: bool = False
    error: str | None = None
    """Why it could not start."""
    output: str = ""
    """The tail of what it wrote to stdout and stderr."""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 0 and not self.timed_out and self.error is None

    def describe(self) -> str:
        if self.error is not None:
            return f"could not start: {self.error}"
        if self.timed_out:
            return f"timed out after {self.job.timeout:g} s (process group killed, status {self.status})"
        if self.status is not None and self.status < 0:
            try:
                name = signal.Signals(-self.status).name
            except ValueError:
                name = str(-self.status)
            return f"killed by signal {name} after {self.duration:.2f} s"
        return f"exit status {self.status} after {self.duration:.2f} s"


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    output: object
    started: float
    term_at: float
    kill_at: float | None = None
    timed_out: bool = False


@dataclass
class Runner:
    max_children: int = MAX_CHILDREN
    max_queued: int = MAX_QUEUED
    clock: object = time.monotonic
    _queue: collections.deque = field(default_factory=collections.deque)
    _running: list = field(default_factory=list)

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False (nothing queued) when the queue is full."""
        if len(self._queue) >= self.max_queued:
            return False
        self._queue.append(job)
        return True

    def poll(self) -> list[Finished]:
        """Reap what ended, enforce timeouts, start what may start. Never waits."""
        done = self._reap()
        while self._queue and len(self._running) < self.max_children:
            failed = self._start(self._queue.popleft())
            if failed is not None:
                done.append(failed)
        return done

    def busy(self) -> bool:
        return bool(self._queue or self._running)

    def jobs(self) -> list[Job]:
        """Every job not finished yet: running, then queued."""
        return [r.job for r in self._running] + list(self._queue)

    def next_deadline(self) -> float | None:
        """When ``poll`` has a timeout to enforce (monotonic), if anything runs."""
        times = [r.kill_at if r.kill_at is not None else r.term_at for r in self._running]
        return min(times) if times else None

    def wait(self, until: float | None = None, step: float = 0.02) -> list[Finished]:
        """Poll until nothing is left (or ``until``): for ``prpt notify-test``."""
        done = []
        while self.busy() and (until is None or self.clock() < until):
            done += self.poll()
            if self.busy():
                time.sleep(step)
        return done

    def stop(self, grace: float) -> tuple[list[Finished], list[Job]]:
        """At shutdown: let running programs finish for up to ``grace``
        seconds, then kill their process groups. Returns what finished and
        every job that did not (killed or never started), to keep."""
        done = self.wait(self.clock() + grace) if self._running else []
        unfinished = [r.job for r in self._running]
        for running in self._running:
            _signal_group(running.proc, signal.SIGKILL)
        for running in self._running:
            try:
                running.proc.wait(5)
            except subprocess.TimeoutExpired:
                log.error("alert %s (pid %d) did not die after SIGKILL", running.job.name, running.proc.pid)
            running.output.close()
            log.warning("alert %s (pid %d) was still running at shutdown: killed; it runs again at the next start",
                        running.job.name, running.proc.pid)
        self._running = []
        unfinished += list(self._queue)
        self._queue.clear()
        return done, unfinished

    # -- internals -------------------------------------------------------------
    def _start(self, job: Job) -> Finished | None:
        now = self.clock()
        stdin = os.memfd_create("peripety-alert", os.MFD_CLOEXEC)
        output = None
        try:
            os.write(stdin, job.stdin)
            os.lseek(stdin, 0, os.SEEK_SET)
            output = tempfile.TemporaryFile()
            proc = subprocess.Popen(job.argv, stdin=stdin, stdout=output, stderr=subprocess.STDOUT, env=job.env,
                                    cwd="/", start_new_session=True, close_fds=True)
        except OSError as exc:
            if output is not None:
                output.close()
            return Finished(job, error=f"{job.argv[0]}: {exc.strerror or exc}")
        finally:
            os.close(stdin)
        log.debug("alert %s started: pid %d", job.name, proc.pid)
        self._running.append(_Running(job, proc, output, now, term_at=now + job.timeout))
        return None

    def _reap(self) -> list[Finished]:
        done = []
        now = self.clock()
        still = []
        for running in self._running:
            status = running.proc.poll()
            if status is None:
                self._enforce_timeout(running, now)
                still.append(running)
                continue
            if running.timed_out:
                # What it left behind in its group (a child ignoring SIGTERM):
                # the group's id stays allocated while a member lives.
                _signal_group(running.proc, signal.SIGKILL)
            output = _tail(running.output)
            done.append(Finished(running.job, status=status, timed_out=running.timed_out, output=output,
                                 duration=now - running.started))
        self._running = still
        return done

    def _enforce_timeout(self, running: _Running, now: float) -> None:
        if running.kill_at is None and now >= running.term_at:
            running.timed_out = True
            running.kill_at = now + KILL_GRACE
            _signal_group(running.proc, signal.SIGTERM)
        elif running.kill_at is not None and now >= running.kill_at:
            _signal_group(running.proc, signal.SIGKILL)
            running.kill_at = now + KILL_GRACE  # again later if it is still there


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    """The program's whole process group (its own session: pgid == pid)."""
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def _tail(output) -> str:
    try:
        size = output.seek(0, os.SEEK_END)
        output.seek(max(0, size - OUTPUT_TAIL))
        return output.read().decode("utf-8", "replace").strip()
    finally:
        output.close()
