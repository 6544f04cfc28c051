# Shared guest helpers: services, the daemon, the scenario runner, devices.
# Sourced by init.sh and by every scenario script.
LAB=${LAB:-/lab-guest}
OUT=${OUT:-/mnt/out}
SCENARIO_TIMEOUT=${SCENARIO_TIMEOUT:-240}

log() { echo "lab: $*" >&2; }

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds.
wait_for() {
    { local xtrace=${-//[^x]/}; set +x; } 2>/dev/null   # no trace line per poll
    local limit=$1; shift
    local end=$((SECONDS + limit)) rc=0
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || { log "timed out after ${limit}s waiting for: $*"; rc=1; break; }
        sleep 0.2
    done
    [ -n "$xtrace" ] && set -x
    return $rc
}

# fact KEY VALUE: a fact the host test checks the events against.
fact() { echo "$1=$2" >> "$OUT/$SCENARIO.facts"; log "fact $1=$2"; }

start_services() {
    /lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &
    wait_for 30 test -S /run/systemd/journal/socket
    ln -sfn /run/systemd/journal/dev-log /dev/log
    /lib/systemd/systemd-udevd --daemon
    udevadm trigger --action=add
    udevadm settle --timeout=60
}

DAEMON_PID=
start_daemon() {
    local phase=$1; shift
    local logf=$OUT/peripetyd-$phase.log
    local t0=$SECONDS
    peripetyd --no-blk-info-dump -v "$@" > "$logf" 2>&1 &
    DAEMON_PID=$!
    # with --bpf, bcc compiles the probe program first (slow under TCG)
    if ! wait_for 400 grep -q "ready" "$logf"; then
        log "peripetyd ($phase) not ready"; return 1
    fi
    log "peripetyd ($phase $*) ready in $((SECONDS - t0))s, pid $DAEMON_PID"
}

stop_daemon() {
    [ -n "$DAEMON_PID" ] || return 0
    kill -TERM "$DAEMON_PID"
    wait_for 60 bash -c "! kill -0 $DAEMON_PID"
    DAEMON_PID=
}

# A tiny ext4 on a loop device: mounting it prints a line that becomes an
# FS_MOUNTED event; once that is stored, every earlier kernel record is too.
sentinel_setup() {
    truncate -s 8M /tmp/sentinel.img
    mkfs.ext4 -q -F /tmp/sentinel.img
    SENTINEL_LOOP=$(losetup -f --show /tmp/sentinel.img)
    mkdir -p /mnt/sentinel
}

sentinel_stored() {
    prpt query --since "$1" --event-type FS_MOUNTED --jsonl | grep -q "\"kdev\":\"${SENTINEL_LOOP#/dev/}\""
}

sentinel() {
    local since
    since=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
    mount -t ext4 "$SENTINEL_LOOP" /mnt/sentinel && umount /mnt/sentinel
    wait_for 60 sentinel_stored "$since"
}

now_rfc3339() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }

# run_scenario NAME: scenarios/NAME.sh run, then (after the sentinel) query,
# then NAME.sh cleanup. Stuck I/O cannot be killed: past the timeout the
# scenario's process group is SIGKILLed and left behind, and the run goes on.
run_scenario() {
    local s=$1 since t0 rc pid
    export SCENARIO=$s
    : > "$OUT/$s.facts"
    echo "peripety-lab: begin $s" > /dev/kmsg
    since=$(now_rfc3339); t0=$SECONDS
    log "scenario $s"
    setsid bash "$LAB/scenarios/$s.sh" run > "$OUT/$s.log" 2>&1 &
    pid=$!
    rc=
    while ((SECONDS - t0 < SCENARIO_TIMEOUT)); do
        if ! kill -0 "$pid" 2>/dev/null; then wait "$pid"; rc=$?; break; fi
        sleep 0.5
    done
    if [ -z "$rc" ]; then
        log "scenario $s timed out after ${SCENARIO_TIMEOUT}s"
        kill -KILL -- "-$pid" 2>/dev/null
        rc=124
    fi
    sentinel || log "sentinel not stored after $s"
    echo "peripety-lab: end $s" > /dev/kmsg
    prpt query --since "$since" --jsonl > "$OUT/$s.jsonl" 2> "$OUT/$s.query.err"
    echo "$s $rc $((SECONDS - t0))" >> "$OUT/summary"
    timeout -k 5 60 bash "$LAB/scenarios/$s.sh" cleanup >> "$OUT/$s.log" 2>&1
    log "scenario $s rc=$rc in $((SECONDS - t0))s"
}

lab_poweroff() {
    sync
    umount "$OUT" 2>/dev/null
    echo o > /proc/sysrq-trigger
    sleep 30
}

# --- devices ------------------------------------------------------------
# Kernel names of scsi_debug's disks, in host/target order.
scsi_debug_disks() {
    local d
    for d in /sys/bus/pseudo/drivers/scsi_debug/adapter*/host*/target*/*/block/*; do
        [ -e "$d" ] && basename "$d"
    done
}

# mpath_conf [BLACKLIST_WWID_REGEX]
mpath_conf() {
    mkdir -p /etc/multipath
    rm -f /etc/multipath/bindings /etc/multipath/wwids
    cat > /etc/multipath.conf <<CONF
defaults {
    user_friendly_names yes
    find_multipaths no
    polling_interval 1
    no_path_retry fail
}
blacklist {
    devnode "^(loop|nvme|md|ram|zram)"
    ${1:+wwid "$1"}
}
CONF
}

# mpath_up SIZE_MB [TARGETS]: scsi_debug LUs seen through two hosts, multipathd
# running, /dev/mapper/mpatha present. With TARGETS > 1 only the last
# target's LU is multipathed, so each scenario fails an LU (a WWID) of its own
# and one scenario's failure cannot become the next one's root cause.
# Sets P1 P2 (the map's path names) and MAP_DM.
mpath_up() {
    local targets=${2:-1} skip=
    ((targets > 1)) && skip="^1Linux_scsi_debug_($(seq -s '|' 2000 1000 $((1000 * targets))))\$"
    mpath_conf "$skip"
    modprobe scsi_debug dev_size_mb="${1:-32}" add_host=2 num_tgts="$targets" vpd_use_hostno=0
    udevadm settle --timeout=60
    multipathd
    wait_for 60 test -e /dev/mapper/mpatha
    udevadm settle --timeout=60
    MAP_DM=$(basename "$(readlink -f /dev/mapper/mpatha)")
    read -r P1 P2 < <(ls "/sys/block/$MAP_DM/slaves" | sort | xargs)
    multipathd show topology
}

# path_active DEV: multipathd says the path is active/ready
path_state() { multipathd show paths format "%d %t %T" | awk -v d="$1" '$1 == d {print $2" "$3}'; }
path_is() { [ "$(path_state "$1")" = "$2" ]; }

mpath_down() {
    local p
    for p in $(scsi_debug_disks); do echo running > "/sys/block/$p/device/state" 2>/dev/null; done
    multipath -F 2>/dev/null
    multipathd shutdown 2>/dev/null
    wait_for 20 bash -c '! pidof multipathd'
    dmsetup remove_all 2>/dev/null
    rm -f /etc/multipath.conf   # later scenarios' disks are nobody's paths
    modprobe -r scsi_debug
}

lvm_conf() {
    mkdir -p /etc/lvm
    cat > /etc/lvm/lvmlocal.conf <<'CONF'
devices {
    global_filter = [ "a|^/dev/mapper/mpath|", "a|^/dev/loop|", "a|^/dev/md|", "r|.*|" ]
}
activation {
    monitoring = 0
}
CONF
}

# udev's incremental assembly (64-md-raid-assembly.rules) races mdadm --create
# for fresh members ("ADD_NEW_DISK ... Device or resource busy", inactive
# md127-style arrays): off in the lab, rule masked and mdadm told so.
md_conf() {
    mkdir -p /etc/mdadm /etc/udev/rules.d
    echo "AUTO -all" > /etc/mdadm/mdadm.conf
    : > /etc/udev/rules.d/64-md-raid-assembly.rules
    udevadm control --reload
}

# NVMe over TCP on 127.0.0.1 (nvmet), for the nvme and counts scenarios:
# subsystem $NQN whose namespace 1 ($NS_UUID) is the dm device NAME, linear
# over a 64 MiB loop file (/tmp/NAME.img; its loop device in /tmp/NAME.loop)
# until dm_error NAME swaps its table to `error`; port PORT listens on
# 127.0.0.1:SVCID and this host connects as $HOSTNQN. dmsetup --noudevsync:
# udev sync would hang here; udev makes the node, wait_for waits for it.
nvmet_tcp_up() {
    local name=$1 port=$2 svcid=$3 loop
    truncate -s 64M "/tmp/$name.img"
    loop=$(losetup -f --show "/tmp/$name.img")
    echo "$loop" > "/tmp/$name.loop"
    dmsetup --noudevsync create "$name" --table "0 131072 linear $loop 0"
    wait_for 30 test -b "/dev/mapper/$name" || return 1
    mkdir "$CFG/subsystems/$NQN"
    echo 1 > "$CFG/subsystems/$NQN/attr_allow_any_host"
    mkdir "$CFG/subsystems/$NQN/namespaces/1"
    echo "/dev/mapper/$name" > "$CFG/subsystems/$NQN/namespaces/1/device_path"
    echo "$NS_UUID" > "$CFG/subsystems/$NQN/namespaces/1/device_uuid"
    echo 1 > "$CFG/subsystems/$NQN/namespaces/1/enable"
    mkdir "$CFG/ports/$port"
    echo tcp > "$CFG/ports/$port/addr_trtype"
    echo ipv4 > "$CFG/ports/$port/addr_adrfam"
    echo 127.0.0.1 > "$CFG/ports/$port/addr_traddr"
    echo "$svcid" > "$CFG/ports/$port/addr_trsvcid"
    ln -s "$CFG/subsystems/$NQN" "$CFG/ports/$port/subsystems/$NQN"
    nvme connect -t tcp -a 127.0.0.1 -s "$svcid" -n "$NQN" --hostnqn="$HOSTNQN"
}

dm_error() {
    dmsetup --noudevsync suspend "$1"
    dmsetup --noudevsync load "$1" --table "0 131072 error"
    dmsetup --noudevsync resume "$1"
}

nvmet_tcp_down() {
    local name=$1 port=$2
    nvme disconnect -n "$NQN"
    rm -f "$CFG/ports/$port/subsystems/$NQN"
    rmdir "$CFG/ports/$port"
    echo 0 > "$CFG/subsystems/$NQN/namespaces/1/enable"
    rmdir "$CFG/subsystems/$NQN/namespaces/1" "$CFG/subsystems/$NQN"
    dmsetup --noudevsync remove "$name"
    losetup -d "$(cat "/tmp/$name.loop")"
}

# The namespace head whose wwid is our $NS_UUID (nvmeXnY), if it is there.
tcp_namespace() {
    local d
    for d in /sys/block/nvme*; do
        [ -e "$d/dev" ] && grep -qx "uuid.$NS_UUID" "$d/wwid" && { basename "$d"; return 0; }
    done
    return 1
}

# After nvmet_tcp_up: wait for the connected namespace (native NVMe
# multipath: the disk is the namespace head nvmeXnY, found by $NS_UUID:
# tcp_namespace), set $tns and $ctrl, and record PREFIX_ns,
# _ctrl, _path (the hidden per-path disk nvme<subsys>c<ctrl>n<ns> the kernel's
# block lines name: no dev node), _devnum and _wwid.
nvmet_tcp_facts() {
    local prefix=$1
    wait_for 30 tcp_namespace || return 1
    tns=$(tcp_namespace)
    ctrl=$(basename "$(dirname "$(grep -l "$NQN" /sys/class/nvme/nvme*/subsysnqn | head -1)")")
    udevadm settle --timeout=60
    fact "${prefix}_ns" "$tns"
    fact "${prefix}_ctrl" "$ctrl"
    fact "${prefix}_path" "$(basename "$(ls -d /sys/class/nvme/$ctrl/nvme*c*n* | head -1)")"
    fact "${prefix}_devnum" "$(cat /sys/block/$tns/dev)"
    fact "${prefix}_wwid" "$(cat /sys/block/$tns/wwid)"
}
