"""Time from a kernel record to the event printed by ``prpt monitor``, over
the daemon's Varlink Monitor stream and over the journal, next to
journald's own kernel-message latency.

Needs root, the system journald (it is the one that reads /dev/kmsg) and
udevd. Makes an ext4 image on tmpfs behind a loop device, starts the real
daemon (``peripetyd --store journal``, default config: no --bpf, its
Varlink socket in the work directory), then ``prpt monitor --jsonl
--event-type FS_MOUNTED --blk /dev/loopN`` twice (``--source varlink``
and ``--source store``) and ``journalctl -f -k -o json -n 0`` as
subprocesses, and mounts/unmounts the
file system N times. Each mount prints one un-ratelimited kernel line
``EXT4-fs (loopN): mounted filesystem ...``. For each one it notes, on
CLOCK_MONOTONIC:

  kernel    the record's own kmsg timestamp (read from /dev/kmsg here: seq, usec)
  kmsg      when this process read it from /dev/kmsg (the floor)
  journald  when journalctl printed the entry (matched on _SOURCE_MONOTONIC_TIMESTAMP)
  emitted   when peripetyd wrote the event to the store (it runs with
            --stdout into a FIFO read here; the event is printed right after
            the store's send)
  varlink   when prpt monitor --source varlink printed the event (matched on
            event_id, which peripetyd derives from boot id and kmsg seq)
  prpt      when prpt monitor --source store (the journal) printed it

and prints p50/p99/max of each minus ``kernel``. Mounts are paced 0.6 s
apart so FS_MOUNTED on one device stays under the storm burst (10 per 5 s)
and is never folded into an aggregate.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERIOD = 0.6  # seconds between mounts: 10 per 5 s at most, the storm burst
TIMEOUT = 10.0  # seconds to wait for one mount's record to show up everywhere
READERS = ("journald", "prpt", "emitted", "varlink")


class LoopFs:
    """An ext4 image on tmpfs behind a loop device, and a mount point."""

    def __init__(self, workdir: Path, size_mb: int = 32):
        self.image = Path("/dev/shm") / f"peripety-latency-{os.getpid()}.img"
        self.mnt = workdir / "mnt"
        self.size_mb = size_mb
        self.dev: str | None = None

    def __enter__(self) -> "LoopFs":
        self.mnt.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(self.size_mb << 20)
        try:
            subprocess.run(["mkfs.ext4", "-F", "-q", str(self.image)], check=True)
            self.dev = subprocess.run(["losetup", "-f", "--show", str(self.image)], check=True,
                                      capture_output=True, text=True).stdout.strip()
            subprocess.run(["udevadm", "settle", "--timeout=30"], check=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    @property
    def name(self) -> str:
        return os.path.basename(self.dev)

    def mount(self) -> None:
        subprocess.run(["mount", "-t", "ext4", self.dev, str(self.mnt)], check=True)

    def umount(self) -> None:
        subprocess.run(["umount", str(self.mnt)], check=True)

    def __exit__(self, *exc) -> None:
        if os.path.ismount(self.mnt):
            subprocess.run(["umount", str(self.mnt)], check=False)
        if self.dev:
            subprocess.run(["losetup", "-d", self.dev], check=False)
            self.dev = None
        self.image.unlink(missing_ok=True)


class Lines:
    """A child process's stdout, split into lines as they arrive, each with
    the CLOCK_MONOTONIC time it was read."""

    def __init__(self, stream, proc: subprocess.Popen):
        self.stream, self.proc = stream, proc
        os.set_blocking(stream.fileno(), False)
        self._buf = b""

    def fileno(self) -> int:
        return self.stream.fileno()

    def read(self) -> list[tuple[float, bytes]]:
        now = time.monotonic()
        chunk = self.stream.read() or b""
        if not chunk and self.proc.poll() is not None:
            raise SystemExit(f"{self.proc.args[0]} exited with {self.proc.returncode}")
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return [(now, line) for line in lines if line.strip()]


class Watcher:
    """Collects, per kmsg seq of a mount line: kernel time and when kmsg,
    journalctl and prpt monitor each delivered it."""

    def __init__(self, kmsg, monitor: Lines, journal: Lines, emitted: "Lines", kdev: str, boot_id: str,
                 varlink: Lines):
        from peripety.pipeline import kmsg_event_id

        self.kmsg, self.monitor, self.journal, self.emitted = kmsg, monitor, journal, emitted
        self.varlink = varlink
        self.prefix = f"EXT4-fs ({kdev}): mounted filesystem"
        self.event_id = lambda seq: kmsg_event_id(boot_id, seq)
        self.by_usec: dict[int, dict] = {}
        self.by_event_id: dict[str, dict] = {}
        # seen before our own kmsg read: journald by kernel usec, the others by event id
        self.early: dict[str, dict] = {"journald": {}, "prpt": {}, "emitted": {}, "varlink": {}}
        self.selector = selectors.DefaultSelector()
        for name, source in (("kmsg", kmsg), ("prpt", monitor), ("journald", journal), ("emitted", emitted),
                             ("varlink", varlink)):
            self.selector.register(source.fileno(), selectors.EVENT_READ, name)

    def poll(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            getattr(self, "_on_" + key.data)()

    def _on_kmsg(self) -> None:
        now = time.monotonic()
        for record in self.kmsg.read():
            if record.text.startswith(self.prefix):
                rec = {"kernel": record.kernel_usec / 1e6, "kmsg": now}
                self.by_usec[record.kernel_usec] = rec
                self.by_event_id[self.event_id(record.seq)] = rec
                rec.update(self.early["journald"].pop(record.kernel_usec, {}))
                for name in ("prpt", "emitted", "varlink"):
                    rec.update(self.early[name].pop(self.event_id(record.seq), {}))

    def _on_journald(self) -> None:
        for now, line in self.journal.read():
            entry = json.loads(line)
            usec = entry.get("_SOURCE_MONOTONIC_TIMESTAMP")
            if usec is None or not str(entry.get("MESSAGE", "")).startswith(self.prefix):
                continue
            rec = self.by_usec.get(int(usec)) or self.early["journald"].setdefault(int(usec), {})
            rec["journald"] = now

    def _on_prpt(self) -> None:
        for now, line in self.monitor.read():
            self._seen("prpt", json.loads(line)["event_id"], now)

    def _on_varlink(self) -> None:
        for now, line in self.varlink.read():
            self._seen("varlink", json.loads(line)["event_id"], now)

    def _on_emitted(self) -> None:
        # --stdout prints pretty JSON: the event_id line is enough.
        for now, line in self.emitted.read():
            if line.lstrip().startswith(b'"event_id"'):
                self._seen("emitted", json.loads(b"{" + line.rstrip(b",") + b"}")["event_id"], now)

    def _seen(self, name: str, event_id: str, now: float) -> None:
        rec = self.by_event_id.get(event_id) or self.early[name].setdefault(event_id, {})
        rec.setdefault(name, now)

    def wait_complete(self, started: float, timeout: float) -> dict | None:
        """The record of the mount started at ``started``, once every reader has it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = next((r for r in self.by_usec.values() if r["kmsg"] >= started), None)
            if rec is not None and all(k in rec for k in READERS):
                return rec
            self.poll(max(0.0, deadline - time.monotonic()))
        return next((r for r in self.by_usec.values() if r["kmsg"] >= started), {"missing": True})


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def start_daemon(workdir: Path):
    from tests.harness.daemon import PERIPETYD, DaemonProcess

    class Daemon(DaemonProcess):
        def command(self) -> list[str]:  # as deployed (no debug log), plus --stdout into our FIFO
            return [PERIPETYD, "--store", self.store, "--no-blk-info-dump", "--state-dir", str(self.state_dir),
                    "--status-file", str(self.status_file), "--stdout", "--varlink", str(self.workdir / "io.peripety")]

    daemon = Daemon(workdir / "daemon")
    daemon.workdir.mkdir()
    os.mkfifo(daemon.stdout_path)
    # Open our end first (non-blocking) so the daemon's open for writing does not block.
    reader = os.open(daemon.stdout_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    return daemon.start(), os.fdopen(reader, "rb", buffering=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency", description=__doc__.split("\n")[0])
    parser.add_argument("--mounts", type=int, default=30)
    args = parser.parse_args(argv if argv is not None else [])
    if os.geteuid() != 0:
        print("latency: needs root (mount, losetup, /dev/kmsg); skipped")
        return
    if not Path("/run/systemd/journal/socket").exists():
        print("latency: the system journald is not running; skipped")
        return
    sys.path.insert(0, str(ROOT))
    from peripety.sources.kmsg import KmsgReader, boot_id
    from tests.harness.daemon import PRPT

    procs: list[subprocess.Popen] = []
    daemon = None
    with tempfile.TemporaryDirectory(prefix="peripety-latency-") as tmp, LoopFs(Path(tmp)) as fs, \
            KmsgReader() as kmsg:
        try:
            kmsg.seek_end()
            daemon, emitted = start_daemon(Path(tmp))
            follow = [PRPT, "monitor", "--jsonl", "--event-type", "FS_MOUNTED", "--blk", fs.dev,
                      "--varlink-socket", str(daemon.workdir / "io.peripety")]
            monitor = subprocess.Popen(follow + ["--source", "store"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
            varlink = subprocess.Popen(follow + ["--source", "varlink"], stdout=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL)
            journal = subprocess.Popen(["journalctl", "-f", "-k", "-o", "json", "-n", "0", "--no-pager"],
                                       stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
            procs += [monitor, varlink, journal]
            watcher = Watcher(kmsg, Lines(monitor.stdout, monitor), Lines(journal.stdout, journal),
                              Lines(emitted, daemon.proc), fs.name, boot_id(), Lines(varlink.stdout, varlink))
            print(f"{fs.dev} (ext4 on tmpfs), peripetyd --store journal --varlink (pid {daemon.proc.pid}), "
                  f"{args.mounts} mounts {PERIOD} s apart")
            # Warm-up until both followers show a mount: they are following now.
            for attempt in range(10):
                started = time.monotonic()
                fs.mount()
                rec = watcher.wait_complete(started, TIMEOUT if attempt else 3.0)
                fs.umount()
                if all(k in rec for k in READERS):
                    break
                time.sleep(PERIOD)
            else:
                raise SystemExit("a prpt monitor or journalctl never showed a mount: not following?")
            results, missing = [], 0
            lacking: dict[str, int] = {}
            for _ in range(args.mounts):
                time.sleep(PERIOD)
                started = time.monotonic()
                fs.mount()
                mounted = time.monotonic()
                rec = watcher.wait_complete(started, TIMEOUT)
                fs.umount()
                if all(k in rec for k in READERS):
                    rec["mount"] = (started, mounted)
                    results.append(rec)
                else:
                    missing += 1
                    for key in READERS:
                        if key not in rec:
                            lacking[key] = lacking.get(key, 0) + 1
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)
            if daemon is not None:
                daemon.stop()
                emitted.close()
    report(results, missing)
    if lacking:
        print("not seen within the timeout, by reader: " + ", ".join(f"{k} {n}" for k, n in sorted(lacking.items())))


def report(results: list[dict], missing: int) -> None:
    if not results:
        print(f"no complete measurement ({missing} mounts not seen by every reader)")
        return
    # The kmsg stamp is the kernel's local_clock(); it should fall inside the
    # mount call on CLOCK_MONOTONIC. Say so when it does not.
    outside = sum(1 for r in results if not (r["mount"][0] - 0.001 <= r["kernel"] <= r["mount"][1] + 0.001))
    print(f"{len(results)} mounts measured, {missing} not seen by every reader within {TIMEOUT:.0f} s; "
          f"kernel stamp inside the mount call on CLOCK_MONOTONIC: {len(results) - outside}/{len(results)}")
    print(f"{'kernel record ->':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for label, key in (("read from /dev/kmsg (this process)", "kmsg"), ("journalctl -f -k -o json", "journald"),
                       ("peripetyd stored it (--stdout)", "emitted"),
                       ("prpt monitor --source varlink", "varlink"), ("prpt monitor --source store", "prpt")):
        ms = [(r[key] - r["kernel"]) * 1000 for r in results]
        print(f"{label:<34} {percentile(ms, 50):8.1f} {percentile(ms, 99):8.1f} {max(ms):8.1f}")
    extra = [(r["prpt"] - r["journald"]) * 1000 for r in results]
    print(f"prpt monitor (store) - journalctl: median {statistics.median(extra):.1f} ms")
    via = [(r["varlink"] - r["emitted"]) * 1000 for r in results]
    print(f"prpt monitor (varlink) - peripetyd stored it: median {statistics.median(via):.1f} ms")
    ratio = statistics.median([(r["prpt"] - r["kernel"]) / max(r["varlink"] - r["kernel"], 1e-6) for r in results])
    print(f"kernel -> prpt monitor, journal path / Varlink path: median ratio {ratio:.0f}x (same mounts)")


if __name__ == "__main__":
    main(sys.argv[1:])
