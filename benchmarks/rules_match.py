"""How fast RuleSet.match rejects noise and matches storage lines.

    .venv/bin/python benchmarks/rules_match.py

Noise is the non-storage kernel lines of tests/fixtures/lines/noise.txt,
storage lines are the kernel lines of the other fixture files. The parse
pipeline targets 1,000,000 lines/s with 10 % storage lines, so the rule
engine's share has to be a small part of a microsecond per line.
"""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

from peripety.rules import RuleSet

LINES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "lines"


def _noise() -> list[str]:
    text = (LINES / "noise.txt").read_text()
    return [l for l in text.splitlines() if l and not l.startswith("#")]


def _storage() -> list[str]:
    out = []
    for path in sorted(LINES.glob("*.toml")):
        out += [e["text"] for e in tomllib.loads(path.read_text())["line"] if "identifier" not in e]
    return out


def lines_per_second(rules: RuleSet, lines: list[str], minimum: float = 1.0) -> float:
    match = rules.match
    done, start = 0, time.perf_counter()
    while True:
        for line in lines:
            match(line)
        done += len(lines)
        elapsed = time.perf_counter() - start
        if elapsed >= minimum:
            return done / elapsed


def main() -> None:
    rules = RuleSet.builtin()
    noise, storage = _noise(), _storage()
    mixed = noise[: 9 * len(storage) // 1] if len(noise) >= 9 * len(storage) else noise * 9
    mixed = mixed[: 9 * len(storage)] + storage  # 10 % storage lines
    for name, lines in (("noise", noise), ("storage", storage), ("mixed 10% storage", mixed)):
        rate = lines_per_second(rules, lines)
        print(f"{name:18s} {len(lines):5d} distinct lines  {rate:12,.0f} lines/s  {1e9 / rate:8.0f} ns/line")


if __name__ == "__main__":
    main()
