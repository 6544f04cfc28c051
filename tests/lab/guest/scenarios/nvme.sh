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
case $1 in
run)
    ns=$(basename "$(ls -d /sys/class/nvme/nvme*/nvme*n1 | head -1)")
    fact emu_ns "$ns"
    fact emu_ctrl "${ns%n1}"
    fact emu_devnum "$(cat /sys/block/$ns/dev)"
    fact emu_wwid "$(cat /sys/block/$ns/wwid)"
    nvme id-ns "/dev/$ns" | grep -E "^(nguid|eui64)"
    dd if="/dev/$ns" of=/dev/null bs=4096 skip=256 count=1 iflag=direct

    nvmet_tcp_up nvmback 1 4420 || exit 1
    nvmet_tcp_facts tcp || exit 1
    dd if="/dev/$tns" of=/dev/null bs=4096 count=1 iflag=direct
    dm_error nvmback
    dd if="/dev/$tns" of=/dev/null bs=4096 skip=16 count=1 iflag=direct
    dd if=/dev/zero of="/dev/$tns" bs=4096 seek=32 count=1 oflag=direct
    exit 0
    ;;
cleanup)
    nvmet_tcp_down nvmback 1
    ;;
esac
