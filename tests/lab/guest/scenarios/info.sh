# `prpt info` on every device kind the guest has, in every form the resolver
# accepts: a SCSI path, a multipath map over two paths, an LVM LV with ext4
# mounted on it, an md raid1 over two loop devices, the emulated NVMe
# namespace, a loop device. Results: $OUT/info.json (see info_forms.py).
. "$LAB/lib.sh"
set -x
case $1 in
run)
    md_conf
    lvm_conf
    mpath_up 64
    wipefs -a /dev/mapper/mpatha
    pvcreate -ff -y /dev/mapper/mpatha
    vgcreate vginfo /dev/mapper/mpatha
    lvcreate -y -L 16M -n lvinfo vginfo
    udevadm settle --timeout=60
    mkfs.ext4 -q -F /dev/vginfo/lvinfo
    mkdir -p /mnt/info
    mount /dev/vginfo/lvinfo /mnt/info
    for i in 1 2; do truncate -s 64M /tmp/md$i.img; losetup -f --show /tmp/md$i.img; done > /tmp/info.loops
    mdadm --create /dev/md1 --run --level=1 --raid-devices=2 --metadata=1.2 --assume-clean $(cat /tmp/info.loops)
    udevadm settle --timeout=60
    # a partition: one MBR entry written by hand (no fdisk in the image)
    truncate -s 32M /tmp/part.img
    python3 -c '
import struct
with open("/tmp/part.img", "r+b") as f:
    f.seek(440); f.write(struct.pack("<I", 0x70727074))          # disk identifier
    f.seek(446); f.write(struct.pack("<B3sB3sII", 0, bytes(3), 0x83, bytes(3), 2048, 65536 - 2048))
    f.seek(510); f.write(b"\x55\xaa")'
    losetup -P -f --show /tmp/part.img > /tmp/info.partloop
    udevadm settle --timeout=60
    part=$(basename "$(cat /tmp/info.partloop)")p1
    nvme=$(basename "$(ls -d /sys/class/nvme/nvme*/nvme*n1 | head -1)")
    python3 "$LAB/info_forms.py" "$OUT/info.json" \
        scsi="$P1" multipath="$MAP_DM" lvm="$(basename "$(readlink -f /dev/vginfo/lvinfo)")" \
        md=md1 nvme="$nvme" loop="$(basename "$(head -1 /tmp/info.loops)")" partition="$part"
    prpt info --jsonl > "$OUT/info-all.jsonl"
    exit 0
    ;;
cleanup)
    umount /mnt/info
    vgchange -an vginfo
    mdadm --stop --scan
    while read -r l; do losetup -d "$l"; done < /tmp/info.loops
    losetup -d "$(cat /tmp/info.partloop)"
    mpath_down
    ;;
esac
