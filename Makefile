# The two commands of the README: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test deps dmtf-spdm lint unit packaging fuzz-build qemu bench crates-inc clean

deps:
	bash scripts/install-deps.sh

## Two BMCs pair on this machine.
demo: deps
	$(CARGO) build --release --locked --bins --examples
	$(CARGO) run --release --locked --example demo

## Every test: lint, unit and integration tests (real dbus-daemon, swtpm, lldpd, OpenSSL,
## DMTF's SPDM reference implementation and conformance suite), packaging checks, the fuzz
## targets must build, and two QEMU VMs pair.
test: deps lint dmtf-spdm unit packaging fuzz-build qemu
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

fuzz-build:
	bash scripts/fuzz-build.sh

## Two emulated BMCs: Debian/systemd VMs under QEMU, a swtpm TPM each, our units and policy
## as the recipe installs them, LLDP over a QEMU link; both must report an attested pairing.
qemu:
	bash qemu/two-bmcs.sh

## Figures for the performance targets (not a test).
bench: deps dmtf-spdm
	$(CARGO) bench --locked --bench pairing

## Regenerate the recipe's crate list exactly as `bitbake -c update_crates` would.
crates-inc:
	python3 tools/crates-inc.py Cargo.lock recipes-phosphor/bmc-pairing/bmc-pairing-manager-crates.inc

clean:
	$(CARGO) clean
