# Both targets set everything up first (idempotent): apt packages, .venv.
.PHONY: setup run test bench

setup:
	scripts/setup.sh

run: setup
	scripts/start-services.sh
	.venv/bin/peripetyd --stdout --bpf=auto -v

test: setup
	scripts/test.sh

bench: setup
	.venv/bin/python -m benchmarks
