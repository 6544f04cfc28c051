"""The Varlink server (outputs/varlink.py) and its reader (stores/varlink.py)
over real unix sockets and a real SQLite store, without the daemon: the
server runs in a thread of its own as it does in the daemon's loop (one
thread polls its descriptor, calls ``read`` and hands it events), so slow
clients, drops and limits can be driven event by event. Calls are made
with the ``varlink`` package's client, raw sockets, and peripety's reader.
The daemon itself is tested in test_varlink.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import queue
import select
import socket
import threading
import time

import pytest
import varlink

from peripety.cli.filters import filter_from_fields
from peripety.errors import StoreError
from peripety.event import Severity
from peripety.event_types import EVENT_TYPES
from peripety.outputs.varlink import MAX_CLIENTS, VarlinkServer
from peripety.safefiles import UnsafePathError
from peripety.stores import EventFilter
from peripety.stores.sqlite import SqliteStore
from peripety.stores.varlink import VarlinkStore, filter_to_fields
from tests.stores_support import full_event, read_follower

KNOWN = {info.name for info in EVENT_TYPES}


class Served:
    """A VarlinkServer driven by one thread, as the daemon's loop drives it:
    ``run(fn)`` executes ``fn`` in that thread (the daemon's ``on_event``)."""

    def __init__(self, path, store, **kwargs):
        self.server = VarlinkServer(path, store=store, status=lambda: {"pid": os.getpid(), "store": store.name},
                                    known_event_types=lambda: KNOWN, **kwargs)
        self.store = store
        self._jobs: queue.Queue = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop:
            select.select([self.server.fileno(), self._wake_r], [], [], 1.0)
            self.server.read()
            while not self._jobs.empty():
                fn, done = self._jobs.get()
                done.put(fn())

    def run(self, fn):
        done: queue.Queue = queue.Queue()
        self._jobs.put((fn, done))
        os.write(self._wake_w, b"x")
        result = done.get(timeout=30)
        os.read(self._wake_r, 4096)
        return result

    def emit(self, *events):
        """Store each event, then hand it to the server (Daemon._emit)."""
        def job():
            for event in events:
                self.store.append(event)
                self.server.on_event(event)
        self.run(job)

    def close(self):
        def job():
            self.server.close()
            self._stop = True
        self.run(job)
        self.thread.join(10)


@pytest.fixture
def served(tmp_path):
    store = SqliteStore(tmp_path / "events.db", write=True)
    srv = Served(tmp_path / "io.peripety", store, max_pending=16384)
    yield srv
    if srv.server._listener is not None:
        srv.close()
    store.close()


def connect(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(str(path))
    return sock


def vclient(path):
    return varlink.Client(f"unix:{path}").open("io.peripety", connection=connect(path))


def replies(sock: socket.socket, buf: bytearray, count: int) -> list[dict]:
    out = []
    while len(out) < count:
        end = buf.find(b"\0")
        if end < 0:
            data = sock.recv(65536)
            assert data, "connection closed"
            buf += data
            continue
        out.append(json.loads(buf[:end]))
        del buf[:end + 1]
    return out


def events_at(n: int, start: dt.datetime | None = None, **kwargs):
    start = start or dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
    return [full_event(f"e{i}", at=start + dt.timedelta(seconds=i), **kwargs) for i in range(n)]


def test_socket_mode_and_refusals(tmp_path):
    store = SqliteStore(tmp_path / "db", write=True)
    path = tmp_path / "sock"
    path.write_text("not a socket")
    with pytest.raises(UnsafePathError, match="not a socket"):
        VarlinkServer(path, store=store, status=dict, known_event_types=lambda: KNOWN)
    path.unlink()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # a socket nobody listens on: a previous daemon's
    server = VarlinkServer(path, store=store, status=dict, known_event_types=lambda: KNOWN)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    server.close()
    assert not path.exists()
    with pytest.raises(Exception, match="no such group"):
        VarlinkServer(path, store=store, status=dict, known_event_types=lambda: KNOWN, group="no-such-group-x")
    store.close()


def test_query_is_the_store_query_in_time_order(served, tmp_path):
    early = events_at(3, severity=Severity.Warning)
    late = events_at(2, start=dt.datetime(2026, 11, 30, 13, 0, tzinfo=dt.timezone.utc), kdev="loop2",
                     event_type="BLK_IO_ERROR", sub_system="block")
    served.emit(*late, *early)  # stored out of time order
    con = vclient(served.server.path)
    everything = con.Query()["events"]
    assert [e["msg"] for e in everything] == [e.to_dict()["msg"] for e in early + late]
    assert everything == [e.to_dict() for e in sorted(early + late, key=lambda e: e.timestamp)]
    assert [e["kdev"] for e in con.Query(filter={"kdevs": ["loop2"]})["events"]] == ["loop2", "loop2"]
    assert len(con.Query(filter={"severity": "err"})["events"]) == 2
    assert len(con.Query(filter={"event_types": ["blk_io_error"], "sub_systems": ["block"]})["events"]) == 2
    # limit: the N the store holds newest (as prpt query -n), then in time order
    assert [e["msg"] for e in con.Query(limit=2)["events"]] == [e.msg for e in early[1:]]
    chunks = list(con.Query(_more=True))
    assert [e for c in chunks for e in c["events"]] == everything
    with pytest.raises(varlink.VarlinkError) as err:
        con.Query(filter={"severity": "loud"})
    assert err.value.parameters()["field"] == "severity"
    with pytest.raises(varlink.VarlinkError) as err:
        con.Query(limit=0)
    assert err.value.error() == "io.peripety.InvalidFilter" and err.value.parameters()["field"] == "limit"
    # peripety's own reader gets the same events
    reader = VarlinkStore(served.server.path)
    assert [e.to_dict() for e in reader.query(EventFilter())] == everything
    assert [e.kdev for e in reader.query(EventFilter(kdevs=("loop2",), limit=1))] == ["loop2"]


def test_filter_fields_round_trip():
    since = dt.datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    flt = EventFilter(event_types=("FS_ERROR", "BLK_IO_ERROR"), sub_systems=("ext4",), severity=Severity.Warning,
                      wwids=("naa.5000",), kdevs=("sdb",), event_ids=("abc",), hosts=("db01",), since=since,
                      until=since + dt.timedelta(days=1))
    assert filter_from_fields(filter_to_fields(flt), known_types=KNOWN) == flt
    assert filter_from_fields(filter_to_fields(EventFilter()), known_types=KNOWN) == EventFilter()


def test_monitor_drops_for_a_stuck_client_and_counts_them(served):
    stuck = connect(served.server.path)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b'{"method": "io.peripety.Monitor", "more": true, "parameters": {"filter": {"kdevs": ["loop1"]}}}\0')
    buf = bytearray()
    assert replies(stuck, buf, 1) == [{"continues": True, "parameters": {}}]
    flood = events_at(2000)
    served.emit(*flood)  # returns: the server never waits for the client
    stats = served.run(served.server.stats)
    assert stats["monitors"] == 1 and stats["dropped_events"] > 0
    # another client is served meanwhile
    assert vclient(served.server.path).GetStatus()["status"]["varlink"]["dropped_events"] == stats["dropped_events"]
    kept = []
    stuck.settimeout(2)
    try:
        while True:
            kept += replies(stuck, buf, 1)
    except TimeoutError:
        pass
    assert not any("missed" in r["parameters"] for r in kept)
    last = events_at(1, start=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))[0]
    served.emit(last)
    stuck.settimeout(30)
    final = replies(stuck, buf, 1)[0]
    assert final["parameters"]["event"]["event_id"] == last.event_id
    assert final["parameters"]["missed"] == stats["dropped_events"]
    got = [r["parameters"]["event"]["event_id"] for r in kept]
    assert len(got) + stats["dropped_events"] == len(flood)
    assert got == [e.event_id for e in flood[:len(got)]]  # the first ones, in order


def test_a_client_that_pipelines_calls_and_never_reads_is_not_read(served):
    served.emit(*events_at(50))
    greedy = connect(served.server.path)
    call = b'{"method": "io.peripety.Query"}\0'
    greedy.setblocking(False)
    sent = 0
    try:
        for _ in range(20000):
            sent += greedy.send(call)
    except BlockingIOError:
        pass  # the server stopped reading it: its replies were not read
    assert sent < 20000 * len(call)
    assert vclient(served.server.path).GetStatus()["status"]["varlink"]["clients"] == 2
    greedy.close()


def test_too_many_clients(served):
    conns = [connect(served.server.path) for _ in range(MAX_CLIENTS)]
    for conn in conns:  # each one answered, so each one was accepted
        conn.sendall(b'{"method": "io.peripety.GetStatus"}\0')
        assert "status" in replies(conn, bytearray(), 1)[0]["parameters"]
    extra = connect(served.server.path)
    assert replies(extra, bytearray(), 1)[0] == {"error": "io.peripety.TooManyClients",
                                                  "parameters": {"limit": MAX_CLIENTS}}
    assert extra.recv(10) == b""
    conns[0].close()
    deadline = time.monotonic() + 10
    while served.run(served.server.stats)["clients"] == MAX_CLIENTS:  # until the server saw it go
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again = vclient(served.server.path)
    assert again.GetStatus()["status"]["varlink"]["refused_connections"] == 1
    for conn in conns[1:]:
        conn.close()


def test_follower_streams_then_falls_back_to_the_store_when_the_daemon_goes(served):
    store = served.store
    reader = VarlinkStore(served.server.path, fallback=lambda: SqliteStore(store.path))
    follower = reader.follow(EventFilter(kdevs=("loop1",)))
    first = events_at(3)
    served.emit(*first, *events_at(1, kdev="other"))
    got = read_follower(follower, 3)
    assert [e.to_dict() for e in got] == [e.to_dict() for e in first]
    served.close()  # the daemon stops: the stream ends
    assert follower.read() == []  # switched to the store's follower, from now on
    later = events_at(2, start=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))
    for event in later:
        store.append(event)
    store.append(dataclasses.replace(first[0]))  # seen already: not printed twice
    assert [e.event_id for e in read_follower(follower, 2)] == [e.event_id for e in later]
    follower.close()
    reader.close()


def test_follower_without_fallback_says_the_daemon_went(served):
    follower = VarlinkStore(served.server.path).follow(EventFilter())
    served.close()
    with pytest.raises(StoreError, match="closed the Varlink connection"):
        read_follower(follower, 1, deadline_s=5)


def test_a_daemon_that_does_not_answer_is_not_waited_for(tmp_path, monkeypatch):
    """A socket that accepts but never answers (a stopped daemon): the
    reader gives up after CONNECT_TIMEOUT and follows the store."""
    import peripety.stores.varlink as reader_module

    monkeypatch.setattr(reader_module, "CONNECT_TIMEOUT", 0.5)
    path = tmp_path / "mute"
    mute = socket.socket(socket.AF_UNIX)
    mute.bind(str(path))
    mute.listen()  # connections wait in the backlog, unanswered
    store = SqliteStore(tmp_path / "events.db", write=True)
    reader = VarlinkStore(path, fallback=lambda: SqliteStore(store.path))
    follower = reader.follow(EventFilter())
    assert not isinstance(follower, reader_module.VarlinkFollower)
    event = events_at(1)[0]
    store.append(event)
    assert [e.event_id for e in read_follower(follower, 1)] == [event.event_id]
    follower.close()
    with pytest.raises(reader_module.VarlinkUnavailable, match="did not answer"):
        VarlinkStore(path).follow(EventFilter())
    reader.close()
    store.close()
    mute.close()


# -- queries off the loop -----------------------------------------------------------------
def held_query(path, flt: dict) -> socket.socket:
    """A Query (with more) whose client does not read: its worker waits
    for the client, so the query stays in progress until it reads."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(str(path))
    sock.sendall(json.dumps({"method": "io.peripety.Query", "more": True,
                             "parameters": {"filter": flt}}).encode() + b"\0")
    return sock


def read_query(sock: socket.socket, buf: bytearray | None = None) -> list[dict]:
    """Every event of a Query's replies, up to its last one (what came
    after it stays in ``buf``)."""
    buf, events = bytearray() if buf is None else buf, []
    while True:
        [reply] = replies(sock, buf, 1)
        assert "error" not in reply, reply
        events += reply["parameters"]["events"]
        if not reply.get("continues"):
            return events


def until_stats(served, predicate, what: str) -> dict:
    """The server's stats (read in its loop's thread) once ``predicate`` holds."""
    deadline = time.monotonic() + 30
    while True:
        stats = served.run(served.server.stats)
        if predicate(stats):
            return stats
        assert time.monotonic() < deadline, f"{what}: {stats}"
        time.sleep(0.02)


def query_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("peripety-varlink-query")]


def test_a_query_in_progress_does_not_hold_the_loop(served):
    """A Query runs in a worker thread: while one is in progress (its
    client does not read, so it cannot end), the loop still stores
    events and streams them to a Monitor client (the sentinel) and
    answers other calls; the query then delivers every event."""
    history = events_at(1500)
    served.emit(*history)
    held = held_query(served.server.path, {"kdevs": ["loop1"]})
    until_stats(served, lambda s: s["queries_running"] == 1, "the query never started")
    monitor = connect(served.server.path)
    monitor.sendall(b'{"method": "io.peripety.Monitor", "more": true, "parameters": {"filter": {"kdevs": ["sentinel"]}}}\0')
    buf = bytearray()
    assert replies(monitor, buf, 1) == [{"continues": True, "parameters": {}}]
    sentinel = events_at(1, start=dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc), kdev="sentinel")[0]
    served.emit(sentinel)
    [streamed] = replies(monitor, buf, 1)
    assert streamed["parameters"]["event"]["event_id"] == sentinel.event_id
    status = vclient(served.server.path).GetStatus()["status"]["varlink"]
    assert status["queries_running"] == 1 and status["queries_waiting"] == 0  # still in progress
    assert read_query(held) == [e.to_dict() for e in history]
    until_stats(served, lambda s: s["queries_running"] == 0, "the query did not end")
    held.close()
    monitor.close()


def test_at_most_query_workers_queries_run_the_rest_wait(served):
    served.emit(*events_at(1200))
    workers = served.run(served.server.stats)["query_workers"]
    assert workers == 2
    held = [held_query(served.server.path, {}) for _ in range(workers + 1)]
    until_stats(served, lambda s: s["queries_running"] == workers and s["queries_waiting"] == 1,
                "queries beyond the workers did not wait")
    assert len(query_threads()) == workers
    assert vclient(served.server.path).GetStatus()["status"]["varlink"]["queries_waiting"] == 1
    # the first client reads its answer: the waiting query starts
    assert len(read_query(held[0])) == 1200
    until_stats(served, lambda s: s["queries_running"] == workers and s["queries_waiting"] == 0,
                "the waiting query did not start")
    # a client that goes away cancels its query (the worker stops waiting for it)
    held[1].close()
    until_stats(served, lambda s: s["queries_running"] == 1, "a closed client's query went on")
    assert len(read_query(held[2])) == 1200
    until_stats(served, lambda s: s["queries_running"] == 0, "the last query did not end")
    for sock in held:
        sock.close()


def test_a_waiting_query_whose_client_leaves_never_runs(served):
    served.emit(*events_at(1200))
    held = [held_query(served.server.path, {}) for _ in range(2)]
    until_stats(served, lambda s: s["queries_running"] == 2, "the queries did not start")
    leaving = held_query(served.server.path, {})
    until_stats(served, lambda s: s["queries_waiting"] == 1, "the third query did not wait")
    leaving.close()
    until_stats(served, lambda s: s["queries_waiting"] == 0 and s["clients"] == 2, "the left query still waits")
    assert served.run(served.server.stats)["queries_running"] == 2
    for sock in held:
        sock.close()
    until_stats(served, lambda s: s["queries_running"] == 0, "closed clients' queries went on")


def test_stopping_mid_query_cancels_it_and_leaves_no_thread(served):
    served.emit(*events_at(1200))
    held = [held_query(served.server.path, {}) for _ in range(3)]
    until_stats(served, lambda s: s["queries_running"] == 2 and s["queries_waiting"] == 1, "queries not started")
    assert query_threads()
    served.close()
    assert query_threads() == []
    assert not served.server.path.exists()
    for sock in held:  # each connection was closed, mid-answer or before it
        sock.settimeout(30)
        while sock.recv(65536):
            pass
        sock.close()


def test_calls_pipelined_behind_a_query_wait_unread_then_are_answered(served, caplog):
    """Calls sent behind a Query in progress are not answered meanwhile
    (one call at a time) and, its replies or its calls piling up, not even
    read: the client's sends block. Once the query is read, every one of
    them is answered."""
    from peripety.outputs.varlink import MAX_REQUEST

    served.emit(*events_at(1200))
    held = held_query(served.server.path, {})
    until_stats(served, lambda s: s["queries_running"] == 1, "the query did not start")
    held.setblocking(False)
    call = b'{"method": "io.peripety.GetStatus"}\0'
    sent, unsent = 0, b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the server stops reading (the socket stays full)
        unsent = unsent or call * 1024
        try:
            n = held.send(unsent)
        except BlockingIOError:
            if not select.select([], [held], [], 1.0)[1]:
                break
            continue
        sent += n
        unsent = unsent[n:]
    assert sent < 64 * MAX_REQUEST  # the server stopped reading it
    assert "serving a client failed" not in caplog.text
    held.setblocking(True)
    buf = bytearray()
    assert len(read_query(held, buf)) == 1200
    calls = (sent + len(unsent) % len(call)) // len(call)
    got: list[dict] = []
    reader = threading.Thread(target=lambda: got.extend(replies(held, buf, calls)))
    reader.start()  # reading while the last call is completed: the server answers as it reads
    held.sendall(unsent[:len(unsent) % len(call)])
    reader.join(30)
    assert len(got) == calls and all("status" in reply["parameters"] for reply in got)
    assert "serving a client failed" not in caplog.text
    held.close()
