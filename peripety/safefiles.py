"""Files the root daemon writes in places others might reach.

peripetyd writes its state (read position, spool, status file, SQLite
database) as root. A directory a user can write, or that a user can swap
for a symlink, would let that user point those writes at any file
(``ln -s /etc/shadow status.json``). So every directory the daemon writes
in is checked first, from ``/`` down (``check_private_dir``):

- each component is owned by root or the daemon's user, and is not
  group/world-writable unless it is a root-owned sticky directory (``/tmp``,
  where others cannot rename or remove what is not theirs);
- a symlink on the way is followed only when it is owned by root or the
  daemon's user (its directory was already checked);
- the directory itself (created 0750 when missing) must be owned by the
  daemon's user and not group/world-writable.

Files inside are then created with ``O_NOFOLLOW`` and replaced by atomic
renames inside that directory. A refusal names the path and why.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import PeripetyError

_MAX_SYMLINKS = 32


class UnsafePathError(PeripetyError):
    """A state path the daemon refuses to write through, with the reason."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"refusing to use {path}: {reason}")


def _trusted_owner(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _check_component(path: str, st: os.stat_result, what: str) -> None:
    if not _trusted_owner(st.st_uid):
        raise UnsafePathError(path, f"{what} is owned by uid {st.st_uid} (must be root or uid {os.geteuid()}, "
                                    "peripetyd's user): another user could redirect peripetyd's writes")
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writable and stat.S_ISDIR(st.st_mode) and not (st.st_mode & stat.S_ISVTX and st.st_uid == 0):
        raise UnsafePathError(path, f"{what} is group/world-writable (mode {stat.S_IMODE(st.st_mode):04o}): "
                                    "other users could replace what peripetyd writes there")


def check_private_dir(directory: str | os.PathLike, *, create: bool = True, mode: int = 0o750) -> Path:
    """Check (and with ``create`` make, with ``mode``) a directory peripetyd
    writes in; return its path. UnsafePathError says what is wrong."""
    directory = Path(os.path.abspath(directory))
    if create:
        _make_dirs(directory, mode)
    real = _walk(str(directory))
    st = os.lstat(real)
    if st.st_uid != os.geteuid():
        raise UnsafePathError(directory, f"owned by uid {st.st_uid}, not by peripetyd's user (uid {os.geteuid()})")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafePathError(directory, f"group/world-writable (mode {stat.S_IMODE(st.st_mode):04o}); "
                                         "use a directory only peripetyd's user can write (chmod go-w)")
    return directory


def check_dir_chain(directory: str | os.PathLike) -> str:
    """Check that only root (or this user) can change what ``directory``
    holds, from ``/`` down; return it with symlinks resolved."""
    return _walk(os.path.abspath(directory))


def _make_dirs(directory: Path, mode: int) -> None:
    missing = []
    path = directory
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UnsafePathError(path, f"cannot create it: {exc.strerror}") from None


def _walk(path: str) -> str:
    """Check every component of ``path`` from the root; return the path with
    symlinks resolved."""
    todo = [p for p in path.split("/") if p]
    current = "/"
    _check_component("/", os.lstat("/"), "/")
    links = 0
    while todo:
        name = todo.pop(0)
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current) or "/"
            continue
        candidate = os.path.join(current, name)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            raise UnsafePathError(candidate, "does not exist") from None
        except OSError as exc:
            raise UnsafePathError(candidate, exc.strerror) from None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise UnsafePathError(path, "too many symbolic links")
            _check_component(candidate, st, "symbolic link")
            target = os.readlink(candidate)
            todo = [p for p in target.split("/") if p] + todo
            if target.startswith("/"):
                current = "/"
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(candidate, "not a directory")
        _check_component(candidate, st, "directory")
        current = candidate
    return current


def open_private(path: str | os.PathLike, flags: int, mode: int = 0o640) -> int:
    """``os.open`` of a file in a checked directory, never through a symlink."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symlink
            raise UnsafePathError(path, "it is a symbolic link; peripetyd does not write through links") from None
        raise


def write_atomically(path: str | os.PathLike, data: bytes, mode: int = 0o640, *, fsync: bool = True) -> None:
    """Replace ``path`` by ``data``: a new file beside it (O_EXCL, O_NOFOLLOW),
    then a rename inside the same (checked) directory."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
