"""The built-in rules' compiled regexes kept between runs (rules/cache.py):
the same rules as compiling them, and a cache not the user's own is never read."""

from __future__ import annotations

import marshal
import os
import re

import pytest

from peripety.rules import RuleSet, cache, engine


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A fresh cache directory, and the built-in rules loaded anew."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PERIPETY_NO_RULE_CACHE", raising=False)
    monkeypatch.setattr(engine, "_BUILTIN", None)
    return tmp_path / "cache" / "peripety"


def _fresh() -> RuleSet:
    engine._BUILTIN = None
    return RuleSet.builtin()


def _described(rules: RuleSet) -> list:
    return [(r.regex, r.sub_system, r.event_type, r.starts_with, r.severity, r.msg, r.origin, r.generic,
             r.no_device, r.guard, r.compiled.pattern, r.compiled.flags, r.compiled.groupindex)
            for r in rules.rules]


def _compiled_as_re_does(rules: RuleSet) -> bool:
    return all(r.compiled == re.compile(r.regex) for r in rules.rules)


def test_rules_from_the_cache_are_the_rules_compiled(cache_home, monkeypatch):
    monkeypatch.setenv("PERIPETY_NO_RULE_CACHE", "1")
    compiled = _fresh()
    monkeypatch.delenv("PERIPETY_NO_RULE_CACHE")
    assert not cache_home.exists()
    first = _fresh()  # compiles, writes the cache
    [kept] = cache_home.glob("rules-*.marshal")
    assert kept.stat().st_mode & 0o777 == 0o600 and cache_home.stat().st_mode & 0o777 == 0o700
    written = kept.stat().st_mtime_ns
    second = _fresh()  # reads it (and does not write it again)
    assert kept.stat().st_mtime_ns == written
    assert _described(first) == _described(second) == _described(compiled)
    assert _compiled_as_re_does(second)
    line = "sd 2:0:0:0: [sdb] tag#0 FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_SENSE"
    assert second.match(line, 3).event_type == compiled.match(line, 3).event_type


def _planted(cache_home) -> tuple:
    """The cache file with two rules' compiled code swapped: if it is read,
    those rules are not what re.compile makes."""
    _fresh()
    [path] = cache_home.glob("rules-*.marshal")
    data = marshal.loads(path.read_bytes())
    regexes = data["regex"]
    a, b = sorted(regexes)[:2]
    regexes[a], regexes[b] = regexes[b], regexes[a]
    path.write_bytes(marshal.dumps(data))
    return path, a


def test_a_cache_of_this_user_is_read(cache_home):
    """(What the refusals below are told by: the planted file is read.)"""
    path, swapped = _planted(cache_home)
    rules = _fresh()
    assert not _compiled_as_re_does(rules)
    assert [r for r in rules.rules if r.regex == swapped][0].compiled != re.compile(swapped)


@pytest.mark.parametrize("how", ["group-writable", "world-writable", "symlink", "directory group-writable",
                                 "other owner"])
def test_a_cache_another_user_could_have_written_is_never_read(cache_home, how):
    path, _ = _planted(cache_home)
    if how == "group-writable":
        path.chmod(0o620)
    elif how == "world-writable":
        path.chmod(0o602)
    elif how == "symlink":
        target = cache_home.parent / "elsewhere.marshal"
        path.rename(target)
        path.symlink_to(target)
    elif how == "directory group-writable":
        cache_home.chmod(0o770)
    else:
        if os.geteuid() != 0:
            pytest.skip("needs root to give the file to another user")
        os.chown(path, 65534, 65534)
    rules = _fresh()
    assert _compiled_as_re_does(rules)


def test_code_that_sre_refuses_or_garbage_means_compiling(cache_home):
    path, _ = _planted(cache_home)
    data = marshal.loads(path.read_bytes())
    for pattern, entry in data["regex"].items():
        data["regex"][pattern] = (entry[0], [1, 2, 3], *entry[2:])
    path.write_bytes(marshal.dumps(data))
    assert _compiled_as_re_does(_fresh())
    path.write_bytes(b"\x00garbage")
    assert _compiled_as_re_does(_fresh())
    assert marshal.loads(path.read_bytes())["regex"]  # and a good cache was written in its place


def test_no_home_no_cache(monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "relative/home")
    assert cache.cache_dir() is None
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    monkeypatch.setenv("HOME", "/home/someone")
    assert str(cache.cache_dir()) == "/home/someone/.cache/peripety"
