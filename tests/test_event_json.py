"""The fast JSON encoders (event_json.py) give exactly the model's JSON."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from peripety import event_json
from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.event_json import compact_json
from tests.test_event import UTC, sample

@pytest.mark.parametrize(
    "event",
    [
        sample(),
        sample(kdev="ünïcødé\u2028\x00\x1f", extension={}, sources=[]),
        sample(root_cause_event_id="abc", count=7, last_timestamp=dt.datetime(2025, 1, 1, tzinfo=UTC)),
        sample(cur_blk_info=BlkInfo(wwid="w", blk_path="/dev/loop0", dev_num="7:0"),
               hierarchy_blk_info=[BlkInfo(wwid="x")]),
        sample(extension={"n": 5}),  # not a string: the general path
    ],
)
def test_compact_json_is_exactly_json_dumps(event):
    expected = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
    assert event.to_json() == expected
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
