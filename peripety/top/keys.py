"""Keys from the terminal: cbreak mode on the main thread, decoded to names.

The terminal is put in cbreak mode (keys arrive one by one, no echo, Ctrl-C
still interrupts) and restored on exit, whatever the exit path.
"""

from __future__ import annotations

import os
import termios
import tty


UP, DOWN, LEFT, RIGHT = "up", "down", "left", "right"
ENTER, ESCAPE, BACKSPACE, TAB = "enter", "escape", "backspace", "tab"
PAGE_UP, PAGE_DOWN, HOME, END = "pageup", "pagedown", "home", "end"

# Normal and application cursor-key modes both occur (tmux, ssh, screen).
_SEQUENCES = {
    b"\x1b[A": UP,
    b"\x1b[B": DOWN,
    b"\x1b[C": RIGHT,
    b"\x1b[D": LEFT,
    b"\x1bOA": UP,
    b"\x1bOB": DOWN,
    b"\x1bOC": RIGHT,
    b"\x1bOD": LEFT,
    b"\x1b[H": HOME,
    b"\x1b[F": END,
    b"\x1bOH": HOME,
    b"\x1bOF": END,
    b"\x1b[1~": HOME,
    b"\x1b[4~": END,
    b"\x1b[7~": HOME,
    b"\x1b[8~": END,
    b"\x1b[5~": PAGE_UP,
    b"\x1b[6~": PAGE_DOWN,
}
_SINGLE = {b"\r": ENTER, b"\n": ENTER, b"\x7f": BACKSPACE, b"\x08": BACKSPACE, b"\x1b": ESCAPE, b"\t": TAB}


def decode_keys(data: bytes) -> list[str]:
    """Key names in ``data``: printable characters as themselves, special
    keys by name (UP, ENTER, ...); unknown escape sequences are dropped."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        if data[i : i + 1] == b"\x1b" and i + 1 < len(data) and data[i + 1 : i + 2] in (b"[", b"O"):
            # A whole sequence runs up to its final byte (0x40-0x7E); SS3 (ESC O) is one byte long.
            j = i + 2
            if data[i + 1 : i + 2] == b"[":
                while j < len(data) and not (0x40 <= data[j] <= 0x7E):
                    j += 1
            seq = data[i : j + 1]
            if seq in _SEQUENCES:  # unknown ones (F-keys ...) are dropped
                keys.append(_SEQUENCES[seq])
            i = j + 1
            continue
        byte = data[i : i + 1]
        if byte in _SINGLE:
            keys.append(_SINGLE[byte])
            i += 1
            continue
        # A UTF-8 character is 1-4 bytes; its lead byte says how many.
        width = 1 if byte[0] < 0xC0 else 2 if byte[0] < 0xE0 else 3 if byte[0] < 0xF0 else 4
        char = data[i : i + width].decode("utf-8", "replace")
        if char.isprintable():
            keys.append(char)
        i += width
    return keys


class KeyReader:
    """The terminal on ``fd`` in cbreak mode while the context is open.

    Poll ``fileno()`` with select(); ``read()`` returns the keys pressed.
    When ``fd`` is not a terminal, nothing is changed and no key is read.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.is_terminal = os.isatty(fd)
        self._saved: list | None = None

    def __enter__(self) -> "KeyReader":
        if self.is_terminal:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd, termios.TCSANOW)
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def fileno(self) -> int | None:
        return self.fd if self.is_terminal else None

    def read(self) -> list[str]:
        try:
            data = os.read(self.fd, 1024)
        except BlockingIOError:
            return []
        if not data:  # the terminal went away (ssh dropped): quit
            return ["q"]
        return decode_keys(data)
