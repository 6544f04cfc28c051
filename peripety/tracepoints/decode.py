"""Raw samples from bpf/scsi_trace.c -> ``TracepointHit``.

Two steps, so recorded tracepoint records (SCSI/NVMe, which this machine
lacks) go through the same decoding as live samples:

1. ``sample_fields(raw)``: the C struct (its kind's layout in kinds.toml,
   built into ctypes by kinds.py) -> the kind and a dict keyed by the
   *tracepoint's* field names (``host_no``, ``rtn``, ``status``...).
   ``tracefs.unpack_record`` produces the same kind of dict from a raw
   tracepoint record.
2. ``hit_from_fields(kind, fields, kernel_usec)``: field values -> hit, with
   every number decoded (errno, host byte, sense key, NVMe status...) by the
   decoder the kind's row names (``DECODERS``).

Time: ``kernel_usec`` is ``bpf_ktime_get_ns() // 1000``, CLOCK_MONOTONIC.
/dev/kmsg stamps records with local_clock() (sched_clock), a different
clock: on this project's test VM (6.18, kvm-clock) kmsg usec ran ~2.1 ms
*behind* CLOCK_MONOTONIC for the same failed request (the kernel prints the
line just before the tracepoint fires), stable over a run but not zero and
free to drift (NTP slews CLOCK_MONOTONIC, not sched_clock): merge with a
window, never by equal stamps.
"""

from __future__ import annotations

import ctypes as ct
from dataclasses import asdict, dataclass, field

from . import scsi as codes
from .kinds import BY_NUMBER, HEAD, KINDS, KindTableError

class SampleError(ValueError):
    """A ring buffer sample that does not decode (wrong size, unknown kind)."""


# -- the hit -------------------------------------------------------------------


@dataclass(frozen=True)
class ScsiDetail:
    host_no: int
    channel: int
    id: int
    lun: int
    hctl: str
    opcode: int | None = None
    opcode_name: str = ""
    cdb: str = ""
    """Hex bytes of the command, as far as cmd_len says."""
    lba: int | None = None
    transfer_length: int | None = None
    result: int | None = None
    host_byte: str = ""
    driver_byte: str = ""
    status_byte: int | None = None
    sam_status: str = ""
    rtn: int | None = None
    rtn_name: str = ""
    sense_key: int | None = None
    sense_key_name: str = ""
    asc: int | None = None
    ascq: int | None = None
    asc_ascq_name: str = ""


@dataclass(frozen=True)
class NvmeDetail:
    disk: str
    ctrl_id: int
    qid: int
    cid: int
    status: int
    status_code_type: int
    status_code: int
    sct_name: str
    status_name: str
    dnr: bool
    more: bool
    retries: int
    flags: int
    result: int


@dataclass(frozen=True)
class FsDetail:
    fs: str
    function: str = ""
    line: int | None = None
    daddr: int | None = None
    """xfs disk address in 512-byte basic blocks."""
    length: int | None = None
    flags: list[str] = field(default_factory=list)
    caller_ip: int | None = None


@dataclass(frozen=True)
class TracepointHit:
    """One error the kernel reported through a tracepoint."""

    kind: str
    """A kind of kinds.toml: block_rq_error, scsi_cmd_done, nvme_complete_rq..."""
    tracepoint: str
    """The event attached, e.g. ``block:block_rq_complete`` for the fallback."""
    kernel_usec: int
    """CLOCK_MONOTONIC microseconds (see the module docstring about kmsg)."""
    dev_num: str = ""
    """``major:minor`` of the whole disk the request went to."""
    kdev: str = ""
    """The kernel's name for the device: dev_num, ``h:c:i:l``, ``nvme0n1``."""
    sector: int | None = None
    nr_sector: int | None = None
    rwbs: str = ""
    op: str = ""
    errno: int | None = None
    """Positive errno, e.g. 5."""
    errno_name: str = ""
    blk_status: str = ""
    """The kernel's text for the error (``I/O``, ``critical medium``)."""
    scsi: ScsiDetail | None = None
    nvme: NvmeDetail | None = None
    fs: FsDetail | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", [], {})}


def dev_num_of(dev: int) -> str:
    """Kernel dev_t (major << 20 | minor) -> ``major:minor``; glibc's
    major()/minor() use the user-space encoding and would be wrong here."""
    return f"{dev >> 20}:{dev & 0xFFFFF}"


# -- step 1: C struct -> fields ------------------------------------------------


def sample_fields(raw: bytes) -> tuple[str, dict[str, object]]:
    """Kind and tracepoint-named fields of one ring buffer sample, read with
    its kind's layout (kinds.toml)."""
    if len(raw) < ct.sizeof(HEAD):
        raise SampleError(f"sample of {len(raw)} bytes is shorter than its header")
    head = HEAD.from_buffer_copy(raw)
    kind = BY_NUMBER.get(head.kind)
    if kind is None:
        raise SampleError(f"sample has unknown kind {head.kind}")
    struct = kind.layout.struct
    if len(raw) < ct.sizeof(struct):
        raise SampleError(f"{kind.name} sample of {len(raw)} bytes, expected {ct.sizeof(struct)}")
    sample = struct.from_buffer_copy(raw)
    fields: dict[str, object] = {"dev": head.dev, "ktime_ns": head.ktime_ns}
    for name, type_name in kind.layout.fields:
        if name in ("head", "_pad"):
            continue
        value = getattr(sample, name)
        if isinstance(value, bytes):  # char[N]: text
            value = value.decode("ascii", "replace")
        elif type_name.startswith("u8["):
            value = bytes(value)
        fields[name] = value
    adapt = _SAMPLE_ADAPTERS.get(kind.layout.sample)
    if adapt is not None:
        fields = adapt(fields)
    for old, new in kind.rename.items():
        fields[new] = fields.pop(old)
    return kind.name, fields


def _scsi_sample(fields: dict) -> dict:
    """The CDB as the tracepoint's ``cmnd`` (cmd_len bytes); sense fields
    only where the tracepoint has them (``has_sense``)."""
    fields["cmnd"] = fields.pop("cdb")[: fields["cmd_len"]]
    if not fields.pop("has_sense"):
        for key in ("sense_key", "asc", "ascq"):
            fields.pop(key)
    return fields


def _block_sample(fields: dict) -> dict:
    """Which tracepoint the sample came from (block_rq_complete: fallback)."""
    fields["tracepoint"] = "block:block_rq_complete" if fields.pop("from_complete") else "block:block_rq_error"
    return fields


_SAMPLE_ADAPTERS = {"block": _block_sample, "scsi": _scsi_sample}
"""kinds.toml ``layout.*.sample`` -> function."""


def decode_sample(raw: bytes) -> TracepointHit:
    kind, fields = sample_fields(raw)
    return hit_from_fields(kind, fields, kernel_usec=int(fields["ktime_ns"]) // 1000)


# -- step 2: fields -> hit -----------------------------------------------------


def hit_from_fields(kind: str, fields: dict, kernel_usec: int, tracepoint: str = "") -> TracepointHit:
    """Decode tracepoint field values (named as in the event's format file)
    with the kind's decoder (kinds.toml ``decoder``)."""
    row = KINDS.get(kind)
    if row is None:
        raise SampleError(f"no kind {kind!r} in kinds.toml")
    tracepoint = tracepoint or fields.get("tracepoint") or row.tracepoint
    return DECODERS[row.decoder](kind, fields, kernel_usec, tracepoint)


def _errno_parts(error: int) -> dict:
    err = abs(int(error))
    return {
        "errno": err,
        "errno_name": codes.errno_name(err),
        "blk_status": codes.blk_status(err)[1],
    }


def _block(kind, f, usec, tp) -> TracepointHit:
    dev_num = dev_num_of(f["dev"])
    rwbs = str(f["rwbs"])
    return TracepointHit(
        kind=kind,
        tracepoint=tp,
        kernel_usec=usec,
        dev_num=dev_num,
        kdev=dev_num,
        sector=f["sector"],
        nr_sector=f["nr_sector"],
        rwbs=rwbs,
        op=codes.rwbs_op(rwbs),
        **_errno_parts(f["error"]),
    )


def _scsi_host(kind, f, usec, tp) -> TracepointHit:
    """Only the host is known (scsi_eh_wakeup): the kernel names it host<N>."""
    detail = ScsiDetail(host_no=f["host_no"], channel=0, id=0, lun=0, hctl=str(f["host_no"]))
    return TracepointHit(kind=kind, tracepoint=tp, kernel_usec=usec, kdev=f"host{f['host_no']}", scsi=detail)


def _scsi(kind, f, usec, tp) -> TracepointHit:
    hctl = f"{f['host_no']}:{f.get('channel', 0)}:{f.get('id', 0)}:{f.get('lun', 0)}"
    detail: dict = dict(
        host_no=f["host_no"], channel=f.get("channel", 0), id=f.get("id", 0), lun=f.get("lun", 0), hctl=hctl
    )
    cdb = bytes(f.get("cmnd") or b"")
    parsed = codes.decode_cdb(cdb, f.get("opcode"))
    detail.update(
        opcode=f.get("opcode", parsed.opcode),
        opcode_name=parsed.opcode_name,
        cdb=cdb.hex(" "),
        lba=parsed.lba,
        transfer_length=parsed.transfer_length,
    )
    if "rtn" in f:
        detail.update(rtn=f["rtn"], rtn_name=codes.mlqueue_name(f["rtn"]))
    if "result" in f:
        res = codes.decode_result(f["result"])
        detail.update(
            result=res.result,
            host_byte=res.host_byte_name,
            driver_byte=res.driver_byte_name,
            status_byte=res.status_byte,
            sam_status=res.sam_status_name,
        )
    if "sense_key" in f:
        detail.update(
            sense_key=f["sense_key"],
            sense_key_name=codes.sense_key_name(f["sense_key"]),
            asc=f["asc"],
            ascq=f["ascq"],
            asc_ascq_name=codes.asc_ascq_name(f["asc"], f["ascq"]),
        )
    return TracepointHit(kind=kind, tracepoint=tp, kernel_usec=usec, kdev=hctl, scsi=ScsiDetail(**detail))


def _nvme(kind, f, usec, tp) -> TracepointHit:
    st = codes.decode_nvme_status(f["status"])
    detail = NvmeDetail(
        disk=str(f["disk"]),
        ctrl_id=f["ctrl_id"],
        qid=f["qid"],
        cid=f["cid"],
        status=st.status,
        status_code_type=st.status_code_type,
        status_code=st.status_code,
        sct_name=st.sct_name,
        status_name=st.status_name,
        dnr=st.dnr,
        more=st.more,
        retries=f["retries"],
        flags=f["flags"],
        result=f["result"],
    )
    # nvme_complete_rq carries the disk name, no dev_t.
    return TracepointHit(kind=kind, tracepoint=tp, kernel_usec=usec, kdev=detail.disk or f"nvme{f['ctrl_id']}",
                         nvme=detail)


def _ext4(kind, f, usec, tp) -> TracepointHit:
    dev_num = dev_num_of(f["dev"])
    return TracepointHit(kind=kind, tracepoint=tp, kernel_usec=usec, dev_num=dev_num, kdev=dev_num,
                         fs=FsDetail(fs="ext4", function=str(f["function"]), line=f["line"]))


def _xfs(kind, f, usec, tp) -> TracepointHit:
    dev_num = dev_num_of(f["dev"])
    detail = FsDetail(fs="xfs", daddr=f["bno"], length=f["length"],
                      flags=codes.xfs_buf_flag_names(f["flags"]), caller_ip=f["caller_ip"])
    return TracepointHit(kind=kind, tracepoint=tp, kernel_usec=usec, dev_num=dev_num, kdev=dev_num,
                         sector=f["bno"], nr_sector=f["length"], fs=detail, **_errno_parts(f["error"]))


DECODERS = {"block": _block, "scsi": _scsi, "scsi_host": _scsi_host, "nvme": _nvme, "ext4": _ext4, "xfs": _xfs}
"""kinds.toml ``decoder`` -> function(kind, fields, kernel_usec, tracepoint)."""


def _check_table() -> None:
    for kind in KINDS.values():
        if kind.decoder not in DECODERS:
            raise KindTableError(f"kind {kind.name}: no decoder {kind.decoder!r} in decode.py")
        if kind.layout.sample and kind.layout.sample not in _SAMPLE_ADAPTERS:
            raise KindTableError(f"layout {kind.layout.name}: no sample function {kind.layout.sample!r}")


_check_table()
