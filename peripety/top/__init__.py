"""``prpt top``: a live view of storage health.

``model`` holds the state (devices, recent events, view settings),
``panels`` draws it (one pure function per panel), ``keys`` and
``controller`` turn key presses into view changes, ``app`` runs the loop.
"""

from .model import DaemonStatus, SortMode, TopModel, read_daemon_status

__all__ = ["DaemonStatus", "SortMode", "TopModel", "read_daemon_status"]
