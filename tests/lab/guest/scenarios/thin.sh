# An LVM thin pool (16 MiB data) behind a 128 MiB thin volume, written past
# its data space. The pool first queues I/O (out-of-data-space, queue IO),
# then after dm_thin_pool's no_space_timeout (set to 3 s here, 60 s by
# default) errors it (error IO).
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
    echo 3 > /sys/module/dm_thin_pool/parameters/no_space_timeout
    udevadm settle --timeout=60
    fact pool_lv vgthin/pool
    fact pool_dm "$(basename "$(readlink -f /dev/mapper/vgthin-pool-tpool)")"
    fact pool_dm_name vgthin-pool-tpool
    fact thin_dm "$(basename "$(readlink -f /dev/vgthin/thinlv)")"
    dmsetup ls
    dd if=/dev/zero of=/dev/vgthin/thinlv bs=1M count=64 oflag=direct
    lvs -a vgthin
    dmsetup status vgthin-pool-tpool
    echo 60 > /sys/module/dm_thin_pool/parameters/no_space_timeout
    exit 0
    ;;
cleanup)
    vgchange -an vgthin
    vgremove -ff -y vgthin
    losetup -d "$(cat /tmp/thin.loop)"
    ;;
esac
