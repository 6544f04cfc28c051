#!/bin/bash
# Idempotent host set-up for the qemu lab (tests/lab): the emulator, the
# image builder and cpio. Called by `make lab`; run as root.
set -euo pipefail
"$(dirname "$0")/apt-ensure.sh" qemu-system-x86 mmdebstrap cpio
