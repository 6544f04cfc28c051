"""``prpt``: query, follow and watch storage events.

Commands live one per module (``parse``, ``info``, ``query``, ``summary``,
``monitor``, ``top``, ``event-types``, ``notify-test``) and are loaded lazily, so ``prpt parse`` never imports pyudev or the
journal bindings it does not need.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

# command name -> module under peripety.cli holding a click command named `command`
_COMMANDS = {
    "event-types": "event_types",
    "info": "info",
    "monitor": "monitor",
    "notify-test": "notify_test",
    "parse": "parse",
    "query": "query",
    "summary": "summary",
    "top": "top",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(n for n in _COMMANDS if _module_exists(_COMMANDS[n]))

    def get_command(self, ctx, name):
        module = _COMMANDS.get(name)
        if module is None or not _module_exists(module):
            return None
        return importlib.import_module(f"{__name__}.{module}").command


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(f"{__name__}.{module}") is not None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="peripety")
def main():
    """Peripety storage events: parse saved logs, show device identity,
    query and follow the events peripetyd stored."""


from .entry import run_cli  # noqa: E402

cli_main = run_cli(main)
"""The ``prpt`` console script: ``main`` plus closed/full stdout handling."""

if __name__ == "__main__":  # pragma: no cover
    cli_main()
