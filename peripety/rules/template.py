"""A rule's ``msg`` template: a human sentence built from the match.

``{name}`` expands to the named group (or ``kdev``, ``sub_system``,
``event_type``). Text in ``[...]`` is optional: it is dropped when a field
inside it did not take part in the match, so one template serves the old
and the new kernel wording::

    "{blk_status} on {kdev} at sector {sector}[ ({op})]"

A field missing outside brackets renders as ``?``: the sentence stays
readable and the gap is visible. Write ``[[``/``]]`` for literal brackets,
``{{``/``}}`` for literal braces.

Templates are parsed once, at rule load, so a typo in a field name is a
load-time error rather than a silently odd message at 3 a.m.
"""

from __future__ import annotations

import functools
import string
from dataclasses import dataclass, field

MISSING = "?"
_MAX_OPTIONAL = 4


class TemplateError(ValueError):
    """The template is malformed (unbalanced brackets, bad field)."""


@dataclass(frozen=True)
class _Part:
    literal: str
    field: str | None = None


@dataclass(frozen=True)
class Template:
    source: str
    segments: tuple[tuple[bool, tuple[_Part, ...]], ...]
    """(optional, parts) in order."""
    _variants: tuple = field(default=(), init=False, repr=False, compare=False)
    """One (%-format, fields) per combination of optional parts kept, so a
    render is one % operation: a message is rendered for every event of
    ``prpt parse``. Empty for templates with too many optional parts."""
    _optional: tuple = field(default=(), init=False, repr=False, compare=False)
    """(bit, fields) of each optional part: the bit is set when all are present."""

    def __post_init__(self):
        optional = [parts for opt, parts in self.segments if opt]
        if len(optional) > _MAX_OPTIONAL:
            return
        bits = {id(parts): 1 << i for i, parts in enumerate(optional)}
        variants = []
        for mask in range(1 << len(optional)):
            kept = [p for opt, parts in self.segments if not opt or mask & bits[id(parts)] for p in parts]
            fmt = "".join(p.literal.replace("%", "%%") + ("%s" if p.field else "") for p in kept)
            variants.append((fmt, tuple(p.field for p in kept if p.field)))
        object.__setattr__(self, "_variants", tuple(variants))
        object.__setattr__(self, "_optional", tuple(
            (bits[id(parts)], tuple(p.field for p in parts if p.field)) for parts in optional))

    @property
    def fields(self) -> set[str]:
        return {p.field for _, parts in self.segments for p in parts if p.field}

    def render(self, values: dict[str, str]) -> str:
        if not self._variants:
            return self._render_slowly(values)
        get = values.get
        mask = 0
        for bit, fields in self._optional:
            if all(map(get, fields)):
                mask |= bit
        fmt, fields = self._variants[mask]
        found = tuple(map(get, fields))
        if not all(found):  # a field outside brackets is missing
            found = tuple([v or MISSING for v in found])
        return fmt % found

    def variant_for(self, present: set[str]) -> tuple[str, tuple[str, ...]] | None:
        """(%-format, fields) that ``render`` uses when exactly the fields
        in ``present`` have a non-empty value; None when a field outside
        brackets would be missing (``?``) or the template has no variants."""
        if not self._variants:
            return None
        mask = 0
        for bit, fields in self._optional:
            if all(f in present for f in fields):
                mask |= bit
        fmt, fields = self._variants[mask]
        if not all(f in present for f in fields):
            return None
        return fmt, fields

    def _render_slowly(self, values: dict[str, str]) -> str:
        out = []
        for optional, parts in self.segments:
            if optional and any(p.field and not values.get(p.field) for p in parts):
                continue
            for part in parts:
                out.append(part.literal)
                if part.field:
                    out.append(values.get(part.field) or MISSING)
        return "".join(out)


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> Template:
    """Parse ``source`` or raise TemplateError saying what is wrong.

    Templates are immutable, so one is shared by every rule with the same
    sentence (thousands of site rules often use the default one)."""
    segments = []
    for optional, text in _split_optional(source):
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise TemplateError(f"msg template {source!r}: {exc}") from None
        parts = []
        for literal, name, spec, conversion in parsed:
            if name is not None and (spec or conversion or not name.isidentifier()):
                raise TemplateError(
                    f"msg template {source!r}: write fields as {{name}}, got {{{name}}}"
                )
            parts.append(_Part(literal, name or None))
        segments.append((optional, tuple(parts)))
    return Template(source, tuple(segments))


def _split_optional(source: str) -> list[tuple[bool, str]]:
    """Cut ``source`` at unescaped ``[`` ``]`` into (optional, text) pieces."""
    pieces: list[tuple[bool, str]] = []
    buf: list[str] = []
    optional = False
    i = 0
    while i < len(source):
        ch = source[i]
        if ch in "[]" and source[i + 1 : i + 2] == ch:
            buf.append(ch)
            i += 2
            continue
        if ch == "[":
            if optional:
                raise TemplateError(f"msg template {source!r}: optional parts cannot nest")
            pieces.append((False, "".join(buf)))
            buf, optional = [], True
        elif ch == "]":
            if not optional:
                raise TemplateError(f"msg template {source!r}: ']' without '['")
            pieces.append((True, "".join(buf)))
            buf, optional = [], False
        else:
            buf.append(ch)
        i += 1
    if optional:
        raise TemplateError(f"msg template {source!r}: '[' is never closed")
    pieces.append((False, "".join(buf)))
    return [(opt, text) for opt, text in pieces if text]
