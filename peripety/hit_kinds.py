"""What each tracepoint kind becomes, one row per kind: the event type and
sub-system of a hit's event, and the extension keys that identify the same
failure in a kernel line (the merge key). The pipeline and the merge read
this table only. (Decoding each kind's sample is ``tracepoints/decode.py``;
the kind numbers shared with the C program are ``tracepoints/probes.toml``.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HitKind:
    kind: str
    event_type: str | None
    """None: decoded, but no event of its own (context for other hits)."""
    sub_system: str
    pair_keys: tuple[str, ...] = ()
    """Extension keys a kernel line and a hit share for one failure: the
    sector of a failed request, ext4's function and line, xfs's disk address."""


HIT_KINDS: dict[str, HitKind] = {row.kind: row for row in (
    HitKind("block_rq_error", "BLK_IO_ERROR", "block", ("sector",)),  # also the block_rq_complete fallback
    HitKind("scsi_cmd_error", "SCSI_CMD_FAILED", "SCSI"),
    # the sd driver's "CDB:" line decodes the same CDB: its LBA names the command
    HitKind("scsi_cmd_done", "SCSI_CMD_FAILED", "SCSI", ("lba",)),
    HitKind("scsi_cmd_timeout", "SCSI_CMD_TIMEOUT", "SCSI"),
    HitKind("scsi_eh_wakeup", None, "SCSI"),
    # no LBA in nvme_complete_rq: its status is the line's "(sct / sc)"
    HitKind("nvme_complete_rq", "NVME_IO_ERROR", "NVMe", ("sct", "sc")),
    HitKind("ext4_error", "FS_ERROR", "ext4", ("function", "line")),
    HitKind("xfs_buf_ioerror", "FS_IO_ERROR", "xfs", ("daddr",)),
)}

PAIR_KEYS: dict[str, tuple[str, ...]] = {
    row.event_type: row.pair_keys for row in HIT_KINDS.values() if row.event_type and row.pair_keys
}
"""Event type -> merge key, for events of either source (line or hit)."""
