#!/usr/bin/env bash
# The flash budget (issue 14): what the recipe installs in /usr/bin, stripped, summed, must
# stay at or below BUDGET_BYTES. A count, not a timing, so it is asserted. Prints the figure,
# the budget, the goal and the xz -9e size (what a squashfs image holds, roughly).
#
# Measures the BMC build (the recipe's: release, without the `network-tcti` feature). Reuses
# the release build of the QEMU tier (`make qemu` runs the same cargo command first); the
# cargo call below is then only a freshness check.
#
#   scripts/size-budget.sh            # measure target/release
#   BIN_DIR=dir scripts/size-budget.sh  # measure binaries built elsewhere (no cargo call)
set -euo pipefail

# What we reached (4304576 bytes without unwinding tables, with lexopt for clap and its
# `help [COMMAND]`; README "Size on flash"), rounded up by 5 % so growth is caught.
BUDGET_BYTES=${BUDGET_BYTES:-4520000}
GOAL_BYTES=4000000

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${BIN_DIR:-} ]]; then
    (cd "$repo" && cargo build --release --locked --bins --no-default-features --quiet)
    BIN_DIR=$repo/target/release
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Stage exactly what the recipe installs, then strip every regular file (links cost nothing).
sh "$repo/recipes-phosphor/bmc-pairing/bmc-pairing-manager/install-bmc-pairing.sh" \
    --destdir "$tmp/image" --bindir /usr/bin --sysconfdir /etc --datadir /usr/share \
    --systemd-unitdir /usr/lib/systemd/system --bin-src "$BIN_DIR" \
    --files "$repo/recipes-phosphor/bmc-pairing/bmc-pairing-manager" >/dev/null
total=0
for f in "$tmp"/image/usr/bin/*; do
    name=$(basename "$f")
    if [[ -L $f ]]; then
        printf '  %-22s link to %s, 0 bytes\n' "$name" "$(readlink "$f")"
        continue
    fi
    strip -o "$tmp/$name.stripped" "$f"
    # build.rs links x86-64 and AArch64 release binaries without unwinding tables (panic =
    # "abort"): about 0.7 MB that nothing reads. Catch a build that lost that.
    unwind=$(readelf -SW "$tmp/$name.stripped" | grep -cE ' \.(eh_frame|eh_frame_hdr|gcc_except_table) ' || true)
    if [[ $(uname -m) =~ ^(x86_64|aarch64)$ ]] && ((unwind > 0)); then
        echo "size budget: FAIL: $name carries unwinding tables (build.rs discard_unwind_tables)" >&2
        exit 1
    fi
    bytes=$(stat -c %s "$tmp/$name.stripped")
    xz -9e -T1 -k -c "$tmp/$name.stripped" >"$tmp/$name.xz"
    printf '  %-22s %9d bytes stripped, %9d bytes xz -9e\n' "$name" "$bytes" "$(stat -c %s "$tmp/$name.xz")"
    total=$((total + bytes))
done
xz_total=$(cat "$tmp"/*.xz | wc -c)
printf 'size budget: %d bytes stripped (xz -9e %d), budget %d, goal %d\n' \
    "$total" "$xz_total" "$BUDGET_BYTES" "$GOAL_BYTES"
if ((total > BUDGET_BYTES)); then
    echo "size budget: FAIL: the installed binaries grew past the budget" >&2
    exit 1
fi
echo "size budget: ok"
