#!/bin/bash
# `make lab`: the real-kernel qemu lab alone (tests/lab). Builds the cached
# guest image when missing, boots it once for the selected scenarios and
# checks the stored events; niced, the guest uses both cores.
#   scripts/lab.sh                 all scenarios
#   scripts/lab.sh -k test_md      one scenario
# Per-scenario results: build/lab/<scenario>.jsonl, .log, .facts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/lab-setup.sh
exec nice -n 10 .venv/bin/python -m pytest -v tests/lab "$@"
