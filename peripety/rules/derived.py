"""Fields a match derives from its named groups, beyond the text itself.

A rule whose regex has a group named here gets the fields its function
adds, in the daemon and in ``prpt parse`` alike (the rule engine adds them
when it builds the ``Match``):

``cdb``
    The hex bytes of a SCSI command descriptor block, as
    ``scsi_print_command`` (drivers/scsi/scsi_logging.c) prints it after
    ``CDB:``. For READ/WRITE(6/10/12/16) and the other commands of the
    same layouts (``tracepoints/codes.toml``; SBC-4 "READ (10)", "WRITE
    (16)"...): ``lba`` (the logical block address, in the device's logical
    blocks) and ``transfer_length`` (blocks). The logical block size is not
    in the line: 512-byte ``sector`` numbers are added where the device is
    known (``sector_from_lba``).
"""

from __future__ import annotations

from typing import Callable


def _cdb_fields(extension: dict[str, str]) -> None:
    cdb = extension.get("cdb")
    if not cdb or "lba" in extension:
        return
    # (late: the tracepoints package is not wanted by every rule user at start-up)
    from ..tracepoints.scsi import decode_cdb

    try:
        parsed = decode_cdb(bytes.fromhex(cdb))
    except ValueError:
        return
    if parsed.lba is not None:
        extension["lba"] = str(parsed.lba)
        extension["transfer_length"] = str(parsed.transfer_length)


DERIVED: dict[str, Callable[[dict[str, str]], None]] = {"cdb": _cdb_fields}


def derivers(group_names) -> tuple[Callable[[dict[str, str]], None], ...]:
    """The functions a rule with these named groups runs on its matches."""
    return tuple(f for name, f in DERIVED.items() if name in group_names)


def sector_from_lba(extension: dict[str, str], logical_block_size: int | None) -> None:
    """Add the 512-byte ``sector`` of a decoded CDB's ``lba`` when the
    device's logical block size is known (4Kn disks: LBA 10 is sector 80)."""
    lba = extension.get("lba")
    if lba is None or "sector" in extension or not logical_block_size or logical_block_size % 512:
        return
    extension["sector"] = str(int(lba) * (logical_block_size // 512))
