"""The built-in rules' compiled regexes, kept between runs.

Compiling the built-in regexes (Python's ``re`` parses each one in Python)
is most of the time of loading the rules, paid by every ``prpt parse``
process at start. So the compiled code of each (and its literal guard, see
``engine._guard``) is kept in the user's cache directory, in one file named
after the patterns and the Python that compiled them, and handed back to
``_sre.compile``, which checks the code it is given. Anything unexpected
(no file, another Python, a refused code) means compiling as usual: the
cache can make loading faster, never different (tests compare).

Trust: the file is read only where the directory chain is the user's or
root's, writable by no one else (``safefiles``), and the file itself is the
user's own, a regular file, not a symlink, writable by no one else: a cache
planted or shared by another user is never read. It is written atomically
(a new file, then a rename). ``PERIPETY_NO_RULE_CACHE=1`` turns it off.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import stat
import sys
from pathlib import Path

log = logging.getLogger("peripety.rules")

MAX_SIZE = 16 << 20
"""A larger file is not one this module wrote."""

Entry = tuple
"""(flags, code, groups, groupindex, indexgroup, guard) of one pattern:
``_sre.compile``'s arguments after the pattern, and the guard."""


def cache_dir() -> Path | None:
    """``$XDG_CACHE_HOME/peripety`` (absolute only, as the XDG spec says),
    else ``~/.cache/peripety``; None when there is no home."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        home = os.environ.get("HOME", "")
        if not os.path.isabs(home):
            return None
        base = os.path.join(home, ".cache")
    return Path(base) / "peripety"


def _path(sources: list[str]) -> Path | None:
    if os.environ.get("PERIPETY_NO_RULE_CACHE"):
        return None
    directory = cache_dir()
    if directory is None:
        return None
    import _sre

    key = hashlib.sha256()
    for part in (sys.version, sys.implementation.cache_tag or "", str(_sre.MAGIC), str(_sre.CODESIZE), *sources):
        key.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return directory / f"rules-{key.hexdigest()[:32]}.marshal"


def load(sources: list[str]) -> dict:
    """What was kept for the rules read from ``sources`` (the rule files'
    text): {"regex": {pattern: Entry}, "toml": [each source parsed]};
    empty when there is nothing to trust."""
    from ..safefiles import UnsafePathError, check_private_dir, open_private

    path = _path(sources)
    if path is None:
        return {}
    try:
        check_private_dir(path.parent, create=False)
        fd = open_private(path, os.O_RDONLY)
    except (UnsafePathError, OSError):
        return {}  # no cache yet (or one not to trust: it is rewritten, or not used)
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022
                or st.st_size > MAX_SIZE):
            log.debug("%s: not used (not a private regular file of this user)", path)
            return {}
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = marshal.loads(f.read())
    except (OSError, ValueError, EOFError, TypeError) as exc:
        log.debug("%s: not used: %s", path, exc)
        return {}
    finally:
        os.close(fd)
    if type(data) is not dict or type(data.get("regex")) is not dict:
        return {}
    regexes = {p: e for p, e in data["regex"].items() if type(p) is str and type(e) is tuple and len(e) == 6}
    tomls = data.get("toml")
    if not (type(tomls) is list and len(tomls) == len(sources) and all(type(t) is dict for t in tomls)):
        tomls = None
    return {"regex": regexes, "toml": tomls}


def store(regexes: dict[str, Entry], tomls: list[dict], sources: list[str]) -> None:
    """Keep ``regexes`` and ``tomls`` (``load``) for the next run, in place
    of the files of other rule versions; a failure only means no cache."""
    from ..safefiles import UnsafePathError, check_private_dir, write_atomically

    path = _path(sources)
    if path is None:
        return
    try:
        check_private_dir(path.parent, mode=0o700)
        write_atomically(path, marshal.dumps({"regex": regexes, "toml": tomls}), 0o600, fsync=False)
        for old in path.parent.glob("rules-*.marshal"):
            if old.name != path.name:
                old.unlink()
    except (UnsafePathError, OSError, ValueError) as exc:
        log.debug("%s: rules not cached: %s", path, exc)
