"""``peripetyd --check`` refuses the outputs' options the daemon would
refuse at start (issue 13's follow-up): a Varlink socket path that is
relative, under a missing directory, in a directory another user owns,
a symlink, not a socket, too long; a --varlink-group that does not
exist; a --metrics address in use or not on this host. Each is reported
with the option, the value and what to do, with a non-zero status, and
the same line is what the real daemon says when started with it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.harness.daemon import PERIPETYD

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("journald", "udevd")]


@pytest.fixture
def root_dir():
    """A directory only root can change (0755 up to /), as /run/peripety is."""
    path = Path(tempfile.mkdtemp(prefix="peripety-check-", dir="/run"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def peripetyd(tmp_path: Path, *args: str, check: bool) -> subprocess.CompletedProcess:
    """peripetyd with a private state (--check, or the daemon itself: a
    daemon that started anyway would run until the timeout fails the test)."""
    base = [PERIPETYD, "--store", "journal", "--no-blk-info-dump", "--state-dir", str(tmp_path / "state"),
            "--status-file", str(tmp_path / "status.json")]
    return subprocess.run(base + (["--check"] if check else []) + list(args), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def error_line(run: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in run.stderr
    [line] = [line for line in run.stderr.splitlines() if line.startswith("Error: ")]
    return line


def bad_varlink_paths(root_dir: Path) -> dict[str, tuple[str, str]]:
    """name -> (--varlink value, what the error must say)."""
    nobodys = root_dir / "nobodys"
    nobodys.mkdir()
    os.chown(nobodys, 65534, 65534)
    (root_dir / "link").symlink_to(root_dir / "elsewhere")
    (root_dir / "file").write_text("")
    return {
        "missing directory": (f"{root_dir}/no/such/io.peripety",
                              f"the directory {root_dir}/no does not exist (peripetyd creates only the socket's own "
                              "directory, such): create it, or fix the path"),
        "another user's directory": (f"{nobodys}/io.peripety",
                                     f"refusing to use {nobodys}: directory is owned by uid 65534"),
        "symlink": (f"{root_dir}/link", "it is a symbolic link; peripetyd does not bind through links: remove it "
                                        "or choose another --varlink path"),
        "not a socket": (f"{root_dir}/file", "it exists and is not a socket; remove it or choose another --varlink "
                                             "path"),
        "too long": (f"{root_dir}/{'x' * 120}", "more than a unix socket's path may have (107); choose a shorter path"),
    }


def test_check_refuses_bad_varlink_paths_as_the_daemon_does(tmp_path, root_dir):
    for name, (value, says) in bad_varlink_paths(root_dir).items():
        checked = peripetyd(tmp_path, "--varlink", value, check=True)
        assert checked.returncode == 1, (name, checked.stdout, checked.stderr)
        line = error_line(checked)
        assert line.startswith(f"Error: --varlink {value}: "), (name, line)
        assert says in line, (name, line)
        started = peripetyd(tmp_path, "--varlink", value, check=False)
        assert started.returncode == 1, (name, started.stderr)
        assert error_line(started) == line, name
    assert not (root_dir / "no").exists()  # nothing created


def test_check_and_the_daemon_refuse_a_relative_varlink_path(tmp_path):
    for check in (True, False):
        run = peripetyd(tmp_path, "--varlink", "io.peripety", check=check)
        assert run.returncode == 2
        assert ("Error: Invalid value for '--varlink': 'io.peripety': give an absolute path, e.g. "
                "/run/peripety/io.peripety (or off for no Varlink service)") == error_line(run)


def test_check_refuses_an_unknown_varlink_group(tmp_path, root_dir):
    value = str(root_dir / "io.peripety")
    for check in (True, False):
        run = peripetyd(tmp_path, "--varlink", value, "--varlink-group", "no-such-group-x", check=check)
        assert run.returncode == 1
        assert error_line(run) == ("Error: --varlink-group no-such-group-x: no such group (getent group lists them); "
                                   "create it or name an existing one")


def test_check_accepts_a_good_varlink_path_and_creates_nothing(tmp_path, root_dir):
    value = root_dir / "sub" / "io.peripety"
    run = peripetyd(tmp_path, "--varlink", str(value), "--varlink-group", "nogroup", check=True)
    assert run.returncode == 0, run.stderr
    assert (f"varlink: {value} (mode 0660, root and group nogroup; {value.parent} will be created, mode 0755)"
            in run.stdout.splitlines())
    assert not value.parent.exists()
    off = peripetyd(tmp_path, "--varlink", "off", check=True)
    assert "varlink: off" in off.stdout.splitlines()


def test_check_refuses_a_metrics_address_the_daemon_cannot_listen_on(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        for address, says in [
            (f"127.0.0.1:{port}", f"cannot listen: Address already in use; another program listens there "
                                  f"(ss -ltnp 'sport = :{port}' shows which): choose another port"),
            ("192.0.2.1:9877", "cannot listen: Cannot assign requested address; no interface of this host has "
                               "that address"),
        ]:
            checked = peripetyd(tmp_path, "--metrics", address, "--varlink", "off", check=True)
            assert checked.returncode == 1, checked.stdout
            line = error_line(checked)
            assert line == f"Error: --metrics {address}: {says}"
            started = peripetyd(tmp_path, "--metrics", address, "--varlink", "off", check=False)
            assert started.returncode == 1 and error_line(started) == line
    finally:
        busy.close()
    free = peripetyd(tmp_path, "--metrics", f"127.0.0.1:{port}", "--varlink", "off", check=True)
    assert free.returncode == 0, free.stderr
    assert f"metrics: http://127.0.0.1:{port}/metrics (address free); at most 1000 device label sets" \
        in free.stdout.splitlines()
