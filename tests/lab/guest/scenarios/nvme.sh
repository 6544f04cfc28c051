# NVMe, under peripetyd --bpf:
#  1. QEMU's emulated controller, whose blkdebug backing fails sector 2048:
#     a real Unrecovered Read Error completion.
#  2. nvmet over TCP on 127.0.0.1, namespace backed by a dm device whose table
#     is swapped to `error` (dmsetup --noudevsync: udev sync would hang here).
. "$LAB/lib.sh"
set -x
NQN=nqn.2026-12.io.peripety:lab
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:70657269-7065-7479-6c61-620000000002
CFG=/sys/kernel/config/nvmet
NS_UUID=70657269-7065-7479-6c61-620000000003
tcp_namespace() {
    local d
    for d in /sys/block/nvme*; do
        [ -e "$d/dev" ] && grep -qx "uuid.$NS_UUID" "$d/wwid" && { basename "$d"; return 0; }
    done
    return 1
}
case $1 in
run)
    ns=$(basename "$(ls -d /sys/class/nvme/nvme*/nvme*n1 | head -1)")
    fact emu_ns "$ns"
    fact emu_ctrl "${ns%n1}"
    fact emu_devnum "$(cat /sys/block/$ns/dev)"
    fact emu_wwid "$(cat /sys/block/$ns/wwid)"
    nvme id-ns "/dev/$ns" | grep -E "^(nguid|eui64)"
    dd if="/dev/$ns" of=/dev/null bs=4096 skip=256 count=1 iflag=direct

    truncate -s 64M /tmp/nvmet.img
    loop=$(losetup -f --show /tmp/nvmet.img)
    echo "$loop" > /tmp/nvmet.loop
    dmsetup --noudevsync create nvmback --table "0 131072 linear $loop 0"
    # udev makes the node; nothing waits for it
    wait_for 30 test -b /dev/mapper/nvmback || exit 1
    mkdir "$CFG/subsystems/$NQN"
    echo 1 > "$CFG/subsystems/$NQN/attr_allow_any_host"
    mkdir "$CFG/subsystems/$NQN/namespaces/1"
    echo /dev/mapper/nvmback > "$CFG/subsystems/$NQN/namespaces/1/device_path"
    echo "$NS_UUID" > "$CFG/subsystems/$NQN/namespaces/1/device_uuid"
    echo 1 > "$CFG/subsystems/$NQN/namespaces/1/enable"
    mkdir "$CFG/ports/1"
    echo tcp > "$CFG/ports/1/addr_trtype"
    echo ipv4 > "$CFG/ports/1/addr_adrfam"
    echo 127.0.0.1 > "$CFG/ports/1/addr_traddr"
    echo 4420 > "$CFG/ports/1/addr_trsvcid"
    ln -s "$CFG/subsystems/$NQN" "$CFG/ports/1/subsystems/$NQN"
    nvme connect -t tcp -a 127.0.0.1 -s 4420 -n "$NQN" --hostnqn="$HOSTNQN"
    wait_for 30 bash -c "grep -l '$NQN' /sys/class/nvme/nvme*/subsysnqn" || exit 1
    ctrl=$(basename "$(dirname "$(grep -l "$NQN" /sys/class/nvme/nvme*/subsysnqn | head -1)")")
    # native NVMe multipath: the disk is the namespace head nvmeXnY (the
    # per-path nvmeXcYnZ are hidden: no dev node); find it by our uuid
    wait_for 30 tcp_namespace || exit 1
    tns=$(tcp_namespace)
    udevadm settle --timeout=60
    fact tcp_ctrl "$ctrl"
    fact tcp_ns "$tns"
    # the hidden per-path disk the kernel's block lines name (nvme<subsys>c<ctrl>n<ns>)
    fact tcp_path "$(basename "$(ls -d /sys/class/nvme/$ctrl/nvme*c*n* | head -1)")"
    fact tcp_devnum "$(cat /sys/block/$tns/dev)"
    fact tcp_wwid "$(cat /sys/block/$tns/wwid)"
    dd if="/dev/$tns" of=/dev/null bs=4096 count=1 iflag=direct
    dmsetup --noudevsync suspend nvmback
    dmsetup --noudevsync load nvmback --table "0 131072 error"
    dmsetup --noudevsync resume nvmback
    dd if="/dev/$tns" of=/dev/null bs=4096 skip=16 count=1 iflag=direct
    dd if=/dev/zero of="/dev/$tns" bs=4096 seek=32 count=1 oflag=direct
    exit 0
    ;;
cleanup)
    nvme disconnect -n "$NQN"
    rm -f "$CFG/ports/1/subsystems/$NQN"
    rmdir "$CFG/ports/1"
    echo 0 > "$CFG/subsystems/$NQN/namespaces/1/enable"
    rmdir "$CFG/subsystems/$NQN/namespaces/1" "$CFG/subsystems/$NQN"
    dmsetup --noudevsync remove nvmback
    losetup -d "$(cat /tmp/nvmet.loop)"
    ;;
esac
