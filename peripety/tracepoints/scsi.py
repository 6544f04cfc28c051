"""Decode SCSI results, sense data, NVMe status and block errno values.

The tables live in ``codes.toml`` (taken from the kernel headers named
there); this module only splits numbers into their parts and looks them up.
"""

from __future__ import annotations

import errno as _errno
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@cache
def _codes() -> dict:
    text = resources.files(__package__).joinpath("codes.toml").read_text()
    return tomllib.loads(text)


def _table(section: str, name: str) -> dict[int, object]:
    return {int(k, 0): v for k, v in _codes()[section][name].items()}


@cache
def _tables():
    return {
        "host_byte": _table("scsi", "host_byte"),
        "driver_byte": _table("scsi", "driver_byte"),
        "sam_status": _table("scsi", "sam_status"),
        "mlqueue": _table("scsi", "mlqueue"),
        "sense_key": _table("scsi", "sense_key"),
        "asc_ascq": _table("scsi", "asc_ascq"),
        "opcode": _table("scsi", "opcode"),
        "blk_status": _table("block", "status"),
        "nvme_sct": _table("nvme", "status_code_type"),
        "nvme_status": _table("nvme", "status"),
        "xfs_buf_flags": _table("xfs", "buf_flags"),
    }


def _name(table: str, value: int, unknown: str = "") -> str:
    found = _tables()[table].get(value)
    if found is None:
        return unknown or f"0x{value:02x}"
    return found[0] if isinstance(found, list) else found


# -- block -------------------------------------------------------------------


def errno_name(err: int) -> str:
    """``5`` -> ``EIO`` (positive errno)."""
    return _errno.errorcode.get(err, f"errno {err}")


def blk_status(err: int) -> tuple[str, str]:
    """Positive errno -> (``BLK_STS_*``, the text the kernel prints before
    ``error, dev``), e.g. 61 -> ("BLK_STS_MEDIUM", "critical medium")."""
    found = _tables()["blk_status"].get(err)
    return (found[0], found[1]) if found else ("", "")


def rwbs_op(rwbs: str) -> str:
    """The operation in a tracepoint ``rwbs`` string (``FWS`` -> WRITE)."""
    ops = _codes()["block"]["rwbs_op"]
    body = rwbs
    # A leading F is REQ_PREFLUSH when an operation letter follows it.
    if len(body) > 1 and body[0] == "F" and body[1] in "RWDFN":
        body = body[1:]
    if body[:2] in ops:
        return ops[body[:2]]
    return ops.get(body[:1], "")


# -- SCSI --------------------------------------------------------------------


@dataclass(frozen=True)
class ScsiResult:
    """``scsi_cmnd->result`` split into its bytes and named."""

    result: int
    host_byte: int
    host_byte_name: str
    driver_byte: int
    driver_byte_name: str
    msg_byte: int
    status_byte: int
    """The low byte: a SAM status on 5.14+ kernels."""
    sam_status_name: str


def decode_result(result: int) -> ScsiResult:
    result &= 0xFFFFFFFF
    host = (result >> 16) & 0xFF
    driver = (result >> 24) & 0xFF
    status = result & 0xFF
    return ScsiResult(
        result=result,
        host_byte=host,
        host_byte_name=_name("host_byte", host),
        driver_byte=driver,
        driver_byte_name=_name("driver_byte", driver),
        msg_byte=(result >> 8) & 0xFF,
        status_byte=status,
        sam_status_name=_name("sam_status", status),
    )


def mlqueue_name(rtn: int) -> str:
    """scsi_dispatch_cmd_error's ``rtn`` (4181 -> SCSI_MLQUEUE_HOST_BUSY)."""
    return _name("mlqueue", rtn, unknown=str(rtn))


def sense_key_name(key: int) -> str:
    return _name("sense_key", key)


def asc_ascq_name(asc: int, ascq: int) -> str:
    return _name("asc_ascq", asc << 8 | ascq, unknown=f"ASC 0x{asc:02x} ASCQ 0x{ascq:02x}")


@dataclass(frozen=True)
class Cdb:
    opcode: int
    opcode_name: str
    lba: int | None
    """Logical block address in the device's logical blocks."""
    transfer_length: int | None


def decode_cdb(cdb: bytes, opcode: int | None = None) -> Cdb:
    """Name the command and read LBA/length from READ/WRITE-style CDBs."""
    op = cdb[0] if cdb else (opcode or 0)
    name, layout = _tables()["opcode"].get(op, [f"opcode 0x{op:02x}", ""])
    lba = length = None
    if layout == "rw6" and len(cdb) >= 5:
        lba = int.from_bytes(cdb[1:4], "big") & 0x1FFFFF
        length = cdb[4] or 256
    elif layout == "rw10" and len(cdb) >= 9:
        lba, length = int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[7:9], "big")
    elif layout == "rw12" and len(cdb) >= 10:
        lba, length = int.from_bytes(cdb[2:6], "big"), int.from_bytes(cdb[6:10], "big")
    elif layout == "rw16" and len(cdb) >= 14:
        lba, length = int.from_bytes(cdb[2:10], "big"), int.from_bytes(cdb[10:14], "big")
    return Cdb(opcode=op, opcode_name=name, lba=lba, transfer_length=length)


# -- NVMe --------------------------------------------------------------------

NVME_SC_MORE = 0x2000
NVME_SC_DNR = 0x4000


@dataclass(frozen=True)
class NvmeStatus:
    status: int
    status_code_type: int
    status_code: int
    sct_name: str
    status_name: str
    crd: int
    more: bool
    dnr: bool
    """Do Not Retry: the controller says retrying cannot succeed."""


def decode_nvme_status(status: int) -> NvmeStatus:
    sct = (status >> 8) & 0x7
    sc = status & 0xFF
    return NvmeStatus(
        status=status,
        status_code_type=sct,
        status_code=sc,
        sct_name=_name("nvme_sct", sct, unknown=f"SCT {sct}"),
        status_name=_name("nvme_status", sct << 8 | sc, unknown=f"SCT {sct} SC 0x{sc:02x}"),
        crd=(status >> 11) & 0x3,
        more=bool(status & NVME_SC_MORE),
        dnr=bool(status & NVME_SC_DNR),
    )


# -- xfs ---------------------------------------------------------------------


def xfs_buf_flag_names(flags: int) -> list[str]:
    table = _tables()["xfs_buf_flags"]
    return [name for bit, name in sorted(table.items()) if flags & (1 << bit)]
