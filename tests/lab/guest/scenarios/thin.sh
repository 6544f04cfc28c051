# An LVM thin pool (16 MiB data) behind a 128 MiB thin volume, written past
# its data space. --errorwhenfull y: the pool errors I/O at once instead of
# queueing it for no_space_timeout (60 s).
. "$LAB/lib.sh"
set -x
case $1 in
run)
    lvm_conf
    truncate -s 256M /tmp/thin.img
    loop=$(losetup -f --show /tmp/thin.img)
    echo "$loop" > /tmp/thin.loop
    pvcreate -y "$loop"
    vgcreate vgthin "$loop"
    lvcreate -y -L 16M -T vgthin/pool
    lvcreate -y -V 128M -T vgthin/pool -n thinlv
    lvchange --errorwhenfull y vgthin/pool
    udevadm settle --timeout=60
    fact pool_lv vgthin/pool
    fact pool_dm "$(basename "$(readlink -f /dev/mapper/vgthin-pool-tpool)")"
    fact pool_dm_name vgthin-pool-tpool
    fact thin_dm "$(basename "$(readlink -f /dev/vgthin/thinlv)")"
    dmsetup ls
    dd if=/dev/zero of=/dev/vgthin/thinlv bs=1M count=64 oflag=direct
    lvs -a vgthin
    dmsetup status vgthin-pool-tpool
    exit 0
    ;;
cleanup)
    vgchange -an vgthin
    vgremove -ff -y vgthin
    losetup -d "$(cat /tmp/thin.loop)"
    ;;
esac
