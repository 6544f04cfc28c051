# SCSI medium errors from scsi_debug (opts=2: reads of sectors 4660-4675 fail
# with MEDIUM ERROR / Unrecovered read error), then command timeouts (opts=4).
# Runs under peripetyd --bpf.
. "$LAB/lib.sh"
set -x
case $1 in
run)
    modprobe scsi_debug dev_size_mb=16 opts=2 medium_error_start=4660 medium_error_count=16
    udevadm settle --timeout=60
    disk=$(scsi_debug_disks | head -1)
    fact disk "$disk"
    fact devnum "$(cat /sys/block/$disk/dev)"
    fact hctl "$(basename "$(readlink -f /sys/block/$disk/device)")"
    fact scsi_wwid "$(cat /sys/block/$disk/device/wwid)"
    sg_vpd --page=di "/dev/$disk"
    dd if="/dev/$disk" of=/dev/null bs=512 skip=4660 count=1 iflag=direct
    dd if="/dev/$disk" of=/dev/null bs=4096 skip=584 count=1 iflag=direct   # sectors 4672-4679
    # command timeouts: scsi_debug ignores every command (opts=4, every_nth=1);
    # the midlayer times out after 2 s, the error handler aborts and retries
    sd_opts=/sys/bus/pseudo/drivers/scsi_debug
    echo 2 > "/sys/block/$disk/device/timeout"
    echo 1 > "$sd_opts/every_nth"
    echo 4 > "$sd_opts/opts"
    dd if="/dev/$disk" of=/dev/null bs=4096 skip=16 count=1 iflag=direct
    echo 0 > "$sd_opts/opts"
    echo 0 > "$sd_opts/every_nth"
    cat "/sys/block/$disk/device/state"
    exit 0
    ;;
cleanup)
    modprobe -r scsi_debug
    ;;
esac
