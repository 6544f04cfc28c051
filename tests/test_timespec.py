import datetime as dt

import pytest

from peripety.timespec import parse_time

UTC = dt.timezone.utc
NOW = dt.datetime(2018, 5, 21, 15, 30, 45, 123456, tzinfo=UTC)


@pytest.mark.parametrize("text, expected", [
    ("now", NOW),
    ("today", dt.datetime(2018, 5, 21, tzinfo=UTC)),
    ("yesterday", dt.datetime(2018, 5, 20, tzinfo=UTC)),
    ("tomorrow", dt.datetime(2018, 5, 22, tzinfo=UTC)),
    ("-1h", NOW - dt.timedelta(hours=1)),
    ("-30m", NOW - dt.timedelta(minutes=30)),
    ("-2d", NOW - dt.timedelta(days=2)),
    ("-90s", NOW - dt.timedelta(seconds=90)),
    ("-1h 30min", NOW - dt.timedelta(minutes=90)),
    ("+5min", NOW + dt.timedelta(minutes=5)),
    ("2012-10-30T18:17:16Z", dt.datetime(2012, 10, 30, 18, 17, 16, tzinfo=UTC)),
    ("2012-10-30T18:17:16.25+02:00",
     dt.datetime(2012, 10, 30, 18, 17, 16, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
    ("@1527000000", dt.datetime(2018, 5, 22, 14, 40, tzinfo=UTC)),
])
def test_parses(text, expected):
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text, expected", [
    ("2018-05-21", dt.datetime(2018, 5, 21)),
    ("2012-10-30 18:17:16", dt.datetime(2012, 10, 30, 18, 17, 16)),
    ("2012-10-30 18:17", dt.datetime(2012, 10, 30, 18, 17)),
])
def test_times_without_offset_are_local(text, expected):
    parsed = parse_time(text, now=NOW)
    assert parsed.tzinfo is not None
    assert parsed == expected.astimezone()


@pytest.mark.parametrize("text, message", [
    ("garbage", "use now, today"),
    ("-5x", "unknown unit 'x'"),
    ("2018-13-01", "month must be in 1..12"),
    ("2018-02-30 10:00", "day is out of range"),
    ("", "cannot read the time ''"),
])
def test_errors_say_what_is_accepted(text, message):
    with pytest.raises(ValueError, match=message):
        parse_time(text, now=NOW)
