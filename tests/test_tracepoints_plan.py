"""The attach plan: decided from tracefs (real here, recorded trees for
kernels this machine is not), and what each --bpf mode does with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from peripety.errors import BpfUnavailable
from peripety.tracepoints import TracepointSource, describe_plan, plan_attach

FIXTURES = Path(__file__).parent / "fixtures" / "tracepoints"
REPO = Path(__file__).resolve().parent.parent


def _mount_tracefs():
    if not Path("/sys/kernel/tracing/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)


@pytest.mark.root
def test_plan_on_this_kernel():
    _mount_tracefs()
    plan = plan_attach("auto")
    assert plan.usable, describe_plan(plan)
    assert plan.attached("block:block_rq_error")
    assert "PRPT_BLOCK_RQ_ERROR" in plan.defines
    assert "block_rq_error is attached" in plan.skip_reason("block:block_rq_complete")
    for tp in ("scsi:scsi_dispatch_cmd_error", "scsi:scsi_dispatch_cmd_timeout",
               "scsi:scsi_dispatch_cmd_done", "scsi:scsi_eh_wakeup", "nvme:nvme_complete_rq"):
        assert "does not exist on this kernel" in plan.skip_reason(tp), tp
    text = describe_plan(plan)
    assert "attach block:block_rq_error" in text
    assert "skip   nvme:nvme_complete_rq" in text
    assert text.endswith("result: probes will load")


def test_plan_falls_back_to_block_rq_complete():
    plan = plan_attach("auto", tracefs_root=FIXTURES / "tracefs-no-rq-error")
    assert plan.attached("block:block_rq_complete")
    assert "PRPT_BLOCK_RQ_COMPLETE" in plan.defines
    assert "PRPT_BLOCK_RQ_ERROR" not in plan.defines
    assert "does not exist" in plan.skip_reason("block:block_rq_error")
    # SCSI completions of that generation carry no sense fields.
    assert "PRPT_SCSI_DISPATCH_CMD_DONE" in plan.defines
    assert "PRPT_SCSI_DISPATCH_CMD_DONE_SENSE" not in plan.defines


def test_plan_uses_sense_fields_where_the_format_has_them():
    plan = plan_attach("auto", tracefs_root=FIXTURES / "tracefs-scsi-nvme")
    for define in ("PRPT_BLOCK_RQ_ERROR", "PRPT_SCSI_DISPATCH_CMD_DONE", "PRPT_SCSI_DISPATCH_CMD_DONE_SENSE",
                   "PRPT_SCSI_DISPATCH_CMD_TIMEOUT_SENSE", "PRPT_SCSI_DISPATCH_CMD_ERROR",
                   "PRPT_SCSI_EH_WAKEUP", "PRPT_NVME_COMPLETE_RQ"):
        assert define in plan.defines, define


def test_plan_skips_a_probe_whose_format_lacks_fields(tmp_path):
    root = tmp_path / "tracefs"
    shutil.copytree(FIXTURES / "tracefs-6.18", root)
    fmt = root / "events/block/block_rq_error/format"
    fmt.write_text("".join(l for l in fmt.read_text().splitlines(True) if "rwbs" not in l))
    plan = plan_attach("auto", tracefs_root=root)
    assert "lacks field(s) rwbs" in plan.skip_reason("block:block_rq_error")
    assert plan.attached("block:block_rq_complete")


def test_plan_reports_missing_kernel_headers(tmp_path):
    plan = plan_attach("on", tracefs_root=FIXTURES / "tracefs-6.18", modules_dir=tmp_path)
    assert not plan.usable
    problems = " ".join(map(str, plan.problems))
    assert "kernel headers missing" in problems
    assert "linux-headers-$(uname -r)" in problems and "scripts/kernel-headers.sh" in problems
    with pytest.raises(BpfUnavailable, match="kernel headers missing"):
        TracepointSource.open("on", plan)


def test_auto_mode_logs_one_line_and_goes_on(tmp_path, caplog):
    plan = plan_attach("auto", tracefs_root=FIXTURES / "tracefs-6.18", modules_dir=tmp_path)
    assert TracepointSource.open("auto", plan) is None
    warnings = [r for r in caplog.records if r.name == "peripety.tracepoints.source"]
    assert len(warnings) == 1 and "kernel headers missing" in warnings[0].getMessage()


def test_off_mode_plans_nothing():
    plan = plan_attach("off")
    assert not plan.usable and plan.probes == () and plan.problems == ()
    assert TracepointSource.open("off", plan) is None
    assert "disabled by --bpf off" in describe_plan(plan)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="expected one of auto, on, off"):
        plan_attach("maybe")


@pytest.mark.root
def test_unprivileged_on_names_the_fix():
    """A real unprivileged process: --bpf on fails with the fix, --check exits 1."""
    _mount_tracefs()
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
           sys.executable, "-m", "peripety.tracepoints"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([*cmd, "--check"], capture_output=True, text=True, env=env, cwd="/")
    assert done.returncode == 1, done.stderr
    assert "no privilege to load BPF programs (fix: run as root" in done.stdout
    done = subprocess.run([*cmd, "--bpf", "on"], capture_output=True, text=True, env=env, cwd="/")
    assert done.returncode == 1
    assert "Error: --bpf on: cannot load the tracepoint probes: no privilege" in done.stderr
