"""The fast paths of ``prpt parse`` give what the plain ones give:
guarded rule buckets, the direct JSON of fresh events, and large files
parsed by worker processes with the output in file order."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import peripety.classify as classify_mod
import peripety.event as event_mod
import peripety.event_json as event_json_mod
import peripety.json_lines as json_lines_mod
from peripety.cli import main
from peripety.record import LogRecord
from peripety.rules import Rule, RuleSet
from peripety.rules.engine import _Bucket, _guard, rule_from_table
from peripety.sources import from_text, parallel
from peripety.sources.logfile import LogFile

FIXTURES = Path(__file__).parent / "fixtures"
LOGS = FIXTURES / "logs"
LINES = FIXTURES / "lines"


def _fixture_texts() -> list[str]:
    texts = []
    for path in sorted(LINES.glob("*.toml")):
        texts += [e["text"] for e in tomllib.loads(path.read_text())["line"] if "identifier" not in e]
    noise = (LINES / "noise.txt").read_text().splitlines()
    return texts + [line for line in noise if line and not line.startswith("#")]


def _one_by_one(rules: RuleSet, text: str):
    """The rule contract, spelt out: the first rule whose prefix and regex match."""
    for rule in rules.rules:
        if rule.identifier or (rule.starts_with and not text.startswith(rule.starts_with)):
            continue
        found = rule.match(text)
        if found:
            return found
    return None


# -- buckets of guarded rules ---------------------------------------------------

def test_bucket_regexes_match_exactly_as_rules_one_by_one():
    rules = RuleSet.builtin()
    assert all(isinstance(bucket, _Bucket) for bucket in rules._by_key.values())
    # Nearly every built-in rule has a literal guard beyond its prefix.
    kernel = [rule for rule in rules.rules if not rule.identifier]
    assert len([rule for rule in kernel if _guard(rule)[0]]) >= len(kernel) * 9 // 10
    for text in _fixture_texts():
        fast, slow = rules.match(text), _one_by_one(rules, text)
        if slow is None:
            assert fast is None, text
            continue
        assert fast.rule is slow.rule, text
        assert (fast.kdev, fast.sub_system, fast.event_type, fast.severity, fast.extension) == (
            slow.kdev, slow.sub_system, slow.event_type, slow.severity, slow.extension), text
        assert list(fast.extension) == list(slow.extension), text
        assert fast.message() == slow.message(), text


def _trusted(regex: str, event_type: str, starts_with="disk ") -> Rule:
    entry = {"starts_with": starts_with, "regex": regex, "sub_system": "block", "event_type": event_type}
    return rule_from_table(entry, event_type, trusted=True)


def test_an_empty_kdev_passes_the_line_to_the_next_rule_in_order():
    rules = RuleSet([
        _trusted(r"^disk (?P<kdev>\w*) failed (?P<why>\w+)", "FIRST"),
        _trusted(r"^disk (?P<kdev>\w*) failed", "SECOND"),
        _trusted(r"^disk (?P<other>\w*) (?P<kdev>failed)", "THIRD"),
    ])
    assert isinstance(rules._by_key["dis"], _Bucket)
    assert rules.match("disk sda failed badly").event_type == "FIRST"
    found = rules.match("disk  failed badly")  # kdev "": neither FIRST nor SECOND
    assert (found.event_type, found.kdev, found.extension) == ("THIRD", "failed", {"other": ""})


def test_rules_of_any_shape_are_tried_in_order():
    unanchored = _trusted(r"failed on (?P<kdev>\w+)", "UNANCHORED")
    branch = _trusted(r"^disk x|disk (?P<kdev>\w+) gone", "BRANCH")
    backref = _trusted(r"^disk (?P<kdev>(\w)\2\w*)", "BACKREF")
    flagged = _trusted(r"(?i)^disk (?P<kdev>\w+) LOST", "FLAGGED")
    rules = RuleSet([unanchored, branch, backref, flagged, _trusted(r"^disk (?P<kdev>\w+)", "ANY")])
    assert rules.match("disk sdb failed on sdc").event_type == "UNANCHORED"
    assert rules.match("disk sdb gone").event_type == "BRANCH"
    assert rules.match("disk ssd1").event_type == "BACKREF"
    assert rules.match("disk sdb lost").event_type == "FLAGGED"
    assert rules.match("disk sdb").event_type == "ANY"
    for text in ("disk sdb failed on sdc", "disk sdb gone", "disk ssd1", "disk sdb lost", "disk sdb"):
        assert rules.match(text).rule is _one_by_one(rules, text).rule


# -- templates -----------------------------------------------------------------

def test_template_fast_render_equals_the_plain_one_with_any_field_missing():
    templates = {r.template.source: r.template for r in RuleSet.builtin().rules}
    for template in templates.values():
        fields = sorted(template.fields)
        for kept in itertools.chain.from_iterable(
            itertools.combinations(fields, n) for n in range(len(fields) + 1)
        ):
            values = {f: ("" if f.startswith("s") else f"v%{f}") for f in kept}
            assert template.render(values) == template._render_slowly(values), (template.source, kept)


# -- JSON straight from the match ---------------------------------------------

def _same_ids_and_time(monkeypatch):
    """Event ids counted from 0 again, and a fixed parse time."""
    counter = itertools.count()
    fake_id = lambda: f"00000000-0000-4000-8000-{next(counter):012d}"  # noqa: E731
    monkeypatch.setattr(event_mod, "new_event_id", fake_id)
    monkeypatch.setattr(event_json_mod, "new_event_id", fake_id)
    monkeypatch.setattr(classify_mod, "new_event_id", fake_id)
    monkeypatch.setattr(json_lines_mod, "new_event_id", fake_id)
    moment = event_mod.parse_timestamp("2025-11-25T03:44:01.123456+01:00")
    monkeypatch.setattr(classify_mod, "now", lambda: moment)
    monkeypatch.setattr(json_lines_mod, "now", lambda: moment)


@pytest.mark.parametrize("log", sorted(p.name for p in LOGS.glob("*") if p.suffix != ".md"))
def test_json_lines_are_byte_identical_to_the_events_json(monkeypatch, log):
    rules = RuleSet.builtin()
    text = (LOGS / log).read_text()
    _same_ids_and_time(monkeypatch)
    fast = list(classify_mod.json_lines_from_matches(from_text(text).matches(rules), "höst"))
    _same_ids_and_time(monkeypatch)
    slow = [e.to_json() + "\n" for e in classify_mod.events_from_matches(from_text(text).matches(rules), "höst")]
    assert fast == slow


def _fused_and_pairs(monkeypatch, make_logfile, rules, **kwargs):
    _same_ids_and_time(monkeypatch)
    logfile = make_logfile()
    fused = list(logfile.json_lines(rules, **kwargs))
    _same_ids_and_time(monkeypatch)
    count = kwargs.pop("count_malformed", True)
    pairs = list(classify_mod.json_lines_from_matches(make_logfile().matches(rules, count), **kwargs))
    return fused, pairs, logfile


def _kmsg_of_every_fixture_line() -> str:
    """Every fixture line as a kmsg record, at each level, from the kernel
    and from user space, and with text JSON escapes or isprintable refuses."""
    out, seq = [], 0
    for n, text in enumerate(_fixture_texts()):
        for prio in (n % 8, 8 + n % 8):
            out.append(f"{prio},{seq},{1000 + seq},-;{text}")
            seq += 1
    for text in ('XFS (loop0): metadata I/O error in "xfs_trans_read" at daddr 0x2 len 8 error 5',
                 "XFS (loop0): metadata I/O error in xfs_\\trans at daddr 0x2 len 8 error 5",
                 "XFS (loop0): metadata I/O error in x\u00adfs_trans at daddr 0x2 len 8 error 5 \u2028",
                 "sd 2:0:0:0: [sdb] tag#0 CDB: Read(10) 28 00 00 00 00 08 00 00 08 00",
                 "EXT4-fs (sd\xc3\x28b1): mounted filesystem with ordered data mode"):
        out.append(f"3,{seq},{1000 + seq},-;{text}")
        seq += 1
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("boot_time", [None, "2025-11-25T03:44:01+01:00"])
@pytest.mark.parametrize("source", ["fixture lines", *sorted(p.name for p in LOGS.glob("*") if p.suffix != ".md")])
def test_json_lines_straight_from_the_bytes_equal_the_matches_json(monkeypatch, source, boot_time):
    """``LogFile.json_lines`` (the usual kmsg record from its bytes to its
    JSON, no record or match made) writes what the matches' JSON lines are,
    byte for byte, and counts the same."""
    rules = RuleSet.builtin()
    if source == "fixture lines":
        data, fmt = _kmsg_of_every_fixture_line().encode("utf-8", "surrogateescape"), "kmsg"
    else:
        data, fmt = (LOGS / source).read_bytes(), "auto"
    boot = None if boot_time is None else event_mod.parse_timestamp(boot_time)
    make = lambda: LogFile(io.BytesIO(data), source, fmt)  # noqa: E731
    fused, pairs, logfile = _fused_and_pairs(monkeypatch, make, rules, boot_time=boot)
    assert fused == pairs
    assert logfile.stats.matched == len(fused)
    assert fused or "multiline" in source
    if source == "fixture lines":
        assert len(fused) > 200
        assert rules.first is not None  # the fast path was taken


def test_json_lines_with_site_rules_take_the_matches_path(monkeypatch):
    rules = RuleSet.builtin().with_user_rules(RuleSet.from_toml(
        "[[collector.regexs]]\nregex = 'XFS \\((?P<kdev>\\w+)\\): Mounting'\n"
        "sub_system = 'xfs'\nevent_type = 'SITE_XFS'\n").rules)
    assert rules.first is None
    data = _kmsg_of_every_fixture_line().encode("utf-8", "surrogateescape")
    fused, pairs, _ = _fused_and_pairs(monkeypatch, lambda: LogFile(io.BytesIO(data), "x", "kmsg"), rules)
    assert fused == pairs
    assert any('"SITE_XFS"' in line for line in fused)


def test_json_lines_escape_what_json_escapes(monkeypatch):
    _same_ids_and_time(monkeypatch)
    rules = RuleSet.builtin()
    line = 'XFS (loop0): metadata I/O error in "xfs_\\trans\x01_read" at daddr 0x2 len 8 error 5 ünï\u2028'
    match = rules.match(line)
    record = LogRecord(line)
    [fast] = classify_mod.json_lines_from_matches([(record, match)], 'h"ost')
    [event] = classify_mod.events_from_matches([(record, match)], 'h"ost')
    assert json.loads(fast)["raw_msg"] == line
    assert fast == event.to_json().replace(event.event_id, "00000000-0000-4000-8000-000000000000") + "\n"


# -- worker processes ----------------------------------------------------------

def _big_kmsg(tmp_path: Path) -> Path:
    """Fixture records (dictionary lines, user-space forgeries, escapes)
    repeated with fresh sequence numbers, plus a malformed line."""
    records = (LOGS / "devkmsg.kmsg").read_text().split("\n")
    out, seq = [], 0
    for round_ in range(40):
        for line in records:
            if line and not line.startswith(" "):
                prio, _, rest = line.partition(",")
                line = f"{prio},{seq},{rest.partition(',')[2]}"
                seq += 1
            out.append(line)
        if round_ == 7:
            out.append("this line is garbage")
    path = tmp_path / "big.kmsg"
    path.write_text("\n".join(l for l in out if l) + "\n")
    return path


def _normalised(stdout: str, output: str) -> list:
    if output == "--jsonl":
        events = [json.loads(line) for line in stdout.splitlines()]
    elif output == "-J":
        events = [json.loads(block) for block in stdout.split("\n\n")]
    else:
        return [line.split(" ", 1)[1] for line in stdout.splitlines()]  # past the time
    for event in events:
        del event["event_id"], event["timestamp"]
    return events


@pytest.mark.parametrize("output", ["--jsonl", "-J", "--text"])
def test_workers_write_what_one_process_writes_in_order(tmp_path, monkeypatch, output):
    path = _big_kmsg(tmp_path)
    serial = CliRunner().invoke(main, ["parse", output, "--stats", "-j", "1", str(path)])
    monkeypatch.setattr(parallel, "PARALLEL_MIN_SIZE", 0)
    split = CliRunner().invoke(main, ["parse", output, "--stats", "-j", "7", str(path)])  # cut everywhere
    assert serial.exit_code == split.exit_code == 0, split.output
    assert serial.stderr == split.stderr
    assert "1 skipped (malformed)" in split.stderr and "format kmsg" in split.stderr
    assert _normalised(split.stdout, output) == _normalised(serial.stdout, output)
    # 45 specific events, 10 generic ones (loop capacity changes) and 2 ratelimit summaries per copy
    assert len(_normalised(split.stdout, output)) == 40 * 57
    if output == "--jsonl":
        ids = [json.loads(line)["event_id"] for line in split.stdout.splitlines()]
        assert len(set(ids)) == len(ids), "workers must not share the random pool"


def test_parts_are_cut_only_where_a_record_starts(tmp_path, monkeypatch):
    path = _big_kmsg(tmp_path)
    data = path.read_bytes()
    with open(path, "rb") as stream:
        ranges = parallel._ranges(stream, len(data), multiline=True, count=len(data) // 1000)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data) and len(ranges) > 50
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        assert end == start and data[start - 1 : start] == b"\n" and data[start : start + 1] != b" "


def test_small_files_and_standard_input_stay_in_one_process(tmp_path):
    path = _big_kmsg(tmp_path)
    assert not parallel.worth_splitting("-", 8)
    assert not parallel.worth_splitting(str(path), 8)  # below PARALLEL_MIN_SIZE
    assert not parallel.worth_splitting(str(path), 1)
    assert not parallel.worth_splitting(str(tmp_path / "missing"), 8)


def test_rules_compiled_from_one_parse_are_what_re_compile_makes():
    """Built-in rules are compiled from the parse their guard is read from:
    the very pattern ``re.compile`` makes (``==`` compares the code), and the
    guard a separate parse gives."""
    import re

    for rule in RuleSet.builtin().rules:
        expected = re.compile(rule.regex)
        assert rule.compiled == expected, rule.regex
        assert (rule.compiled.groupindex, rule.compiled.groups) == (expected.groupindex, expected.groups)
        assert rule.guard is not None
        assert rule.guard == _guard(Rule(rule.regex, rule.sub_system, rule.event_type, compiled=expected))


def test_a_literal_guard_is_only_text_every_match_holds():
    cases = {
        r"^disk (?P<kdev>\w+) failed: (?P<why>timeout|reset) now": " failed: ",
        r"^disk (?P<kdev>\w+)(?: lost)? gone for good": " gone for good",  # not " lost": optional
        r"(?i)^disk (?P<kdev>\w+) LOST for good": None,  # case-insensitive: no literal
        r"^disk (?P<kdev>\w+) (?i:GONE) away for good": " away for good",  # not "GONE": any case
        r"^(?:disk|tape) (?P<kdev>\w+)": None,  # a branch: nothing sure but a space
    }
    for regex, literal in cases.items():
        rule = _trusted(regex, "X")
        assert _guard(rule)[0] == literal, regex
    assert _guard(_trusted(r"^a|disk (?P<kdev>\w+)", "X"))[1] is False  # not anchored: search


@pytest.mark.parametrize("log", sorted(str(p.relative_to(FIXTURES)) for p in
                                       [*LOGS.glob("*.kmsg"), *LOGS.glob("dmesg*.txt"),
                                        *(FIXTURES / "recorded").glob("*.kmsg")]))
def test_the_fast_path_finds_what_reading_every_record_finds(log):
    """Searching the raw bytes for rule prefixes (and reading the usual kmsg
    record in place) gives the records and matches that parsing every line
    and matching each gives, in order, lines of multi-line records included."""
    from peripety.record import record_lines
    from peripety.sources.logfile import LogFile

    rules = RuleSet.builtin()
    path = FIXTURES / log
    fmt = "kmsg" if path.suffix == ".kmsg" else "auto"  # recorded files open with comments
    with LogFile.open(path, fmt) as logfile:
        fast = [(r, m.rule, m.kdev, m.extension) for r, m in logfile.matches(rules, count_malformed=False)]
    slow = []
    with LogFile.open(path, fmt) as logfile:
        for record in logfile.records():
            for _, line in record_lines(record):
                m = rules.match_record(line)
                if m is not None:
                    slow.append((line, m.rule, m.kdev, m.extension))
    assert fast == slow
    assert fast or "multiline" in log  # the fixtures hold storage lines


def _sixteen_megabytes(tmp_path: Path) -> Path:
    """A kmsg file just large enough to be split by the real ``prpt``."""
    events = _big_kmsg(tmp_path).read_text()
    noise = "".join(f"6,{n},{n},-;usb 1-{n % 9}: new high-speed USB device number {n} using xhci_hcd\n"
                    for n in range(parallel.PARALLEL_MIN_SIZE // 4 // 70))
    path = tmp_path / "large.kmsg"
    path.write_text((events + noise) * 4)  # every part holds events
    assert parallel.worth_splitting(str(path), 2)
    return path


def test_a_split_file_with_a_bad_config_is_one_clean_error(tmp_path):
    """Every process loads the rules itself (after the fork): a bad
    --config is still one message and exit 1, no traceback, no output."""
    from tests.test_parse_cli import PRPT

    path = _sixteen_megabytes(tmp_path)
    conf = tmp_path / "bad.conf"
    conf.write_text('[[collector.regexs]]\nregex = "x("\nsub_system = "SCSI"\nevent_type = "X"\n')
    done = subprocess.run([str(PRPT), "parse", "--jsonl", "-j", "4", "--config", str(conf), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"Error: {conf}: collector.regexs[0] (line 2): regex does not compile")


def test_a_split_file_into_a_reader_that_goes_away_ends_quietly(tmp_path):
    from tests.test_parse_cli import PRPT

    path = _sixteen_megabytes(tmp_path)
    done = subprocess.run(f"{PRPT} parse --jsonl -j 4 {path} | head -1", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert json.loads(done.stdout)["event_type"]
    assert done.stderr == ""
    # no worker is left behind
    left = subprocess.run(["pgrep", "-f", f"parse --jsonl -j 4 {path}"], capture_output=True, text=True)
    assert left.stdout == ""


@pytest.mark.parametrize("output", ["--jsonl", "-J"])
@pytest.mark.parametrize("into", ["file", "pipe"])
def test_workers_output_copied_by_the_kernel_is_what_one_process_writes(tmp_path, output, into):
    """The real ``prpt``: workers' output goes out by sendfile (a regular
    file, a pipe), after the caller's own part, in order."""
    from tests.test_parse_cli import PRPT

    path = _sixteen_megabytes(tmp_path)
    texts = {}
    for jobs in ("1", "4"):
        command = [str(PRPT), "parse", output, "-j", jobs, str(path)]
        if into == "file":
            target = tmp_path / f"out-{jobs}"
            with open(target, "w") as out:
                out.write("kept\n")  # what stdout held before
                out.flush()
                subprocess.run(command, stdout=out, check=True, timeout=120)
            texts[jobs] = target.read_text()
        else:
            texts[jobs] = "kept\n" + subprocess.run(command, capture_output=True, text=True, check=True,
                                                    timeout=120).stdout
    assert texts["4"].startswith("kept\n")
    assert _normalised(texts["4"][5:], output) == _normalised(texts["1"][5:], output)
    assert len(_normalised(texts["4"][5:], output)) == 4 * 40 * 57
