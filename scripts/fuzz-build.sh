#!/usr/bin/env bash
# Builds every cargo-fuzz target (the stable toolchain needs RUSTC_BOOTSTRAP=1 for the
# sanitizer flags) and runs each briefly on its corpus seeds, so a target that no longer
# builds or crashes at once fails `make test`. Long fuzzing runs are manual:
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run <target>
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz
cd fuzz
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for target in $(cargo fuzz list); do
  echo "fuzz-build: smoke-running $target for 10 s"
  cargo fuzz run "$target" -- -max_total_time=10 -rss_limit_mb=1024 >/dev/null 2>&1 || {
    echo "fuzz-build: $target failed; reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $target" >&2
    exit 1
  }
done
echo "fuzz-build: all targets build and survive a smoke run"
