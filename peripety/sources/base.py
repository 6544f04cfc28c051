"""The one interface of live sources (doc/design.md, "Sources").

A live source is polled by the daemon's loop: ``fileno()`` (readable when
``read()`` has something), ``read()`` (what is there now, never blocking),
``notices()`` (what the source has to say about itself: records the kernel
overwrote, samples lost), ``close()``. ``kind`` says what ``read()``
returns and so where it goes: ``records`` (``LogRecord``, to the rules),
``hits`` (``TracepointHit``, to the merge), ``uevents`` (``Uevent``, to
the device timeline).

    kmsg     sources/kmsg/      /dev/kmsg records           records
    journal  sources/journal.py user-space storage daemons  records
    udev     sources/udev.py    block uevents               uevents
    bpf      sources/bpf.py     tracepoint hits (bcc)       hits

Saved files (``LogFile``, sources/logfile.py) are read, not polled: they
give the same ``LogRecord`` for ``prpt parse`` and ``peripetyd --replay``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

RECORDS, HITS, UEVENTS = "records", "hits", "uevents"


@dataclass(frozen=True)
class Notice:
    """A source's word about itself, stored as a ``Peripety`` event."""

    event_type: str
    msg: str
    extension: dict[str, str] = field(default_factory=dict)


class LiveSource(Protocol):
    name: str
    kind: str

    def fileno(self) -> int | None: ...

    def read(self) -> Sequence: ...

    def notices(self) -> list[Notice]: ...

    def close(self) -> None: ...
