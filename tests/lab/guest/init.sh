#!/bin/bash
# PID 1 of the lab guest (exec'd by the image's /lab-init stub from the
# read-only project share). Starts journald and udevd, copies the project in,
# runs the scenarios named on the kernel command line (lab.scenarios=a,b) under
# the real peripetyd and leaves the results in the "out" 9p share:
#   kmsg.raw          every /dev/kmsg record of the boot, with begin/end markers
#   <s>.jsonl         prpt query --jsonl of the scenario's time window
#   <s>.log, <s>.facts  scenario output and key=value facts for the host tests
#   summary           "<scenario> <rc> <seconds>" per scenario
# lab.shell=1 gives a root shell on the console instead (after the set-up).
set -u
# Run from a copy: bash reads a script as it goes, and the share is live.
if [ "${0%/*}" != /lab-guest ]; then
    cp -r /mnt/src/tests/lab/guest /lab-guest && exec /bin/bash /lab-guest/init.sh
fi
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 TERM=${TERM:-linux}
export LAB=/lab-guest
export OUT=/mnt/out

mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/lock /dev/pts /dev/shm /var/lib/peripety
mount -t tmpfs tmpfs /tmp
mount -t devpts devpts /dev/pts
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
mount -t tmpfs tmpfs /dev/shm
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t cgroup2 cgroup2 /sys/fs/cgroup
modprobe configfs && mount -t configfs configfs /sys/kernel/config
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out "$OUT"
ip link set lo up
hostname peripety-lab

arg() { sed -n "s/.*\blab\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
uname -r > "$OUT/kver"
cat /proc/version > "$OUT/version"
# Every kernel record of this boot, raw; the host cuts it per scenario.
cat /dev/kmsg > "$OUT/kmsg.raw" &

# The project, fresh from this run's tree.
mkdir -p /opt/peripety
cp -r /mnt/src/peripety /mnt/src/bpf /opt/peripety/
# Launched the way the package's console scripts are (a python3 script named
# after the tool), so journald records _COMM=peripetyd: readers trust stored
# events only from that sender (`python3 -c` would make it _COMM=python3).
for tool in peripetyd:peripety.cli.peripetyd prpt:peripety.cli; do
    cat > "/usr/local/bin/${tool%%:*}" <<W
#!/usr/bin/python3
import sys
sys.path.insert(0, "/opt/peripety")
from ${tool#*:} import cli_main
sys.exit(cli_main())
W
    chmod +x "/usr/local/bin/${tool%%:*}"
done

. "$LAB/lib.sh"
start_services
modprobe -a scsi_mod sd_mod sg dm_mod dm_multipath scsi_dh_alua md_mod raid1 dm_thin_pool \
    loop nvme nvme_core nvmet nvmet_tcp nvme_tcp virtio_rng 2>&1
udevadm settle --timeout=60
sentinel_setup

if [ "$(arg shell)" = 1 ]; then
    echo "lab: shell. peripetyd is not running: '. lib.sh; start_daemon shell [--bpf=on]';"
    echo "lab: scenarios: 'SCENARIO=x bash scenarios/x.sh run' (results in $OUT); Ctrl-A X or 'echo o > /proc/sysrq-trigger' ends"
    cd "$LAB"
    setsid -c /bin/bash -i </dev/ttyS0 >/dev/ttyS0 2>&1
    lab_poweroff
fi

# Scenarios by daemon run: one run without probes, one with --bpf (bcc's
# compile under TCG is paid once). Order inside a run is fixed.
PLAIN="multipath stack md thin info"
BPF="scsi nvme counts"
want=" $(arg scenarios | tr , ' ') "
for phase in plain bpf; do
    if [ $phase = plain ]; then list=$PLAIN; args=(); else list=$BPF; args=(--bpf=on); fi
    todo=()
    for s in $list; do [[ "$want" == *" $s "* ]] && todo+=("$s"); done
    ((${#todo[@]})) || continue
    start_daemon "$phase" "${args[@]}" || { for s in "${todo[@]}"; do echo "$s 97 0" >> "$OUT/summary"; done; continue; }
    for s in "${todo[@]}"; do run_scenario "$s"; done
    stop_daemon
done
journalctl -o short-monotonic --no-pager > "$OUT/journal.txt" 2>&1
echo "lab: done"
lab_poweroff
