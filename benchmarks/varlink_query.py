"""Does a long Varlink Query hold up the daemon's loop?

Fills a private SQLite store with 50,000 events (benchmarks.query's
make_event), starts the real peripetyd on it with its Varlink socket, then:

  idle      GetStatus round trips (answered in the daemon's loop), 20 of them
  during    one Query over every stored event runs; meanwhile GetStatus is
            called back to back until the Query's answer is complete

GetStatus is answered by the same loop that reads /dev/kmsg and the BPF ring
buffer, so its round trip during the Query is how long a kernel record
would wait. Before issue 13's follow-up the loop answered the Query itself:
the round trip was the whole query's time. Needs root (the daemon reads
/dev/kmsg); run under the live lock.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def call(sock: socket.socket, method: str, parameters: dict | None = None) -> list[dict]:
    """One call, every reply (NUL-framed JSON) up to the last. (Chunks are
    kept in a list: appending to one buffer would copy a 50 MB answer
    hundreds of times, holding this process's GIL and so delaying its
    GetStatus thread: the stall measured would be the client's.)"""
    sock.sendall(json.dumps({"method": f"io.peripety.{method}", "parameters": parameters or {}}).encode() + b"\0")
    chunks, replies = [], []
    while True:
        while not chunks or b"\0" not in chunks[-1]:
            data = sock.recv(1 << 20)
            if not data:
                raise RuntimeError("peripetyd closed the connection")
            chunks.append(data)
        message, rest = b"".join(chunks).split(b"\0", 1)
        chunks = [rest] if rest else []
        reply = json.loads(message)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply}")
        replies.append(reply)
        if not reply.get("continues"):
            return replies


QUERY_CLIENT = """
import socket, sys
from benchmarks.varlink_query import call, connect
from pathlib import Path
with connect(Path(sys.argv[1])) as conn:
    print(len(call(conn, "Query")[0]["parameters"]["events"]))
"""


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(300)
    sock.connect(str(path))
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.varlink_query", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args(argv if argv is not None else [])
    if os.geteuid() != 0:
        print("varlink_query: needs root (the daemon reads /dev/kmsg); skipped")
        return
    sys.path.insert(0, str(ROOT))
    from benchmarks.query import make_event
    from peripety.stores.sqlite import SqliteStore
    from tests.harness.daemon import DaemonProcess

    with tempfile.TemporaryDirectory(prefix="peripety-vlq-", dir="/run") as tmp:
        tmp = Path(tmp)
        os.chmod(tmp, 0o755)
        db = tmp / "events.db"
        store = SqliteStore(db, write=True)
        rng = random.Random(13)
        start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
        for n in range(args.events):
            store.append(make_event(rng, start + dt.timedelta(milliseconds=n)))
        store.close()
        sock = tmp / "io.peripety"
        daemon = DaemonProcess(tmp / "d", store=f"sqlite:{db}", args=("--varlink", str(sock))).start()
        try:
            status = connect(sock)
            idle = []
            for _ in range(20):
                t0 = time.perf_counter()
                call(status, "GetStatus")
                idle.append(time.perf_counter() - t0)
            # The Query's client is a process of its own: decoding its 50 MB answer
            # would hold this process's GIL and delay the GetStatus calls timed here.
            t0 = time.perf_counter()
            client = subprocess.Popen([sys.executable, "-c", QUERY_CLIENT, str(sock)], stdout=subprocess.PIPE,
                                      text=True, cwd=ROOT)
            during = []
            while client.poll() is None:
                t1 = time.perf_counter()
                call(status, "GetStatus")
                during.append(time.perf_counter() - t1)
            answer = {"events": int(client.stdout.read()), "seconds": time.perf_counter() - t0}
            status.close()
        finally:
            daemon.stop()
    assert answer["events"] == args.events, answer
    print(f"varlink_query: Query of {answer['events']} events answered in {answer['seconds']:.2f} s")
    print(f"  GetStatus round trip idle:        median {statistics.median(idle) * 1e3:.2f} ms, "
          f"max {max(idle) * 1e3:.2f} ms")
    print(f"  GetStatus round trip during Query: median {statistics.median(during) * 1e3:.2f} ms, "
          f"max {max(during) * 1e3:.2f} ms ({len(during)} calls)")


if __name__ == "__main__":
    main(sys.argv[1:])
