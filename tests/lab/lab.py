"""Build the lab image and boot it under qemu: ``python -m tests.lab.lab``.

    python -m tests.lab.lab                      # all scenarios, results in build/lab/
    python -m tests.lab.lab --scenario md        # one (repeatable)
    python -m tests.lab.lab --shell              # a root shell in the guest

The guest (tests/lab/guest/init.sh) runs the scenarios under the real
peripetyd and writes its results into build/lab through a 9p share; the
host then cuts the guest's raw /dev/kmsg stream into one recorded fixture per
scenario (tests/fixtures/recorded/lab-<kver>-<scenario>.kmsg).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "build" / "lab"
RECORDED = REPO / "tests" / "fixtures" / "recorded"

# Boot order inside the guest is fixed by init.sh (plain daemon run, then --bpf run).
SCENARIOS = ("multipath", "stack", "md", "thin", "info", "scsi", "nvme", "counts")
SCENARIO_TIMEOUT = 240      # per scenario, enforced in the guest
BOOT_ALLOWANCE = 900        # boot, services, two daemon starts (bcc compile), sentinels
MARKER = re.compile(r"^\d+,\d+,\d+,[^;]*;peripety-lab: (begin|end) (\S+)$")


@dataclass
class LabRun:
    image_dir: Path
    image_seconds: float
    image_built: bool
    boot_seconds: float = 0.0
    accel: str = "tcg"
    kver: str = ""
    summary: dict[str, tuple[int, int]] = field(default_factory=dict)  # scenario -> (rc, seconds)
    qemu_rc: int | None = None
    killed: bool = False


def build_image() -> tuple[Path, float, bool]:
    """Run image.sh; returns (image dir, seconds, whether it was built now)."""
    t0 = time.monotonic()
    proc = subprocess.run(["nice", "-n", "10", str(HERE / "image.sh")], stdout=subprocess.PIPE,
                          text=True, check=True)
    seconds = time.monotonic() - t0
    path, state = proc.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    return Path(path), seconds, state == "built"


def kvm_usable() -> bool:
    """KVM only where the CPU really virtualises (vmx/svm) and /dev/kvm opens:
    this machine's /dev/kvm is a paravirtual kvm_pvm on which a guest never
    prints a line."""
    if os.environ.get("PERIPETY_LAB_ACCEL") in ("tcg", "kvm"):
        return os.environ["PERIPETY_LAB_ACCEL"] == "kvm"
    try:
        flags = Path("/proc/cpuinfo").read_text()
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
    except OSError:
        return False
    return bool(re.search(r"^flags\s*:.*\b(vmx|svm)\b", flags, re.M))


def qemu_command(image_dir: Path, cmdline: str, workdir: Path, *, accel: str, shell: bool) -> list[str]:
    nvme_img = workdir / "nvme.img"
    with open(nvme_img, "wb") as f:
        f.truncate(64 << 20)
    accel_args = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi", "-cpu", "max"]
    console = ["-serial", "mon:stdio"] if shell else ["-serial", f"file:{OUT / 'console.log'}"]
    return [
        "qemu-system-x86_64", *accel_args, "-smp", "2", "-m", "3072",
        "-nodefaults", "-no-reboot", "-display", "none", *console,
        "-kernel", str(image_dir / "vmlinuz"), "-initrd", str(image_dir / "root.cpio"),
        "-append", cmdline,
        "-virtfs", f"local,path={REPO},mount_tag=src,security_model=none,readonly=on",
        "-virtfs", f"local,path={OUT},mount_tag=out,security_model=none",
        "-device", "virtio-rng-pci",
        "-drive", f"if=none,id=nvm,format=raw,file=blkdebug:{HERE / 'blkdebug.conf'}:{nvme_img}",
        "-device", "nvme,id=nvme0,serial=PRPTLAB0001",
        "-device", "nvme-ns,drive=nvm,bus=nvme0,nsid=1,eui64=0x5065726970657479,"
                   "uuid=70657269-7065-7479-6c61-620000000001",
    ]


def boot(scenarios: list[str], *, shell: bool = False, log=print) -> LabRun:
    image_dir, image_seconds, built = build_image()
    run = LabRun(image_dir, image_seconds, built)
    run.accel = "kvm" if kvm_usable() else "tcg"
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    cmdline = (f"console=ttyS0 rdinit=/lab-init panic=-1 mitigations=off quiet "
               f"lab.scenarios={','.join(scenarios)}" + (" lab.shell=1" if shell else ""))
    limit = int(os.environ.get("PERIPETY_LAB_LIMIT", BOOT_ALLOWANCE + SCENARIO_TIMEOUT * len(scenarios)))
    with tempfile.TemporaryDirectory(prefix="peripety-lab-") as tmp:
        cmd = ["nice", "-n", "10", *qemu_command(image_dir, cmdline, Path(tmp), accel=run.accel, shell=shell)]
        log(f"lab: booting ({run.accel}) for {', '.join(scenarios)}; hard limit {limit}s")
        t0 = time.monotonic()
        if shell:
            run.qemu_rc = subprocess.call(cmd)
        else:
            # qemu's own stderr: blkdebug's injected errors show there as "aio failed"
            with open(OUT / "qemu.log", "wb") as qlog:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog)
            try:
                run.qemu_rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                proc.kill()  # stuck I/O in the guest: nothing else stops it
                run.qemu_rc = proc.wait()
                run.killed = True
        run.boot_seconds = time.monotonic() - t0
    kver_file = OUT / "kver"
    run.kver = kver_file.read_text().strip() if kver_file.exists() else ""
    summary = OUT / "summary"
    if summary.exists():
        for line in summary.read_text().splitlines():
            name, rc, secs = line.split()
            run.summary[name] = (int(rc), int(secs))
    if run.kver and (OUT / "kmsg.raw").exists():
        version = (OUT / "version").read_text().strip() if (OUT / "version").exists() else run.kver
        write_fixtures(run.kver, version, (OUT / "kmsg.raw").read_text(errors="replace"))
    return run


def split_kmsg(raw: str) -> dict[str, list[str]]:
    """Records between 'peripety-lab: begin S' and 'end S' markers, per scenario,
    each record with its ' KEY=VALUE' continuation lines; markers dropped."""
    records: list[str] = []
    for line in raw.splitlines():
        if line.startswith(" ") and records:
            records[-1] += "\n" + line
        elif line:
            records.append(line)
    out: dict[str, list[str]] = {}
    current = None
    for rec in records:
        m = MARKER.match(rec.split("\n", 1)[0])
        if m:
            current = m.group(2) if m.group(1) == "begin" else None
            if current:
                out[current] = []
            continue
        if current is not None:
            out[current].append(rec)
    return out


def write_fixtures(kver: str, version: str, raw: str) -> list[Path]:
    written = []
    for scenario, records in split_kmsg(raw).items():
        path = RECORDED / f"lab-{kver}-{scenario}.kmsg"
        header = [
            "# Real /dev/kmsg records captured in the qemu lab (tests/lab, `make lab`)",
            f"# kernel: {version}",
            f"# (Debian's linux-image-{kver}, booted under qemu by tests/lab)",
            f"# scenario: {scenario} (tests/lab/guest/scenarios/{scenario}.sh); {len(records)} records",
            "# Format: raw /dev/kmsg reads, one record per block (blank line between),",
            "# ' KEY=VALUE' continuation lines kept. Unrelated kernel lines that appeared",
            "# meanwhile are kept on purpose (real noise). Timestamps are guest uptime.",
            "",
        ]
        path.write_text("\n".join(header) + "\n" + "\n\n".join(records) + "\n")
        written.append(path)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)")
    ap.add_argument("--shell", action="store_true", help="boot to a root shell on this terminal (Ctrl-A X quits)")
    args = ap.parse_args(argv)
    scenarios = args.scenario or list(SCENARIOS)
    run = boot(scenarios, shell=args.shell, log=lambda m: print(m, file=sys.stderr))
    print(f"lab: image {'built' if run.image_built else 'cached'} in {run.image_seconds:.0f}s "
          f"({run.image_dir}); boot+scenarios {run.boot_seconds:.0f}s ({run.accel}, kernel {run.kver or '?'})")
    for s in scenarios:
        rc, secs = run.summary.get(s, (None, 0))
        print(f"lab: {s:10s} guest rc={rc} {secs}s")
    return 0 if all(run.summary.get(s, (1,))[0] == 0 for s in scenarios) else 1


if __name__ == "__main__":
    sys.exit(main())
