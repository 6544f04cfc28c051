# ext4 on LVM on multipath (two scsi_debug paths). All paths go down while
# the file system writes: the FS events' root_cause_event_id must lead down
# the stack; `prpt info` on the mount point must list the whole stack.
. "$LAB/lib.sh"
set -x
case $1 in
run)
    lvm_conf
    mpath_up 64 3
    wipefs -a /dev/mapper/mpatha
    pvcreate -ff -y /dev/mapper/mpatha
    vgcreate vgstack /dev/mapper/mpatha
    lvcreate -y -L 32M -n lvstack vgstack
    udevadm settle --timeout=60
    mkfs.ext4 -q -F /dev/vgstack/lvstack
    mkdir -p /mnt/stack
    mount -o errors=remount-ro,commit=1 /dev/vgstack/lvstack /mnt/stack
    udevadm settle --timeout=60
    lv_dm=$(basename "$(readlink -f /dev/vgstack/lvstack)")
    fact lv_dm "$lv_dm"
    fact lv_path /dev/vgstack/lvstack
    fact map_dm "$MAP_DM"
    fact path1 "$P1"
    fact path2 "$P2"
    fact mount_point /mnt/stack
    prpt info /mnt/stack -J > "$OUT/stack.info.json"
    dd if=/dev/zero of=/mnt/stack/before bs=4k count=16 conv=fsync
    # every path down under the mounted file system
    echo offline > "/sys/block/$P1/device/state"
    echo offline > "/sys/block/$P2/device/state"
    dd if=/dev/urandom of=/mnt/stack/after bs=4k count=64 conv=fsync
    sync
    # a new metadata change makes ext4 notice the aborted journal and apply
    # errors=remount-ro now, rather than whenever ext4lazyinit runs next
    touch /mnt/stack/after-abort
    wait_for 30 bash -c "dmesg | grep -q 'EXT4-fs ($lv_dm): Remounting filesystem read-only'" || exit 1
    exit 0
    ;;
cleanup)
    umount /mnt/stack
    for p in $(scsi_debug_disks); do echo running > "/sys/block/$p/device/state"; done
    vgchange -an vgstack
    mpath_down
    ;;
esac
