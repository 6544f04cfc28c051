"""The lab's pytest side: one qemu boot per session runs the selected
scenarios; each test then checks what the guest's peripetyd stored.

    pytest tests/lab                   # every scenario, one boot
    pytest tests/lab -k test_md        # the md scenario only (boots for it alone)
    PERIPETY_LAB_REUSE=1 pytest tests/lab   # check build/lab/ of the last boot again, no boot

The boot is started by the first lab test that needs it, so the session
timing (image build, boot) is printed in the terminal summary.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.lab import lab

_state: dict = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "lab(scenario): a qemu lab scenario (tests/lab)")


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: boot only for what runs
def pytest_collection_modifyitems(config, items):
    scenario_of = {item.nodeid: m.args[0] for item in items for m in item.iter_markers("lab")}
    _state["scenario_of"] = scenario_of
    _state["wanted"] = [s for s in lab.SCENARIOS if s in scenario_of.values()]
    _state["outcomes"] = {}


def pytest_runtest_logreport(report):
    scenario = _state.get("scenario_of", {}).get(report.nodeid)
    if scenario and (report.when == "call" or report.outcome != "passed"):
        name = report.nodeid.split("::", 1)[-1]
        _state["outcomes"].setdefault(scenario, {})[name] = report.outcome


@pytest.fixture(scope="session")
def lab_run() -> lab.LabRun | None:
    """Boot once for every scenario selected in this session (None with PERIPETY_LAB_REUSE=1)."""
    if os.environ.get("PERIPETY_LAB_REUSE") == "1":
        return None
    t0 = time.monotonic()
    run = lab.boot(_state.get("wanted") or list(lab.SCENARIOS))
    _state["run"] = run
    _state["total"] = time.monotonic() - t0
    return run


class Scenario:
    """What one scenario left in build/lab/: events, facts, guest rc, files."""

    def __init__(self, name: str):
        self.name = name
        self.dir = lab.OUT
        jsonl = self.dir / f"{name}.jsonl"
        self.events = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()] \
            if jsonl.exists() else []
        facts = self.dir / f"{name}.facts"
        self.facts = dict(line.split("=", 1) for line in facts.read_text().splitlines() if "=" in line) \
            if facts.exists() else {}
        self.rc = None
        summary = self.dir / "summary"
        if summary.exists():
            for line in summary.read_text().splitlines():
                s, rc, _ = line.split()
                if s == name:
                    self.rc = int(rc)

    def log_tail(self, n: int = 40) -> str:
        path = self.dir / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"

    def of_type(self, *types: str) -> list[dict]:
        return [e for e in self.events if e["event_type"] in types]

    def by_id(self) -> dict[str, dict]:
        return {e["event_id"]: e for e in self.events}

    def summary(self) -> str:
        """One line per event, for assertion messages."""
        return "\n".join(
            f"  {e['event_type']} kdev={e.get('kdev')} sources={e.get('sources')} "
            f"path={(e.get('cur_blk_info') or {}).get('preferred_blk_path')} raw={e.get('raw_msg', '')[:100]!r}"
            for e in self.events)


@pytest.fixture
def scenario(request, lab_run) -> Scenario:
    """The scenario named by the test's ``lab`` marker, after the boot; its guest run finished."""
    name = request.node.get_closest_marker("lab").args[0]
    sc = Scenario(name)
    assert sc.rc is not None, f"scenario {name} did not run in the guest (see build/lab/console.log)"
    assert sc.rc == 0, f"scenario {name} failed in the guest (rc {sc.rc}):\n{sc.log_tail()}"
    assert sc.events, f"scenario {name}: nothing stored (build/lab/{name}.query.err)"
    return sc


def pytest_terminal_summary(terminalreporter):
    run: lab.LabRun | None = _state.get("run")
    if run is None:
        return
    tr = terminalreporter
    tr.section("qemu lab")
    tr.write_line(f"image: {'built (cold)' if run.image_built else 'cached'} in {run.image_seconds:.0f}s "
                  f"-> {run.image_dir}")
    tr.write_line(f"boot + scenarios: {run.boot_seconds:.0f}s ({run.accel.upper()}, guest kernel "
                  f"{run.kver or '?'}){' KILLED at the hard limit' if run.killed else ''}; "
                  f"lab total {_state['total']:.0f}s")
    for s in _state.get("wanted", []):
        rc, secs = run.summary.get(s, (None, 0))
        outcomes = _state["outcomes"].get(s, {})
        failed = sorted(n for n, o in outcomes.items() if o != "passed")
        verdict = "PASS" if outcomes and not failed else "FAIL"
        passed = len(outcomes) - len(failed)
        tr.write_line(f"lab: {s:10s} {verdict} {passed}/{len(outcomes)} checks; guest rc={rc} in {secs}s"
                      + (f"; failed: {', '.join(failed)}" if failed else ""))
