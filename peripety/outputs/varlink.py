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
"""

from __future__ import annotations

import grp
import json
import logging
import os
import selectors
import socket
import stat
from pathlib import Path
from typing import Callable

from ..errors import PeripetyError
from ..event import StorageEvent
from ..event_json import compact_json
from ..safefiles import UnsafePathError, check_private_dir
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
_RECV = 65536


def _error_reply(name: str, parameters: dict) -> bytes:
    return json.dumps({"error": name, "parameters": parameters}).encode() + b"\0"


class _Connection:
    __slots__ = ("sock", "inbuf", "out", "monitor", "missed", "closed", "peer_uid")

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


class VarlinkServer:
    """The ``io.peripety`` service on ``path``: an output (``on_event``) that
    is also polled by the loop (``fileno``/``read``)."""

    name = "varlink"
    is_output = True
    """Polled by the loop, but not a source (doc/design.md, "Outputs")."""

    def __init__(self, path: str | os.PathLike, *, store, status: Callable[[], dict],
                 known_event_types: Callable[[], set[str]], group: str | None = None,
                 max_pending: int = MAX_PENDING):
        self.path = Path(path)
        self.max_pending = max_pending
        self.store = store
        self._status = status
        self._known_event_types = known_event_types
        self._selector = selectors.DefaultSelector()
        self._connections: dict[int, _Connection] = {}
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self.dropped_events = 0
        self.refused = 0
        self._service = _make_service(_Methods(self))
        self._bind(group)

    # -- the socket --------------------------------------------------------------
    def _bind(self, group: str | None) -> None:
        """Bind ``path`` (its directory checked as the state directories
        are; a stale socket replaced, anything else refused), mode 0600, or
        0660 for ``group``."""
        gid = None
        if group is not None:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                raise PeripetyError(f"--varlink-group {group}: no such group") from None
        check_private_dir(self.path.parent, mode=0o755)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise UnsafePathError(self.path, "it exists and is not a socket; remove it or choose "
                                                 "another --varlink path")
            os.unlink(self.path)  # a previous daemon's (the instance lock says none runs)
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
            if conn.closed:
                continue
            if mask & selectors.EVENT_WRITE:
                self._flush(conn)
                if not conn.out:
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
            while not conn.closed and conn.monitor is None and len(conn.out) < self.max_pending:
                end = conn.inbuf.find(b"\0")
                if end < 0:
                    break
                message = bytes(conn.inbuf[:end])
                del conn.inbuf[:end + 1]
                self._call(conn, message)
            self._flush(conn)
            if conn.out or conn.monitor is not None or b"\0" not in conn.inbuf:
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
        try:
            replies = list(self._service.handle(message, _server=self, _request=conn))
        except (TypeError, ValueError, AttributeError, KeyError):
            # The package's parameter checks raise these on ill-typed parameters.
            replies = [json.dumps({"error": "org.varlink.service.InvalidParameter",
                                   "parameters": {"parameter": "parameters"}}).encode()]
        for reply in replies:
            if reply is not None:
                conn.out += reply + b"\0"

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
        if len(conn.out) < self.max_pending:
            events |= selectors.EVENT_READ
        try:
            if self._selector.get_key(conn.sock).events != events:
                self._selector.modify(conn.sock, events, conn)
        except KeyError:
            pass

    def _drop(self, conn: _Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
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
        }

    def close(self) -> None:
        """Send what the sockets take now, close every connection (Monitor
        streams end) and remove the socket."""
        if self._listener is None:
            return
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
        self._selector.close()


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
        except varlink.VarlinkError:
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

    def _filter(self, message: dict, limit=None):
        from ..cli.filters import FilterFieldError, filter_from_fields

        fields = (message.get("parameters") or {}).get("filter")
        try:
            return filter_from_fields(fields, limit=limit, known_types=self.server._known_event_types())
        except FilterFieldError as exc:
            raise _varlink_error("InvalidFilter", field=exc.field, reason=exc.reason) from None

    @_answered
    def Query(self, filter, limit, _message=None, _more=False):  # noqa: A002 (the interface's name)
        from ..cli.query import in_time_order

        flt = self._filter(_message, limit=(_message.get("parameters") or {}).get("limit"))
        try:
            events = [e.to_dict() for e in in_time_order(self.server.store.query(flt))]
        except PeripetyError as exc:
            raise _varlink_error("StoreFailed", reason=str(exc)) from None
        if not _more:
            return {"events": events}
        return _chunks(events)

    @_answered
    def Monitor(self, filter, _message=None, _more=False, _request=None):  # noqa: A002
        if not _more:
            raise _varlink_error("ExpectedMore")
        flt = self._filter(_message)
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


def _chunks(events: list[dict]):
    for start in range(0, max(len(events), 1), QUERY_CHUNK):
        last = start + QUERY_CHUNK >= len(events)
        yield {"events": events[start:start + QUERY_CHUNK], "_continues": not last}


def _started():
    yield {"_continues": True}
