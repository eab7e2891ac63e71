//! The benchmark figure's function runs and gives one positive median per key backend
//! (`benches/pairing.rs` calls `common::attestation::bench_attestation` for the figure).
#![cfg(test)]

mod common;

#[test]
fn bench_attestation_gives_a_median_per_backend() {
    let figures = common::attestation::bench_attestation(3);
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
