# Both targets set everything up first (idempotent): apt packages, .venv.
.PHONY: setup run test bench lab

setup:
	scripts/setup.sh

run: setup
	scripts/start-services.sh
	.venv/bin/peripetyd --stdout --bpf=auto -v

test: setup
	scripts/test.sh

bench: setup
	.venv/bin/python -m benchmarks

# The real-kernel lab: a qemu guest with Debian's 6.1 kernel (SCSI, multipath,
# md, thin pools, NVMe); see tests/lab/ and the README.
lab: setup
	scripts/lab.sh
