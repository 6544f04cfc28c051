"""The one place where ``prpt`` and ``peripetyd`` meet a stdout or stdin
that is closed, full or gone (``prpt query > /dev/full``, ``prpt parse -
<&-``, ``prpt monitor | head -1``): a one-line message and exit 1 (a reader
that went away gets no message, as with SIGPIPE), never a traceback."""

from __future__ import annotations

import errno
import functools
import os
import sys

import click

_OUTPUT_GONE = {errno.EPIPE, errno.ENOSPC, errno.EBADF, errno.EDQUOT}


class _ClosedStdin:
    """Stands in for a closed stdin: using it is a clean error."""

    def __getattr__(self, name):
        raise click.ClickException("stdin is closed (started with <&-): nothing to read; "
                                   "give a file name or redirect stdin")


def run_cli(command: click.Command, *, needs_stdout: bool = True):
    """Wrap a click command's ``main`` with the stream handling above.
    ``needs_stdout``: a closed stdout is an error at once (``prpt``), else
    output goes to /dev/null (``peripetyd`` logs to stderr)."""

    @functools.wraps(command.main)
    def main(*args, **kwargs):
        if sys.stdout is None:
            if needs_stdout:
                _complain("stdout is closed (started with >&-): nothing can be shown")
                sys.exit(1)
            sys.stdout = open(os.devnull, "w")
        if sys.stdin is None:
            os.open(os.devnull, os.O_RDONLY)  # hold fd 0, so no file opened later becomes "stdin"
            sys.stdin = _ClosedStdin()
        try:
            command.main(*args, **kwargs)
        except SystemExit:
            _flush_stdout()
            raise
        except OSError as exc:
            if exc.errno not in _OUTPUT_GONE:
                raise
            _output_failed(exc)
        _flush_stdout()

    main.command = command
    return main


def _complain(text: str) -> None:
    try:
        if sys.stderr is not None:
            sys.stderr.write(f"{os.path.basename(sys.argv[0])}: {text}\n")
            sys.stderr.flush()
    except OSError:
        pass


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except OSError as exc:
        _output_failed(exc)


def _output_failed(exc: OSError):
    if exc.errno not in _OUTPUT_GONE:
        raise exc
    # Nothing more can reach stdout; keep Python's exit-time flush quiet too.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass
    if exc.errno != errno.EPIPE:
        _complain(f"cannot write to stdout: {exc.strerror}")
    os._exit(1)
