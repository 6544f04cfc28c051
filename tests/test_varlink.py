"""The Varlink interface io.peripety on the real daemon (issue 13, item 5):
called with the ``varlink`` package's client (library and ``python -m
varlink.cli``), on real events (a failing loop device over faultyfs,
multipathd lines really sent through journald), compared with what
``prpt query`` / ``prpt info`` / ``prpt monitor`` print from the journal.

``varlinkctl`` is not used: Debian 12's systemd 252 does not ship it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import varlink

from tests.harness.daemon import PRPT, DaemonProcess, Retrigger, prpt, query, since_now, wait_for_events
from tests.harness.senders import AS_NOBODY, SYSTEM_PYTHON, genuine_daemon_link

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("journald", "udevd")]

INTERFACE_FILE = Path(__file__).resolve().parent.parent / "peripety" / "outputs" / "io.peripety.varlink"

# Sends argv[2] lines "checker failed path MAJ:MIN in map TAG<n>" (one
# distinct device each, so no storm folds them), then waits on stdin:
# journald reads _COMM/_EXE from /proc while the process lives.
_BULK = """
import sys
from systemd import journal
tag, count, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
majors = [8, 65, 66, 67, 68, 69, 70, 71, 128, 129, 130, 131, 132, 133, 134, 135]
for n in range(first, first + count):
    journal.send(f"checker failed path {majors[n // 256]}:{n % 256} in map {tag}{n}", SYSLOG_IDENTIFIER="multipathd")
print("sent", flush=True)
sys.stdin.read()
"""


class Bulk:
    """``count`` genuine multipathd lines (root, comm multipathd)."""

    def __init__(self, link: Path, tag: str, count: int, first: int = 0):
        self.proc = subprocess.Popen([str(link), "-c", _BULK, tag, str(count), str(first)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "sent"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture
def socket_dir():
    """A directory others may enter (0755 up to /), as /run/peripety is:
    only the socket's own mode keeps them out."""
    path = Path(tempfile.mkdtemp(prefix="peripety-varlink-", dir="/run"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_daemon(tmp_path: Path, sock: Path, *args: str) -> DaemonProcess:
    return DaemonProcess(tmp_path / "daemon", args=("--varlink", str(sock), *args)).start()


@pytest.fixture
def served(tmp_path, socket_dir):
    sock = socket_dir / "io.peripety"
    daemon = start_daemon(tmp_path, sock)
    yield daemon, sock
    daemon.stop()


def client(sock: Path, timeout: float = 30.0):
    """An io.peripety connection through the varlink package's client."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    conn.connect(str(sock))
    return varlink.Client(f"unix:{sock}").open("io.peripety", connection=conn)


def varlink_cli(sock: Path, method: str, parameters: dict, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "varlink.cli", "call", f"unix:{sock}/{method}",
                           json.dumps(parameters)], capture_output=True, text=True, timeout=60)


def test_socket_service_info_and_status(served):
    daemon, sock = served
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    with varlink.Client(f"unix:{sock}") as vc:
        assert set(vc.get_interfaces()) == {"org.varlink.service", "io.peripety"}
        assert vc.info["product"] == "peripetyd"
        description = vc.get_interface("io.peripety").get_description()
    assert description == INTERFACE_FILE.read_text()
    out = varlink_cli(sock, "io.peripety.GetStatus", {})
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)["status"]
    assert status["pid"] == daemon.proc.pid
    assert status["store"] == "journal" and status["store_ok"] is True
    assert "varlink" in status["outputs"] and "varlink" not in status["sources"]
    assert status["varlink"]["socket"] == str(sock)
    assert status["varlink"]["clients"] == 1  # this very call


def test_errors_are_varlink_errors(served):
    _, sock = served
    con = client(sock)
    with pytest.raises(varlink.VarlinkError) as err:
        con.GetBlockInfo(device="/dev/no-such-disk")
    assert err.value.error() == "io.peripety.NoSuchDevice"
    assert err.value.parameters()["device"] == "/dev/no-such-disk"
    with pytest.raises(varlink.VarlinkError) as err:
        con.Query(filter={"event_types": ["NO_SUCH_TYPE"]})
    assert err.value.error() == "io.peripety.InvalidFilter"
    assert err.value.parameters()["field"] == "event_types"
    with pytest.raises(varlink.VarlinkError) as err:
        con.Query(filter={"since": "today", "until": "yesterday"})
    assert err.value.error() == "io.peripety.InvalidFilter"
    with pytest.raises(varlink.VarlinkError) as err:
        con.Monitor()
    assert err.value.error() == "io.peripety.ExpectedMore"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(30)
        raw.connect(str(sock))
        raw.sendall(b'{"method": "io.peripety.NoSuchMethod"}\0{"method": "io.peripety.Query", '
                    b'"parameters": {"filter": {"blk": 5}}}\0{"method": "io.peripety.Query", '
                    b'"parameters": {"filter": {"bogus": []}}}\0')
        buf = b""
        while buf.count(b"\0") < 3:
            buf += raw.recv(65536)
        replies = [json.loads(m) for m in buf.split(b"\0")[:3]]
    assert [r["error"] for r in replies] == ["org.varlink.service.MethodNotFound",
                                              "org.varlink.service.InvalidParameter", "io.peripety.InvalidFilter"]
    assert replies[2]["parameters"]["field"] == "bogus"
    # the connection still answers after each error
    assert con.GetStatus()["status"]["store_ok"] is True


def test_get_block_info_matches_prpt_info(served, faulty_disk):
    _, sock = served
    con = client(sock)
    for key in (faulty_disk.loopdev, faulty_disk.dev_num, faulty_disk.name):
        info = con.GetBlockInfo(device=key)["info"]
        assert info == json.loads(prpt("info", "-J", key).stdout)
    listed = con.ListBlockDevices()["devices"]
    assert faulty_disk.loopdev in [d["blk_path"] for d in listed]


def next_while_failing(stream, trigger: Retrigger) -> dict:
    """The stream's next reply, failing fresh sectors every 1.5 s until it
    comes (the kernel may rate-limit a line)."""
    stop = threading.Event()

    def keep_failing():
        for _ in range(20):
            trigger()
            if stop.wait(1.5):
                return

    thread = threading.Thread(target=keep_failing)
    thread.start()
    try:
        return next(stream)
    finally:
        stop.set()
        thread.join()


def test_monitor_streams_a_real_failure_and_query_equals_prpt_query(served, faulty_disk):
    _, sock = served
    t0 = since_now()
    trigger = Retrigger(faulty_disk)
    con = client(sock, timeout=60)
    stream = con.Monitor(filter={"blk": [faulty_disk.loopdev], "event_types": ["blk_io_error"]}, _more=True)
    assert "event" not in next(stream)  # set up: nothing stored from now on is missed
    event = next_while_failing(stream, trigger)["event"]
    assert event["event_type"] == "BLK_IO_ERROR" and event["kdev"] == faulty_disk.name
    assert event["extension"]["sector"] in map(str, trigger.sectors)
    # the same JSON object prpt query --jsonl prints once journald has it
    stored = wait_for_events(("--event-id", event["event_id"]), lambda evs: len(evs) == 1, what="the event")
    assert stored == [event]

    # Query gives what prpt query --jsonl gives for the same options
    q = client(sock)
    cases = [
        ({"since": t0}, None, ("--since", t0)),
        ({"since": t0, "blk": [faulty_disk.loopdev]}, None, ("--since", t0, "--blk", faulty_disk.loopdev)),
        ({"since": t0, "severity": "err", "sub_systems": ["block"]}, None,
         ("--since", t0, "--severity", "err", "--sub-system", "block")),
        ({"since": t0, "event_types": ["BLK_IO_ERROR"]}, 1, ("--since", t0, "--event-type", "BLK_IO_ERROR", "-n", "1")),
        ({"event_ids": [event["event_id"]]}, None, ("--event-id", event["event_id"])),
        ({"since": t0, "kdevs": ["no-such-kdev"]}, None, None),
    ]
    for flt, limit, options in cases:
        got, expected = _stable(lambda: q.Query(filter=flt, limit=limit)["events"] if limit
                                else q.Query(filter=flt)["events"],
                                lambda: query(*options) if options is not None else [])
        assert got == expected, flt
        assert flt.get("kdevs") or got
    # "more": the same events, in replies
    got, expected = _stable(lambda: [e for c in q.Query(filter={"since": t0}, _more=True) for e in c["events"]],
                            lambda: query("--since", t0))
    assert got == expected
    # and through the CLI client
    out = varlink_cli(sock, "io.peripety.Query", {"filter": {"event_ids": [event["event_id"]]}})
    assert json.loads(out.stdout)["events"] == [event]


def _stable(ask, expect):
    """(Query's answer, prpt query's) taken while the store did not change
    (a late failure of the triggers may still be arriving)."""
    for _ in range(10):
        before = expect()
        got = ask()
        if expect() == before:
            return got, before
    raise AssertionError("the store kept changing")


def test_only_root_may_connect_unless_a_group_is_granted(tmp_path, socket_dir):
    sock = socket_dir / "io.peripety"
    daemon = start_daemon(tmp_path, sock)
    try:
        denied = varlink_cli(sock, "io.peripety.GetStatus", {}, prefix=AS_NOBODY)
        assert denied.returncode != 0
        assert "Permission denied" in denied.stderr + denied.stdout
        assert "pid" not in denied.stdout
        monitor = subprocess.run(AS_NOBODY + [PRPT, "monitor", "--source", "varlink", "--varlink-socket", str(sock)],
                                 capture_output=True, text=True, timeout=60)
        assert monitor.returncode == 1
        assert f"{sock}: permission denied" in monitor.stderr
    finally:
        daemon.stop()
    assert not sock.exists()  # removed at stop
    daemon = start_daemon(tmp_path, sock, "--varlink-group", "nogroup")
    try:
        st = os.lstat(sock)
        assert stat.S_IMODE(st.st_mode) == 0o660
        allowed = varlink_cli(sock, "io.peripety.GetStatus", {}, prefix=AS_NOBODY)
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout)["status"]["pid"] == daemon.proc.pid
        # prpt as that group's member: the events through the daemon, though it cannot read the journal
        top = subprocess.run(AS_NOBODY + [PRPT, "top", "--once", "-J", "--no-state", "--interval", "0.1",
                                          "--varlink-socket", str(sock), "-v"],
                             capture_output=True, text=True, timeout=60)
        assert top.returncode == 0, top.stderr
        assert json.loads(top.stdout)["store"] == f"varlink:{sock}"
        journal = subprocess.run(AS_NOBODY + [PRPT, "query", "-n", "1"], capture_output=True, text=True, timeout=60)
        assert journal.returncode == 1 and "systemd-journal" in journal.stderr
    finally:
        daemon.stop()


_FAKE_SERVER = """
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
s.listen()
print("up", flush=True)
while True:
    c = s.accept()[0]
    try:
        c.recv(4096)
        c.send(b'{"continues": true, "parameters": {}}\\0')
    except OSError:
        pass
"""


def test_prpt_refuses_a_socket_not_served_by_root(socket_dir):
    """A socket owned by another user, or served by one, is not followed:
    --source varlink says why; auto reads the store instead."""
    own = socket_dir / "nobodys"
    own.mkdir()
    os.chown(own, 65534, -1)
    fake = own / "io.peripety"
    server = subprocess.Popen(AS_NOBODY + [SYSTEM_PYTHON, "-c", _FAKE_SERVER, str(fake)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout.readline().strip() == "up"
        os.chown(own, 0, -1)  # only the socket is nobody's now
        out = prpt("monitor", "--source", "varlink", "--varlink-socket", str(fake), check=False)
        assert out.returncode == 1
        assert "owned by uid 65534, not root" in out.stderr
        os.chown(fake, 0, -1)  # root's socket file, but nobody answers on it
        out = prpt("monitor", "--source", "varlink", "--varlink-socket", str(fake), check=False)
        assert out.returncode == 1
        assert "served by uid 65534, not root" in out.stderr
        auto = subprocess.Popen([PRPT, "monitor", "--varlink-socket", str(fake), "-v"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            log = LineReader(auto.stderr)
            assert "served by uid 65534" in log.until("not following peripetyd")[-1]
            assert "following journal events" in log.until("following")[-1]
        finally:
            auto.terminate()
            auto.wait(30)
    finally:
        server.kill()
        server.wait(10)


class LineReader:
    """Lines of a child's pipe, read from the descriptor itself (nothing
    hides in a buffer select cannot see), kept across calls."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buf = b""
        self.lines: list[str] = []

    def until(self, text: str, timeout: float = 60.0) -> list[str]:
        """The lines up to the next one holding ``text`` (those are consumed)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, line in enumerate(self.lines):
                if text in line:
                    found, self.lines = self.lines[:i + 1], self.lines[i + 1:]
                    return found
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no line with {text!r}; last: {self.lines[-3:]}")
            data = os.read(self.fd, 65536)
            if not data:
                raise AssertionError(f"pipe closed before a line with {text!r}; last: {self.lines[-3:]}")
            *complete, self.buf = (self.buf + data).split(b"\n")
            self.lines += [line.decode() for line in complete]


def test_prpt_monitor_prints_the_same_over_varlink_and_the_journal(served, tmp_path):
    _, sock = served
    link = genuine_daemon_link(tmp_path, "multipathd")
    tag = f"vlm{os.getpid()}x"
    t0 = since_now()
    monitors = {}
    try:
        for fmt in ("text", "jsonl"):
            for source in ("varlink", "store"):
                proc = subprocess.Popen(
                    [PRPT, "monitor", "--source", source, "--varlink-socket", str(sock), "--sub-system", "Multipath",
                     *(["--jsonl"] if fmt == "jsonl" else []), "-v"],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
                monitors[fmt, source] = proc
        for (fmt, source), proc in monitors.items():
            notice = LineReader(proc.stderr).until("following")[-1]
            assert ("varlink" in notice) == (source == "varlink"), notice
        bulk = Bulk(link, tag, 6)
        sentinel = Bulk(link, tag + "end", 1, first=300)
        try:
            outputs = {key: LineReader(proc.stdout).until(f"{tag}end300") for key, proc in monitors.items()}
        finally:
            bulk.close()
            sentinel.close()
    finally:
        for proc in monitors.values():
            proc.terminate()
            proc.wait(10)
    for fmt in ("text", "jsonl"):
        mine = [sorted(line for line in outputs[fmt, s] if tag in line) for s in ("varlink", "store")]
        assert len(mine[0]) == 7
        assert mine[0] == mine[1]
    # prpt top seeds its view with Query and follows Monitor: the same events as from the journal
    frames = {}
    for source in ("varlink", "store"):
        out = prpt("top", "--once", "-J", "--no-state", "--interval", "0.1", "--sub-system", "Multipath",
                   "--since", t0, "--source", source, "--varlink-socket", str(sock))
        frames[source] = json.loads(out.stdout)
    assert frames["varlink"]["store"] == f"varlink:{sock}" and frames["store"]["store"] == "journal"
    assert len([e for e in frames["varlink"]["events"] if tag in e["raw_msg"]]) == 7
    assert frames["varlink"]["events"] == frames["store"]["events"]
    assert frames["varlink"]["totals"] == frames["store"]["totals"]


def test_a_client_that_stops_reading_never_stalls_the_daemon(tmp_path, socket_dir):
    """A Monitor client that never reads: its replies pile up to the
    buffer, then its events are dropped and counted, while the daemon goes
    on storing (a sentinel line sent after the flood is stored and streamed
    to a second client). When it reads again it gets what was kept, the
    count of what was dropped, and the sentinel: nothing unaccounted."""
    sock = socket_dir / "io.peripety"
    daemon = start_daemon(tmp_path, sock, "--varlink-buffer", "8192")
    link = genuine_daemon_link(tmp_path, "multipathd")
    tag = f"vls{os.getpid()}x"
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    senders = []
    try:
        t0 = since_now()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(str(sock))
        stuck.sendall(json.dumps({"method": "io.peripety.Monitor", "more": True,
                                  "parameters": {"filter": {"event_types": ["DM_MPATH_PATH_FAILED"]}}}).encode() + b"\0")
        stuck.settimeout(30)
        assert json.loads(stuck.recv(4096).rstrip(b"\0")) == {"continues": True, "parameters": {}}
        reader = client(sock, timeout=120)
        stream = reader.Monitor(filter={"event_types": ["DM_MPATH_PATH_FAILED"]}, _more=True)
        next(stream)
        seen: list[dict] = []
        reading = threading.Thread(target=lambda: seen.extend(_until(stream, f"{tag}end3000")))
        reading.start()
        status = client(sock)
        senders.append(Bulk(link, tag, 1500))
        deadline = time.monotonic() + 120
        while status.GetStatus()["status"]["varlink"]["dropped_events"] == 0:
            assert time.monotonic() < deadline, "the stuck client's buffer never filled"
            time.sleep(0.2)
        senders.append(Bulk(link, tag + "end", 1, first=3000))
        # the daemon stored it, and the reading client got it
        wait_for_events(("--since", t0, "--event-type", "DM_MPATH_PATH_FAILED", "-n", "1"),
                        lambda evs: evs and f"{tag}end3000" in evs[-1]["raw_msg"], timeout=120, what="sentinel")
        reading.join(120)
        assert seen and f"{tag}end3000" in seen[-1]["event"]["raw_msg"]
        stored = [e["raw_msg"] for e in query("--since", t0, "--event-type", "DM_MPATH_PATH_FAILED")
                  if tag in e["raw_msg"]]
        reader_missed = sum(r.get("missed", 0) for r in seen)
        assert len([r for r in seen if tag in r["event"]["raw_msg"]]) + reader_missed == len(stored)
        dropped = status.GetStatus()["status"]["varlink"]["dropped_events"] - reader_missed
        assert dropped > 0
        # The stuck client reads again: first what was kept for it (until the
        # socket stays silent: nothing else is being stored), then one more
        # event, whose reply says how many were dropped.
        received, missed = [], 0
        buf = b""

        def take(data: bytes) -> None:
            nonlocal buf, missed
            buf += data
            *messages, buf = buf.split(b"\0")
            for message in messages:
                params = json.loads(message)["parameters"]
                missed += params.get("missed", 0)
                received.append((params["event"]["raw_msg"], params.get("missed", 0)))

        stuck.settimeout(3)
        while True:
            try:
                data = stuck.recv(65536)
            except TimeoutError:
                break
            assert data, "the daemon closed the stuck client"
            take(data)
        assert missed == 0  # nothing was delivered after the drops yet
        senders.append(Bulk(link, tag + "end", 1, first=3001))
        stuck.settimeout(60)
        while not received or f"{tag}end3001" not in received[-1][0]:
            data = stuck.recv(65536)
            assert data, "the daemon closed the stuck client"
            take(data)
        assert received[-1][1] == dropped == missed  # the count came with the next event
        stored.append(received[-1][0])
        mine = [m for m, _ in received if tag in m]
        assert len(mine) + missed == len(stored)
        assert mine == [m for m in stored if m in set(mine)]  # in order, nothing twice
    finally:
        stuck.close()
        for sender in senders:
            sender.close()
        daemon.stop()


def _until(stream, text: str) -> list[dict]:
    replies = []
    for reply in stream:
        replies.append(reply)
        if text in reply["event"]["raw_msg"]:
            return replies
    raise AssertionError("stream ended")


def _held_query(sock: Path, flt: dict) -> socket.socket:
    """A Query (with more) whose client does not read yet: the daemon's
    worker waits for it, so the query stays in progress until it reads."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.settimeout(60)
    conn.connect(str(sock))
    conn.sendall(json.dumps({"method": "io.peripety.Query", "more": True,
                             "parameters": {"filter": flt}}).encode() + b"\0")
    return conn


def _read_query(conn: socket.socket) -> list[dict]:
    buf, events = b"", []
    while True:
        while b"\0" not in buf:
            data = conn.recv(65536)
            assert data, "the daemon closed the connection mid-answer"
            buf += data
        message, buf = buf.split(b"\0", 1)
        reply = json.loads(message)
        assert "error" not in reply, reply
        events += reply["parameters"]["events"]
        if not reply.get("continues"):
            return events


def _varlink_status(con, predicate, what: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        status = con.GetStatus()["status"]["varlink"]
        if predicate(status):
            return status
        assert time.monotonic() < deadline, f"{what}: {status}"
        time.sleep(0.1)


def test_a_query_in_progress_does_not_delay_kernel_events(tmp_path, socket_dir, faulty_disk):
    """Query runs off the daemon's loop: while a query over 1500 stored
    events is in progress (its client does not read, so it cannot end), a
    real kernel I/O error is still read from /dev/kmsg, stored and streamed
    (the sentinel); the query then delivers what prpt query gives. Stopping
    the daemon mid-query cancels it: clean exit, socket removed."""
    sock = socket_dir / "io.peripety"
    daemon = start_daemon(tmp_path, sock, "--varlink-buffer", "8192")
    link = genuine_daemon_link(tmp_path, "multipathd")
    tag = f"vlq{os.getpid()}x"
    held = []
    try:
        t0 = since_now()
        bulk = Bulk(link, tag, 1500)
        bulk.close()
        history = {"since": t0, "sub_systems": ["Multipath"]}
        wait_for_events(("--since", t0, "--sub-system", "Multipath"),
                        lambda evs: len([e for e in evs if tag in e["raw_msg"]]) == 1500, timeout=180,
                        what="1500 stored events")
        status = client(sock)
        held.append(_held_query(sock, history))
        _varlink_status(status, lambda s: s["queries_running"] == 1, "the query did not start")
        con = client(sock, timeout=60)
        stream = con.Monitor(filter={"blk": [faulty_disk.loopdev], "event_types": ["blk_io_error"]}, _more=True)
        assert "event" not in next(stream)
        sentinel = next_while_failing(stream, Retrigger(faulty_disk))["event"]
        assert sentinel["event_type"] == "BLK_IO_ERROR" and sentinel["kdev"] == faulty_disk.name
        # the query was in progress all along
        assert status.GetStatus()["status"]["varlink"]["queries_running"] == 1
        got = _read_query(held[0])
        assert len([e for e in got if tag in e["raw_msg"]]) == 1500
        assert got == query("--since", t0, "--sub-system", "Multipath")
        _varlink_status(status, lambda s: s["queries_running"] == 0, "the query did not end")
        # stopping mid-query
        held.append(_held_query(sock, history))
        _varlink_status(status, lambda s: s["queries_running"] == 1, "the second query did not start")
        assert daemon.stop() == 0
        assert not sock.exists()
        log = daemon.log_text()
        assert "1 query(ies) cancelled at stop" in log
        assert "still reading the store" not in log
        assert held[1].recv(65536) is not None  # the connection was closed (b"" or the first replies)
    finally:
        for conn in held:
            conn.close()
        daemon.stop()
