#!/bin/bash
# The whole test suite. Tests start what they need (journald, udevd, loop
# devices over a faulty FUSE file); this only makes sure tracefs is mounted.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d /sys/kernel/tracing ] && [ -z "$(ls -A /sys/kernel/tracing 2>/dev/null)" ]; then
    mount -t tracefs tracefs /sys/kernel/tracing || true
fi
exec .venv/bin/python -m pytest -ra "$@"
