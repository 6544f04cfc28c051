"""Block-device uevents from udev as a live source: the device timeline's
input. The loop feeds them to ``DeviceTimeline.apply_all``; the timeline
never reads udev itself."""

from __future__ import annotations

import os

import pyudev

from ..devices import udevdb
from ..devices.timeline import Uevent, monotonic_usec
from .base import UEVENTS, Notice


class UdevSource:
    name = "udev"
    kind = UEVENTS

    def __init__(self, monitor):
        self._monitor = monitor

    @classmethod
    def open(cls) -> "UdevSource":
        """Subscribe to block uevents. Open it before enumerating the udev
        database (``DeviceTimeline.from_system``) so no event falls between."""
        monitor = pyudev.Monitor.from_netlink(udevdb.context())
        monitor.filter_by("block")
        monitor.start()
        return cls(monitor)

    def fileno(self) -> int:
        return self._monitor.fileno()

    def read(self) -> list[Uevent]:
        """Every pending uevent, without blocking."""
        out = []
        while True:
            device = self._monitor.poll(timeout=0)
            if device is None:
                return out
            num = device.device_number
            out.append(Uevent(
                action=device.action or "",
                name=device.sys_name,
                dev_num=f"{os.major(num)}:{os.minor(num)}",
                properties=dict(device.properties),
                seqnum=device.sequence_number,
                received_usec=monotonic_usec(),
            ))

    def notices(self) -> list[Notice]:
        return []

    def close(self) -> None:
        self._monitor = None
