#!/bin/bash
# Idempotent host set-up for the qemu lab (tests/lab): the emulator, the
# image builder and cpio. Called by `make lab`; run as root.
set -euo pipefail
APT_PACKAGES=(qemu-system-x86 mmdebstrap cpio)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "lab-setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
