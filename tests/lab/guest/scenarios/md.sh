# md raid1 over two scsi_debug disks; one member goes offline and the array's
# writes fail on it for real: md fails the member and runs degraded.
. "$LAB/lib.sh"
set -x
case $1 in
run)
    md_conf
    # two hosts with a store each: scsi_debug's targets share one ram disk by
    # default, and md refuses a "second" member that shows the first's superblock
    modprobe scsi_debug dev_size_mb=32 add_host=2 per_host_store=1
    udevadm settle --timeout=60
    read -r A B < <(scsi_debug_disks | xargs)
    mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 --assume-clean \
        "/dev/$A" "/dev/$B"
    udevadm settle --timeout=60
    fact md md0
    fact md_devnum "$(cat /sys/block/md0/dev)"
    fact member_ok "$A"
    fact member_failed "$B"
    fact member_failed_devnum "$(cat /sys/block/$B/dev)"
    fact member_failed_wwid "$(cat /sys/block/$B/device/wwid)"
    echo offline > "/sys/block/$B/device/state"
    dd if=/dev/zero of=/dev/md0 bs=4096 count=16 oflag=direct
    wait_for 30 grep -q "$B\[1\](F)" /proc/mdstat || exit 1
    cat /proc/mdstat
    # prpt top's live state of the degraded array (sysfs md/degraded), as JSON
    prpt top --once -J > "$OUT/md.top.json"
    exit 0
    ;;
cleanup)
    mdadm --stop --scan
    for p in $(scsi_debug_disks); do echo running > "/sys/block/$p/device/state"; done
    modprobe -r scsi_debug
    ;;
esac
