"""Reading events from the local peripetyd over its Varlink interface
(``io.peripety``, peripety/outputs/io.peripety.varlink): a reader's store
with ``query`` (Query) and ``follow`` (a Monitor stream), for ``prpt
monitor`` and ``prpt top``. Events arrive as soon as the daemon stored
them, without waiting for journald's readers to wake.

Trust: the events are believed only from root's peripetyd: the socket
file must be a socket owned by root in a directory only root (or this
user) can change, and the process at the other end (SO_PEERCRED) must run
as uid 0. Otherwise the socket is refused (``VarlinkUntrusted``) and the
caller reads the store instead.

The wire format is Varlink's (NUL-terminated JSON messages), written here
directly: the ``varlink`` package's client blocks in a generator, while
``prpt top`` needs a descriptor to poll among its keyboard and signals.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import select
import socket
import stat
from pathlib import Path
from typing import Callable

from ..errors import StoreError
from ..event import StorageEvent
from ..safefiles import UnsafePathError, check_dir_chain
from .filter import EventFilter, _aware

log = logging.getLogger("peripety.stores.varlink")

DEFAULT_SOCKET = Path("/run/peripety/io.peripety")
"""Where peripetyd serves io.peripety by default (peripetyd --varlink)."""
CONNECT_TIMEOUT = 5.0
"""Seconds to wait for the daemon to answer a call's first reply."""
QUERY_TIMEOUT = 300.0
RECENT_IDS = 4096
"""Event ids remembered to skip the store's copies after falling back."""
_RECV = 65536


class VarlinkUnavailable(StoreError):
    """No daemon to ask: no socket, no permission, nobody answering."""


class VarlinkUntrusted(VarlinkUnavailable):
    """Something answers on the socket, but not root's peripetyd."""


def connect(path: str | os.PathLike = DEFAULT_SOCKET) -> socket.socket:
    """A connection to root's peripetyd at ``path`` (blocking, with
    CONNECT_TIMEOUT); VarlinkUnavailable/VarlinkUntrusted say why not."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise VarlinkUnavailable(f"{path}: no such socket (peripetyd not running, or started with "
                                 "--varlink off or another path)") from None
    except OSError as exc:
        raise VarlinkUnavailable(f"{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise VarlinkUntrusted(f"{path} is not a socket")
    if st.st_uid != 0:
        raise VarlinkUntrusted(f"{path} is owned by uid {st.st_uid}, not root: not peripetyd's socket")
    try:
        check_dir_chain(path.parent)
    except UnsafePathError as exc:
        raise VarlinkUntrusted(f"{path}: {exc}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(CONNECT_TIMEOUT)
    try:
        sock.connect(str(path))
    except PermissionError:
        sock.close()
        raise VarlinkUnavailable(f"{path}: permission denied (root only, unless peripetyd runs with "
                                 "--varlink-group naming one of your groups)") from None
    except OSError as exc:
        sock.close()
        raise VarlinkUnavailable(f"{path}: {exc.strerror or exc} (is peripetyd running?)") from None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    peer_uid = int.from_bytes(creds[4:8], "little")
    if peer_uid != 0:
        sock.close()
        raise VarlinkUntrusted(f"{path}: served by uid {peer_uid}, not root: not peripetyd")
    return sock


def filter_to_fields(flt: EventFilter) -> dict:
    """``flt`` as an io.peripety.Filter (device keys already resolved:
    they go as ``wwids``/``kdevs``, taken as they are by the daemon)."""
    fields: dict = {}
    for name in ("sub_systems", "event_types", "wwids", "kdevs", "event_ids", "hosts"):
        value = getattr(flt, name)
        if value:
            fields[name] = list(value)
    if flt.severity is not None:
        fields["severity"] = flt.severity.name
    for name in ("since", "until"):
        value = getattr(flt, name)
        if value is not None:
            fields[name] = _aware(value).isoformat(timespec="microseconds")
    return fields


def _call(sock: socket.socket, method: str, parameters: dict, more: bool = False) -> None:
    message = {"method": f"io.peripety.{method}", "parameters": parameters}
    if more:
        message["more"] = True
    sock.sendall(json.dumps(message).encode() + b"\0")


def _error(reply: dict) -> StoreError:
    params = reply.get("parameters") or {}
    detail = params.get("reason") or ", ".join(f"{k}={v}" for k, v in params.items())
    name = reply["error"]
    if name == "io.peripety.InvalidFilter":
        return StoreError(f"peripetyd refused the filter: {params.get('field')}: {params.get('reason')}")
    return StoreError(f"peripetyd answered {name}" + (f": {detail}" if detail else ""))


class _Replies:
    """Replies split out of a byte stream (NUL-terminated JSON)."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        self._buf += data
        replies = []
        while True:
            end = self._buf.find(b"\0")
            if end < 0:
                return replies
            replies.append(json.loads(self._buf[:end]))
            del self._buf[:end + 1]


class VarlinkStore:
    """The events of the local peripetyd, asked over Varlink. ``fallback``
    opens the store to read instead once the daemon went away (a follower
    switches to it; a query uses it); without one that is an error."""

    name = "varlink"
    offline = False

    def __init__(self, path: str | os.PathLike = DEFAULT_SOCKET, fallback: Callable[[], object] | None = None):
        self.path = Path(path)
        self._fallback_open = fallback
        self._fallback = None
        connect(self.path).close()  # here and now: VarlinkUnavailable says why not

    def fallback_store(self):
        if self._fallback is None:
            if self._fallback_open is None:
                return None
            self._fallback = self._fallback_open()
        return self._fallback

    def event_types(self) -> set[str]:
        """The event types the daemon's store holds (for --event-type
        values neither built in nor in this host's config), read from the
        store the daemon writes; empty without one."""
        store = self.fallback_store()
        return store.event_types() if store is not None else set()

    def query(self, flt: EventFilter) -> list[StorageEvent]:
        try:
            return self._query(flt)
        except VarlinkUnavailable:
            store = self.fallback_store()
            if store is None:
                raise
            log.info("peripetyd does not answer on %s: reading %s", self.path, store.name)
            return list(store.query(flt))

    def _query(self, flt: EventFilter) -> list[StorageEvent]:
        parameters: dict = {"filter": filter_to_fields(flt)}
        if flt.limit is not None:
            if flt.limit == 0:
                return []
            parameters["limit"] = flt.limit
        with connect(self.path) as sock:
            sock.settimeout(QUERY_TIMEOUT)
            _call(sock, "Query", parameters, more=True)
            replies = _Replies()
            events: list[StorageEvent] = []
            while True:
                try:
                    data = sock.recv(_RECV)
                except OSError as exc:
                    raise StoreError(f"{self.path}: {exc.strerror or exc}") from None
                if not data:
                    raise StoreError(f"{self.path}: peripetyd closed the connection before answering")
                for reply in replies.feed(data):
                    if reply.get("error"):
                        raise _error(reply)
                    events.extend(StorageEvent.from_dict(e) for e in reply["parameters"].get("events", []))
                    if not reply.get("continues"):
                        return events

    def follow(self, flt: EventFilter):
        """A Monitor stream (``VarlinkFollower``); the store's own follower
        when the daemon does not answer and there is a fallback."""
        try:
            return VarlinkFollower(self, flt)
        except VarlinkUnavailable as exc:
            store = self.fallback_store()
            if store is None:
                raise
            log.warning("peripetyd does not answer (%s): following %s", exc, store.name)
            return store.follow(flt)

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None


class VarlinkFollower:
    """A Monitor stream as a store follower (``fileno``, ``wait``, ``read``,
    ``close``). When the daemon closes it (stopped, restarted), the store's
    own follower takes over from then on, skipping the events already
    received; without a fallback, ``read`` raises StoreError."""

    def __init__(self, store: VarlinkStore, flt: EventFilter):
        self.store = store
        self.flt = flt
        self.missed = 0
        """Events the daemon dropped for this reader (it was too slow)."""
        self._replies = _Replies()
        self._recent: collections.deque[str] = collections.deque(maxlen=RECENT_IDS)
        self._recent_set: set[str] = set()
        self._fallback = None
        self._pending: list[dict] = []
        """Replies that came with the first one."""
        self._sock = connect(store.path)
        try:
            _call(self._sock, "Monitor", {"filter": filter_to_fields(flt)}, more=True)
            self._handshake()
        except BaseException:
            self._sock.close()
            raise
        self._sock.setblocking(False)

    def _handshake(self) -> None:
        """Wait for the first reply: from then on nothing stored is missed."""
        while True:
            try:
                data = self._sock.recv(_RECV)
            except TimeoutError:
                raise VarlinkUnavailable(f"{self.store.path}: peripetyd did not answer in "
                                         f"{CONNECT_TIMEOUT:.0f} s") from None
            except OSError as exc:
                raise VarlinkUnavailable(f"{self.store.path}: {exc.strerror or exc}") from None
            if not data:
                raise VarlinkUnavailable(f"{self.store.path}: peripetyd closed the connection")
            replies = self._replies.feed(data)
            if not replies:
                continue
            first = replies[0]
            if first.get("error"):
                raise _error(first)
            self._pending = replies[1:]
            return

    def fileno(self) -> int | None:
        if self._fallback is not None:
            return self._fallback.fileno()
        return self._sock.fileno()

    def wait(self, timeout: float) -> None:
        if self._fallback is not None and self._fallback.fileno() is None:
            self._fallback.wait(timeout)
            return
        select.select([self.fileno()], [], [], timeout)

    def read(self) -> list[StorageEvent]:
        if self._fallback is not None:
            return [e for e in self._fallback.read() if e.event_id not in self._recent_set]
        replies, self._pending = self._pending, []
        closed = False
        while True:
            try:
                data = self._sock.recv(_RECV)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                closed = True
                break
            if not data:
                closed = True
                break
            replies.extend(self._replies.feed(data))
        events = [self._event(reply) for reply in replies]
        events = [e for e in events if e is not None]
        if closed:
            events.extend(self._switch())
        return events

    def _event(self, reply: dict) -> StorageEvent | None:
        if reply.get("error"):
            raise _error(reply)
        params = reply.get("parameters") or {}
        missed = params.get("missed")
        if missed:
            self.missed += missed
            log.warning("peripetyd dropped %d events for this reader (it did not keep up); "
                        "prpt query --since shows them", missed)
        data = params.get("event")
        if data is None:
            return None
        event = StorageEvent.from_dict(data)
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(event.event_id)
        self._recent_set.add(event.event_id)
        return event

    def _switch(self) -> list[StorageEvent]:
        """The daemon closed the stream: follow the store from now on."""
        self._sock.close()
        store = self.store.fallback_store()
        if store is None:
            raise StoreError(f"peripetyd closed the Varlink connection {self.store.path} (stopped or restarted)")
        log.warning("peripetyd closed the Varlink stream (stopped or restarted): following %s from now on",
                    store.name)
        self._fallback = store.follow(self.flt)
        return [e for e in self._fallback.read() if e.event_id not in self._recent_set]

    def close(self) -> None:
        if self._fallback is not None:
            self._fallback.close()
        else:
            self._sock.close()

