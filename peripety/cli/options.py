"""Options shared by ``prpt`` commands, defined once (parse, query, monitor, top)."""

from __future__ import annotations

import click

from ..logsetup import setup_logging

OUTPUT_TEXT = "text"
OUTPUT_JSON = "json"
OUTPUT_JSONL = "jsonl"


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: int) -> int:
    setup_logging(value)
    return value


verbose_option = click.option(
    "-v",
    "--verbose",
    count=True,
    expose_value=False,
    is_eager=True,
    callback=_set_verbosity,
    help="Log more to stderr: -v info, -vv debug.",
)


def _set_utc(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    from ..event import set_output_utc

    set_output_utc(value)
    return value


utc_option = click.option(
    "--utc",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_utc,
    help="Show times in UTC. Default: local time (TZ), in text with the date when not "
    "today, in JSON as RFC 3339 with the offset.",
)


def output_options(func):
    """``-J/--json`` and ``--jsonl`` as one ``output_format`` parameter
    (``text``, ``json`` or ``jsonl``)."""
    func = click.option(
        "--jsonl",
        "output_format",
        flag_value=OUTPUT_JSONL,
        help="One compact JSON object per line (for scripts and jq).",
    )(func)
    func = click.option(
        "-J",
        "--json",
        "output_format",
        flag_value=OUTPUT_JSON,
        help="Pretty JSON, events separated by a blank line.",
    )(func)
    func = click.option(
        "--text", "output_format", flag_value=OUTPUT_TEXT, default=True, hidden=True
    )(func)
    return func


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="PATH",
    help="peripetyd.conf whose [[collector.regexs]] rules are tried before the built-in ones.",
)


def load_rules(config_path):
    """The rules ``--config PATH`` gives (built-in ones without it); a bad
    file is a clean error naming it."""
    if config_path is None:
        from ..rules import RuleSet

        return RuleSet.builtin()
    from ..config import load_config
    from ..errors import PeripetyError

    try:
        return load_config(config_path).rules
    except PeripetyError as exc:
        raise click.ClickException(str(exc)) from None
