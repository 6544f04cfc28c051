"""Run a command in a real terminal (a private tmux server) and read its screen.

    with TmuxTerminal(["prpt", "top", "--store", spec], width=160, height=45) as term:
        term.wait_for("Devices (1)")
        term.send_keys("q")
        assert term.wait_exit() == 0
        assert term.stty_after == term.stty_before   # terminal restored

Each session has its own server socket, so tests never touch anyone
else's tmux. Screen waits are driven by the pane's own output (piped to a
FIFO with ``pipe-pane``), re-reading ``capture-pane`` whenever the program
writes, with a deadline; the exit is signalled with ``tmux wait-for``.
"""

from __future__ import annotations

import os
import select
import shlex
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

SCREEN_TIMEOUT = 20.0
# Re-read the screen at least this often even without output: the pipe is
# attached after the program started, so its first frame may predate it.
RECHECK_INTERVAL = 0.5


class TmuxError(AssertionError):
    """The terminal did not show what a test waited for; carries the screen."""


class TmuxTerminal:
    def __init__(
        self,
        command: list[str],
        width: int = 160,
        height: int = 45,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
    ):
        self.command = command
        self.width, self.height = width, height
        # COLUMNS/LINES in the environment (seen under pytest) override the real
        # terminal size in the program under test.
        self.env = {k: v for k, v in (env or os.environ).items() if k not in ("COLUMNS", "LINES")}
        self.cwd = cwd
        self._dir = Path(tempfile.mkdtemp(prefix="prpt-tmux-"))
        self.socket = self._dir / "tmux.sock"
        self.session = "t" + uuid.uuid4().hex[:8]
        self.channel = "done-" + self.session
        self._fifo_fd: int | None = None
        self.exit_status: int | None = None

    # -- life cycle -----------------------------------------------------------
    def __enter__(self) -> "TmuxTerminal":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        status, before, after = (self._dir / n for n in ("status", "stty.before", "stty.after"))
        # stty -g before and after: the test can check the program left the
        # terminal as it found it. The shell stays so the restored screen
        # can be read after the program exits.
        script = (
            f"echo 'tmux harness: command started'; stty -g > {before}; {shlex.join(self.command)}; echo $? > {status}; "
            f"stty -g > {after}; tmux -S {self.socket} wait-for -S {self.channel}; exec cat"
        )
        fifo = self._dir / "output"
        os.mkfifo(fifo)
        # Read-write so the FIFO never reports end-of-file between writers.
        self._fifo_fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        self._tmux(
            "new-session", "-d", "-s", self.session, "-x", str(self.width), "-y", str(self.height),
            "sh", "-c", script,
        )
        self._tmux("pipe-pane", "-O", "-t", self.session, f"cat > {fifo}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True)
        if self._fifo_fd is not None:
            os.close(self._fifo_fd)
            self._fifo_fd = None
        for path in self._dir.iterdir():
            path.unlink()
        self._dir.rmdir()

    # -- screen ---------------------------------------------------------------
    def capture(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.session).stdout

    def wait_for(self, expected: str | Callable[[str], bool], timeout: float = SCREEN_TIMEOUT) -> str:
        """The screen once it contains ``expected`` (or satisfies it) and
        has settled (two reads alike)."""
        test = expected if callable(expected) else (lambda screen: expected in screen)
        deadline = time.monotonic() + timeout
        previous = None
        while True:
            screen = self.capture()
            # Twice the same: not read in the middle of a redraw.
            if test(screen) and screen == previous:
                return screen
            left = deadline - time.monotonic()
            if left <= 0:
                raise TmuxError(f"screen never showed {expected!r} within {timeout}s:\n{screen}")
            previous = screen if test(screen) else None
            if previous is None:
                # Wake when the program writes anything (or recheck shortly).
                if select.select([self._fifo_fd], [], [], min(left, RECHECK_INTERVAL))[0]:
                    self._drain()

    def _drain(self) -> None:
        try:
            while os.read(self._fifo_fd, 65536):
                pass
        except BlockingIOError:
            pass

    def send_keys(self, *keys: str) -> None:
        """tmux key names: "q", "Up", "Down", "Enter", "Escape", or text with -l."""
        self._tmux("send-keys", "-t", self.session, *keys)

    def send_text(self, text: str) -> None:
        self._tmux("send-keys", "-t", self.session, "-l", text)

    # -- exit -----------------------------------------------------------------
    def wait_exit(self, timeout: float = SCREEN_TIMEOUT) -> int:
        """The command's exit status, once it has exited."""
        try:
            self._tmux("wait-for", self.channel, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TmuxError(f"command did not exit within {timeout}s:\n{self.capture()}") from None
        self.exit_status = int((self._dir / "status").read_text().strip())
        return self.exit_status

    def command_pid(self) -> int:
        """The pid of the running command (a child of the pane's shell)."""
        shell = self.pane_flag("pane_pid")
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        if not children:
            raise TmuxError(f"the command is not running:\n{self.capture()}")
        return int(children[0])

    def pane_flag(self, name: str) -> str:
        """A tmux pane format variable: alternate_on, cursor_flag, pane_width ..."""
        return self._tmux("display-message", "-p", "-t", self.session, f"#{{{name}}}").stdout.strip()

    @property
    def stty_before(self) -> str:
        return (self._dir / "stty.before").read_text().strip()

    @property
    def stty_after(self) -> str:
        return (self._dir / "stty.after").read_text().strip()

    def _tmux(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args],
            capture_output=True, text=True, check=True, timeout=timeout, env=self.env, cwd=self.cwd,
        )


def assert_quits_cleanly(term: "TmuxTerminal") -> None:
    """``q`` ends ``prpt top`` with status 0 and gives the terminal back as it was."""
    term.send_keys("q")
    assert term.wait_exit() == 0
    assert term.stty_after == term.stty_before  # cbreak undone
    assert term.pane_flag("alternate_on") == "0"  # back on the normal screen
    assert term.pane_flag("cursor_flag") == "1"
    assert "Devices (" not in term.capture()
