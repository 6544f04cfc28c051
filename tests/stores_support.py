"""Shared by the store tests: full events, a private journald, follower reads."""

from __future__ import annotations

import datetime as dt
import os
import select
import time
import uuid

from peripety.event import BlkInfo, Severity, StorageEvent


def full_event(name: str, event_type="FS_ERROR", sub_system="ext4", severity=Severity.Error,
               kdev="loop1", wwid="", owners=(), at: dt.datetime | None = None, **extra) -> StorageEvent:
    """An event with every field set; ``name`` goes into msg, to tell events apart."""
    at = at or dt.datetime.now().astimezone()
    info = BlkInfo(
        wwid=wwid, blk_type="Loop", blk_path=f"/dev/{kdev}", preferred_blk_path=f"/dev/{kdev}",
        dev_num="7:1", diskseq=42, uuid="0b5c2f9e-64a3-4f0a-9d3c-1f6d0e2a7c11",
        mount_point="/mnt/data", transport_id="", transport={"kind": "loop"},
        owners_wwids=list(owners), owners_types=["SCSI"] * len(owners),
        owners_paths=[f"/dev/sd{chr(97 + i)}" for i in range(len(owners))],
        owners_transport_ids=[""] * len(owners), missing=["transport"],
    )
    fields = dict(
        event_type=event_type, sub_system=sub_system, severity=severity, kdev=kdev,
        msg=f"{name}: something failed", raw_msg=f"EXT4-fs error (device {kdev}): {name}",
        timestamp=at, hostname="prpt-test-host", event_id=str(uuid.uuid4()), dev_num="7:1",
        cur_blk_info=info, hierarchy_blk_info=[info], extension={"sector": "2048", "blk_status": "I/O"},
        sources=["kmsg", "bpf"], root_cause_event_id=str(uuid.uuid4()), count=3,
        last_timestamp=at + dt.timedelta(milliseconds=500),
    )
    fields.update(extra)
    return StorageEvent(**fields)


def names(events) -> list[str]:
    return [e.msg.split(":")[0] for e in events]


def read_follower(follower, want: int, deadline_s: float = 20.0) -> list[StorageEvent]:
    """Read until ``want`` events came or the deadline passed (then the
    caller's assert on the result fails with what did arrive)."""
    events: list[StorageEvent] = []
    deadline = time.monotonic() + deadline_s
    while len(events) < want:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        fd = follower.fileno()
        if fd is None:
            follower.wait(left)
        else:
            select.select([fd], [], [], left)
        events += follower.read()
    return events


def namespace_name(tag: str) -> str:
    return f"prpt{tag}{os.getpid()}"
