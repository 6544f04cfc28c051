#!/usr/bin/python3
"""Read a failing range of a block device with O_DIRECT from several threads
and say how many reads failed: the workload side of the lab's exact-count
scenario (tests/lab/guest/scenarios/counts.sh).

    failing_reads.py DEV OFFSET LENGTH COUNT [THREADS] [BS]

COUNT reads of BS bytes at every other BS-aligned offset, cycling through
[OFFSET, OFFSET+LENGTH), shared among THREADS threads: reads in flight at
once are never adjacent, so the block layer cannot merge two into one
request (one failed read = one failed request = one failed command). Prints
``reads=N failed=F eio=E`` (F counts every OSError; E those with EIO).
"""

import errno
import mmap
import os
import sys
import threading


def main() -> int:
    dev, offset, length, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    bs = int(sys.argv[6]) if len(sys.argv) > 6 else 4096
    blocks = length // bs
    lock = threading.Lock()
    totals = {"reads": 0, "failed": 0, "eio": 0, "other": {}}

    def worker(n: int) -> None:
        fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, bs)  # page aligned, as O_DIRECT wants
        reads = failed = eio = 0
        other: dict[int, int] = {}
        try:
            for i in range(n, count, threads):
                reads += 1
                try:
                    os.preadv(fd, [buf], offset + (2 * i % blocks) * bs)
                except OSError as exc:
                    failed += 1
                    if exc.errno == errno.EIO:
                        eio += 1
                    else:
                        other[exc.errno] = other.get(exc.errno, 0) + 1
        finally:
            os.close(fd)
        with lock:
            totals["reads"] += reads
            totals["failed"] += failed
            totals["eio"] += eio
            for k, v in other.items():
                totals["other"][k] = totals["other"].get(k, 0) + v

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    other = ",".join(f"{errno.errorcode.get(k, k)}:{v}" for k, v in sorted(totals["other"].items()))
    print(f"reads={totals['reads']} failed={totals['failed']} eio={totals['eio']} other={other or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
