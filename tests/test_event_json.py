"""The fast JSON encoders (event_json.py) give exactly the model's JSON."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from peripety import event_json
from peripety.errors import EventFormatError
from peripety.event import BlkInfo, Severity, StorageEvent, set_output_utc
from peripety.event_json import compact_json
from tests.test_event import UTC, sample


class _Text(str):
    """A str subclass whose str() is not its text: JSON writes the text."""

    def __str__(self) -> str:
        return "not the text"


@pytest.mark.parametrize(
    "event",
    [
        sample(),
        sample(kdev="ünïcødé\u2028\x00\x1f", extension={}, sources=[]),
        sample(root_cause_event_id="abc", count=7, last_timestamp=dt.datetime(2025, 1, 1, tzinfo=UTC)),
        sample(cur_blk_info=BlkInfo(wwid="w", blk_path="/dev/loop0", dev_num="7:0"),
               hierarchy_blk_info=[BlkInfo(wwid="x")]),
        sample(extension={"n": 5}),  # not a string: the general path
        # nothing to escape: the strings joined in as they are
        sample(msg="plain", extension={"sector": "8", "ünï": "välue"}, root_cause_event_id="cause",
               cur_blk_info=BlkInfo(wwid="w", dev_num="7:0"), hierarchy_blk_info=[BlkInfo(wwid="x"), BlkInfo()],
               count=3, last_timestamp=dt.datetime(2025, 1, 1, tzinfo=UTC), kernel_usec=12),
        sample(msg="plain", extension={}, sources=[], root_cause_event_id=""),
        sample(msg="plain", extension={"k": _Text("v")}, kdev=_Text("loop0"), sources=[_Text("kmsg")]),
        sample(msg="plain", extension={1: "int key", "k": "v"}),  # json.dumps writes the key "1"
        sample(msg="plain", extension={"k": "v"}, sources=("kmsg",)),
        sample(msg="plain", hostname=None), sample(msg="plain", severity=3),  # (to_json raises)
    ],
)
def test_compact_json_is_exactly_json_dumps(event):
    try:
        expected = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
    except AttributeError:  # not an event the model can write: neither can compact_json
        with pytest.raises(AttributeError):
            compact_json(event)
        return
    assert event.to_json() == expected
    for _ in range(2):  # the second time from the kept layouts and device JSON
        assert compact_json(event) == expected


def test_fresh_event_json_is_the_json_of_the_event_it_stands_for(monkeypatch):
    """``fresh_event_json`` builds the JSON of an event never made: the same
    bytes as the model's, with the id it drew."""
    for kdev, extension in (("loop0", {"sector": "8"}), ('lo"op\u2028', {"k": "v\x00"})):
        event = sample(kdev=kdev, extension=extension, sources=["kmsg"], cur_blk_info=None)
        text = event_json.fresh_event_json(
            json.dumps(event.hostname, ensure_ascii=False), event.severity.name,
            json.dumps(event.sub_system), event.timestamp, json.dumps(event.event_type), event.kdev, event.msg,
            event.raw_msg, event.extension, '"kmsg"')
        event.event_id = json.loads(text)["event_id"]
        assert text == json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)


# -- dumps: orjson where it writes json.dumps' bytes ----------------------------

def _reference(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_dumps_escapes_every_code_point_as_json_dumps_does():
    """orjson is used only where its text is json.dumps' text: every
    character (surrogates aside: orjson refuses them, and dumps falls back)
    in keys and values."""
    for start in range(0, 0x110000, 0x800):
        text = "".join(chr(c) for c in range(start, start + 0x800) if not 0xD800 <= c < 0xE000)
        value = {text[:64]: [text, {"k": text[::-1]}]}
        assert event_json.orjson.dumps(value).decode() == _reference(value)
        assert event_json.dumps(value) == _reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"f": 1e16}, {"f": 1e-05}, [0.5], {"n": float("nan")}, {"i": float("inf")},  # floats: digits differ
        {"big": 2**64}, {"neg": -(2**63) - 1}, {"s": "\ud800"},  # orjson refuses these
        {"t": (1, 2)}, {1: "int key"}, {"b": True, "none": None, "i": -(2**63)},
    ],
)
def test_dumps_falls_back_to_json_dumps_where_orjson_would_differ(value):
    assert event_json.dumps(value) == _reference(value)


def test_dumps_takes_json_dumps_for_subclasses_and_unknown_types():
    class Text(str):
        pass

    for value in ({"s": Text("x")}, {"sev": Severity.Error}, [Text("y")]):
        assert event_json.dumps(value) == _reference(value)
    with pytest.raises(TypeError):  # as json.dumps: orjson would write a UUID or a datetime
        event_json.dumps({"id": uuid.uuid4()})
    with pytest.raises(TypeError):
        event_json.dumps({"t": dt.datetime.now()})


def test_compact_json_of_events_read_from_foreign_json_is_the_models():
    """Events decoded from JSON that peripetyd never wrote (floats, huge
    numbers, odd types in the device fields) still give the model's bytes."""
    base = sample(cur_blk_info=BlkInfo(wwid="w", dev_num="7:0"), hierarchy_blk_info=[BlkInfo(wwid="x")]).to_dict()
    for blk in ({"diskseq": 1e16}, {"diskseq": 2**70}, {"uuid": 0.5}, {"owners_wwids": [1.5, "a"]},
                {"transport": {"rate": 1e-7}}, {"mount_point": True}):
        data = json.loads(json.dumps(base))
        data["cur_blk_info"].update(blk)
        event = StorageEvent.from_dict(data)
        assert compact_json(event) == event.to_json() == _reference(event.to_dict())


# -- stored_json_line: the stored text taken as the output line -----------------

_FULL_INFO = BlkInfo(wwid="naa.1", blk_type="SCSI", blk_path="/dev/sdb", preferred_blk_path="/dev/disk/by-id/x",
                     dev_num="8:16", diskseq=4, uuid="u-1", mount_point="/srv", transport={"kind": "sas"},
                     owners_wwids=["a"], owners_types=["Device Mapper"], owners_paths=["/dev/sdc"])
_BASES = [
    sample(),
    sample(cur_blk_info=_FULL_INFO, hierarchy_blk_info=[_FULL_INFO, BlkInfo(wwid="w2")], kernel_usec=123,
           root_cause_event_id="cause", count=4, last_timestamp=dt.datetime(2025, 11, 25, 3, 45, tzinfo=UTC)),
    sample(msg="tab\tquote\" back\\slash \x01 \u2028 ünï", kdev="", raw_msg="r", extension={}, sources=[]),
]
_CHANGES = [
    ("severity", "error"), ("severity", "Ctritical"), ("severity", 3), ("severity", "Bogus"),
    ("sub_system", "EXT4"), ("sub_system", "fsext4"), ("sub_system", "nope"), ("sub_system", 5),
    ("timestamp", "2025-11-25T03:44:01.123456Z"), ("timestamp", "2025-11-25T03:44:01+00:00"),
    ("timestamp", "2025-11-25 03:44:01.123456+00:00"), ("timestamp", 1764042241123456), ("timestamp", ""),
    ("timestamp", None), ("timestamp", "2025-11-25T04:44:01.123456+01:00"), ("timestamp", "garbage"),
    ("kernel_usec", -1), ("kernel_usec", 1.5), ("kernel_usec", "5"), ("kernel_usec", True), ("kernel_usec", 2**70),
    ("event_id", ""), ("event_id", None), ("event_id", 5),
    ("kdev", None), ("kdev", 5), ("msg", ""), ("msg", None), ("hostname", ""), ("hostname", ["h"]),
    ("dev_num", None), ("raw_msg", ""), ("raw_msg", None), ("raw_msg", 7),
    ("cur_blk_info", {}), ("cur_blk_info", None), ("cur_blk_info", {"wwid": "x"}),
    ("hierarchy_blk_info", []), ("hierarchy_blk_info", [{}]), ("hierarchy_blk_info", [None]),
    ("hierarchy_blk_info", {}), ("hierarchy_blk_info", None),
    ("extension", None), ("extension", {"n": 5}), ("extension", {"f": 1.5}), ("extension", {"k": None}),
    ("sources", None), ("sources", "kmsg"), ("sources", [1, None]),
    ("root_cause_event_id", ""), ("root_cause_event_id", 0), ("root_cause_event_id", "x"),
    ("count", 0), ("count", 1.0), ("count", True), ("count", "3"), ("count", 2**70), ("count", -1),
    ("last_timestamp", ""), ("last_timestamp", "2025-11-25T03:44:01.123456Z"), ("last_timestamp", 5),
    ("event_type", 5), ("event_type", None),
]
_BLK_CHANGES = [("blk_type", "Scsi"), ("blk_type", ["x"]), ("owners_types", ["Dm"]), ("owners_types", "SCSI"),
                ("diskseq", 1.5), ("diskseq", 2**70), ("uuid", None), ("missing", [1, None]), ("extra", "key"),
                ("transport", {"rate": 1e-7})]


def _variants():
    for base in _BASES:
        data = json.loads(base.to_json())
        yield base.to_json()
        for key, value in _CHANGES:
            yield _reference({**data, key: value})
        for key in ("extension", "severity", "cur_blk_info"):
            yield _reference({k: v for k, v in data.items() if k != key})
        yield _reference({**data, "extention": {"old": "spelling"}})
        yield _reference({**data, "untrusted_writer": {"uid": "1000"}})
        yield _reference(dict(reversed(list(data.items()))))
        if data["cur_blk_info"]:
            for key, value in _BLK_CHANGES:
                yield _reference({**data, "cur_blk_info": {**data["cur_blk_info"], key: value}})
                yield _reference({**data, "hierarchy_blk_info": [{**data["cur_blk_info"], key: value}]})
        text = base.to_json()
        yield json.dumps(data, ensure_ascii=False)  # spaces
        yield json.dumps(data)  # \\u escapes
        yield json.dumps(data, indent=2)
        yield text.replace('"msg":', '"msg":"dup","msg":', 1)  # a key twice: the last one counts
        yield text.replace('"count":1', '"count":NaN', 1)
        yield text.replace('"count":1', '"count":1e0', 1)
        yield text[:-1] + ',"count":1e400}'
        yield text + "\0"
        yield "\ufeff" + text


@pytest.mark.parametrize("utc", [True, False])
def test_stored_json_line_is_the_decoded_events_json_or_none(utc):
    """Taken as it is only when decoding the event and writing it again
    gives the very same text; peripetyd's own JSON is taken as it is."""
    set_output_utc(utc)
    try:
        taken = 0
        for text in _variants():
            raw = text.encode("utf-8", "surrogatepass")
            line = event_json.stored_json_line(raw)
            try:
                event = StorageEvent.from_json(raw)
            except (EventFormatError, TypeError, AttributeError, ValueError, OverflowError):
                # (from_json lets a few of these through: count NaN, for one)
                assert line is None, text
                continue
            if line is not None:
                taken += 1
                assert line == (event.timestamp, event.hostname, compact_json(event)), text
                assert line[2] == text
        for base in _BASES:  # in the output zone, as peripetyd writes it
            text = compact_json(base)
            assert event_json.stored_json_line(text.encode()) == (base.timestamp, base.hostname, text)
        assert taken >= 20  # variants that are the same text in another spelling of the same event
    finally:
        set_output_utc(False)


def test_compact_json_builds_common_events_from_the_template():
    """The daemon's events (devices, string fields, nothing to escape) take
    the template, not json.dumps: a slip there is only slower, so it is
    checked here."""
    device = BlkInfo(wwid="w", blk_path="/dev/sdb", dev_num="8:16", owners_wwids=["x"], transport={"a": "b"})
    for event in (sample(msg="plain", cur_blk_info=device, hierarchy_blk_info=[device]),
                  sample(msg="plain", cur_blk_info=None), sample()):  # sample(): its msg needs escapes
        assert event_json._compact_json(event) == event.to_json()


def test_compact_json_of_a_device_changed_in_place_is_its_new_json():
    """Each device's JSON is kept per object: one changed in place is
    written as it is now."""
    info = BlkInfo(wwid="w", dev_num="7:0", owners_wwids=["a"], transport={"k": "v"})
    event = sample(msg="plain", cur_blk_info=info, hierarchy_blk_info=[info])
    for change in (lambda: None, lambda: info.owners_wwids.append("b"), lambda: info.transport.update(k2="v2"),
                   lambda: setattr(info, "diskseq", 5), lambda: setattr(info, "mount_point", "/srv")):
        change()
        assert compact_json(event) == event.to_json()
