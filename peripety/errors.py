"""Errors peripety raises. Each carries what a user needs to act on it."""


class PeripetyError(Exception):
    """Base of every error peripety raises on purpose."""


class ConfigError(PeripetyError):
    """A configuration or rule file is invalid.

    ``path`` is the file, ``where`` names the spot inside it (a line, or a
    rule's position such as ``collector.regexs[2]``), ``reason`` says what is
    wrong and what to do.
    """

    def __init__(self, path, where, reason):
        self.path = str(path) if path is not None else "<string>"
        self.where = where
        self.reason = reason
        loc = f"{self.path}: {where}" if where else self.path
        super().__init__(f"{loc}: {reason}")


class EventFormatError(PeripetyError):
    """A serialised event (JSON, journal entry) cannot be read."""


class DeviceNotFound(PeripetyError):
    """A device identifier does not name any block device known here."""

    def __init__(self, key, reason="no such block device"):
        self.key = key
        super().__init__(f"{key}: {reason}")


class StoreError(PeripetyError):
    """An event store cannot be opened, written or read."""


class LogFormatError(PeripetyError):
    """A saved log cannot be read in the format asked for."""


class BpfUnavailable(PeripetyError):
    """``--bpf on`` was asked for but the tracepoint probes cannot run here.

    ``reasons`` lists each blocking problem with the command that fixes it.
    """

    def __init__(self, reasons):
        self.reasons = list(reasons)
        super().__init__("--bpf on: cannot load the tracepoint probes: " + "; ".join(self.reasons))
