"""``/etc/peripetyd.conf``: the daemon's settings and the site's rules.

The file is TOML with the original peripety's layout::

    [main]        notify_stdout
    [daemon]      blk_info_dump, store, storm_window, user_space_identifiers
    [senders.ID]  who may send user-space daemon ID's journal lines
    [collector]   regexs = [[collector.regexs]] user rules (see rules/)
    [[notify]]    alert actions (see outputs/notify_config.py)
    [metrics]     listen, textfile, max_devices (outputs/metrics.py)

A missing default file means built-in rules and defaults; a file named
explicitly must exist. Anything unknown is an error naming the file and
line: a typo silently ignored is a rule that never fires.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, StoreError
from .event_types import EVENT_TYPES
from .outputs.notify_config import parse_notify
from .outputs.metrics_options import (DEFAULT_MAX_DEVICES, ListenAddress, ListenAddressError, check_textfile_path,
                                      parse_listen_address)
from .rules import RuleSet
from .stores.provenance import SenderPolicy
from .rules.toml_lines import TomlLines, load_toml, where
from .stores.factory import parse_store_spec

log = logging.getLogger("peripety.config")

DEFAULT_PATH = Path("/etc/peripetyd.conf")
DEFAULT_USER_SPACE_IDENTIFIERS = ("multipathd", "iscsid", "dmeventd", "lvm", "smartd", "mdadm")


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: where peripetyd serves or writes its Prometheus metrics."""

    listen: ListenAddress | None = None
    """``ADDR:PORT`` of the HTTP listener; None: none."""
    textfile: Path | None = None
    """node_exporter textfile-collector file (``*.prom``); None: none."""
    max_devices: int = DEFAULT_MAX_DEVICES
    """Device label sets in peripety_events_total before folding into one."""


@dataclass
class Config:
    path: Path | None
    rules: RuleSet
    blk_info_dump: bool = True
    """Log a PERIPETY_BLK_INFO event per block device at start-up."""
    store: str = "auto"
    """journald where it runs, else SQLite; or force one."""
    storm_window: float = 5.0
    """Seconds within which identical events fold into one with a count."""
    notify_stdout: bool = False
    """Also print events to stdout (the original's [main] notify_stdout)."""
    user_space_identifiers: tuple[str, ...] = DEFAULT_USER_SPACE_IDENTIFIERS
    """SYSLOG_IDENTIFIERs whose journal lines are read; rules add their own."""
    senders: dict[str, SenderPolicy] = field(default_factory=dict)
    """[senders.ID] overrides; ``sender_policy(ID)`` gives the one in force."""
    notify: tuple = ()
    """[[notify]] alert actions (outputs.notify_config.NotifyAction)."""
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    """[metrics]: Prometheus metrics (``--metrics``/``--metrics-textfile`` win)."""

    def sender_policy(self, identifier: str) -> SenderPolicy:
        """Who may send ``identifier``'s lines: the [senders.ID] table, else
        root running a program called ``identifier`` or its ``ID.service``."""
        return self.senders.get(identifier) or SenderPolicy.for_daemon(identifier)


# section -> key -> (expected type(s), type name for the message)
_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "main": {
        "notify_stdout": ((bool,), "true or false"),
        "save_to_journald": ((bool,), "true or false"),  # the original's; see _legacy
    },
    "daemon": {
        "blk_info_dump": ((bool,), "true or false"),
        "store": ((str,), "a string"),
        "storm_window": ((int, float), "a number of seconds"),
        "user_space_identifiers": ((list,), "a list of strings"),
    },
    "collector": {
        "regexs": ((list,), "an array of tables ([[collector.regexs]])"),
    },
    "senders": {},  # one table per identifier, checked by _senders
    "notify": {},  # an array of tables, checked by outputs.notify_config
    "metrics": {
        "listen": ((str,), "a string ADDR:PORT"),
        "textfile": ((str,), "a string (an absolute path ending in .prom)"),
        "max_devices": ((int,), "a whole number"),
    },
}
_SENDER_KEYS = ("uids", "comms", "exes", "units")


def load_config(path: str | Path | None = None) -> Config:
    """Read the config at ``path`` (default ``/etc/peripetyd.conf``)."""
    explicit = path is not None
    path = Path(path) if explicit else DEFAULT_PATH
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(path, "", "no such file") from None
        log.debug("%s not found: built-in rules and defaults", path)
        return Config(path=None, rules=RuleSet.builtin())
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(path, f"line {line}", f"byte 0x{data[exc.start]:02x} is not UTF-8 "
                          "(TOML files are UTF-8; re-save the file as UTF-8)") from None
    return config_from_text(text, path)


def config_from_text(text: str, path: str | Path | None = None) -> Config:
    data = load_toml(text, path)
    lines = TomlLines(text)
    _check_schema(data, path, lines)
    main, daemon = data.get("main", {}), data.get("daemon", {})
    user_rules = RuleSet.from_data(data, path, lines=lines).rules
    rules = RuleSet.builtin().with_user_rules(user_rules)
    store = daemon.get("store", _legacy_store(main))
    try:
        store = str(parse_store_spec(store))
    except StoreError as exc:
        raise ConfigError(path, _at(lines, "daemon", "store"), str(exc)) from None
    storm_window = float(daemon.get("storm_window", 5.0))
    if storm_window < 0:
        raise ConfigError(path, _at(lines, "daemon", "storm_window"), "storm_window must be >= 0")
    identifiers = daemon.get("user_space_identifiers", list(DEFAULT_USER_SPACE_IDENTIFIERS))
    if not all(isinstance(i, str) and i for i in identifiers):
        raise ConfigError(path, _at(lines, "daemon", "user_space_identifiers"),
                          "user_space_identifiers must be a list of non-empty strings")
    extra = sorted({i for r in user_rules for i in r.identifier} - set(identifiers))
    return Config(
        path=Path(path) if path is not None else None,
        rules=rules,
        blk_info_dump=daemon.get("blk_info_dump", True),
        store=store,
        storm_window=storm_window,
        notify_stdout=main.get("notify_stdout", False),
        user_space_identifiers=tuple(identifiers) + tuple(extra),
        senders=_senders(data.get("senders", {}), path, lines),
        notify=parse_notify(data.get("notify", []), path, lines,
                            {r.event_type for r in rules.rules} | {t.name for t in EVENT_TYPES}),
        metrics=_metrics(data.get("metrics", {}), path, lines),
    )


def _metrics(table: dict, path, lines: TomlLines) -> MetricsConfig:
    listen = textfile = None
    if "listen" in table:
        try:
            listen = parse_listen_address(table["listen"])
        except ListenAddressError as exc:
            raise ConfigError(path, _at(lines, "metrics", "listen"), str(exc)) from None
    if "textfile" in table:
        try:
            textfile = check_textfile_path(table["textfile"])
        except ValueError as exc:
            raise ConfigError(path, _at(lines, "metrics", "textfile"), str(exc)) from None
    max_devices = table.get("max_devices", DEFAULT_MAX_DEVICES)
    if max_devices < 1:
        raise ConfigError(path, _at(lines, "metrics", "max_devices"), "max_devices must be at least 1")
    return MetricsConfig(listen, textfile, max_devices)


def _senders(tables: dict, path, lines: TomlLines) -> dict[str, SenderPolicy]:
    """[senders.ID] tables: uids (integers), comms, exes, units (strings)."""
    senders = {}
    for ident, table in tables.items():
        at = _at(lines, f"senders.{ident}", "")
        if not isinstance(table, dict):
            raise ConfigError(path, at, f"senders.{ident} must be a table ([senders.{ident}])")
        for key, value in table.items():
            if key not in _SENDER_KEYS:
                raise ConfigError(path, _at(lines, f"senders.{ident}", key),
                                  f"unknown key {key!r} in [senders.{ident}] (known: {', '.join(_SENDER_KEYS)})")
            kind = int if key == "uids" else str
            if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool)
                                                      for v in value):
                raise ConfigError(path, _at(lines, f"senders.{ident}", key),
                                  f"{key} must be a list of {'integers' if kind is int else 'strings'}")
        if not any(table.get(k) for k in ("comms", "exes", "units")):
            raise ConfigError(path, at, f"[senders.{ident}] names no comms, exes or units: nothing could send")
        senders[ident] = SenderPolicy.of(table.get("uids", [0]), table.get("comms", ()),
                                         table.get("exes", ()), table.get("units", ()))
    return senders


def _check_schema(data: dict, path, lines: TomlLines) -> None:
    for section, values in data.items():
        if section not in _SCHEMA:
            block = lines.table(section) or next((b for b in lines.blocks if b.name.startswith(section)), None)
            raise ConfigError(path, where(f"[{section}]", block.line if block else lines.key(None, section)),
                              f"unknown section (expected {', '.join(_header(s) for s in _SCHEMA)})")
        if section == "notify":
            continue  # [[notify]]: outputs.notify_config
        if not isinstance(values, dict):
            raise ConfigError(path, where(section, lines.key(None, section)), "must be a table")
        if section == "senders":
            continue  # per-identifier tables: _senders
        for key, value in values.items():
            if key not in _SCHEMA[section]:
                known = ", ".join(_SCHEMA[section])
                raise ConfigError(path, _at(lines, section, key), f"unknown key {key!r} in [{section}] (known: {known})")
            types, described = _SCHEMA[section][key]
            if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
                raise ConfigError(path, _at(lines, section, key), f"{key} must be {described}")


def _header(section: str) -> str:
    return "[[notify]]" if section == "notify" else f"[{section}]"


def _at(lines: TomlLines, section: str, key: str) -> str:
    block = lines.table(section)
    return where(f"{section}.{key}", lines.key(block, key) if block else None)


def _legacy_store(main: dict) -> str:
    """The original's ``save_to_journald = false`` meant "not journald"."""
    if main.get("save_to_journald") is False:
        return "sqlite"
    return "auto"
