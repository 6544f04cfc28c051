"""The lab's recorded kernel lines (tests/fixtures/recorded/lab-<kver>-<scenario>.kmsg,
written by every lab boot) against the built-in rules. No qemu needed.

Every kernel record at warning level or worse that a scenario produced must
become a specific event; a failure here lists the real 6.1 lines that still
lack a rule. Lines printed at info level that carry the failure's detail
(sense key, ASC, CDB, md degraded) are checked by name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from peripety.sources.kmsg import parse_record
from peripety.rules import RuleSet

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
FILES = sorted(RECORDED.glob("lab-*.kmsg"))

# Warning-level kernel lines in the lab that are not about storage failures:
# scheduler/boot chatter and scsi_debug's own start-up notes.
NOT_STORAGE = re.compile(
    r"^hrtimer: interrupt took"
    r"|^block device autoloading is deprecated"
    r"|^scsi_debug:sdebug_driver_probe: "
    r"|callbacks suppressed$"
)

# Info-level lines that carry a failure's detail and must match a rule.
DETAIL = re.compile(
    r"Sense Key : |Add\. Sense: |^md/raid\d*:\S+: Operation continuing on"
    r"|^nvme nvme\d+: (?:I/O|.*reset|.*reconnect)"
)


def records(path: Path):
    text = "\n".join(l for l in path.read_text().splitlines() if not l.startswith("#"))
    return [parse_record(block.strip("\n")) for block in text.split("\n\n") if block.strip()]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.builtin()


def test_lab_fixtures_exist():
    """`make lab` has recorded at least one scenario's kernel lines."""
    assert FILES, f"no lab-*.kmsg in {RECORDED}: run `make lab`"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_lab_failure_lines_match_a_rule(rules, path):
    recs = records(path)
    assert recs
    unmatched = [
        f"{r.level},{r.seq}: {r.text}" for r in recs
        if r.trusted_kernel and (r.level <= 4 or DETAIL.search(r.text)) and not NOT_STORAGE.search(r.text)
        and rules.match_record(r) is None
    ]
    assert not unmatched, f"{len(unmatched)} recorded line(s) without a rule:\n" + "\n".join(unmatched)
