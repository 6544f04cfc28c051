"""Find where things are in a TOML file, so errors can name a line.

``tomllib`` returns plain dicts without positions. Config files are small
and written by hand, so a line scan for table headers and ``key =`` lines
is enough to point the user at the right spot; when the scan cannot tell
(inline tables, dotted keys), callers fall back to the logical position
(``collector.regexs[2]``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

from ..errors import ConfigError

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")
_DECODE_POS = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


@dataclass(frozen=True)
class Block:
    """One ``[name]`` or ``[[name]]`` table: its header line and extent."""

    name: str
    array: bool
    line: int
    end: int  # first line after the block (1-based, exclusive)


class TomlLines:
    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.blocks: list[Block] = []
        starts = []
        for number, line in enumerate(self.lines, 1):
            m = _HEADER.match(line)
            if m:
                name = m.group(2).replace(" ", "").replace('"', "")
                starts.append((name, m.group(1) == "[[", number))
        ends = [s[2] for s in starts[1:]] + [len(self.lines) + 1]
        self.blocks = [Block(n, a, line, end) for (n, a, line), end in zip(starts, ends)]
        # Items of each array of tables, in order: a file of 20,000 rules
        # asks for every one of them, so the lookup must not scan.
        self._arrays: dict[str, list[Block]] = {}
        for block in self.blocks:
            if block.array:
                self._arrays.setdefault(block.name, []).append(block)

    def table(self, name: str) -> Block | None:
        return next((b for b in self.blocks if b.name == name and not b.array), None)

    def array_item(self, name: str, index: int) -> Block | None:
        items = self._arrays.get(name, [])
        return items[index] if 0 <= index < len(items) else None

    def key(self, block: Block | None, key: str) -> int | None:
        """Line of ``key = ...`` inside ``block`` (top level when None)."""
        start, end = (block.line + 1, block.end) if block else (1, self._first_header())
        for number in range(start, end):
            m = _KEY.match(self.lines[number - 1])
            if m and m.group(1).strip('"') == key:
                return number
        return None

    def _first_header(self) -> int:
        return self.blocks[0].line if self.blocks else len(self.lines) + 1


def load_toml(text: str, path=None) -> dict:
    """``tomllib.loads``, its error a ConfigError naming ``path`` and the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, reason = decode_error(exc)
        raise ConfigError(path, f"line {line}" if line else "", f"invalid TOML: {reason}") from None


def decode_error(exc: tomllib.TOMLDecodeError) -> tuple[int | None, str]:
    """(line, message without the position suffix) of a tomllib error."""
    text = str(exc)
    m = _DECODE_POS.search(text)
    if not m:
        return None, text
    return int(m.group(1)), f"{text[: m.start()]} (column {m.group(2)})"


def where(position: str, line: int | None) -> str:
    """``collector.regexs[2] (line 17)`` or just the position."""
    return f"{position} (line {line})" if line else position
