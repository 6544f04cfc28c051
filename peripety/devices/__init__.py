"""Block-device identity: what a kernel device string means, now or at a
past kernel time.

``resolve(key)`` describes a device as a ``BlkInfo``; ``list_devices()``
lists them all; ``DeviceTimeline`` remembers which device a name or number
meant at each moment (names are reused when disks come and go).
"""

from .resolver import Resolver, list_devices, pretty_wwid, resolve
from .timeline import DeviceTimeline

__all__ = ["DeviceTimeline", "Resolver", "list_devices", "pretty_wwid", "resolve"]
