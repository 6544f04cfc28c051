"""The Varlink service ``io.peripety`` (``io.peripety.varlink`` beside this
file): Query, Monitor, GetBlockInfo, ListBlockDevices and GetStatus on a
unix socket, served from the daemon's one selector loop. See doc/design.md,
"Outputs".

The ``varlink`` package's ``Service`` parses the interface, checks the
calls and answers ``org.varlink.service.GetInfo`` and
``GetInterfaceDescription``; its documented way to run without its own
server is used: split the stream at NUL bytes and feed each message to
``Service.handle``. Its ``Server`` is not used: it is socketserver-based
(a thread or process per connection, blocking reads of one byte at a
time), which cannot live in the daemon's single-threaded loop. The
transport here is ours: a non-blocking listening socket and connections
polled through one epoll descriptor of this object (its ``fileno()``,
polled by the loop like a source's), with a bounded output buffer per
connection.

Slow clients: a connection whose unsent replies pass ``MAX_PENDING`` is
not read (one call at a time, so a client cannot queue unbounded work),
and a Monitor stream drops the events that do not fit, counting them for
the client (``missed`` in its next reply) and in ``GetStatus``. Nothing
here ever waits on a client: the loop stores events regardless.

Queries run off the loop: reading a long history takes as long as ``prpt
query`` would, and the loop must meanwhile keep reading /dev/kmsg and the
BPF ring buffer. A ``Query`` call goes to one of ``QUERY_WORKERS`` threads
(``_QueryPool``), each with its own store reader (a SQLite connection of
its own; a journal reader per query); its replies come back through a
queue per call and a wake-up pipe polled with the connections, and the
worker waits (it never buffers more than ``MAX_PENDING`` for a client that
does not read). At most ``QUERY_WORKERS`` queries run at once; more wait
their turn, first come first served. A connection has one call at a time
and at most ``MAX_CLIENTS`` connections are served, so at most
``MAX_CLIENTS - QUERY_WORKERS`` queries can wait. A client that closes its
connection cancels its query, and stopping the daemon cancels every query
and joins the threads before the socket is removed.

``GetBlockInfo`` and ``ListBlockDevices`` stay in the loop: they read
sysfs and udev's database (no store, no disk) through the process's one
libudev context, which the loop's device timeline uses too and which
libudev does not allow to be used from two threads at once.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import grp
import json
import logging
import os
import selectors
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import PeripetyError
from ..event import StorageEvent
from ..event_json import compact_json
from ..safefiles import UnsafePathError, check_dir_chain, check_private_dir
from ..stores.varlink import DEFAULT_SOCKET as _DEFAULT_SOCKET

log = logging.getLogger("peripety.outputs.varlink")

DEFAULT_SOCKET = _DEFAULT_SOCKET
INTERFACE = "io.peripety"
INTERFACE_DIR = Path(__file__).parent
MAX_CLIENTS = 64
"""Connections served at once; more are refused with TooManyClients."""
MAX_PENDING = 4 << 20
"""Bytes of replies kept for one connection (see the module doc)."""
MAX_REQUEST = 1 << 20
"""A call longer than this (no NUL yet) closes the connection."""
QUERY_CHUNK = 1000
"""Events per reply of a Query called with ``more``."""
QUERY_WORKERS = 2
"""Queries answered at once (threads); more wait their turn (module doc)."""
QUERY_STOP_TIMEOUT = 5.0
"""Seconds ``close`` waits for cancelled queries' threads to end."""
OFF_LOOP_METHODS = frozenset({f"{INTERFACE}.Query"})
"""Calls answered by a worker thread, not in the daemon's loop."""
_RECV = 65536
_WAKE = object()
"""The selector key of the pipe workers write to when a reply is ready."""


class _Cancelled(Exception):
    """A query whose client went away, or the daemon stops."""


SUN_PATH_MAX = 107
"""Bytes of a unix socket's path (``sun_path`` less its NUL)."""


class VarlinkOptionError(UnsafePathError):
    """--varlink or --varlink-group as given cannot be served: which option,
    which value, why and what to do. Raised alike by the daemon at start and
    by ``peripetyd --check``."""

    def __init__(self, option: str, value, reason: str):
        self.option = option
        self.path = str(value)
        self.reason = reason
        PeripetyError.__init__(self, f"{option} {value}: {reason}")


def check_socket_path(path: str | os.PathLike, *, create: bool = False) -> str:
    """Refuse a --varlink path the daemon cannot safely bind; with
    ``create`` (the daemon), make the socket's own directory (0755) when
    its parent exists. Returns what the path's state means (for --check)."""
    path = Path(path)

    def refuse(reason: str):
        raise VarlinkOptionError("--varlink", path, reason)

    if not path.is_absolute():
        refuse(f"give an absolute path, e.g. {DEFAULT_SOCKET} (or off for no Varlink service)")
    if path != Path(os.path.normpath(path)) or path.name in ("", ".", ".."):
        refuse(f"give the socket's path plainly, e.g. {os.path.normpath(path)}")
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        refuse(f"{len(os.fsencode(path))} bytes, more than a unix socket's path may have ({SUN_PATH_MAX}); "
               "choose a shorter path")
    directory = path.parent
    said = "directory checked"
    try:
        if not os.path.lexists(directory):
            if not os.path.isdir(directory.parent):
                refuse(f"the directory {directory.parent} does not exist (peripetyd creates only the socket's "
                       f"own directory, {directory.name}): create it, or fix the path")
            check_dir_chain(directory.parent)
            said = f"{directory} will be created, mode 0755"
            if create:
                check_private_dir(directory, mode=0o755)
        else:
            check_private_dir(directory, create=False)
    except VarlinkOptionError:
        raise
    except UnsafePathError as exc:
        refuse(f"{exc}; or choose another --varlink path (the default is {DEFAULT_SOCKET})")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return said
    except OSError as exc:
        refuse(f"cannot be checked: {exc.strerror}")
    if stat.S_ISLNK(st.st_mode):
        refuse("it is a symbolic link; peripetyd does not bind through links: remove it or choose another "
               "--varlink path")
    if not stat.S_ISSOCK(st.st_mode):
        refuse("it exists and is not a socket; remove it or choose another --varlink path")
    return said + "; a socket is there (a running peripetyd's, or a stale one replaced at start)"


def group_id(group: str) -> int:
    """The gid of --varlink-group ``group`` (a name or a number)."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        pass
    if group.isdigit():
        try:
            return grp.getgrgid(int(group)).gr_gid
        except KeyError:
            pass
    raise VarlinkOptionError("--varlink-group", group, "no such group (getent group lists them); create it "
                                                      "or name an existing one")


def _error_reply(name: str, parameters: dict) -> bytes:
    return json.dumps({"error": name, "parameters": parameters}).encode() + b"\0"


class _Connection:
    __slots__ = ("sock", "inbuf", "out", "monitor", "missed", "closed", "peer_uid", "job")

    def __init__(self, sock: socket.socket, peer_uid: int | None):
        self.sock = sock
        self.inbuf = bytearray()
        self.out = bytearray()
        self.monitor = None
        """The EventFilter of this connection's Monitor stream, once set up."""
        self.missed = 0
        """Events dropped for this client since its last reply."""
        self.closed = False
        self.peer_uid = peer_uid
        self.job: _Job | None = None
        """The call a worker answers for this connection (its next calls wait)."""


class _Job:
    """One call answered off the loop: the worker puts its replies in
    ``outbox`` (waiting while more than ``max_pending`` bytes are there),
    the loop moves them to the connection as it can send them."""

    def __init__(self, conn: _Connection, message: bytes, known_types: set[str], max_pending: int, wake):
        self.conn = conn
        self.message = message
        self.known_types = known_types
        """The event types known when the call came (read in the loop)."""
        self.max_pending = max_pending
        self._wake = wake
        self.cond = threading.Condition()
        self.outbox: collections.deque[bytes] = collections.deque()
        self.outbox_bytes = 0
        self.done = False
        self.cancelled = False
        self.events: list[StorageEvent] | None = None
        """A Query's answer, encoded by the worker event by event (``_query_replies``)."""
        self.more = False

    def put(self, reply: bytes) -> None:
        """The worker's reply; returns once the loop took enough of what
        waits (the client reads), or raises _Cancelled."""
        with self.cond:
            if self.cancelled:
                raise _Cancelled
            self.outbox.append(reply)
            self.outbox_bytes += len(reply)
            self._wake()
            while self.outbox_bytes > self.max_pending and not self.cancelled:
                self.cond.wait()
            if self.cancelled:
                raise _Cancelled

    def take(self, room: int) -> tuple[list[bytes], bool]:
        """The loop's side: replies while ``room`` bytes allow (at least
        one), and whether the call is over (answered and all taken)."""
        taken = []
        with self.cond:
            while self.outbox and room > 0:
                reply = self.outbox.popleft()
                self.outbox_bytes -= len(reply)
                room -= len(reply)
                taken.append(reply)
            if taken:
                self.cond.notify_all()
            return taken, self.done and not self.outbox

    def finish(self) -> None:
        with self.cond:
            self.done = True
        self._wake()

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()

    def watch(self, items):
        """``items``, stopping with _Cancelled once the call is cancelled
        (a long store read ends at the next event)."""
        for item in items:
            if self.cancelled:
                raise _Cancelled
            yield item


class _QueryPool:
    """``workers`` threads (started at the first call) answering jobs in
    the order they came, each thread with its own store reader."""

    def __init__(self, answer: Callable[[_Job], None], open_reader: Callable[[], object], workers: int):
        self._answer = answer
        self._open_reader = open_reader
        self.workers = workers
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Job] = collections.deque()
        self._threads: list[threading.Thread] = []
        self._local = threading.local()
        self._stopping = False
        self.running: set[_Job] = set()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, job: _Job) -> None:
        with self._cond:
            if not self._threads:
                for n in range(self.workers):
                    thread = threading.Thread(target=self._work, name=f"peripety-varlink-query-{n}", daemon=True)
                    thread.start()
                    self._threads.append(thread)
            self._waiting.append(job)
            self._cond.notify()

    def discard(self, job: _Job) -> None:
        """``job``'s client went: not started, or stopped at its next step."""
        job.cancel()
        with self._cond:
            try:
                self._waiting.remove(job)
            except ValueError:
                pass

    def reader(self):
        """This worker's store reader (opened at its first query)."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = self._open_reader()
        return reader

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._waiting and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        return
                    job = self._waiting.popleft()
                    self.running.add(job)
                try:
                    self._answer(job)
                except _Cancelled:
                    pass
                except Exception:  # a bug: logged, the worker goes on
                    log.exception("Varlink: answering a query failed")
                finally:
                    with self._cond:
                        self.running.discard(job)
                    job.finish()
        finally:
            self._close_reader()

    def _close_reader(self) -> None:
        reader = getattr(self._local, "reader", None)
        self._local.reader = None
        close = getattr(reader, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing a reader never stops the shutdown
                log.exception("Varlink: closing a query reader failed")

    def stop(self, timeout: float) -> list[threading.Thread]:
        """Cancel every query, end the threads; those still running after
        ``timeout`` seconds are returned (they end at their next step)."""
        with self._cond:
            self._stopping = True
            jobs = list(self._waiting) + list(self.running)
            self._waiting.clear()
            self._cond.notify_all()
        for job in jobs:
            job.cancel()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t for t in self._threads if t.is_alive()]


class VarlinkServer:
    """The ``io.peripety`` service on ``path``: an output (``on_event``) that
    is also polled by the loop (``fileno``/``read``)."""

    name = "varlink"
    is_output = True
    """Polled by the loop, but not a source (doc/design.md, "Outputs")."""

    def __init__(self, path: str | os.PathLike, *, store, status: Callable[[], dict],
                 known_event_types: Callable[[], set[str]], group: str | None = None,
                 max_pending: int = MAX_PENDING, open_reader: Callable[[], object] | None = None,
                 query_workers: int = QUERY_WORKERS):
        self.path = Path(path)
        self.max_pending = max_pending
        self.store = store
        """The daemon's store: read only through each worker's own reader."""
        self._status = status
        self._known_event_types = known_event_types
        self._selector = selectors.DefaultSelector()
        self._connections: dict[int, _Connection] = {}
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self.dropped_events = 0
        self.refused = 0
        self._service = _make_service(_Methods(self))
        self._busy: set[_Connection] = set()
        """Connections whose call a worker answers."""
        self._queries = _QueryPool(self._answer_off_loop, open_reader or _reader_opener(store), query_workers)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, _WAKE)
        try:
            self._bind(group)
        except BaseException:
            self._close_wake_pipe()
            raise

    # -- the socket --------------------------------------------------------------
    def _bind(self, group: str | None) -> None:
        """Bind ``path`` (its directory checked as the state directories
        are; a stale socket replaced, anything else refused), mode 0600, or
        0660 for ``group``."""
        gid = group_id(group) if group is not None else None
        check_socket_path(self.path, create=True)
        if os.path.lexists(self.path):
            os.unlink(self.path)  # a socket: a previous daemon's (the instance lock says none runs)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # never connectable by others, even for an instant
        try:
            sock.bind(str(self.path))
        except OSError as exc:
            sock.close()
            raise PeripetyError(f"cannot create the Varlink socket {self.path}: {exc.strerror}") from None
        finally:
            os.umask(old_umask)
        if gid is not None:
            try:
                os.chown(self.path, -1, gid)
            except PermissionError:
                sock.close()
                os.unlink(self.path)
                raise PeripetyError(
                    f"--varlink-group {group}: cannot give the socket {self.path} to that group without "
                    f"CAP_CHOWN; run peripetyd as a member of it (SupplementaryGroups={group} in its unit)") from None
            os.chmod(self.path, 0o660)
        else:
            os.chmod(self.path, 0o600)
        st = os.lstat(self.path)
        self._inode = (st.st_dev, st.st_ino)
        sock.listen(64)
        self._listener = sock
        self._selector.register(sock, selectors.EVENT_READ, None)
        log.info("Varlink interface %s on %s (mode %04o%s)", INTERFACE, self.path, stat.S_IMODE(st.st_mode),
                 f", group {group}" if group else "")

    def fileno(self) -> int:
        """The descriptor the daemon's loop polls: readable when a
        connection or the listening socket needs attention."""
        return self._selector.fileno()

    def read(self) -> list:
        """Serve whatever is ready now; never blocks. A failure here is
        logged and stops nothing (doc/design.md, "Outputs")."""
        try:
            self._serve()
        except Exception:  # a bug in serving a client never stops the daemon's loop
            log.exception("Varlink: serving a client failed")
        return []

    def _serve(self) -> None:
        for key, mask in self._selector.select(0):
            conn = key.data
            if conn is None:
                self._accept()
                continue
            if conn is _WAKE:
                self._collect_replies()
                continue
            if conn.closed:
                continue
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
                if conn.job is not None:
                    self._pump(conn)  # the worker's next replies, now that some were sent
                elif not conn.out:
                    self._process(conn)  # calls held back while replies were pending
            if not conn.closed and mask & selectors.EVENT_READ:
                self._receive(conn)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the loop tries again
                log.warning("Varlink: cannot accept a connection: %s", exc.strerror)
                return
            sock.setblocking(False)
            if len(self._connections) >= MAX_CLIENTS:
                self.refused += 1
                if self.refused == 1 or self.refused % 100 == 0:
                    log.warning("Varlink: %d connections refused: %d already served", self.refused, MAX_CLIENTS)
                try:
                    sock.send(_error_reply(f"{INTERFACE}.TooManyClients", {"limit": MAX_CLIENTS}))
                except OSError:
                    pass
                sock.close()
                continue
            conn = _Connection(sock, _peer_uid(sock))
            self._connections[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _receive(self, conn: _Connection) -> None:
        while True:
            try:
                data = conn.sock.recv(_RECV)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(conn)
                return
            if not data:
                self._drop(conn)
                return
            if conn.monitor is not None:
                continue  # a streaming call is the connection's last; what follows is ignored
            conn.inbuf += data
            if len(conn.inbuf) > MAX_REQUEST and b"\0" not in conn.inbuf:
                log.warning("Varlink: a call longer than %d bytes; connection closed", MAX_REQUEST)
                self._drop(conn)
                return
            if len(conn.inbuf) >= MAX_REQUEST:
                break  # enough to work on; the rest waits in the kernel
        self._process(conn)

    def _process(self, conn: _Connection) -> None:
        """Answer the complete calls received, one at a time, while the
        replies waiting for the client stay under MAX_PENDING."""
        while not conn.closed:
            while (not conn.closed and conn.monitor is None and conn.job is None
                   and len(conn.out) < self.max_pending):
                end = conn.inbuf.find(b"\0")
                if end < 0:
                    break
                message = bytes(conn.inbuf[:end])
                del conn.inbuf[:end + 1]
                self._call(conn, message)
            self._flush(conn)
            if conn.out or conn.monitor is not None or conn.job is not None or b"\0" not in conn.inbuf:
                break

    def _call(self, conn: _Connection, message: bytes) -> None:
        try:
            call = json.loads(message)
            if not isinstance(call, dict) or not isinstance(call.get("method"), str):
                raise ValueError("not a method call")
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("Varlink: not a Varlink call (%s); connection closed", exc)
            self._drop(conn)
            return
        if call["method"] in OFF_LOOP_METHODS:
            conn.job = _Job(conn, message, self._known_event_types(), self.max_pending, self._wake)
            self._busy.add(conn)
            self._queries.submit(conn.job)
            return
        try:
            replies = list(self._service.handle(message, _server=self, _request=conn))
        except (TypeError, ValueError, AttributeError, KeyError):
            # The package's parameter checks raise these on ill-typed parameters.
            replies = [json.dumps({"error": "org.varlink.service.InvalidParameter",
                                   "parameters": {"parameter": "parameters"}}).encode()]
        for reply in replies:
            if reply is not None:
                conn.out += reply + b"\0"

    # -- calls answered off the loop ---------------------------------------------------
    def _answer_off_loop(self, job: _Job) -> None:
        """In a worker thread: ``job``'s replies, handed over one by one.
        The package checks the call and runs the method; a Query's events
        (``job.events``) are then encoded here, event by event: the
        package's one ``json.dumps`` of the whole answer would hold the
        GIL, and so the daemon's loop, for as long as it takes (1.8 s for
        50,000 events, benchmarks/varlink_query.py)."""
        with _cycle_collector_paused():
            try:
                replies = [r + b"\0" for r in self._service.handle(job.message, _server=self, _request=job)
                           if r is not None]
            except (TypeError, ValueError, AttributeError, KeyError):
                replies = [json.dumps({"error": "org.varlink.service.InvalidParameter",
                                       "parameters": {"parameter": "parameters"}}).encode() + b"\0"]
            if job.events is not None:
                replies = list(_query_replies(job))
                job.events = None  # freed before the collector runs again: it has nothing of them to walk
        for reply in replies:
            job.put(reply)

    def _wake(self) -> None:
        """Called by workers: the loop's next poll sees the pipe readable."""
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # full: the loop is woken already; closed: the server stopped

    def _collect_replies(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        for conn in list(self._busy):
            self._pump(conn)

    def _pump(self, conn: _Connection) -> None:
        """Move the worker's replies to the connection while it keeps up;
        once the call is answered, go on with the connection's next calls."""
        job = conn.job
        if job is None or conn.closed:
            return
        taken, over = job.take(self.max_pending - len(conn.out))
        for reply in taken:
            conn.out += reply
        if over:
            conn.job = None
            self._busy.discard(conn)
        self._flush(conn)
        if over and not conn.closed and not conn.out:
            self._process(conn)

    def _flush(self, conn: _Connection) -> None:
        """Send what the kernel takes now; wait for writability for the rest."""
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(conn)
                return
            del conn.out[:sent]
        self._update_interest(conn)

    def _update_interest(self, conn: _Connection) -> None:
        if conn.closed:
            return
        events = selectors.EVENT_WRITE if conn.out else 0
        if len(conn.out) < self.max_pending and len(conn.inbuf) < MAX_REQUEST:
            events |= selectors.EVENT_READ
        try:
            key = self._selector.get_key(conn.sock)
        except KeyError:
            key = None
        if not events:
            # Nothing to send, enough received (calls waiting behind a
            # query): out of the poll until the query's replies come.
            if key is not None:
                self._selector.unregister(conn.sock)
        elif key is None:
            self._selector.register(conn.sock, events, conn)
        elif key.events != events:
            self._selector.modify(conn.sock, events, conn)

    def _drop(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.job is not None:
            self._queries.discard(conn.job)  # cancelled: not started, or stopped at its next event
            self._busy.discard(conn)
        self._connections.pop(conn.sock.fileno(), None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    # -- the output ----------------------------------------------------------------
    def on_event(self, event: StorageEvent) -> None:
        """Queue ``event`` for each Monitor stream it matches and send what
        the sockets take now; a full buffer drops it for that client."""
        body = None
        for conn in list(self._connections.values()):
            if conn.monitor is None or conn.closed or not conn.monitor.matches(event):
                continue
            if body is None:
                body = b'{"continues":true,"parameters":{"event":' + compact_json(event).encode()
            if conn.missed:
                reply = body + b',"missed":%d}}\0' % conn.missed
            else:
                reply = body + b"}}\0"
            if len(conn.out) + len(reply) > self.max_pending:
                if not conn.missed:
                    log.warning("Varlink: a Monitor client (uid %s) does not keep up; dropping its events "
                                "until it reads", conn.peer_uid)
                conn.missed += 1
                self.dropped_events += 1
                continue
            conn.out += reply
            conn.missed = 0
            self._flush(conn)

    def tick(self) -> None:
        pass

    def reconfigure(self, config) -> None:
        pass

    def stats(self) -> dict:
        conns = list(self._connections.values())
        return {
            "socket": str(self.path),
            "clients": len(conns),
            "monitors": sum(1 for c in conns if c.monitor is not None),
            "dropped_events": self.dropped_events,
            "refused_connections": self.refused,
            "queries_running": len(self._queries.running),
            "queries_waiting": self._queries.waiting,
            "query_workers": self._queries.workers,
        }

    def close(self) -> None:
        """Cancel the queries and end their threads, send what the sockets
        take now, close every connection (Monitor streams end) and remove
        the socket."""
        if self._listener is None:
            return
        running = len(self._queries.running) + self._queries.waiting
        left = self._queries.stop(QUERY_STOP_TIMEOUT)
        if running:
            log.info("Varlink: %d query(ies) cancelled at stop", running)
        if left:
            # They stop at their next event; their wake-up pipe stays open
            # until then (closing it could let them write to a reused fd).
            log.warning("Varlink: %d query thread(s) still reading the store after %g s; not waited for",
                        len(left), QUERY_STOP_TIMEOUT)
        for conn in list(self._connections.values()):
            if conn.out:
                try:
                    conn.sock.send(conn.out)
                except OSError:
                    pass
            self._drop(conn)
        self._selector.unregister(self._listener)
        self._listener.close()
        self._listener = None
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
        self._close_wake_pipe(keep_open=bool(left))
        self._selector.close()

    def _close_wake_pipe(self, keep_open: bool = False) -> None:
        try:
            self._selector.unregister(self._wake_r)
        except (KeyError, ValueError):
            pass
        if keep_open:
            return
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    except OSError:
        return None
    return int.from_bytes(creds[4:8], "little", signed=False)


def _make_service(methods: "_Methods"):
    import varlink

    from .. import __version__

    service = varlink.Service(vendor="peripety", product="peripetyd", version=__version__,
                              url="", interface_dir=str(INTERFACE_DIR))
    # The package's decorator makes the handler by calling what it is given.
    service.interface(INTERFACE)(lambda: methods)
    return service


def _answered(method):
    """An unexpected exception in a method is answered with InternalError
    (and logged with its traceback), never a broken connection."""
    import functools

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        import varlink  # here, not at import: a daemon without the package still starts

        try:
            return method(self, *args, **kwargs)
        except (varlink.VarlinkError, _Cancelled):
            raise
        except Exception as exc:  # a bug: answered, logged, and the daemon goes on
            log.exception("Varlink: %s failed", method.__name__)
            raise _varlink_error("InternalError", reason=f"{type(exc).__name__}: {exc}") from None

    return guarded


def _varlink_error(name: str, **parameters):
    import varlink

    return varlink.VarlinkError({"error": f"{INTERFACE}.{name}", "parameters": parameters})


class _Methods:
    """The methods of io.peripety, called by ``varlink.Service`` with the
    parameters of the interface (``_message`` is the call as sent, for the
    checks the package does not make)."""

    def __init__(self, server: VarlinkServer):
        self.server = server

    def _filter(self, message: dict, known_types: set[str], limit=None):
        from ..cli.filters import FilterFieldError, filter_from_fields

        fields = (message.get("parameters") or {}).get("filter")
        try:
            return filter_from_fields(fields, limit=limit, known_types=known_types)
        except FilterFieldError as exc:
            raise _varlink_error("InvalidFilter", field=exc.field, reason=exc.reason) from None

    @_answered
    def Query(self, filter, limit, _message=None, _more=False, _request=None):  # noqa: A002 (the interface's name)
        """In a worker thread (``_request`` is its _Job): read with the
        worker's own reader, stopping at the next event once cancelled."""
        from ..cli.query import in_time_order

        job: _Job = _request
        flt = self._filter(_message, job.known_types, limit=(_message.get("parameters") or {}).get("limit"))
        try:
            reader = self.server._queries.reader()
            job.events = in_time_order(job.watch(reader.query(flt)))
        except PeripetyError as exc:
            raise _varlink_error("StoreFailed", reason=str(exc)) from None
        job.more = bool(_more)
        return {"events": []}  # the events: encoded by the worker (VarlinkServer._answer_off_loop)

    @_answered
    def Monitor(self, filter, _message=None, _more=False, _request=None):  # noqa: A002
        if not _more:
            raise _varlink_error("ExpectedMore")
        flt = self._filter(_message, self.server._known_event_types())
        _request.monitor = flt
        return _started()

    @_answered
    def GetBlockInfo(self, device):
        from ..devices import resolve

        try:
            info = resolve(device)
        except PeripetyError as exc:  # DeviceNotFound, or what the resolver could not read
            raise _varlink_error("NoSuchDevice", device=device, reason=str(exc)) from None
        return {"info": info.to_dict()}

    @_answered
    def ListBlockDevices(self):
        from ..devices import list_devices

        return {"devices": [info.to_dict() for info in list_devices()]}

    @_answered
    def GetStatus(self):
        status = dict(self.server._status())
        status["varlink"] = self.server.stats()
        return {"status": status}


def _reader_opener(store) -> Callable[[], object]:
    """How a worker opens a reader of the daemon's ``store`` (a
    SpoolingStore's is the store it wraps): a read-only SQLite connection
    of its own; a journal store of its own (each query opens its own
    sd-journal reader). Never the daemon's writing handle."""
    inner = getattr(store, "store", store)
    if inner.name == "sqlite":
        from ..stores.sqlite import SqliteStore

        return lambda: SqliteStore(inner.path)
    if inner.name == "journal":
        from ..stores.journal import JournalStore

        return lambda: JournalStore(inner.namespace, writers=inner.writers)
    raise PeripetyError(f"the Varlink service cannot read a {inner.name} store")


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _cycle_collector_paused():
    """No cyclic garbage collection while a worker reads and encodes a
    query: a full collection walks every object the query made (50,000
    events: 0.4-0.5 s) holding the GIL, so the daemon's loop waits that
    long (benchmarks/varlink_query.py). The events are freed by their
    reference counts before the collector runs again; ``prpt query`` does
    the same. Process-wide, counted across workers; the wait for a slow
    client happens outside."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def _query_replies(job: _Job):
    """A Query's replies as the package writes them: one, or with "more"
    one per QUERY_CHUNK events, the last with "continues": false. Each
    event is encoded on its own (``compact_json``: what ``prpt query
    --jsonl`` prints), so the worker lets the loop run between events."""
    events = job.events
    size = QUERY_CHUNK if job.more else max(len(events), 1)
    for start in range(0, max(len(events), 1), size):
        body = ",".join([compact_json(e) for e in job.watch(events[start:start + size])]).encode()
        if not job.more:
            yield b'{"parameters":{"events":[' + body + b"]}}\0"
        else:
            last = start + size >= len(events)
            yield b'{"continues":' + (b"false" if last else b"true") + b',"parameters":{"events":[' + body + b"]}}\0"


def _started():
    yield {"_continues": True}
