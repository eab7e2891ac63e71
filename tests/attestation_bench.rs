//! The benchmark figure's function runs and gives one positive median per key backend
//! (`benches/pairing.rs` calls `bmc_test_support::attestation::bench_attestation` for the figure).
#![cfg(test)]

#[test]
fn bench_attestation_gives_a_median_per_backend() {
    // `ATTESTATION_BENCH_SAMPLES=50 cargo test --release --test attestation_bench -- --nocapture`
    // prints a steadier figure.
    let samples = std::env::var("ATTESTATION_BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let figures = bmc_test_support::attestation::bench_attestation(samples);
    let labels: Vec<&str> = figures.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(
        labels[0].contains("file") && labels[1].contains("swtpm"),
        "{labels:?}"
    );
    for (label, median) in &figures {
        assert!(!median.is_zero(), "{label}");
        assert!(median.as_secs() < 10, "{label}: {median:?}");
    }
}
