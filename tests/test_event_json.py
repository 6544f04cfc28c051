"""The fast JSON encoders (event_json.py) give exactly the model's JSON."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from peripety import event_json
from peripety.event import BlkInfo
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
