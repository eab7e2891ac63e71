# The two commands of the README: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test deps dmtf-spdm lint unit packaging openbmc fuzz-build qemu size qemu-openbmc bench bench-footprint crates-inc clean

deps:
	bash scripts/install-deps.sh

## Two BMCs pair on this machine.
demo: deps
	$(CARGO) build --release --locked --bins --examples
	$(CARGO) run --release --locked --example demo

## Every test: lint, unit and integration tests (real dbus-daemon, swtpm, lldpd, OpenSSL,
## DMTF's SPDM reference implementation and conformance suite), packaging checks, the layer
## in OpenBMC's real tree, the fuzz targets must build, two QEMU VMs pair, the installed
## binaries fit the flash budget, and the OpenBMC QEMU tier's command lines and refusal.
test: deps lint dmtf-spdm unit packaging openbmc fuzz-build qemu size qemu-openbmc
	@echo "make test: all checks passed"

## DMTF's SPDM reference (libspdm, spdm-emu, SPDM-Responder-Validator), built from
## ../shared/third_party/dmtf-spdm into target/dmtf-spdm once; the interop tests need it.
dmtf-spdm: deps
	bash scripts/dmtf-spdm.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	bash scripts/check-core-guard.sh
	command -v cargo-deny >/dev/null 2>&1 || $(CARGO) install --locked cargo-deny@0.20.2
	$(CARGO) deny --locked check licenses bans sources

unit:
	$(CARGO) test --locked --workspace

packaging:
	bash tests/packaging/run.sh

## Our layer in OpenBMC's own tree (../shared/third_party/openbmc): OpenBMC's setup and kas
## configurations, BitBake as an unprivileged user, offline; assertions on real values.
openbmc:
	bash tests/openbmc/run.sh

fuzz-build:
	bash scripts/fuzz-build.sh

## Two emulated BMCs: Debian/systemd VMs under QEMU, a swtpm TPM each, our units and policy
## as the recipe installs them, LLDP over a QEMU link; both must report an attested pairing.
qemu:
	bash qemu/two-bmcs.sh

## The flash budget: what the recipe installs, stripped, summed, at most the budget in
## scripts/size-budget.sh (prints the xz -9e size too). Reuses the release build of `qemu`.
size:
	bash scripts/size-budget.sh

## Two OpenBMC evb-ast2600 images (qemu/openbmc-two-bmcs.sh) cannot boot here (no image can be
## built offline): its command lines, checked by Debian's QEMU, its refusal of QEMU < 8.1.
qemu-openbmc:
	python3 qemu/tests/test_openbmc_two_bmcs.py

## Figures for the performance targets (not a test).
bench: deps dmtf-spdm
	$(CARGO) bench --locked --bench pairing

## Memory, threads and idle CPU of the daemons as the recipe builds them (release, without
## network-tcti, file keys): `cargo bench` itself builds the default features (swtpm).
FOOTPRINT_BIN := $(CURDIR)/target/bmc-build
bench-footprint: deps
	$(CARGO) build --release --locked --bins --no-default-features
	mkdir -p $(FOOTPRINT_BIN)
	cp target/release/bmc-pairing-manager $(FOOTPRINT_BIN)/
	ln -sf bmc-pairing-manager $(FOOTPRINT_BIN)/bmc-attestation
	BMC_PAIRING_MANAGER_BIN=$(FOOTPRINT_BIN)/bmc-pairing-manager \
	BMC_ATTESTATION_BIN=$(FOOTPRINT_BIN)/bmc-attestation \
	    $(CARGO) bench --locked --bench pairing -- memory hub

## Regenerate the recipe's crate list exactly as `bitbake -c update_crates` would.
crates-inc:
	python3 tools/crates-inc.py Cargo.lock recipes-phosphor/bmc-pairing/bmc-pairing-manager-crates.inc

clean:
	$(CARGO) clean
