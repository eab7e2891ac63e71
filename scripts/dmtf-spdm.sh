#!/usr/bin/env bash
# Builds DMTF's SPDM reference implementation (libspdm, spdm-emu, SPDM-Responder-Validator)
# for the interoperability tests and the benchmark, from the archive in the shared folder
# (never from a copy in this repository), and caches it under the cargo target directory:
#
#   OUT/bin/          spdm_responder_emu, spdm_requester_emu, spdm_device_validator_sample
#                     and libspdm's sample keys (Release, by the archive's own build.sh)
#   OUT/trust-check/  spdm_requester_emu built with TARGET=Debug: libspdm's debug log prints
#                     the result of each check ("verify_peer_cert_chain_buffer - PASS", ...).
#                     The Release requester only warns when the responder's root is not its
#                     trust anchor and exits 0; the tests read this log to prove the check.
#
#   bash scripts/dmtf-spdm.sh [OUT]      (default: ${CARGO_TARGET_DIR:-target}/dmtf-spdm)
#
# Idempotent (stamp files), serialised with flock so `make test` and test binaries can call
# it at once. About a minute on 2 cores the first time, nothing afterwards. Needs cmake,
# build-essential and libssl-dev (scripts/install-deps.sh). Prints OUT last.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${DMTF_SPDM_DIR:-$ROOT/../shared/third_party/dmtf-spdm}
OUT=${1:-${CARGO_TARGET_DIR:-$ROOT/target}/dmtf-spdm}
say() { echo "dmtf-spdm: $*" >&2; }

[ -f "$SRC/build.sh" ] || { say "no reference sources at $SRC (set DMTF_SPDM_DIR)"; exit 1; }
archive=$(ls "$SRC"/spdm-emu-*.tar.xz 2>/dev/null | head -n1)
[ -n "$archive" ] || { say "no spdm-emu archive in $SRC"; exit 1; }
for tool in cmake gcc make flock; do
  command -v "$tool" >/dev/null || { say "$tool is missing: run scripts/install-deps.sh (as root)"; exit 1; }
done

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec 9>"$OUT.lock"
flock 9

start=$SECONDS
bash "$SRC/build.sh" "$OUT" >/dev/null

triple=$(gcc -dumpmachine)
case $(uname -m) in x86_64) ARCH=x64 ;; aarch64) ARCH=aarch64 ;; *) say "unsupported machine $(uname -m)"; exit 1 ;; esac
# The flags are those of the archive's build.sh, with TARGET=Debug.
stamp="$(sha256sum "$archive" | cut -c1-16) $triple debug-requester-1"
TC=$OUT/trust-check
if [ -f "$TC/.stamp" ] && [ "$(cat "$TC/.stamp")" = "$stamp" ] && [ -x "$TC/spdm_requester_emu" ]; then
  :
else
  rm -rf "$TC"
  mkdir -p "$TC/src"
  tar -xJf "$archive" -C "$TC/src"
  mkdir -p "$TC/src/spdm-emu/build"
  cd "$TC/src/spdm-emu/build"
  say "configuring the trust-checking requester (log $TC/cmake.log)"
  cmake -DARCH="$ARCH" -DTOOLCHAIN=GCC -DTARGET=Debug -DCRYPTO=openssl -DENABLE_BINARY_BUILD=1 \
        -DCOMPILED_LIBCRYPTO_PATH="/usr/lib/$triple/libcrypto.so" \
        -DCOMPILED_LIBSSL_PATH="/usr/lib/$triple/libssl.so" .. >"$TC/cmake.log" 2>&1 \
    || { tail -20 "$TC/cmake.log" >&2; exit 1; }
  say "building the trust-checking requester (log $TC/make.log)"
  make -j"$(nproc)" spdm_requester_emu >"$TC/make.log" 2>&1 || { tail -30 "$TC/make.log" >&2; exit 1; }
  cp "$TC/src/spdm-emu/build/bin/spdm_requester_emu" "$TC/spdm_requester_emu"
  rm -rf "$TC/src"
  echo "$stamp" >"$TC/.stamp"
fi
if ((SECONDS - start > 1)); then say "built in $((SECONDS - start)) s"; fi
echo "$OUT"
