"""User rules: RE2 compilation, verbose patterns, errors that name the spot."""

from __future__ import annotations

import re

import pytest

from peripety.errors import ConfigError
from peripety.record import LogRecord
from peripety.rules import RuleSet
from peripety.rules.template import TemplateError, compile_template
from peripety.rules.user_regex import strip_verbose, translate_verbose


def _rules(body: str, tmp_path) -> RuleSet:
    path = tmp_path / "peripetyd.conf"
    path.write_text(body)
    return RuleSet.load(path)


RULE = '''
[[collector.regexs]]
starts_with = "mydrv "
regex = '^mydrv (?P<kdev>sd[a-z]+): (?P<what>.+) failed$'
sub_system = "SCSI"
event_type = "MYDRV_FAILURE"
msg = "mydrv: {what} failed on {kdev}"
'''


def test_user_rule_runs_before_builtin_and_on_re2(tmp_path):
    rules = _rules(RULE + '''
[[collector.regexs]]
starts_with = "I/O error"
regex = '^I/O error, dev (?P<kdev>loop\\d+)'
sub_system = "block"
event_type = "LOOP_TROUBLE"
''', tmp_path)
    found = rules.match("mydrv sdc: spin-up failed")
    assert (found.kdev, found.event_type, found.message()) == ("sdc", "MYDRV_FAILURE", "mydrv: spin-up failed on sdc")
    assert str(tmp_path / "peripetyd.conf") in found.rule.origin and "line 2" in found.rule.origin
    assert type(found.rule.compiled).__module__.startswith("re2")
    # the user's refinement wins over the built-in BLK_IO_ERROR rule...
    assert rules.match("I/O error, dev loop3, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 2").event_type == "LOOP_TROUBLE"
    # ...and the built-in still handles what the user rule does not.
    assert rules.match("I/O error, dev sdb, sector 8").event_type == "BLK_IO_ERROR"


def test_userspace_rule_only_for_its_identifier(tmp_path):
    rules = _rules('''
[[collector.regexs]]
identifier = "mydaemon"
regex = '^lost (?P<kdev>\\S+)$'
sub_system = "Multipath"
event_type = "SITE_LOST"
''', tmp_path)
    assert rules.match("lost sdb") is None
    assert rules.match_record(LogRecord("lost sdb", trusted_kernel=False, identifier="mydaemon")).kdev == "sdb"
    assert "mydaemon" in rules.identifiers


VERBOSE = r"""(?x)
        ^EXT4-fs\s
        \((?P<kdev>[^\s\)]+)\):\s    # device
        mounted\ filesystem\s        # the original's style
        [#] \# tag\#\d+ [ ]x
"""


def test_strip_verbose_matches_python_verbose_semantics():
    plain = translate_verbose(VERBOSE)
    assert "#" in plain and " " in plain and "\n" not in plain
    line = "EXT4-fs (sdb1): mounted filesystem ##tag#3 x"
    assert re.search(VERBOSE, line) and re.search(plain, line)
    assert re.search(VERBOSE, line).groupdict() == re.search(plain, line).groupdict()
    assert strip_verbose("[] ] a # comment\n b") == "[] ]ab"
    assert strip_verbose("[^]#] c") == "[^]#]c"
    assert translate_verbose("(?xi) A b") == "(?i)Ab"
    assert translate_verbose("a b") == "a b"  # not verbose: unchanged


@pytest.mark.parametrize("rule, line, expected", [
    pytest.param("regex = 'badness on (?P<kdev>\\w+)'\nsub_system = 'block'\nevent_type = 'SITE_BADNESS'",
                 "x: badness on sdq", ("sdq", "SITE_BADNESS", "SITE_BADNESS on sdq"),
                 id="no-starts_with-sees-every-line"),
    pytest.param(f"starts_with = 'EXT4-fs '\nregex = \'\'\'{VERBOSE}\'\'\'\nsub_system = 'ext4'\nevent_type = 'SITE_MOUNT'",
                 "EXT4-fs (sdb1): mounted filesystem ##tag#3 x", ("sdb1", "SITE_MOUNT", "SITE_MOUNT on sdb1"),
                 id="verbose-regex-on-re2"),
    pytest.param("starts_with = 'zzz'\nregex = '^zzz (?P<kdev>\\w+)'\nsub_system = 'block'\nevent_type = 'BLK_IO_ERROR'",
                 "zzz sdx", ("sdx", "BLK_IO_ERROR", "Block I/O error on sdx"),
                 id="no-msg-gets-the-type-title"),
])
def test_single_user_rule_matches_its_line(tmp_path, rule, line, expected):
    rules = _rules(f"[[collector.regexs]]\n{rule}\n", tmp_path)
    found = rules.match(line)
    assert (found.kdev, found.event_type, found.message()) == expected
    assert rules.match("I/O error, dev sdb, sector 8").rule.origin.startswith("peripety/rules/builtin.toml")


@pytest.mark.timeout(30)
def test_catastrophic_user_regex_completes(tmp_path):
    rules = _rules('''
[[collector.regexs]]
regex = '^(?P<kdev>(a+)+)$'
sub_system = "block"
event_type = "SITE_EVIL"
[[collector.regexs]]
regex = '(?P<kdev>(x|x)*)y'
sub_system = "block"
event_type = "SITE_EVIL2"
''', tmp_path)
    for line in ("a" * 100_000 + "!", "x" * 100_000):
        assert rules.match(line) is None  # python re would not return in our lifetime
    assert rules.match("a" * 50).event_type == "SITE_EVIL"


@pytest.mark.parametrize("body, where, reason", [
    ("[[collector.regexs]\nregex = 'x'\n", "line 1", "invalid TOML"),
    ("\n[[collector.regexs]]\nregex = '(?P<kdev>a'\nsub_system = 'block'\nevent_type = 'X'\n",
     "collector.regexs[0] (line 3)", "does not compile"),
    ("[[collector.regexs]]\nregex = '(?P<kdev>a)'\nsub_system = 'block'\nevent_type = 'X'\n"
     "[[collector.regexs]]\nregex = '(?P<dev>a)'\nsub_system = 'block'\nevent_type = 'X'\n",
     "collector.regexs[1] (line 6)", "no 'kdev' named group"),
    ("[[collector.regexs]]\nregex = '(?P<kdev>a)'\nsub_system = 'floppy'\nevent_type = 'X'\n",
     "collector.regexs[0] (line 3)", "unknown sub_system 'floppy'"),
    ("[[collector.regexs]]\nregex = '(?P<kdev>a)'\nsub_system = 'block'\nevent_type = 'X'\nstart_with = 'a'\n",
     "collector.regexs[0] (line 5)", "unknown key 'start_with'"),
    ("[[collector.regexs]]\nregex = '(?P<kdev>a)'\nsub_system = 'block'\nevent_type = 'X'\nseverity = 'Loud'\n",
     "collector.regexs[0] (line 5)", "unknown severity 'Loud'"),
    ("[[collector.regexs]]\nregex = '(?P<kdev>a)(?P=kdev)'\nsub_system = 'block'\nevent_type = 'X'\n",
     "collector.regexs[0] (line 2)", "RE2"),
    ("[[collector.regexs]]\nregex = '(?P<kdev>a)(?=b)'\nsub_system = 'block'\nevent_type = 'X'\n",
     "collector.regexs[0] (line 2)", "lookahead"),
    ("[[collector.regexs]]\nregex = '(?P<kdev>a)'\nsub_system = 'block'\nevent_type = 'X'\nmsg = '{kdev} {sector}'\n",
     "collector.regexs[0] (line 5)", "{sector}"),
    ("[[collector.regexs]]\nsub_system = 'block'\nevent_type = 'X'\n",
     "collector.regexs[0]", "'regex' is required"),
])
def test_bad_user_rule_names_file_position_and_reason(tmp_path, body, where, reason):
    with pytest.raises(ConfigError) as info:
        _rules(body, tmp_path)
    err = info.value
    assert err.path == str(tmp_path / "peripetyd.conf")
    assert err.where.startswith(where)
    assert reason in err.reason
    assert str(err).startswith(f"{err.path}: {where}")


def test_missing_rule_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read rules"):
        RuleSet.load(tmp_path / "nope.conf")


def test_message_template_optional_parts_and_missing_groups():
    tpl = compile_template("{blk_status} on {kdev} at sector {sector}[ ({op})] [[raw]]")
    assert tpl.render({"blk_status": "I/O error", "kdev": "sdb", "sector": "8", "op": "READ"}) == \
        "I/O error on sdb at sector 8 (READ) [raw]"
    assert tpl.render({"blk_status": "I/O error", "kdev": "sdb"}) == "I/O error on sdb at sector ? [raw]"
    for bad in ("[a [b]]x]", "a ] b", "[open", "{0}", "{a!r}", "{a"):
        with pytest.raises(TemplateError):
            compile_template(bad)

