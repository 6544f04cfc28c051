"""peripety.config: /etc/peripetyd.conf sections, defaults and errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from peripety import config as config_mod
from peripety.config import Config, load_config
from peripety.errors import ConfigError

SAMPLE = Path(__file__).parent.parent / "etc" / "peripetyd.conf"


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "peripetyd.conf"
    path.write_text(text)
    return path


def test_documented_sample_loads_and_its_rule_works():
    cfg = load_config(SAMPLE)
    assert isinstance(cfg, Config) and cfg.path == SAMPLE
    assert (cfg.store, cfg.storm_window, cfg.blk_info_dump, cfg.notify_stdout) == ("auto", 5.0, True, False)
    user_rule = cfg.rules.rules[0]
    assert user_rule.origin.startswith(f"{SAMPLE}: collector.regexs[0] (line ")
    found = cfg.rules.match("EXT4-fs (sdb1): mounted filesystem 0b5f7e1c-2a35-4b62-8c21-0f4c0d6a9e11 r/w with ordered data mode. Quota mode: none.")
    assert found.rule is user_rule and found.extension["uuid"].startswith("0b5f")
    # built-in rules are still there, after the user's
    assert cfg.rules.match("I/O error, dev sdb, sector 8").event_type == "BLK_IO_ERROR"


def _uncommented_sample(**replace: str) -> str:
    """The sample with every documented ``#key = value`` line made real
    (values as shown, or as given in ``replace``), its commented
    ``[[notify]]`` examples too."""
    out = []
    for line in SAMPLE.read_text().splitlines():
        if line == "#[[notify]]":
            line = "[[notify]]"
        m = re.match(r"^#(\w+) = (.*)$", line)
        if m:
            key = m.group(1)
            line = f"{key} = {replace.get(key, m.group(2))}"
        out.append(line)
    return "\n".join(out) + "\n"


def _documented_store_spellings() -> list[str]:
    """The store values the sample lists (``#   "journal"   ...``)."""
    return re.findall(r'^#\s+"([^"]+)"\s', SAMPLE.read_text(), re.M)


def test_documented_sample_store_spellings_all_load(tmp_path):
    spellings = _documented_store_spellings()
    assert {"auto", "journal", "sqlite", "sqlite:PATH", "journal:NAMESPACE"} <= set(spellings)
    for spelling in spellings + ["journald"]:  # the sample says "journald" is the same as "journal"
        value = spelling.replace("NAMESPACE", "storage").replace("PATH", str(tmp_path / "events.db"))
        cfg = load_config(_write(tmp_path, _uncommented_sample(store=f'"{value}"')))
        assert cfg.store == ("journal" if value == "journald" else value), spelling


def test_all_sections(tmp_path):
    cfg = load_config(_write(tmp_path, """
[main]
notify_stdout = true
[daemon]
blk_info_dump = false
store = "sqlite"
storm_window = 2
user_space_identifiers = ["multipathd"]
[[collector.regexs]]
identifier = "mydaemon"
regex = '^bad (?P<kdev>\\S+)'
sub_system = "block"
event_type = "SITE_BAD"
"""))
    assert cfg.notify_stdout and not cfg.blk_info_dump
    assert (cfg.store, cfg.storm_window) == ("sqlite", 2.0)
    assert cfg.user_space_identifiers == ("multipathd", "mydaemon")


def test_original_save_to_journald_means_sqlite(tmp_path):
    assert load_config(_write(tmp_path, "[main]\nsave_to_journald = false\n")).store == "sqlite"


def test_missing_default_file_means_builtins(tmp_path, monkeypatch):
    monkeypatch.setattr(config_mod, "DEFAULT_PATH", tmp_path / "absent.conf")
    cfg = load_config()
    assert cfg.path is None and len(cfg.rules.rules) > 50


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.conf")


@pytest.mark.parametrize("text, where, reason", [
    ("[main]\nnotify_stdout = true\n\n[deamon]\nstore = 'auto'\n", "[deamon] (line 4)", "unknown section"),
    ("[daemon]\nstore = 'auto'\nstorm_windw = 3\n", "daemon.storm_windw (line 3)", "unknown key 'storm_windw'"),
    ("[daemon]\nstore = 'mongodb'\n", "daemon.store (line 2)", "unknown store 'mongodb'"),
    ("[daemon]\nstorm_window = 'soon'\n", "daemon.storm_window (line 2)", "a number of seconds"),
    ("[main]\nnotify_stdout = 'yes'\n", "main.notify_stdout (line 2)", "true or false"),
    ("[main]\nnotify_stdout = \n", "line 2", "invalid TOML"),
])
def test_config_errors_name_file_and_line(tmp_path, text, where, reason):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert info.value.where == where
    assert reason in info.value.reason
