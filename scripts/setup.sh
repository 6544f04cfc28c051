#!/bin/bash
# Idempotent set-up for a fresh Debian-like machine, run as root:
# apt packages, kernel headers for bcc, and .venv with peripety installed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    python3-venv python3-pip python3-systemd python3-pyudev python3-bpfcc
    systemd udev util-linux kmod
    fuse3 libfuse3-dev pkg-config gcc make
    e2fsprogs xfsprogs btrfs-progs tmux fdisk
    fio bpfcc-tools systemd-journal-remote python3-prometheus-client python3-yaml
    curl msmtp-mta python3-aiosmtpd   # contrib/notify examples' tests: webhook (curl), mail (a real sendmail)
)

scripts/apt-ensure.sh "${APT_PACKAGES[@]}"

# qemu and mmdebstrap for the real-kernel lab (tests/lab), part of `make test`
scripts/lab-setup.sh

scripts/kernel-headers.sh || echo "setup: no kernel headers linked: --bpf will not load (see above)" >&2

if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.peripety-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
fi
# Byte-compile the package: an editable install writes no .pyc itself, and
# with PYTHONDONTWRITEBYTECODE set (as in some shells here) every prpt run
# would recompile its modules from source (~25 ms of each start).
.venv/bin/python -m compileall -q peripety >/dev/null
