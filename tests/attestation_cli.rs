//! The `bmc-attestation` binary as an operator runs it: `attest` against `respond` over real
//! TCP (file backend with --key/--chain, and the daemon identity from --config in swtpm),
//! every exit code, and configuration files that are refused with the key named.
#![cfg(test)]

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use bmc_pairing_manager::identity::cert::{ChainFiles, LoadedIdentity};
use bmc_pairing_manager::identity::file::FileKeyStore;
use bmc_pairing_manager::identity::tpm::TpmKeyStore;
use bmc_pairing_manager::identity::{KeyRole, KeyStore};
use bmc_test_support::Proc;
use bmc_test_support::attestation::attestation_binary;
use bmc_test_support::swtpm::Swtpm;
use p256::pkcs8::der::pem::{LineEnding, encode_string};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Runs the binary to completion; coreutils `timeout` turns a hang into exit 124.
fn run(args: &[&str]) -> Output {
    Command::new("timeout")
        .arg("30")
        .arg(attestation_binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run bmc-attestation")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn pem(label: &str, der: &[u8]) -> String {
    encode_string(label, LineEnding::LF, der).unwrap()
}

/// An identity made as `ProvisionPeer("self")` makes it, with the file backend.
struct FileIdentity {
    id: LoadedIdentity,
    key: PathBuf,
    ca_pem: PathBuf,
    leaf_der: PathBuf,
}

fn file_identity(dir: &Path, name: &str) -> FileIdentity {
    let store = FileKeyStore::new(dir.join("keys"));
    let id = ChainFiles::new(dir.join("certs"))
        .create(&store, name, SystemTime::now())
        .unwrap();
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, pem("CERTIFICATE", &id.ca_der)).unwrap();
    FileIdentity {
        id,
        key: store.key_path(KeyRole::Identity),
        ca_pem,
        leaf_der: dir.join("certs/identity.der"),
    }
}

/// `bmc-attestation respond ARGS`, once it says where it listens.
fn respond(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(attestation_binary())
        .arg("respond")
        // These tests attest one responder many times in a row; the signing budget has a
        // test of its own.
        .args([
            "--signs-per-second",
            "100",
            "--signs-per-source-per-second",
            "100",
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start respond");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("respond did not start: {line:?}"))
        .to_owned();
    (
        Proc {
            child,
            name: "bmc-attestation respond".into(),
        },
        addr,
    )
}

#[test]
fn attest_and_respond_against_each_other_with_the_file_backend() {
    let tmp = tempfile::tempdir().unwrap();
    let b = file_identity(&tmp.path().join("b"), "bmc-b");
    let other = file_identity(&tmp.path().join("other"), "bmc-x");
    let fp = b.id.fingerprint().to_hex();
    let f1 = tmp.path().join("image.bin");
    let f2 = tmp.path().join("os-release");
    std::fs::write(&f1, b"image").unwrap();
    std::fs::write(&f2, b"ID=openbmc\n").unwrap();
    let (mut responder, addr) = respond(&[
        "--listen",
        "127.0.0.1:0",
        "--key",
        b.key.to_str().unwrap(),
        "--chain",
        b.ca_pem.to_str().unwrap(),
        b.leaf_der.to_str().unwrap(),
        "--measure",
        f1.to_str().unwrap(),
        "--measure",
        f2.to_str().unwrap(),
    ]);
    let attest = |extra: &[&str]| {
        let mut args = vec!["attest", addr.as_str(), "--timeout-ms", "5000"];
        args.extend_from_slice(extra);
        run(&args)
    };

    // First contact: trusted, reported as such, the fingerprint to pin.
    let out = attest(&[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("first-contact"), "{}", stderr(&out));
    let report = stdout_json(&out);
    assert_eq!(report["trusted"], json!(true));
    assert_eq!(report["trust_policy"], json!("first-contact"));
    assert_eq!(report["fingerprint"], json!(fp));
    assert_eq!(report["verdict"]["trust"], json!("FirstContact"));
    let m = report["verdict"]["measurements"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["value"], json!(hex(&Sha256::digest(b"image"))));
    assert_eq!(m[0]["status"]["status"], json!("not_appraised"));

    // Pins.
    let out = attest(&["--pin", &fp]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["verdict"]["trust"], json!("Pinned"));
    let out = attest(&["--pin", &"ab".repeat(32)]);
    assert_eq!(code(&out), 1);
    let report = stdout_json(&out);
    assert_eq!(report["trusted"], json!(false));
    assert_eq!(report["outcome"], json!("Rejected"));
    assert_eq!(report["fingerprint"], Value::Null);

    // Anchors (PEM and DER).
    let out = attest(&["--trust-anchor", b.ca_pem.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout_json(&out)["verdict"]["trust"],
        json!({"Anchored": {"anchor": 0}})
    );
    let other_ca = tmp.path().join("other/certs/ca.der");
    let out = attest(&["--trust-anchor", other_ca.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout_json(&out)["error"]
            .as_str()
            .unwrap()
            .contains("trusted root")
    );

    // Reference values, enforced.
    let refs = tmp.path().join("refs.json");
    let good = json!({"version": 1, "measurements": {
        "1": hex(&Sha256::digest(b"image")),
        "2": hex(&Sha256::digest(b"ID=openbmc\n")),
    }});
    std::fs::write(&refs, good.to_string()).unwrap();
    let enforce = [
        "--reference-values",
        refs.to_str().unwrap(),
        "--measurement-policy",
        "enforce",
    ];
    let out = attest(&enforce);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let m = stdout_json(&out)["verdict"]["measurements"].clone();
    assert!(
        m.as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"]["status"] == json!("match")),
        "{m}"
    );
    let bad = json!({"version": 1, "measurements": {"1": "00".repeat(32)}});
    std::fs::write(&refs, bad.to_string()).unwrap();
    let out = attest(&enforce);
    assert_eq!(code(&out), 1);
    let report = stdout_json(&out);
    assert_eq!(report["outcome"], json!("Rejected"));
    assert_eq!(report["authenticated"], json!(true));
    assert_eq!(report["fingerprint"], json!(fp));
    assert_eq!(
        report["verdict"]["measurements"][0]["status"]["status"],
        json!("mismatch")
    );
    // Audit (the default with reference values): trusted, the mismatch recorded.
    let out = attest(&["--reference-values", refs.to_str().unwrap()]);
    assert_eq!(code(&out), 0);
    assert_eq!(stdout_json(&out)["outcome"], json!("TrustedWithFindings"));

    // A responder whose chain names another key is refused before it listens.
    let out = run(&[
        "respond",
        "--listen",
        "127.0.0.1:0",
        "--key",
        b.key.to_str().unwrap(),
        "--chain",
        other_ca.to_str().unwrap(),
        other.leaf_der.to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // SIGTERM stops respond cleanly; afterwards nothing answers: exit 1, quickly.
    assert_eq!(responder.terminate(Duration::from_secs(5)), Some(0));
    let start = Instant::now();
    let out = attest(&[]);
    assert_eq!(code(&out), 1);
    assert_eq!(stdout_json(&out)["outcome"], json!("NotAttested"));
    // Loose on purpose: "quickly" means "refused, not waited out" (the timeout is 20 s).
    assert!(start.elapsed() < Duration::from_secs(8));
}

#[test]
fn respond_serves_the_daemon_identity_from_swtpm_via_config() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("swtpm"));
    let root = tmp.path().join("root");
    let state = tmp.path().join("state");
    let store = TpmKeyStore::open(&tpm.tcti(), state.join("keys")).unwrap();
    let id = ChainFiles::new(root.join("etc/bmc-pairing-manager/certs"))
        .create(&store, "bmc-b", SystemTime::now())
        .unwrap();
    let measured = tmp.path().join("image.bin");
    std::fs::write(&measured, b"tpm image").unwrap();
    let conf = tmp.path().join("bmc-attestation.conf");
    std::fs::write(
        &conf,
        json!({
            "cert_root": root,
            "state_dir": state,
            "key_backend": {"type": "tpm", "tcti": tpm.tcti()},
            "measured_files": [measured],
            "pcrs": [0, 1],
        })
        .to_string(),
    )
    .unwrap();
    let (mut responder, addr) = respond(&[
        "--config",
        conf.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    // The store above stays open: with a per-operation TPM connection both processes share
    // the one swtpm.
    let out = run(&["attest", &addr, "--pin", &id.fingerprint().to_hex()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = stdout_json(&out);
    let indices: Vec<u64> = report["verdict"]["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indices, [1, 128, 129]);
    assert_eq!(
        report["verdict"]["measurements"][0]["value"],
        json!(hex(&Sha256::digest(b"tpm image")))
    );
    let sig = store.sign_digest(KeyRole::Identity, &[1; 32]).unwrap();
    assert_eq!(
        sig.len(),
        64,
        "the test's own store still works beside respond"
    );
    assert_eq!(responder.terminate(Duration::from_secs(5)), Some(0));
}

#[test]
fn bad_arguments_exit_2_and_contact_nobody() {
    let tmp = tempfile::tempdir().unwrap();
    let b = file_identity(&tmp.path().join("b"), "bmc-b");
    // Something listening, to show that no bad invocation connects to it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, b"not a certificate").unwrap();
    let bad_refs = tmp.path().join("refs.json");
    std::fs::write(&bad_refs, br#"{"version": 2, "measurements": {}}"#).unwrap();
    let ca = b.ca_pem.to_str().unwrap();
    let short_pin = "a".repeat(63);
    let good_pin = "ab".repeat(32);
    let cases: Vec<Vec<&str>> = vec![
        vec!["attest"],
        vec!["attest", "localhost"],
        vec!["attest", "bmc-b:4194"],
        vec!["attest", "127.0.0.1:0"],
        vec!["attest", &target, "--pin", "zz"],
        vec!["attest", &target, "--pin", &short_pin],
        vec!["attest", &target, "--pin", &good_pin, "--trust-anchor", ca],
        vec!["attest", &target, "--trust-anchor", "/nonexistent.pem"],
        vec!["attest", &target, "--trust-anchor", junk.to_str().unwrap()],
        vec!["attest", &target, "--measurement-policy", "enforce"],
        vec!["attest", &target, "--measurement-policy", "strict"],
        vec![
            "attest",
            &target,
            "--reference-values",
            bad_refs.to_str().unwrap(),
        ],
        vec!["attest", &target, "--framing", "mctp"],
        vec!["attest", &target, "--timeout-ms", "0"],
        vec!["respond", "--key", b.key.to_str().unwrap()],
        vec!["respond", "--key", junk.to_str().unwrap(), "--chain", ca],
        vec!["respond", "--listen", "nowhere"],
        vec!["bogus"],
    ];
    for args in cases {
        let out = run(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?} printed a report");
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a bad invocation connected to the target"
    );
}

#[test]
fn bad_config_files_exit_2_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let refs_junk = tmp.path().join("refs.json");
    std::fs::write(&refs_junk, b"{").unwrap();
    let fb = json!({"type": "file"});
    let mut cases: Vec<(String, &str)> = vec![
        (
            json!({"key_backend": fb, "port": "4194"}).to_string(),
            "port",
        ),
        (json!({"key_backend": fb, "port": 0}).to_string(), "port"),
        (
            json!({"key_backend": fb, "bogus": true}).to_string(),
            "bogus",
        ),
        (
            json!({"key_backend": fb, "pcrs": [0, 99]}).to_string(),
            "pcrs[1]",
        ),
        (
            json!({"key_backend": fb, "measured_files": ["relative"]}).to_string(),
            "measured_files[0]",
        ),
        (
            json!({"key_backend": fb, "measurement_policy": "enforce"}).to_string(),
            "measurement_policy",
        ),
        (
            json!({"key_backend": fb, "reference_values": "/nonexistent/refs.json"}).to_string(),
            "reference_values",
        ),
        (
            json!({"key_backend": fb, "reference_values": refs_junk}).to_string(),
            "reference_values",
        ),
        (
            json!({"key_backend": fb, "io_timeout_ms": 0}).to_string(),
            "io_timeout_ms",
        ),
        (
            json!({"key_backend": fb, "trust_anchors_dir": "anchors"}).to_string(),
            "trust_anchors_dir",
        ),
        (
            json!({"key_backend": {"type": "hsm"}}).to_string(),
            "key_backend.type",
        ),
        ("{\"port\": ".to_owned(), "."),
        ("[]".to_owned(), "."),
    ];
    if !Path::new("/dev/tpmrm0").exists() {
        // No silent fallback to key files.
        cases.push(("{}".to_owned(), "key_backend"));
    }
    for (i, (text, key)) in cases.iter().enumerate() {
        let conf = tmp.path().join(format!("bad-{i}.conf"));
        std::fs::write(&conf, text).unwrap();
        let c = conf.to_str().unwrap();
        let want = format!("key `{key}`");
        for args in [
            vec!["--config", c, "--check-config"],
            // The daemon itself refuses before touching the bus.
            vec!["--config", c, "--bus", "unix:path=/nonexistent/bus"],
            // So does `respond` with the daemon's identity.
            vec!["respond", "--config", c, "--listen", "127.0.0.1:0"],
        ] {
            let out = run(&args);
            assert_eq!(code(&out), 2, "{text} {args:?}: {}", stderr(&out));
            assert!(
                stderr(&out).contains(&want),
                "{text} {args:?}: {}",
                stderr(&out)
            );
        }
    }
    // A good file, and a missing one (defaults; a TPM or not decides the backend).
    let good = tmp.path().join("good.conf");
    std::fs::write(&good, json!({"key_backend": fb}).to_string()).unwrap();
    let out = run(&["--config", good.to_str().unwrap(), "--check-config"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("recipes-phosphor/bmc-pairing/bmc-pairing-manager/config/bmc-attestation.conf");
    let out = run(&["--config", shipped.to_str().unwrap(), "--check-config"]);
    assert_eq!(code(&out), 0, "the shipped config: {}", stderr(&out));
}

#[test]
fn help_documents_the_subcommands() {
    let out = run(&["--help"]);
    assert_eq!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["attest", "respond", "--config", "--bus", "--check-config"] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
    let out = run(&["attest", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for word in [
        "--framing",
        "--trust-anchor",
        "--pin",
        "--reference-values",
        "--measurement-policy",
        "first-contact",
    ] {
        assert!(text.contains(word), "attest --help lacks {word}:\n{text}");
    }
    let out = run(&["respond", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["--key", "--chain", "--listen", "--measure", "--framing"] {
        assert!(text.contains(word), "respond --help lacks {word}:\n{text}");
    }
    // `help COMMAND`, as clap offered it, prints the same text.
    let out = run(&["help", "respond"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
}

#[test]
fn emulator_framings_work_between_respond_and_attest() {
    let tmp = tempfile::tempdir().unwrap();
    let b = file_identity(&tmp.path().join("b"), "bmc-b");
    for framing in ["emu-tcp", "emu-none"] {
        let (mut responder, addr) = respond(&[
            "--listen",
            "127.0.0.1:0",
            "--framing",
            framing,
            "--key",
            b.key.to_str().unwrap(),
            "--chain",
            b.ca_pem.to_str().unwrap(),
            b.leaf_der.to_str().unwrap(),
        ]);
        let out = run(&[
            "attest",
            &addr,
            "--framing",
            framing,
            "--timeout-ms",
            "5000",
        ]);
        assert_eq!(code(&out), 0, "{framing}: {}", stderr(&out));
        assert_eq!(
            stdout_json(&out)["fingerprint"],
            json!(b.id.fingerprint().to_hex())
        );
        // Mismatched framing is not an attestation.
        let out = run(&["attest", &addr, "--timeout-ms", "1000"]);
        assert_eq!(code(&out), 1, "{framing} against dsp0287");
        assert_eq!(responder.terminate(Duration::from_secs(5)), Some(0));
    }
}
