"""Run `prpt info FORM -J` for every form of every device given (kind=name)
and write {kind: {"name": name, "forms": {label: {"arg", "rc", "info", "stderr"}}}}.

The forms come from sysfs, udev's /dev links and blkid, not from peripety:
name, major:minor, /dev path, /dev/disk/by-id link, WWID (as `prpt info NAME`
reports it), h:c:t:l for SCSI, the dm name and /dev/mapper path, the LVM path,
the FS UUID and the mount point, the NVMe controller.
"""

import json
import os
import subprocess
import sys


def sh(*args):
    return subprocess.run(args, capture_output=True, text=True).stdout.strip()


def info(arg):
    proc = subprocess.run(["prpt", "info", arg, "-J"], capture_output=True, text=True)
    try:
        data = json.loads(proc.stdout) if proc.returncode == 0 else None
    except ValueError:
        data = None
    return {"arg": arg, "rc": proc.returncode, "info": data, "stderr": proc.stderr[-2000:]}


def by_id_link(name):
    d = "/dev/disk/by-id"
    for link in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if os.path.basename(os.path.realpath(os.path.join(d, link))) == name:
            return os.path.join(d, link)
    return None


def forms(kind, name):
    sys_block = f"/sys/class/block/{name}"  # partitions too
    f = {"name": name, "devnum": open(f"{sys_block}/dev").read().strip(), "dev_path": f"/dev/{name}"}
    link = by_id_link(name)
    if link:
        f["by_id"] = link
    if kind == "scsi":
        f["hctl"] = os.path.basename(os.path.realpath(f"{sys_block}/device"))
    if kind in ("multipath", "lvm"):
        dm_name = open(f"{sys_block}/dm/name").read().strip()
        f["dm_name"] = dm_name
        f["mapper_path"] = f"/dev/mapper/{dm_name}"
    if kind == "lvm":
        vg, lv = sh("lvs", "--noheadings", "-o", "vg_name,lv_name", f"/dev/mapper/{dm_name}").split()
        f["lvm_path"] = f"/dev/{vg}/{lv}"
        f["fs_uuid"] = sh("blkid", "-s", "UUID", "-o", "value", f"/dev/{name}")
        for line in open("/proc/mounts"):
            dev, mnt = line.split()[:2]
            if os.path.realpath(dev) == f"/dev/{name}":
                f["mount_point"] = mnt
    if kind == "nvme":
        f["nvme_ctrl"] = os.path.basename(os.path.realpath(f"{sys_block}/device"))
    return f


def main():
    out, pairs = sys.argv[1], sys.argv[2:]
    result = {}
    for pair in pairs:
        kind, name = pair.split("=", 1)
        entry = {"name": name, "forms": {}}
        result[kind] = entry
        try:
            kind_forms = forms(kind, name)
        except (OSError, ValueError) as exc:  # the scenario failed to build this device
            entry["error"] = f"{type(exc).__name__}: {exc}"
            continue
        for label, arg in kind_forms.items():
            entry["forms"][label] = info(arg)
        named = entry["forms"]["name"]["info"]
        if named and named.get("wwid"):
            entry["forms"]["wwid"] = info(named["wwid"])
    with open(out, "w") as fh:
        json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
