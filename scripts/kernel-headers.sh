#!/bin/bash
# bcc compiles its probe program against /lib/modules/$(uname -r)/build.
# Where the running kernel has no headers package (custom kernels), link the
# closest Debian linux-headers tree. bpf/scsi_trace.c reads tracepoint fields
# only, whose layout bcc takes from the running kernel's tracefs format files,
# so a near-version header tree is safe for it.
set -euo pipefail
rel=$(uname -r)
mod=/lib/modules/$rel
if [ -e "$mod/build/include" ]; then
    exit 0
fi
if ! ls -d /usr/src/linux-headers-*-amd64 >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Newest "linux-headers-X.Y-cloud-amd64" metapackage (bookworm-backports
    # style names), else the distribution's default one.
    pkg=$(apt-cache search --names-only '^linux-headers-[0-9]+\.[0-9]+-cloud-amd64$' | awk '{print $1}' | sort -V | tail -1)
    [ -n "$pkg" ] || pkg=linux-headers-cloud-amd64
    echo "kernel-headers: installing $pkg" >&2
    apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
fi
build=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -1)
common=$(ls -d /usr/src/linux-headers-*-common | sort -V | tail -1)
mkdir -p "$mod"
ln -sfn "$build" "$mod/build"
ln -sfn "$common" "$mod/source"
echo "kernel-headers: linked $build as $mod/build (no headers exist for $rel)" >&2
