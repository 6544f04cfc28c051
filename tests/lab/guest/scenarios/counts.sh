# Exact counts at storm rates, under peripetyd --bpf (issue 14): many
# commands fail, and the host test checks that what the daemon counted in the
# kernel's maps equals what the workload saw.
#  1. SCSI: scsi_debug fails every read of sectors 8192-16383 with MEDIUM
#     ERROR / Unrecovered read error (opts=2): one failed command per read
#     (asc 0x11 is final, scsi_check_sense: SUCCESS, no retry). The midlayer's
#     own count of failed commands (ioerr_cnt) is read before and after.
#     One disk is read one command at a time, one by four threads, one by
#     four threads with scsi_debug's delay=0 (completion inside queuecommand).
#  2. NVMe: nvmet over TCP on 127.0.0.1, namespace on a dm device switched to
#     `error`; nvmet answers Internal Error with DNR (no retry): one failed
#     completion per failed read.
# Reads: tests/lab/guest/failing_reads.py (O_DIRECT, 4 threads).
. "$LAB/lib.sh"
set -x
NQN=nqn.2026-12.io.peripety:counts
HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:70657269-7065-7479-6c61-620000000012
CFG=/sys/kernel/config/nvmet
NS_UUID=70657269-7065-7479-6c61-620000000013
SCSI_READS_ONE=${SCSI_READS_ONE:-500}
SCSI_READS=${SCSI_READS:-2000}
NVME_READS=${NVME_READS:-300}


# stored_total SINCE: the sum of `count` over every event stored since SINCE
stored_total() {
    prpt query --since "$1" --jsonl | python3 -c 'import sys, json; print(sum(json.loads(l)["count"] for l in sys.stdin if l.strip()))'
}

# settled SINCE: wait until the stored total has not moved for 3 s (maps are
# read every tick, settled 0.25 s later, storm slices close within 1 s)
settled() {
    local last=-1 same=0 now i
    for i in $(seq 60); do
        now=$(stored_total "$1")
        if [ "$now" = "$last" ]; then same=$((same + 1)); else same=0; last=$now; fi
        ((same >= 3)) && { log "stored total $now settled"; return 0; }
        sleep 1
    done
    return 1
}

case $1 in
run)
    since=$(now_rfc3339)
    # -- SCSI: three disks (targets 0-2 of one scsi_debug host) ----------
    # Medium errors are switched on only once udev has probed the disks, so
    # the workload's reads are the only failing commands.
    modprobe scsi_debug dev_size_mb=16 num_tgts=3 medium_error_start=8192 medium_error_count=8192
    udevadm settle --timeout=60
    read -r one four inline < <(scsi_debug_disks | head -3 | xargs)
    sd_opts=/sys/bus/pseudo/drivers/scsi_debug
    echo 2 > "$sd_opts/opts"
    # one read at a time, then four threads at once; then four threads with
    # scsi_debug answering inside queuecommand (delay=0: no timer interrupt
    # completes the command)
    for pair in "scsi1 $one 1 $SCSI_READS_ONE 1" "scsi4 $four 4 $SCSI_READS 1" "scsi4d0 $inline 4 $SCSI_READS 0"; do
        read -r tag disk threads reads delay <<< "$pair"
        echo "$delay" > "$sd_opts/delay"
        fact ${tag}_disk "$disk"
        fact ${tag}_devnum "$(cat /sys/block/$disk/dev)"
        fact ${tag}_hctl "$(basename "$(readlink -f /sys/block/$disk/device)")"
        fact ${tag}_wwid "$(cat /sys/block/$disk/device/wwid)"
        before=$(cat /sys/block/$disk/device/ioerr_cnt)
        out=$(python3 "$LAB/failing_reads.py" "/dev/$disk" $((8192 * 512)) $((8192 * 512)) "$reads" "$threads")
        echo "$out"
        after=$(cat /sys/block/$disk/device/ioerr_cnt)
        fact ${tag}_workload "$out"
        fact ${tag}_ioerr_cnt $((after - before))
        # every failed command since the disk appeared (its first command's
        # UNIT ATTENTION included), as the probe sees them
        fact ${tag}_ioerr_total $((after))
    done
    echo 0 > "$sd_opts/opts"
    echo 1 > "$sd_opts/delay"
    # -- NVMe over TCP -------------------------------------------------------
    nvmet_tcp_up countsback 2 4421 || exit 1
    nvmet_tcp_facts nvme || exit 1
    dm_error countsback
    out=$(python3 "$LAB/failing_reads.py" "/dev/$tns" 0 $((16 << 20)) "$NVME_READS" 4)
    echo "$out"
    fact nvme_workload "$out"
    settled "$since" || exit 1
    exit 0
    ;;
cleanup)
    nvmet_tcp_down countsback 2
    modprobe -r scsi_debug
    ;;
esac
