"""Reading user-space storage daemons' messages from the journal."""

from .source import USERSPACE_IDENTIFIERS, JournalSource

__all__ = ["JournalSource", "USERSPACE_IDENTIFIERS"]
