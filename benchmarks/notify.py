"""What alerts cost the daemon per stored event during a storm.

``NotifyOutput.on_event`` runs for every stored event, in the daemon's loop,
right after the store took it. During a storm almost every event is one the
repeat policy suppresses; this measures that path (after the storm's one
alert) for 0, 1 and 4 actions, 4 with a ``devices`` filter, with
200,000 events of one device and one type (a 1 kHz storm for 200 s, counts
of 1: the cost per event, whatever the aggregation in front of it).

Printed: microseconds per event. In-process, no daemon; the one alert
program that runs is /bin/true.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from peripety.config import config_from_text
from peripety.event import BlkInfo, Severity, StorageEvent
from peripety.outputs.notify import NotifyOutput

EVENTS = 200_000


def _config(actions: int, devices: bool) -> str:
    parts = []
    for i in range(actions):
        parts.append(f'[[notify]]\nname = "a{i}"\nexec = "/bin/true"\nrepeat = "daily"\n'
                     + ('devices = ["sdb", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "8:16"]\n' if devices else ""))
    return "\n".join(parts)


def _event() -> StorageEvent:
    info = BlkInfo(wwid="naa.5000c500a1b2c3d4", blk_type="SCSI", blk_path="/dev/sdb", preferred_blk_path="/dev/sdb",
                   dev_num="8:16", owners_paths=["/dev/sdb"])
    return StorageEvent("BLK_IO_ERROR", "block", Severity.Error, kdev="sdb", dev_num="8:16", cur_blk_info=info,
                        raw_msg="I/O error, dev sdb, sector 2048 op 0x0:(READ) flags 0x800 phys_seg 1 prio class 2")


def measure(actions: int, devices: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir(mode=0o700)
        output = NotifyOutput(config_from_text(_config(actions, devices)).notify, state / "notify.json")
        event = _event()
        output.on_event(event)  # the storm's one alert per action
        start = time.perf_counter()
        for _ in range(EVENTS):
            output.on_event(event)
        elapsed = time.perf_counter() - start
        while output.runner.busy():  # the alerts' /bin/true, before the state dir goes
            output.tick()
            time.sleep(0.01)
        output.close()
    return elapsed / EVENTS * 1e6


def main() -> None:
    for actions, devices in ((0, False), (1, False), (4, False), (4, True)):
        label = f"{actions} action(s)" + (" with a devices filter" if devices else "")
        print(f"  {label:<34} {measure(actions, devices):6.2f} us/event ({EVENTS:,} storm events)")


if __name__ == "__main__":
    main()
