# dm-multipath over two scsi_debug paths to one LU, run by the real multipathd
# (which logs through journald: _COMM=multipathd, uid 0). One path fails and
# is reinstated, then all paths go down (no_path_retry fail: I/O errors out).
. "$LAB/lib.sh"
set -x
read_map() { dd if=/dev/mapper/mpatha of=/dev/null bs=4096 count=64 iflag=direct; }
case $1 in
run)
    mpath_up 32
    fact map mpatha
    fact map_dm "$MAP_DM"
    fact map_devnum "$(cat /sys/block/$MAP_DM/dev)"
    fact path1 "$P1"
    fact path2 "$P2"
    fact scsi_wwid "$(cat /sys/block/$P1/device/wwid)"
    multipathd show topology
    # a user who is not multipathd says a path is gone: journald records
    # _UID=65534 _COMM=logger, so this must not become an event
    setpriv --reuid=nobody --regid=nogroup --clear-groups \
        logger -t multipathd "mpatha: remaining active paths: 9"
    # one path fails
    echo offline > "/sys/block/$P1/device/state"
    read_map
    wait_for 30 path_is "$P1" "failed faulty" || exit 1
    multipathd show topology
    # prpt top's live state of the map with one path down, as JSON
    prpt top --once -J > "$OUT/multipath.top.json"
    # and comes back
    echo running > "/sys/block/$P1/device/state"
    wait_for 30 path_is "$P1" "active ready" || exit 1
    read_map
    # all paths down
    echo offline > "/sys/block/$P1/device/state"
    echo offline > "/sys/block/$P2/device/state"
    read_map
    wait_for 30 path_is "$P2" "failed faulty" || exit 1
    multipathd show topology
    echo running > "/sys/block/$P1/device/state"
    echo running > "/sys/block/$P2/device/state"
    wait_for 30 path_is "$P1" "active ready" || exit 1
    wait_for 30 path_is "$P2" "active ready" || exit 1
    exit 0
    ;;
cleanup)
    mpath_down
    ;;
esac
