"""``prpt info``: the done-when check on a real partitioned loop device, the
text layout, JSON, listing and the not-found exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from peripety.cli import main
from tests.harness.partitioned import fs_uuid


def info_json(*args: str):
    result = CliRunner().invoke(main, ["info", "-J", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.root
def test_done_when_same_wwid_for_path_name_devnum_uuid_and_mount_point(loop_disk):
    part = loop_disk.ext4_part
    st = os.stat(part)
    keys = [part, os.path.basename(part), f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}",
            fs_uuid(part), str(loop_disk.ext4_mount)]
    answers = [info_json(k) for k in keys]
    wwids = {a["wwid"] for a in answers}
    assert len(wwids) == 1 and wwids.pop().endswith("-part1")
    for answer in answers:
        assert answer["blk_path"] == part
        assert answer["owners_paths"][0] == loop_disk.disk
        assert answer["owners_types"][0] == "Loop"


@pytest.mark.root
def test_text_layout_aligns_keys_and_lists_owners(loop_disk):
    result = CliRunner().invoke(main, ["info", str(loop_disk.xfs_mount)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    fields = dict(line.split(" : ", 1) for line in lines if " : " in line)
    fields = {k.strip(): v for k, v in fields.items()}
    assert fields["blk_path"] == loop_disk.xfs_part
    assert fields["mount_point"] == str(loop_disk.xfs_mount)
    assert fields["owners_paths"] == loop_disk.disk
    # every "key : value" separator is in the same column
    assert len({line.index(" : ") for line in lines if " : " in line}) == 1


@pytest.mark.root
def test_real_subprocess_lists_all_devices_as_json(loop_disk):
    prpt = str(Path(sys.executable).with_name("prpt"))  # the installed entry point
    out = subprocess.run([prpt, "info", "-J"],
                         check=True, capture_output=True, text=True).stdout
    listing = json.loads(out)
    assert isinstance(listing, list)
    assert {loop_disk.disk, loop_disk.ext4_part, loop_disk.xfs_part} <= {d["blk_path"] for d in listing}


def test_missing_device_exits_1_naming_it():
    result = CliRunner().invoke(main, ["info", "no-such-disk-xyz"])
    assert result.exit_code == 1
    assert "no-such-disk-xyz" in result.output
