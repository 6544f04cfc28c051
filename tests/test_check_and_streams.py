"""``peripetyd --check`` and the CLI's edges: config problems and store specs
give one clean line and exit 1, the sample config's documented values work,
closed/full/gone stdout ends quietly (issue 9, item 5)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from peripety.config import load_config
from peripety.errors import ConfigError
from peripety.stores import StoreError, parse_store_spec
from tests.harness.daemon import PERIPETYD, PRPT

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "etc" / "peripetyd.conf"
RECORDED = REPO / "tests" / "fixtures" / "recorded" / "linux-6.18-loop-faults.kmsg"


def check(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PERIPETYD, "--check", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("text, expected", [
    (b"[daemon]\n# caf\xe9\nstorm_window = 1\n", "line 2: byte 0xe9 is not UTF-8"),
    (b"[daemon\n", "line 1: invalid TOML"),
    (b"[daemon]\nstore = 'mongodb'\n", "daemon.store (line 2): unknown store 'mongodb'"),
    (b"[daemon]\nstore = 'sqlite:'\n", "nothing after ':'"),
    (b"[senders.multipathd]\ncomms = 'multipathd'\n", "comms must be a list of strings"),
])
def test_check_reports_config_problems_in_one_line(tmp_path, text, expected):
    config = tmp_path / "peripetyd.conf"
    config.write_bytes(text)
    proc = check(config)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert expected in proc.stderr and str(config) in proc.stderr


@pytest.mark.parametrize("value, shown", [
    ("auto", "auto: "), ("journald", "journal ("), ("journal", "journal ("), ("sqlite", "sqlite (directory checked)"),
    ("sqlite:/var/lib/peripety/other.db", "sqlite:/var/lib/peripety/other.db (directory checked)"),
])
def test_sample_config_store_values_work(tmp_path, value, shown):
    """The sample config with its documented store key set (uncommented)."""
    text = SAMPLE.read_text().replace('#store = "auto"', f'store = "{value}"')
    assert f'store = "{value}"' in text
    config = tmp_path / "peripetyd.conf"
    config.write_text(text)
    assert load_config(config).store == str(parse_store_spec(value))
    proc = check(config)
    assert proc.returncode == 0, proc.stderr
    assert f"store: {shown}" in proc.stdout


def test_sample_config_loads_as_shipped_with_its_senders_example():
    config = load_config(SAMPLE)
    assert config.sender_policy("multipathd").trusts({"uid": "0", "comm": "multipathd"})
    assert not config.sender_policy("multipathd").trusts({"uid": "1000", "comm": "multipathd"})


def test_check_refuses_a_store_in_a_directory_others_can_write(tmp_path):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    config = tmp_path / "peripetyd.conf"
    config.write_text(f'[daemon]\nstore = "sqlite:{open_dir}/events.db"\n')
    proc = check(config)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"refusing to use {open_dir}: directory is group/world-writable" in proc.stderr


def test_store_spec_spelling():
    assert str(parse_store_spec("journald")) == "journal"
    assert parse_store_spec("journal:ns1").namespace == "ns1"
    assert parse_store_spec("journald:/var/log/journal").directory == "/var/log/journal"
    assert parse_store_spec("sqlite:/x/e.db").path == "/x/e.db"
    with pytest.raises(StoreError, match="unknown store"):
        parse_store_spec("mysql")


def test_journal_directory_without_journal_files_is_an_error(tmp_path):
    proc = subprocess.run([PRPT, "query", "--store", f"journal:{tmp_path}"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert f"store journal:{tmp_path}: no journal files" in proc.stderr


def test_config_error_is_a_config_error_for_non_utf8(tmp_path):
    config = tmp_path / "c.conf"
    config.write_bytes(b"\xff\n")
    with pytest.raises(ConfigError, match="line 1: byte 0xff is not UTF-8"):
        load_config(config)


def shell(command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command, message", [
    (f"{PRPT} parse --format kmsg {RECORDED} > /dev/full", "cannot write to stdout: No space left on device"),
    (f"{PRPT} parse --format kmsg {RECORDED} --jsonl >&-", "stdout is closed"),
    (f"{PRPT} parse - <&-", "stdin is closed"),
    # more than a pipe holds (64 KiB), so the writer meets the closed pipe
    (f"for i in $(seq 40); do cat {RECORDED}; done | {PRPT} parse --format kmsg --jsonl - | head -c 10 "
     ">/dev/null; exit ${PIPESTATUS[1]}", ""),
])
def test_closed_full_or_gone_stdout_ends_quietly_with_exit_1(command, message):
    proc = shell(command)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert message in proc.stderr
    if not message:
        assert proc.stderr == ""  # a reader that went away gets no message


def test_query_to_a_full_stdout(tmp_path):
    from peripety.event import StorageEvent
    from peripety.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "e.db", write=True)
    for n in range(3):
        store.append(StorageEvent(event_type="BLK_IO_ERROR", sub_system="block", kdev=f"sd{n}"))
    store.close()
    proc = shell(f"{PRPT} query --store sqlite:{tmp_path}/e.db > /dev/full")
    assert proc.returncode == 1 and "No space left on device" in proc.stderr and "Traceback" not in proc.stderr


def test_monitor_into_head_ends_quietly_with_exit_1(tmp_path):
    from peripety.event import StorageEvent
    from peripety.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "e.db", write=True)
    proc = subprocess.Popen(["bash", "-c", f"{PRPT} monitor --store sqlite:{tmp_path}/e.db --jsonl | head -1;"
                             " echo monitor-exit=${PIPESTATUS[0]} >&2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        n = 0
        # keep storing events until the monitor (started at some point) has
        # shown one to head and then hit the closed pipe
        while proc.poll() is None and time.monotonic() < deadline:
            store.append(StorageEvent(event_type="BLK_IO_ERROR", sub_system="block", kdev=f"sd{n}"))
            n += 1
            time.sleep(0.1)
        out, err = proc.communicate(timeout=10)
    finally:
        store.close()
        if proc.poll() is None:
            proc.kill()
    assert len(out.splitlines()) == 1 and json.loads(out)["event_type"] == "BLK_IO_ERROR"
    assert err.strip().endswith("monitor-exit=1")
    assert "Traceback" not in err and "Exception ignored" not in err
