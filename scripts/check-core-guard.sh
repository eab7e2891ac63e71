#!/usr/bin/env bash
# Proves that the core crate cannot do I/O: in a scratch copy of crates/core, each probe below
# (a clock read, a sleep, a file read, a socket, an environment read, a process, the OS RNG,
# tokio, zbus; fully qualified, renamed and grouped imports) is inserted into a core file,
# and the build or clippy must refuse it. The unmodified copy must pass first, so a refusal
# is the probe's doing. Guards the guard: removing a clippy.toml entry or adding tokio to
# the core's dependencies fails `make lint`.
# Known gap: clippy's disallowed_types sees `OsRng` in a `use` or a type, not in a fully
# qualified value expression (`rand_core::OsRng.next_u32()`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scratch=$root/target/core-guard
rm -rf "$scratch/ws"
mkdir -p "$scratch/ws"
cp -r crates/core "$scratch/ws/core"
cp Cargo.lock "$scratch/ws/"
# A workspace of the core alone, with the root's lint settings (the core inherits them).
python3 - "$root/Cargo.toml" "$scratch/ws/Cargo.toml" <<'EOF'
import sys, tomllib
root = tomllib.load(open(sys.argv[1], "rb"))
lints = root["workspace"]["lints"]
out = ['[workspace]', 'members = ["core"]', 'resolver = "3"', '']
for table, entries in lints.items():
    out.append(f"[workspace.lints.{table}]")
    out += [f'{k} = "{v}"' for k, v in entries.items()]
    out.append("")
open(sys.argv[2], "w").write("\n".join(out))
EOF
export CARGO_TARGET_DIR=$scratch/target
clippy() { (cd "$scratch/ws" && cargo clippy --quiet -p bmc-pairing-core --all-targets -- -D warnings) >"$scratch/out" 2>&1; }

clippy || { cat "$scratch/out" >&2; echo "check-core-guard: the unmodified core does not pass clippy" >&2; exit 1; }

file=core/src/pairing/mod.rs
probes=(
  'std::time::Instant::now()'
  '{ use std::time::{Duration as _, Instant as Clock}; Clock::now() }'
  '{ use rand_core::{OsRng, RngCore}; OsRng.next_u32() }'
  'std::time::SystemTime::now()'
  'std::thread::sleep(std::time::Duration::from_secs(1))'
  'std::fs::read("/etc/hostname").ok()'
  'std::net::TcpStream::connect("127.0.0.1:1").ok()'
  'std::env::var("HOME").ok()'
  'std::process::Command::new("true").status().ok()'
  'tokio::spawn(async {})'
  'zbus::Connection::system()'
)
failed=0
for probe in "${probes[@]}"; do
  cp "$root/crates/$file" "$scratch/ws/$file"
  printf '\n/// Probe.\npub fn guard_probe() {\n    let _ = %s;\n}\n' "$probe" >>"$scratch/ws/$file"
  if clippy; then
    echo "check-core-guard: the core accepted \`$probe\`" >&2
    failed=1
  else
    reason=$(grep -m1 -oE 'use of a disallowed (method|type) `[^`]*`|unresolved module or unlinked crate `[^`]*`|no `OsRng` in the root' "$scratch/out" || true)
    if [[ -z $reason ]]; then
      cat "$scratch/out" >&2
      echo "check-core-guard: \`$probe\` failed for another reason than the guard" >&2
      failed=1
    else
      echo "check-core-guard: refused \`$probe\`: $reason"
    fi
  fi
done
cp "$root/crates/$file" "$scratch/ws/$file"
exit $failed
