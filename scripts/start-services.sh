#!/bin/bash
# Start journald and udevd when the machine runs without systemd as PID 1
# (containers, minimal VMs). On a normal systemd host both already run and
# this does nothing.
set -euo pipefail
if [ ! -S /run/systemd/journal/socket ] && [ -x /lib/systemd/systemd-journald ]; then
    # systemd as PID 1 raises the AF_UNIX datagram queue to 512 before any
    # socket exists (src/core/main.c, bump_unix_max_dgram_qlen); the kernel's
    # 10 makes every journald client wait whenever journald is 10 entries behind.
    qlen=$(cat /proc/sys/net/unix/max_dgram_qlen 2>/dev/null || echo 512)
    [ "$qlen" -ge 512 ] || echo 512 >/proc/sys/net/unix/max_dgram_qlen || true
    echo "start-services: starting systemd-journald" >&2
    /lib/systemd/systemd-journald </dev/null >/dev/null 2>&1 &
    for _ in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.1; done
fi
# syslog(3) and logger(1) write to /dev/log: point it at journald as systemd does.
[ -e /dev/log ] || ln -sfn /run/systemd/journal/dev-log /dev/log
if ! pgrep -x systemd-udevd >/dev/null && [ -x /lib/systemd/systemd-udevd ]; then
    echo "start-services: starting systemd-udevd" >&2
    /lib/systemd/systemd-udevd --daemon
    udevadm trigger --subsystem-match=block --action=add
    udevadm settle --timeout=60 || true
fi
