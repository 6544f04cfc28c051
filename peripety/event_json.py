"""Fast JSON for events, apart from the model: the same bytes as
``StorageEvent.to_json()`` (tests/test_event_json.py checks every path),
built from templates or by orjson instead of ``json.dumps``.

They pay where events are written by the hundred thousand: ``prpt parse
--jsonl`` (``fresh_event_json``: the event is never built), writers of
events with no device information yet (``compact_json``'s template) and
of events with it (``dumps``: orjson, where it writes the very same text).
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import operator
from json.encoder import ESCAPE as _JSON_ESCAPE  # what encode_basestring escapes
from json.encoder import encode_basestring as _json_str

try:
    import orjson
except ImportError:  # the lab guest runs this tree on Debian's Python, which has no orjson
    orjson = None

from .event import (_CANONICAL_SUB_SYSTEMS, _ORIGINAL_BLK_TYPES, _SEVERITY_BY_NAME, BlkInfo, Severity,
                    StorageEvent, format_timestamp, new_event_id, output_zone)

_last_ts: tuple = (None, None)  # (timestamp, output zone) of _last_ts_text
_last_ts_text = ""


def _timestamp_json(ts: _dt.datetime) -> str:
    # Events parsed from one chunk of a saved log share one timestamp object.
    global _last_ts, _last_ts_text
    zone = output_zone()
    if ts is not _last_ts[0] or zone is not _last_ts[1]:
        _last_ts, _last_ts_text = (ts, zone), _json_str(format_timestamp(ts))
    return _last_ts_text


_COMPACT = (
    '{"hostname":%s,"severity":"%s","sub_system":%s,"timestamp":%s,"kernel_usec":%s,"event_id":%s,'
    '"event_type":%s,"kdev":%s,"dev_num":%s,"cur_blk_info":null,"hierarchy_blk_info":[],'
    '"msg":%s,"raw_msg":%s,"extension":{%s},"sources":[%s],"root_cause_event_id":%s,'
    '"count":%d,"last_timestamp":%s}'
)


def compact_json(event: StorageEvent) -> str:
    """``event.to_json()``, byte for byte (tests check): built from a
    template for the common event (string values; its devices' JSON kept,
    ``blk_info_json``), else by ``dumps``."""
    fast = _compact_json(event)
    return dumps(event.to_dict(copy=False)) if fast is None else fast


def dumps(value) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``,
    byte for byte, by orjson (15x faster on an event with its devices) when
    it writes the same text: for dicts with ``str`` keys, lists, ``str``,
    ``int`` within 64 bits, ``bool`` and ``None``. orjson escapes exactly
    the characters ``json.dumps`` escapes, the same way (tests check every
    code point). Anything else takes ``json.dumps``: a float (the two write
    some floats' digits differently), a subclass (but of ``str``), a tuple,
    a lone surrogate or an int past 64 bits (orjson refuses those two)."""
    if orjson is not None and _plain(value):
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            pass
    return _json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _plain(value) -> bool:
    """Only exact dicts (``str`` keys), lists, strings and ``_PLAIN_SCALARS``,
    at any depth. A list of strings is told by one ``join`` (a ``str``
    subclass passes: both encoders write its text)."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            kind = type(item)
            if kind in _PLAIN_SCALARS:
                continue
            if kind is list and (not item or type(item[0]) is str):
                try:
                    "".join(item)
                    continue
                except TypeError:
                    pass
            if not _plain(item):
                return False
        return True
    if kind is list:
        try:
            "".join(value)
            return True
        except TypeError:
            pass
        for item in value:
            if type(item) not in _PLAIN_SCALARS and not _plain(item):
                return False
        return True
    return kind in _PLAIN_SCALARS


# The same with the device fields as slots: the JSON of ``cur_blk_info``
# (or null) and the items of ``hierarchy_blk_info``.
_WITH_DEVICES = _COMPACT.replace('"cur_blk_info":null,"hierarchy_blk_info":[]',
                                 '"cur_blk_info":%s,"hierarchy_blk_info":[%s]')
_SEVERITY_NAME_OF = {s: s.name for s in Severity}  # Enum.name is a slow property


def _compact_json(event: StorageEvent) -> str | None:
    """The common event's JSON built from a template, 4x faster than
    ``json.dumps``; None when the event needs the general path.

    When none of its strings holds a character JSON escapes (one regex
    search over them all tells; nearly every event), they are joined in
    as they are, between the template's pieces: ``str.join`` takes what
    ``json.dumps`` takes (the text of a ``str``, of a subclass too) and
    refuses anything else. Else each is encoded (``encode_basestring``)."""
    usec = event.kernel_usec
    severity = event.severity
    if (type(event.count) is not int or event.untrusted_writer is not None
            or not (usec is None or type(usec) is int) or type(severity) is not Severity):
        return None
    cur, hierarchy = event.cur_blk_info, event.hierarchy_blk_info
    if cur is None and not hierarchy:
        cur_json, hierarchy_json = "null", ""
    else:
        if cur is not None and type(cur) is not BlkInfo:
            return None
        for info in hierarchy:
            if type(info) is not BlkInfo:
                return None
        cur_json = "null" if cur is None else blk_info_json(cur)
        hierarchy_json = ",".join([blk_info_json(b) for b in hierarchy])
    root = event.root_cause_event_id
    last = event.last_timestamp
    extension = event.extension
    sources = event.sources
    try:
        if type(extension) is dict and type(sources) is list:
            values = tuple(extension.values())
            strings = (event.hostname, event.sub_system, event.event_id, event.event_type, event.kdev,
                       event.dev_num, event.msg, event.raw_msg, "" if root is None else root, *values, *sources)
            if _JSON_ESCAPE.search("".join(strings)) is None:
                pieces = _EXTENSION_PIECES.get(tuple(extension))
                if pieces is None:
                    pieces = _extension_pieces(tuple(extension))
                if pieces is not None:
                    if values:
                        pieces = pieces.copy()
                        pieces[1::2] = values
                    hostname, sub_system, event_id, event_type, kdev, dev_num, msg, raw_msg = strings[:8]
                    return "".join((
                        '{"hostname":"', hostname, '","severity":"', _SEVERITY_NAME_OF[severity],
                        '","sub_system":"', sub_system, '","timestamp":', _timestamp_json(event.timestamp),
                        ',"kernel_usec":', "null" if usec is None else str(usec),
                        ',"event_id":"', event_id, '","event_type":"', event_type, '","kdev":"', kdev,
                        '","dev_num":"', dev_num, '","cur_blk_info":', cur_json,
                        ',"hierarchy_blk_info":[', hierarchy_json, '],"msg":"', msg, '","raw_msg":"', raw_msg,
                        '","extension":{', *pieces, '},"sources":[', '"' + '","'.join(sources) + '"' if sources else "",
                        '],"root_cause_event_id":', "null" if root is None else '"' + root + '"',
                        ',"count":', str(event.count),
                        ',"last_timestamp":', "null" if last is None else '"' + format_timestamp(last) + '"', "}"))
        enc = _json_str
        # encode_basestring raises TypeError on anything but str
        return _WITH_DEVICES % (
            enc(event.hostname),
            _SEVERITY_NAME_OF[severity],
            enc(event.sub_system),
            _timestamp_json(event.timestamp),
            "null" if usec is None else str(usec),
            enc(event.event_id),
            enc(event.event_type),
            enc(event.kdev),
            enc(event.dev_num),
            cur_json,
            hierarchy_json,
            enc(event.msg),
            enc(event.raw_msg),
            _extension_json(extension),
            ",".join([enc(x) for x in sources]),
            "null" if root is None else enc(root),
            event.count,
            "null" if last is None else enc(format_timestamp(last)),
        )
    except (TypeError, AttributeError):
        return None


_EXTENSION_PIECES: dict[tuple, list | None] = {}
"""Extension keys (in order) -> ['"k1":"', None, '","k2":"', None, '"']: the
JSON around their values (None where a value goes); None when a key is not
a ``str`` (json.dumps writes such keys its own way)."""


def _extension_pieces(keys: tuple) -> list | None:
    if len(_EXTENSION_PIECES) > 4096:
        _EXTENSION_PIECES.clear()
    pieces = None
    try:
        if keys:
            pieces = []
            for n, key in enumerate(keys):
                pieces += [("" if n == 0 else '",') + _json_str(key) + ':"', None]
            pieces.append('"')
        else:
            pieces = []
    except TypeError:
        pieces = None
    _EXTENSION_PIECES[keys] = pieces
    return pieces


_BLK_JSON: dict[int, tuple[BlkInfo, dict, str]] = {}
"""id(BlkInfo) -> (it, a copy of its fields, its JSON)."""


def blk_info_json(info: BlkInfo) -> str:
    """``dumps(info.to_dict())``, kept per device object: every event on a
    device carries the same ``BlkInfo`` (the pipeline resolves a device once
    per timeline generation), so a storm encodes it once. The kept text is
    used only while the object is the same one (held here, so its id is not
    reused) with the same fields: a BlkInfo changed in place is encoded
    again. (Fields are compared by ``==``: a value swapped for an equal one
    that JSON writes otherwise, 1 for 1.0 or a dict for one with the same
    items in another order, would keep the old text; nothing in peripety
    changes a BlkInfo once an event carries it.)"""
    kept = _BLK_JSON.get(id(info))
    if kept is not None and kept[0] is info and kept[1] == vars(info):
        return kept[2]
    fields = info.to_dict()
    text = dumps(fields)
    if len(_BLK_JSON) > 4096:
        _BLK_JSON.clear()
    _BLK_JSON[id(info)] = (info, fields, text)
    return text


def _extension_json(extension: dict[str, str]) -> str:
    enc = _json_str
    return ",".join([enc(k) + ":" + enc(v) for k, v in extension.items()])


# A fresh event's JSON with its per-line strings as plain "%s" slots: used when
# none of them holds a character JSON escapes (nearly every kernel line), which
# one regex search tells, instead of one encode call per string.
_FRESH_PLAIN = _COMPACT.replace("%d", "1") % (
    "%s", "%s", "%s", "%s", "%s", '"%s"', "%s", '"%s"', '""', '"%s"', '"%s"', "%s", "%s", "null", "null"
)
_FRESH_ENCODED = _COMPACT.replace("%d", "1") % (
    "%s", "%s", "%s", "%s", "%s", '"%s"', "%s", "%s", '""', "%s", "%s", "%s", "%s", "null", "null"
)
_EXTENSION_PLAIN: dict[tuple[str, ...], str] = {}
"""Extension keys (in order) -> '"key":"%s",...' for values needing no escape."""


def fresh_event_json(
    hostname_json: str,
    severity_name: str,
    sub_system_json: str,
    timestamp: _dt.datetime,
    event_type_json: str,
    kdev: str,
    msg: str,
    raw_msg: str,
    extension: dict[str, str],
    sources_json: str,
    kernel_usec: int | None = None,
) -> str:
    """``compact_json(StorageEvent(...))`` for a new event, device not resolved,
    without building the event (``prpt parse --jsonl`` writes 100k a second).

    Values that stay the same over many events come JSON-encoded:
    ``hostname_json``, ``sub_system_json``, ``event_type_json`` (one
    string each, as ``encode_basestring`` gives it) and ``sources_json``
    (the list's items without brackets). The rest must be ``str``."""
    values = tuple(extension.values())
    if _JSON_ESCAPE.search("".join((kdev, msg, raw_msg) + values)) is None:
        keys = tuple(extension)
        template = _EXTENSION_PLAIN.get(keys)
        if template is None:
            template = _EXTENSION_PLAIN[keys] = ",".join(_json_str(k).replace("%", "%%") + ':"%s"' for k in keys)
        return _FRESH_PLAIN % (
            hostname_json, severity_name, sub_system_json, _timestamp_json(timestamp),
            "null" if kernel_usec is None else kernel_usec, new_event_id(),
            event_type_json, kdev, msg, raw_msg, template % values, sources_json,
        )
    enc = _json_str
    return _FRESH_ENCODED % (
        hostname_json, severity_name, sub_system_json, _timestamp_json(timestamp),
        "null" if kernel_usec is None else kernel_usec, new_event_id(),
        event_type_json, enc(kdev), enc(msg), enc(raw_msg), _extension_json(extension), sources_json,
    )


class FreshLayout:
    """One rule's fresh events with one set of extension keys, as a
    %-template: everything the rule fixes (sub-system, event type, the
    extension's keys, its ``msg`` sentence's wording) written once, the
    per-line strings left as plain ``"%s"`` slots. ``prpt parse --jsonl``
    fills it for each line whose strings need no JSON escape (nearly every
    kernel line: one regex search tells), giving the bytes of
    ``fresh_event_json`` (tests check) for about half its cost.

    ``message`` renders the rule's ``msg`` for a line: ``pick`` takes its
    values (a tuple) out of ``(*extension values, kdev)``; None when the
    sentence needs the general renderer (a field outside the match, an
    optional part it cannot decide from the keys alone, text to escape)."""

    __slots__ = ("json", "message", "pick", "generic", "rule")

    def __init__(self, rule, keys: tuple[str, ...], sub_system_json: str, event_type_json: str):
        self.rule = rule
        self.generic = not rule.template.source
        ext = ",".join(_json_str(k).replace("%", "%%") + ':"%s"' for k in keys)
        self.json = _FRESH_LAYOUT % (sub_system_json.replace("%", "%%"), event_type_json.replace("%", "%%"), ext)
        self.message = None
        self.pick = None
        if self.generic:
            return
        present = set(keys) | {"kdev", "sub_system", "event_type"}
        fixed = {"sub_system": rule.sub_system, "event_type": rule.event_type}
        variant = rule.template.variant_for(present)
        if variant is None:
            return
        fmt, fields = variant
        if "%%" in fmt:
            return  # a literal percent sign: let the general renderer keep it
        # Fixed fields are written into the sentence; the others are slots
        # filled from (*extension values, kdev).
        order = {k: n for n, k in enumerate(keys)}
        order["kdev"] = len(keys)
        pieces = fmt.split("%s")
        out, picks = [pieces[0]], []
        for piece, name in zip(pieces[1:], fields):
            if name in fixed:
                out.append(fixed[name].replace("%", "%%"))
            else:
                out.append("%s")
                picks.append(order[name])
            out.append(piece)
        fmt = "".join(out)
        if _JSON_ESCAPE.search(fmt % tuple("" for _ in picks)):
            return  # the sentence's own words need escaping: the general path
        self.message = fmt
        if len(picks) == 1:
            index = picks[0]
            self.pick = lambda values: (values[index],)
        else:
            self.pick = operator.itemgetter(*picks) if picks else _nothing


def _nothing(values) -> tuple:
    return ()


_FRESH_LAYOUT = (
    '{"hostname":%%s,"severity":"%%s","sub_system":%s,"timestamp":%%s,"kernel_usec":%%s,"event_id":"%%s",'
    '"event_type":%s,"kdev":"%%s","dev_num":"","cur_blk_info":null,"hierarchy_blk_info":[],'
    '"msg":"%%s","raw_msg":"%%s","extension":{%s},"sources":[%%s],"root_cause_event_id":null,'
    '"count":1,"last_timestamp":null}\n'
)
# -- stored JSON that already is the event's JSON ------------------------------

class _NotPlain(Exception):
    pass


def _refuse(_text):
    raise _NotPlain


# json.loads, stopping at the first float or NaN/Infinity: then the stored
# text is not taken as it is (orjson and json.dumps write floats differently).
_NO_FLOATS = _json.JSONDecoder(parse_float=_refuse, parse_constant=_refuse)
_EVENT_KEYS = tuple(StorageEvent("X", "block").to_dict())
_BLK_KEYS = tuple(BlkInfo().to_dict())
_STRINGS = ("hostname", "kdev", "dev_num", "msg")
_SEVERITY_NAMES = frozenset(_SEVERITY_BY_NAME)


def stored_json_line(raw: bytes) -> tuple[_dt.datetime, str, str] | None:
    """``(event.timestamp, event.hostname, compact_json(event))`` for
    ``event = StorageEvent.from_json(raw)``, when ``raw`` already is that
    JSON (what peripetyd stores), found without making the event: the
    text is parsed, written back by orjson (the same bytes as json.dumps
    for it: no float anywhere) and compared, and every field is checked to
    be one ``from_dict`` keeps as it is (``to_dict(from_dict(d)) == d``).
    None otherwise: then decode the event (tests compare both ways)."""
    if orjson is None:
        return None
    try:
        text = raw.decode("utf-8")
        # the scanner itself: text with anything around the object is not orjson's anyway
        data, _ = _NO_FLOATS.scan_once(text, 0)
        if type(data) is not dict or tuple(data) != _EVENT_KEYS or orjson.dumps(data) != raw:
            return None
    except (ValueError, StopIteration, _NotPlain, RecursionError, TypeError):  # TypeError: orjson refused it
        return None
    for key in _STRINGS:
        if type(data[key]) is not str:
            return None
    raw_msg, event_id, extension = data["raw_msg"], data["event_id"], data["extension"]
    usec, count, root, last = data["kernel_usec"], data["count"], data["root_cause_event_id"], data["last_timestamp"]
    hierarchy, cur = data["hierarchy_blk_info"], data["cur_blk_info"]
    if (data["sub_system"] not in _CANONICAL_SUB_SYSTEMS or data["severity"] not in _SEVERITY_NAMES
            or type(raw_msg) is not str or not (raw_msg or not data["msg"])
            or type(event_id) is not str or not event_id
            or not (usec is None or (type(usec) is int and usec >= 0))
            or type(count) is not int or not count
            or not (root is None or root)
            or type(extension) is not dict or not all(type(v) is str for v in extension.values())
            or type(data["sources"]) is not list
            or not (cur is None or _kept_blk_info(cur))
            or type(hierarchy) is not list or not all(_kept_blk_info(b) for b in hierarchy)):
        return None
    timestamp = _kept_time(data["timestamp"])
    if timestamp is None or not (last is None or _kept_time(last) is not None):
        return None
    return timestamp, data["hostname"], text


def _kept_blk_info(data) -> bool:
    """``BlkInfo.to_dict(BlkInfo.from_dict(data)) == data``."""
    if type(data) is not dict or tuple(data) != _BLK_KEYS:
        return False
    blk_type, owners_types = data["blk_type"], data["owners_types"]
    return (type(blk_type) is str and blk_type not in _ORIGINAL_BLK_TYPES and type(owners_types) is list
            and all(type(t) is str and t not in _ORIGINAL_BLK_TYPES for t in owners_types))


def _kept_time(text) -> _dt.datetime | None:
    """The time ``text`` reads as (``parse_timestamp``), when it is written
    back the same. Text that ``format_timestamp`` could give is read by
    ``fromisoformat`` alone: no digits-only, no "Z", no naive time."""
    if type(text) is not str:
        return None
    try:
        ts = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None and format_timestamp(ts) == text else None
