"""Decoding tracepoint data: recorded SCSI/NVMe records (this machine has
neither) and raw ring-buffer samples captured from the real program."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from peripety.tracepoints import decode, scsi, tracefs
from peripety.tracepoints.kinds import KINDS

FIXTURES = Path(__file__).parent / "fixtures" / "tracepoints"


def _load(name: str, table: str) -> list[dict]:
    return tomllib.loads((FIXTURES / name).read_text())[table]


RECORDS = _load("records.toml", "record")
SAMPLES = _load("samples.toml", "sample")


def _attr(hit, dotted: str):
    value = hit
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _record_values(fields: dict) -> dict:
    # The line prints dynamic arrays as hex bytes.
    return {k: bytes.fromhex(v) if k == "cmnd" else v for k, v in fields.items()}


@pytest.mark.parametrize("record", RECORDS, ids=[r["name"] for r in RECORDS])
def test_recorded_record_decodes(record):
    fmt = tracefs.parse_format((FIXTURES / record["format"]).read_text())
    raw = tracefs.pack_record(fmt, _record_values(record["fields"]))
    fields = tracefs.unpack_record(fmt, raw)
    hit = decode.hit_from_fields(record["kind"], fields, kernel_usec=record["kernel_usec"])
    assert hit.kernel_usec == record["kernel_usec"]
    for key, expected in record["expect"].items():
        assert _attr(hit, key) == expected, key


def test_unpack_reads_fields_at_format_offsets():
    fmt = tracefs.parse_format((FIXTURES / "tracefs-scsi-nvme/events/nvme/nvme_complete_rq/format").read_text())
    raw = bytearray(72)
    raw[8:15] = b"nvme2n1"
    raw[48:52] = (77).to_bytes(4, "little")  # cid
    raw[66:68] = (0x0281).to_bytes(2, "little")  # status
    fields = tracefs.unpack_record(fmt, bytes(raw))
    assert fields["disk"] == "nvme2n1"
    assert fields["cid"] == 77
    assert fields["status"] == 0x0281
    hit = decode.hit_from_fields("nvme_complete_rq", fields, kernel_usec=1)
    assert hit.nvme.status_name == "Unrecovered Read Error"
    assert hit.nvme.sct_name == "Media and Data Integrity Errors"
    assert hit.nvme.dnr is False


def test_real_format_file_parses():
    fmt = tracefs.parse_format((FIXTURES / "tracefs-6.18/events/block/block_rq_error/format").read_text())
    assert fmt.name == "block_rq_error"
    rwbs = fmt.field("rwbs")
    assert (rwbs.offset, rwbs.size, rwbs.array_len) == (34, 10, 10)
    assert fmt.field("cmd").data_loc
    assert fmt.field("error").signed
    assert fmt.missing_fields(["dev", "sector", "sense_key"]) == ["sense_key"]


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["what"] for s in SAMPLES])
def test_captured_sample_decodes(sample):
    hit = decode.decode_sample(bytes.fromhex(sample["hex"]))
    for key, expected in sample["expect"].items():
        assert _attr(hit, key) == expected, key
    assert hit.kernel_usec > 0


def test_sample_decode_refuses_garbage():
    with pytest.raises(decode.SampleError, match="shorter"):
        decode.decode_sample(b"\x01\x00")
    bad_kind = bytearray(bytes.fromhex(SAMPLES[0]["hex"]))
    bad_kind[0] = 99
    with pytest.raises(decode.SampleError, match="unknown kind 99"):
        decode.decode_sample(bytes(bad_kind))


def test_scsi_sample_layout_round_trip():
    """A scsi sample as the C program fills it decodes with tracepoint names:
    result -> rtn for cmd_error, cdb cut to cmd_len, sense only when present."""
    s = KINDS["scsi_cmd_timeout"].layout.struct()
    s.head.kind = KINDS["scsi_cmd_timeout"].number
    s.head.ktime_ns = 5_000_000
    s.host_no, s.channel, s.id, s.lun = 2, 0, 1, 3
    s.result = (0x03 << 16)  # DID_TIME_OUT
    s.opcode, s.cmd_len = 0x8A, 16
    cdb = bytes([0x8A, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 8, 0, 0])
    s.cdb[:] = list(cdb)
    hit = decode.decode_sample(bytes(s))
    assert hit.kind == "scsi_cmd_timeout"
    assert hit.kdev == "2:0:1:3"
    assert hit.kernel_usec == 5000
    assert hit.scsi.host_byte == "DID_TIME_OUT"
    assert (hit.scsi.opcode_name, hit.scsi.lba, hit.scsi.transfer_length) == ("WRITE(16)", 0x1000, 8)
    assert hit.scsi.sense_key is None  # has_sense was 0
    s.has_sense, s.sense_key, s.asc, s.ascq = 1, 3, 0x11, 0
    hit = decode.decode_sample(bytes(s))
    assert hit.scsi.sense_key_name == "MEDIUM ERROR"
    assert hit.scsi.asc_ascq_name == "Unrecovered read error"


def test_result_and_status_tables():
    r = scsi.decode_result(0x08000002)  # pre-5.14: DRIVER_SENSE + CHECK CONDITION
    assert (r.driver_byte_name, r.host_byte_name, r.sam_status_name) == (
        "DRIVER_SENSE", "DID_OK", "SAM_STAT_CHECK_CONDITION")
    assert scsi.decode_result(0x00010000).host_byte_name == "DID_NO_CONNECT"
    assert scsi.blk_status(61) == ("BLK_STS_MEDIUM", "critical medium")
    assert scsi.errno_name(110) == "ETIMEDOUT"
    assert scsi.rwbs_op("FWS") == "WRITE"
    assert scsi.rwbs_op("DE") == "SECURE_ERASE"
    assert scsi.rwbs_op("FF") == "FLUSH"
    assert scsi.xfs_buf_flag_names(0b10001) == ["READ", "ASYNC"]


def test_kernel_dev_t_split():
    # 259:65536 cannot be expressed with glibc's encoding; the kernel's can.
    assert decode.dev_num_of((259 << 20) | 65536) == "259:65536"
    assert decode.dev_num_of((7 << 20) | 3) == "7:3"
