"""The udev database, read through pyudev (libudev): no I/O to any disk.

A device the kernel knows but udev has not processed (no udevd, early boot)
has no database record; ``properties`` then returns None so the resolver
can say which fields are missing instead of guessing.
"""

from __future__ import annotations

import functools
import logging
import os

log = logging.getLogger("peripety.devices.udevdb")


@functools.lru_cache(maxsize=1)
def context():
    """One libudev context per process (creating one parses udev.conf)."""
    import pyudev  # late: `prpt parse` never needs libudev

    return pyudev.Context()


def record_properties(device) -> dict[str, str] | None:
    """Properties of a pyudev device if udev initialised it, else None."""
    props = dict(device.properties)
    # USEC_INITIALIZED is written by udevd when it first processes a device;
    # without it the properties are only the kernel's uevent file.
    if "USEC_INITIALIZED" not in props:
        return None
    return props


def properties(dev_num: str) -> dict[str, str] | None:
    """udev properties of block device ``major:minor``; None without a record."""
    import pyudev

    major, minor = (int(x) for x in dev_num.split(":"))
    try:
        device = pyudev.Devices.from_device_number(context(), "block", os.makedev(major, minor))
    except (pyudev.DeviceNotFoundError, ValueError) as exc:
        log.debug("udev has no block device %s: %s", dev_num, exc)
        return None
    return record_properties(device)


def dev_nums_with(prop: str, value: str) -> list[str]:
    """``major:minor`` of block devices whose udev record has ``prop=value``."""
    found = []
    for device in context().list_devices(subsystem="block").match_property(prop, value):
        num = device.device_number
        found.append(f"{os.major(num)}:{os.minor(num)}")
    return found
