"""Compile a user's rule regex with RE2, so no pattern can hang the matcher.

Python's ``re`` backtracks: ``(a+)+$`` on a long line of ``a``s takes
longer than the age of the universe, and a site config is written by
people, not reviewed by us. RE2 (``google-re2``) runs in time linear in
the line, at the price of no backreferences and no lookaround.

The original peripety's configs use ``(?x)`` verbose patterns; RE2 has no
``x`` flag, so :func:`strip_verbose` removes the layout whitespace and
``#`` comments the way Python's ``re.VERBOSE`` would, keeping escaped
characters and character classes intact.
"""

from __future__ import annotations

import re

import re2

_GLOBAL_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # we report the error ourselves, with its file and line


class UserRegexError(ValueError):
    """The pattern cannot be used; the message says why and what to do."""


def compile_user_regex(pattern: str):
    """Return a compiled RE2 pattern (``search``, ``groupindex``) or raise
    UserRegexError."""
    translated = translate_verbose(pattern)
    try:
        return re2.compile(translated, _RE2_OPTIONS)
    except re2.error as exc:
        reason = _re2_reason(exc)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise UserRegexError(f"regex does not compile: {exc}") from None
    raise UserRegexError(
        "regex uses a construct the linear-time matcher (RE2) cannot run: "
        f"{reason}. Backreferences (\\1, (?P=name)), lookahead/lookbehind "
        "((?=...), (?!...), (?<=...), (?<!...)) and possessive/atomic groups are "
        "not allowed in user rules; rewrite the pattern without them"
    )


def translate_verbose(pattern: str) -> str:
    """Turn a leading ``(?x)`` verbose pattern into an equivalent plain one;
    other patterns are returned unchanged."""
    m = _GLOBAL_FLAGS.match(pattern)
    if not m or "x" not in m.group(1):
        return pattern
    others = m.group(1).replace("x", "")
    body = strip_verbose(pattern[m.end():])
    return f"(?{others}){body}" if others else body


def strip_verbose(body: str) -> str:
    """Drop whitespace and ``#`` comments outside character classes and
    escapes, as ``re.VERBOSE`` does."""
    out: list[str] = []
    i, n = 0, len(body)
    in_class = False
    while i < n:
        ch = body[i]
        if ch == "\\":
            out.append(body[i : i + 2])
            i += 2
            continue
        if in_class:
            out.append(ch)
            if ch == "]":
                in_class = False
            i += 1
            continue
        if ch == "[":
            # A ']' right after '[' or '[^' is a literal member, not the end.
            start = i + 1
            if body[start : start + 1] == "^":
                start += 1
            if body[start : start + 1] == "]":
                start += 1
            out.append(body[i:start])
            in_class = True
            i = start
            continue
        if ch.isspace():
            i += 1
            continue
        if ch == "#":
            end = body.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _re2_reason(exc: Exception) -> str:
    arg = exc.args[0] if exc.args else exc
    if isinstance(arg, bytes):
        arg = arg.decode("utf-8", "replace")
    return str(arg)
