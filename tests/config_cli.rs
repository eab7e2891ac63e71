//! The daemon's command line and configuration as an operator meets them: every bad config
//! file is one message naming the key and exit status 2; `--check-config` validates; the
//! config the Yocto recipe installs is valid; the bus names the daemon owns are the ones the
//! unit, the D-Bus policy and the YAML declare.
#![cfg(test)]

use std::path::Path;
use std::process::Command;

use bmc_pairing_manager::config;
use bmc_pairing_manager::contract::manager;

fn check(config_text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bmc-pairing-manager.conf");
    std::fs::write(&path, config_text).unwrap();
    let out = Command::new(bmc_test_support::daemon_binary())
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn bad_config_files_exit_2_naming_the_key() {
    let cases = [
        ("{", "."),
        ("[1, 2]", "."),
        (
            r#"{"key_backend": {"type": "file"}, "port": "8080"}"#,
            "port",
        ),
        (r#"{"key_backend": {"type": "file"}, "port": 0}"#, "port"),
        (
            r#"{"key_backend": {"type": "file"}, "colour": "blue"}"#,
            "colour",
        ),
        (
            r#"{"key_backend": {"type": "file"}, "heartbeat_timeout_ms": 10}"#,
            "heartbeat_timeout_ms",
        ),
        (
            r#"{"key_backend": {"type": "file"}, "state_dir": "relative"}"#,
            "state_dir",
        ),
        (
            r#"{"key_backend": {"type": "file"}, "static_peers": [{"name": "b", "address": "nowhere"}]}"#,
            "static_peers[0].address",
        ),
        (r#"{"key_backend": {"type": "hsm"}}"#, "key_backend.type"),
        (
            r#"{"key_backend": {"type": "file"}, "trust_mode": "tofu"}"#,
            "trust_mode",
        ),
    ];
    for (text, key) in cases {
        let (code, output) = check(text);
        assert_eq!(code, 2, "{text}: {output}");
        assert!(
            output.contains(&format!("key `{key}`")),
            "{text}: message must name `{key}`: {output}"
        );
        assert_eq!(output.lines().count(), 1, "one message: {output}");
    }
}

#[test]
fn check_config_accepts_a_good_file_and_a_missing_one_means_defaults() {
    let (code, output) = check(
        r#"{"key_backend": {"type": "file"}, "port": 8090, "interface_id": "eth1", "cert_root": "/"}"#,
    );
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("configuration is valid"));
    // A missing file is the defaults; without a TPM device and without a configured
    // backend that is an error (never a silent fallback to keys on disk).
    let out = Command::new(bmc_test_support::daemon_binary())
        .args([
            "--config",
            "/nonexistent/bmc-pairing-manager.conf",
            "--check-config",
        ])
        .output()
        .unwrap();
    let tpm = Path::new(config::TPM_DEVICE).exists();
    assert_eq!(
        out.status.code(),
        Some(if tpm { 0 } else { 2 }),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_installed_default_config_is_valid_on_a_bmc() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("recipes-phosphor/bmc-pairing/bmc-pairing-manager/config/bmc-pairing-manager.conf");
    // On the BMC /dev/tpmrm0 exists, which selects the TPM backend.
    let c = config::load(&path, "bmc", true).unwrap();
    assert_eq!(c.port, config::DEFAULT_PORT);
    assert!(matches!(
        c.identity.key_backend,
        config::KeyBackend::Tpm { .. }
    ));
}

#[test]
fn bus_names_match_the_packaging_source_of_truth() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/packaging/busnames.json");
    let names: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(
        names["bmc-pairing-manager"],
        serde_json::json!([manager::BUS_NAME, manager::PROVISIONING_BUS_NAME]),
        "the first name is the unit's BusName="
    );
}
