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

/// Runs `binary --config <path> --check-config` with a deadline; returns the exit code and
/// output, or `None` when it did not finish in time (it is then killed).
fn check_file_with_deadline(binary: &Path, path: &Path) -> Option<(i32, String)> {
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(path)
        .arg("--check-config")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Some((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_fifo_or_an_oversized_config_is_refused_at_once_by_both_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.conf");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success(), "mkfifo");
    let big = dir.path().join("big.conf");
    let mut text = String::from(r#"{"key_backend": {"type": "file"}, "bmc_name": "b"}"#);
    text.push_str(&" ".repeat(config::MAX_CONFIG_LEN));
    std::fs::write(&big, text).unwrap();
    for binary in [
        bmc_test_support::daemon_binary(),
        bmc_test_support::attestation_daemon_binary(),
    ] {
        for (path, says) in [(&fifo, "not a regular file"), (&big, "larger than")] {
            let (code, stderr) = check_file_with_deadline(&binary, path)
                .unwrap_or_else(|| panic!("{} hung on {}", binary.display(), path.display()));
            assert_eq!(code, config::EXIT_CONFIG, "{stderr}");
            assert!(stderr.contains(says), "{stderr}");
        }
    }
    // /dev/zero would grow without bound: refused as not regular.
    let (code, stderr) =
        check_file_with_deadline(&bmc_test_support::daemon_binary(), Path::new("/dev/zero"))
            .expect("/dev/zero refused in time");
    assert_eq!(code, config::EXIT_CONFIG, "{stderr}");
}
