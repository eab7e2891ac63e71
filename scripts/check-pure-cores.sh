#!/usr/bin/env bash
# The protocol cores are sans-IO: no tokio, zbus, rustls, TPM, sockets, files or clock reads.
# Fails if any of them imports one.
set -euo pipefail
cd "$(dirname "$0")/.."
cores=(src/pairing/state.rs src/link/frame.rs src/link/heartbeat.rs)
# The SPDM core (everything under src/spdm except the transport and measurement shells).
if [[ -d src/spdm ]]; then
  while IFS= read -r f; do cores+=("$f"); done < <(find src/spdm -name '*.rs' ! -name 'transport.rs' ! -name 'measure.rs' | sort)
fi
pattern='(use|extern crate)[[:space:]]+(tokio|zbus|rustls|tokio_rustls|tss_esapi)\b|std::net::(TcpStream|TcpListener|UdpSocket)|std::fs\b|Instant::now|SystemTime::now'
bad=0
for f in "${cores[@]}"; do
  # Only the code itself: unit tests at the bottom (after #[cfg(test)]) may use clocks.
  if awk '/^#\[cfg\(test\)\]/{exit} {print FILENAME":"FNR": "$0}' "$f" | grep -E "$pattern"; then
    echo "check-pure-cores: $f must stay sans-IO" >&2
    bad=1
  fi
done
((bad == 0)) && echo "check-pure-cores: ${#cores[@]} core files are sans-IO"
exit $bad
