//! The identity certificates as OpenBMC manages certificates (seed 004), over a real bus
//! with busctl: the objects under `/xyz/openbmc_project/certs/server/bmcpairing` match the
//! upstream Certs YAML; `GenerateCSR`, `Replace` and `Delete` work and are checked with
//! OpenSSL; every bad input gets a `Common.Error` and leaves files and D-Bus as they were;
//! a peer picks up a replaced chain at once.
#![cfg(test)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use bmc_test_support::factory::{Factory, run};
use bmc_test_support::pdi::{check_object, object_interfaces, upstream_pdi_root, yaml_path_for};
use bmc_test_support::*;
use serde_json::json;

const CERTS: &str = "/xyz/openbmc_project/certs/server/bmcpairing";
const CA: &str = "/xyz/openbmc_project/certs/server/bmcpairing/ca";
const LEAF: &str = "/xyz/openbmc_project/certs/server/bmcpairing/identity";
const CSR: &str = "/xyz/openbmc_project/certs/server/bmcpairing/csr";
const CERT_IFACE: &str = "xyz.openbmc_project.Certs.Certificate";
const CREATE_IFACE: &str = "xyz.openbmc_project.Certs.CSR.Create";
const CSR_IFACE: &str = "xyz.openbmc_project.Certs.CSR";
const REPLACE_IFACE: &str = "xyz.openbmc_project.Certs.Replace";
const DELETE_IFACE: &str = "xyz.openbmc_project.Object.Delete";
const INVALID_ARGUMENT: &str = "xyz.openbmc_project.Common.Error.InvalidArgument";
const PROPERTIES: [&str; 6] = [
    "CertificateString",
    "KeyUsage",
    "Issuer",
    "Subject",
    "ValidNotAfter",
    "ValidNotBefore",
];

fn provisioned(root: &Path, name: &str) -> Bmc {
    provisioned_with(root, name, json!({ "identity_check_interval_ms": 200 }))
}

fn provisioned_with(root: &Path, name: &str, config: serde_json::Value) -> Bmc {
    let mut bmc = Bmc::new(root, name, config);
    bmc.start();
    bmc.provision("self").unwrap();
    wait_for(Duration::from_secs(20), "Provisioned", || {
        bmc.provisioned().then_some(())
    });
    wait_for(Duration::from_secs(10), "certificate objects", || {
        object_interfaces(&bmc.bus.address, SEED_BUS, CA)
            .ok()
            .filter(|i| i.iter().any(|n| n == CERT_IFACE))
    });
    bmc
}

/// Runs busctl; `Ok(stdout)` or `Err(stderr)`.
fn call(bmc: &Bmc, args: &[&str]) -> Result<String, String> {
    let out = bmc.busctl(args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// `GenerateCSR` with the upstream arguments; only the ones named are non-empty.
fn generate_csr(bmc: &Bmc, fields: &[(&str, &str)]) -> Result<String, String> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| *v)
            .to_owned()
    };
    let mut args: Vec<String> = [
        "call",
        SEED_BUS,
        CERTS,
        CREATE_IFACE,
        "GenerateCSR",
        "asssssssssxssassssss",
        "0",
    ]
    .map(str::to_owned)
    .to_vec();
    for name in [
        "ChallengePassword",
        "City",
        "CommonName",
        "ContactPerson",
        "Country",
        "Email",
        "GivenName",
        "Initials",
    ] {
        args.push(get(name));
    }
    let bits = get("KeyBitLength");
    args.push(if bits.is_empty() { "0".into() } else { bits });
    args.push(get("KeyCurveId"));
    args.push(get("KeyPairAlgorithm"));
    args.push("0".into());
    for name in [
        "Organization",
        "OrganizationalUnit",
        "State",
        "Surname",
        "UnstructuredName",
    ] {
        args.push(get(name));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    call(bmc, &refs)
}

/// The unquoted string of a busctl `s "..."` answer (escapes undone).
fn unquote(answer: &str) -> String {
    let inner = answer.trim_start_matches("s ").trim().trim_matches('"');
    inner.replace("\\n", "\n").replace("\\\"", "\"")
}

/// Everything that must not change when a request is refused: every file under the
/// BMC's certificate and state directories, the object tree, and every certificate property.
#[derive(Debug, PartialEq, Eq)]
struct State {
    files: BTreeMap<PathBuf, Vec<u8>>,
    tree: String,
    properties: Vec<String>,
}

fn files_under(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.insert(path, bytes);
        }
    }
}

fn state(bmc: &Bmc) -> State {
    let mut files = BTreeMap::new();
    files_under(&bmc.cert_dir(), &mut files);
    files_under(&bmc.state_dir().join("keys"), &mut files);
    let tree = call(bmc, &["tree", "--list", SEED_BUS]).unwrap();
    let mut properties = Vec::new();
    for path in [CA, LEAF] {
        for prop in PROPERTIES {
            properties.push(bmc.get(SEED_BUS, path, CERT_IFACE, prop));
        }
    }
    State {
        files,
        tree,
        properties,
    }
}

/// Calls `method` with `dbus-send`, which (unlike busctl) prints the D-Bus error name, and
/// asserts the answer is `InvalidArgument`.
fn assert_invalid_argument(bmc: &Bmc, path: &str, method: &str, args: &[String], what: &str) {
    let out = Command::new("dbus-send")
        .arg(format!("--bus={}", bmc.bus.address))
        .args(["--print-reply", &format!("--dest={SEED_BUS}"), path, method])
        .args(args)
        .output()
        .expect("run dbus-send");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} was accepted");
    assert!(
        stderr.starts_with(&format!("Error {INVALID_ARGUMENT}: ")),
        "{what}: {stderr}"
    );
}

/// `dbus-send` arguments of `GenerateCSR` (no alternative names or key usages).
fn csr_args(fields: &[(&str, &str)]) -> Vec<String> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| *v)
            .to_owned()
    };
    let mut args = vec!["array:string:".to_owned()];
    for name in [
        "ChallengePassword",
        "City",
        "CommonName",
        "ContactPerson",
        "Country",
        "Email",
        "GivenName",
        "Initials",
    ] {
        args.push(format!("string:{}", get(name)));
    }
    let bits = get("KeyBitLength");
    args.push(format!(
        "int64:{}",
        if bits.is_empty() { "0" } else { &bits }
    ));
    args.push(format!("string:{}", get("KeyCurveId")));
    args.push(format!("string:{}", get("KeyPairAlgorithm")));
    args.push("array:string:".to_owned());
    for name in [
        "Organization",
        "OrganizationalUnit",
        "State",
        "Surname",
        "UnstructuredName",
    ] {
        args.push(format!("string:{}", get(name)));
    }
    args
}

fn pem_of_der(dir: &Path, der: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    run(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(der)
        .arg("-out")
        .arg(&out));
    out
}

fn public_key_of(args: &[&str], file: &Path) -> String {
    run(Command::new("openssl").args(args).arg(file))
}

#[test]
fn certificate_objects_match_the_upstream_certs_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bmc = Bmc::new(tmp.path(), "bmc-a", json!({}));
    bmc.start();
    // No identity yet: no certificate objects, and no CSR.
    assert!(
        object_interfaces(&bmc.bus.address, SEED_BUS, CA)
            .unwrap_or_default()
            .is_empty()
    );
    let refused = generate_csr(&bmc, &[("KeyPairAlgorithm", "EC")]).unwrap_err();
    assert!(
        refused.contains("NotAllowed")
            || refused.contains("not allowed")
            || refused.contains("no identity"),
        "{refused}"
    );
    bmc.kill9();
    let bmc = provisioned(tmp.path(), "bmc-b");
    generate_csr(
        &bmc,
        &[("KeyPairAlgorithm", "EC"), ("KeyCurveId", "prime256v1")],
    )
    .unwrap();

    let root = upstream_pdi_root();
    let expected: [(&str, &[&str]); 4] = [
        (CERTS, &[CREATE_IFACE]),
        (CA, &[CERT_IFACE, REPLACE_IFACE, DELETE_IFACE]),
        (LEAF, &[CERT_IFACE, DELETE_IFACE]),
        (CSR, &[CSR_IFACE, DELETE_IFACE]),
    ];
    let mut problems = Vec::new();
    for (path, interfaces) in expected {
        let mut served = object_interfaces(&bmc.bus.address, SEED_BUS, path).unwrap();
        served.sort();
        let mut wanted: Vec<String> = interfaces.iter().map(|s| (*s).to_owned()).collect();
        wanted.sort();
        assert_eq!(served, wanted, "interfaces of {path}");
        for iface in interfaces {
            if let Err(p) = check_object(
                &bmc.bus.address,
                SEED_BUS,
                path,
                &yaml_path_for(&root, iface),
            ) {
                problems.extend(p);
            }
        }
    }
    assert!(
        problems.is_empty(),
        "differs from the YAML:\n{}",
        problems.join("\n")
    );

    // The properties are those of the files.
    let leaf_pem = pem_of_der(tmp.path(), &bmc.cert_dir().join("identity.der"), "leaf.pem");
    let served = unquote(&bmc.get(SEED_BUS, LEAF, CERT_IFACE, "CertificateString"));
    assert_eq!(
        served.trim(),
        std::fs::read_to_string(&leaf_pem).unwrap().trim()
    );
    assert_eq!(
        bmc.get(SEED_BUS, LEAF, CERT_IFACE, "Subject"),
        "s \"O=bmc-pairing-manager, CN=bmc-b\""
    );
    assert_eq!(
        bmc.get(SEED_BUS, LEAF, CERT_IFACE, "Issuer"),
        "s \"O=bmc-pairing-manager, CN=bmc-b pairing CA\""
    );
    assert_eq!(
        bmc.get(SEED_BUS, LEAF, CERT_IFACE, "KeyUsage"),
        "as 3 \"DigitalSignature\" \"ServerAuthentication\" \"ClientAuthentication\""
    );
    let after: u64 = bmc
        .get(SEED_BUS, LEAF, CERT_IFACE, "ValidNotAfter")
        .trim_start_matches("t ")
        .parse()
        .unwrap();
    let not_after_secs: u64 = bmc
        .get(
            SEED_BUS,
            SEED_PATH,
            "xyz.openbmc_project.BmcPairing.Identity",
            "NotAfter",
        )
        .trim_start_matches("t ")
        .parse()
        .unwrap();
    assert_eq!(after, not_after_secs * 1000, "milliseconds");
}

#[test]
fn generate_csr_replace_and_delete_with_every_bad_input_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bmc = provisioned(tmp.path(), "bmc-a");
    csr_replace_and_delete(tmp.path(), &bmc);
}

/// The same with the keys in a TPM (a real swtpm): the CSR is signed by the TPM-held CA key,
/// and Replace and Delete re-issue through it.
#[test]
fn generate_csr_replace_and_delete_with_tpm_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = bmc_test_support::swtpm::Swtpm::start(&tmp.path().join("swtpm"));
    let bmc = provisioned_with(
        tmp.path(),
        "bmc-a",
        json!({
            "key_backend": {"type": "tpm", "tcti": tpm.tcti()},
            "identity_check_interval_ms": 200,
        }),
    );
    csr_replace_and_delete(tmp.path(), &bmc);
    drop(bmc);
    drop(tpm);
}

fn csr_replace_and_delete(dir: &Path, bmc: &Bmc) {
    let factory = Factory::new(&dir.join("factory"));

    // GenerateCSR: anything but EC P-256, or an oversized argument, changes nothing.
    let before = state(bmc);
    let long = "x".repeat(300);
    for (what, fields) in [
        ("RSA", vec![("KeyPairAlgorithm", "RSA")]),
        (
            "P-384",
            vec![("KeyPairAlgorithm", "EC"), ("KeyCurveId", "secp384r1")],
        ),
        (
            "2048 bits",
            vec![("KeyPairAlgorithm", "EC"), ("KeyBitLength", "2048")],
        ),
        (
            "oversized CommonName",
            vec![("KeyPairAlgorithm", "EC"), ("CommonName", long.as_str())],
        ),
    ] {
        assert_invalid_argument(
            bmc,
            CERTS,
            &format!("{CREATE_IFACE}.GenerateCSR"),
            &csr_args(&fields),
            what,
        );
        assert_eq!(state(bmc), before, "{what} changed something");
    }
    // Arguments of the wrong signature never reach the checks.
    assert_invalid_argument(
        bmc,
        CERTS,
        &format!("{CREATE_IFACE}.GenerateCSR"),
        &["string:EC".to_owned()],
        "a one-string GenerateCSR",
    );
    assert_eq!(state(bmc), before, "a malformed call changed something");

    // A CSR for the TPM-held CA key, with the subject asked for; the CSR object is announced
    // by InterfacesAdded (what seed 004 tells callers to wait for).
    let mut monitor = Command::new("dbus-monitor")
        .arg("--address")
        .arg(&bmc.bus.address)
        .arg(
            "type='signal',interface='org.freedesktop.DBus.ObjectManager',member='InterfacesAdded'",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run dbus-monitor");
    std::thread::sleep(Duration::from_millis(300));
    let path = generate_csr(
        bmc,
        &[
            ("KeyPairAlgorithm", "EC"),
            ("KeyCurveId", "prime256v1"),
            ("CommonName", "bmc-a rack CA"),
            ("Organization", "Example Corp"),
            ("Country", "US"),
        ],
    )
    .unwrap();
    assert_eq!(unquote(&path), CSR);
    std::thread::sleep(Duration::from_millis(300));
    let _ = monitor.kill();
    let seen = String::from_utf8_lossy(&monitor.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        seen.contains(&format!("object path \"{CSR}\"")) && seen.contains(CSR_IFACE),
        "no InterfacesAdded for the CSR object:\n{seen}"
    );
    let pem = unquote(&call(bmc, &["call", SEED_BUS, CSR, CSR_IFACE, "CSR"]).unwrap());
    assert!(
        pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{pem}"
    );
    let csr_path = dir.join("bmc-a.csr");
    std::fs::write(&csr_path, &pem).unwrap();
    run(Command::new("openssl")
        .args(["req", "-verify", "-noout", "-in"])
        .arg(&csr_path));
    let ca_pem = pem_of_der(dir, &bmc.cert_dir().join("ca.der"), "ca-before.pem");
    assert_eq!(
        public_key_of(&["req", "-noout", "-pubkey", "-in"], &csr_path),
        public_key_of(&["x509", "-noout", "-pubkey", "-in"], &ca_pem),
        "the CSR is for the CA key"
    );
    let subject = run(Command::new("openssl")
        .args(["req", "-noout", "-subject", "-in"])
        .arg(&csr_path));
    assert!(
        subject.contains("CN = bmc-a rack CA") && subject.contains("O = Example Corp"),
        "{subject}"
    );

    // The factory (OpenSSL) signs it.
    let signed = dir.join("signed.crt");
    factory.sign_ca_request(&csr_path, &signed);

    // Replace: every bad file is refused and changes nothing.
    let before = state(bmc);
    let garbage = dir.join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let huge = dir.join("huge.pem");
    std::fs::write(&huge, vec![b'A'; 200 * 1024]).unwrap();
    let (expired, not_yet) = out_of_validity(dir, &pem);
    let long_path = format!("/{}", "a/".repeat(3000));
    for (what, file) in [
        ("malformed PEM", garbage.to_str().unwrap()),
        (
            "another key's certificate",
            factory.root().to_str().unwrap(),
        ),
        (
            "the identity leaf (not a CA, another key)",
            pem_of_der(dir, &bmc.cert_dir().join("identity.der"), "leaf.pem")
                .to_str()
                .unwrap(),
        ),
        ("an expired certificate", expired.to_str().unwrap()),
        ("a not-yet-valid certificate", not_yet.to_str().unwrap()),
        ("an oversized file", huge.to_str().unwrap()),
        ("an oversized path", long_path.as_str()),
        ("a relative path", "signed.crt"),
        ("a missing file", "/nonexistent/cert.pem"),
    ] {
        assert_invalid_argument(
            bmc,
            CA,
            &format!("{REPLACE_IFACE}.Replace"),
            &[format!("string:{file}")],
            what,
        );
        assert_eq!(state(bmc), before, "{what} changed something");
    }

    // Replace with the signed certificate: same keys, new issuer, the leaf re-issued under
    // the new subject; OpenSSL verifies the whole chain up to the factory root.
    let leaf_key_before = public_key_of(
        &["x509", "-noout", "-pubkey", "-in"],
        &pem_of_der(dir, &bmc.cert_dir().join("identity.der"), "l0.pem"),
    );
    call(
        bmc,
        &[
            "call",
            SEED_BUS,
            CA,
            REPLACE_IFACE,
            "Replace",
            "s",
            signed.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(
        bmc.get(SEED_BUS, CA, CERT_IFACE, "Issuer"),
        "s \"CN=factory root\""
    );
    assert_eq!(
        bmc.get(SEED_BUS, CA, CERT_IFACE, "Subject"),
        "s \"C=US, O=Example Corp, CN=bmc-a rack CA\""
    );
    assert_eq!(
        bmc.get(SEED_BUS, LEAF, CERT_IFACE, "Issuer"),
        "s \"C=US, O=Example Corp, CN=bmc-a rack CA\""
    );
    let ca_now = pem_of_der(dir, &bmc.cert_dir().join("ca.der"), "ca-now.pem");
    let leaf_now = pem_of_der(dir, &bmc.cert_dir().join("identity.der"), "leaf-now.pem");
    assert_eq!(
        std::fs::read(&ca_now).unwrap(),
        std::fs::read(&signed).unwrap()
    );
    assert_eq!(
        public_key_of(&["x509", "-noout", "-pubkey", "-in"], &leaf_now),
        leaf_key_before,
        "same identity key: pins unchanged"
    );
    openssl_verify(&factory.root(), Some(&ca_now), &leaf_now);
    openssl_verify(&factory.root(), None, &ca_now);

    // Delete of the CA certificate: a newly self-issued one for the same key.
    call(bmc, &["call", SEED_BUS, CA, DELETE_IFACE, "Delete"]).unwrap();
    let issuer = bmc.get(SEED_BUS, CA, CERT_IFACE, "Issuer");
    assert_eq!(
        issuer,
        bmc.get(SEED_BUS, CA, CERT_IFACE, "Subject"),
        "self-issued"
    );
    assert_eq!(issuer, "s \"O=bmc-pairing-manager, CN=bmc-a pairing CA\"");
    let ca_self = pem_of_der(dir, &bmc.cert_dir().join("ca.der"), "ca-self.pem");
    assert_eq!(
        public_key_of(&["x509", "-noout", "-pubkey", "-in"], &ca_self),
        public_key_of(&["x509", "-noout", "-pubkey", "-in"], &ca_pem),
        "same CA key"
    );
    let leaf_self = pem_of_der(dir, &bmc.cert_dir().join("identity.der"), "leaf-self.pem");
    openssl_verify(&ca_self, None, &leaf_self);

    // Delete of the leaf: a new one for the same key.
    let serial_before = run(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&leaf_self));
    call(bmc, &["call", SEED_BUS, LEAF, DELETE_IFACE, "Delete"]).unwrap();
    let leaf_new = pem_of_der(dir, &bmc.cert_dir().join("identity.der"), "leaf-new.pem");
    assert_ne!(
        run(Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(&leaf_new)),
        serial_before
    );
    assert_eq!(
        public_key_of(&["x509", "-noout", "-pubkey", "-in"], &leaf_new),
        leaf_key_before
    );
    assert_eq!(
        unquote(&bmc.get(SEED_BUS, LEAF, CERT_IFACE, "CertificateString")).trim(),
        std::fs::read_to_string(&leaf_new).unwrap().trim()
    );
    openssl_verify(&ca_self, None, &leaf_new);

    // The CSR object goes with Delete.
    call(bmc, &["call", SEED_BUS, CSR, DELETE_IFACE, "Delete"]).unwrap();
    assert!(
        object_interfaces(&bmc.bus.address, SEED_BUS, CSR)
            .unwrap_or_default()
            .is_empty()
    );
}

/// `openssl verify -CAfile root [-untrusted intermediate] leaf`, asserting success.
fn openssl_verify(root: &Path, intermediate: Option<&Path>, leaf: &Path) {
    let mut cmd = Command::new("openssl");
    cmd.arg("verify").arg("-CAfile").arg(root);
    if let Some(i) = intermediate {
        cmd.arg("-untrusted").arg(i);
    }
    let out = run(cmd.arg(leaf));
    assert!(out.contains(": OK"), "{out}");
}

/// Certificates for the requested key that expired yesterday and start tomorrow, signed by
/// a throwaway CA (validity is checked after the key).
fn out_of_validity(dir: &Path, csr_pem: &str) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut root = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root.distinguished_name
        .push(rcgen::DnType::CommonName, "other root");
    let issuer = rcgen::Issuer::new(root, &key);
    let now = time::OffsetDateTime::from(SystemTime::now());
    let day = time::Duration::days(1);
    let mut out = Vec::new();
    for (name, from, to) in [
        ("expired.pem", now - day * 30, now - day),
        ("not-yet.pem", now + day, now + day * 30),
    ] {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).unwrap();
        csr.params.not_before = from;
        csr.params.not_after = to;
        let cert = csr.signed_by(&issuer).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, cert.pem()).unwrap();
        out.push(path);
    }
    (out[0].clone(), out[1].clone())
}

#[test]
fn a_peer_reconnects_on_a_replaced_chain_with_the_same_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut a = Bmc::new(dir, "bmc-a", json!({}));
    let mut b = Bmc::new(dir, "bmc-b", json!({}));
    a.start();
    b.start();
    pair(&a, &b);
    let peer = b.peer_paths().remove(0);
    let pinned = b.get(SEED_BUS, &peer, PEER_IFACE, "IdentityFingerprint");
    let seen = b.get(SEED_BUS, &peer, PEER_IFACE, "LastSeen");

    let factory = Factory::new(&dir.join("factory"));
    generate_csr(
        &a,
        &[("KeyPairAlgorithm", "EC"), ("CommonName", "bmc-a rack CA")],
    )
    .unwrap();
    let csr = dir.join("a.csr");
    std::fs::write(
        &csr,
        unquote(&call(&a, &["call", SEED_BUS, CSR, CSR_IFACE, "CSR"]).unwrap()),
    )
    .unwrap();
    let signed = dir.join("a.crt");
    factory.sign_ca_request(&csr, &signed);
    // LastSeen has a resolution of a second.
    std::thread::sleep(Duration::from_millis(1100));
    call(
        &a,
        &[
            "call",
            SEED_BUS,
            CA,
            REPLACE_IFACE,
            "Replace",
            "s",
            signed.to_str().unwrap(),
        ],
    )
    .unwrap();

    // A dials B again with the new chain at once, as after a renewal; B's pin holds.
    wait_for(
        Duration::from_secs(20),
        "B to see a new session from A",
        || (b.get(SEED_BUS, &peer, PEER_IFACE, "LastSeen") != seen).then_some(()),
    );
    assert!(both_connected_within(&a, &b, Duration::from_secs(20)));
    assert_eq!(
        b.get(SEED_BUS, &peer, PEER_IFACE, "IdentityFingerprint"),
        pinned
    );
    // What A's listener presents now is the replaced chain.
    let shown = openssl::s_client(
        a.ip,
        a.port,
        None,
        &["-showcerts"],
        b"",
        Duration::from_secs(3),
    );
    let text = String::from_utf8_lossy(&shown.stdout).into_owned()
        + &String::from_utf8_lossy(&shown.stderr);
    assert!(text.contains("bmc-a rack CA"), "{text}");
}

#[test]
fn the_certificate_objects_follow_an_automatic_renewal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bmc = Bmc::new(
        tmp.path(),
        "bmc-a",
        json!({ "identity_check_interval_ms": 200 }),
    );
    let clock = bmc.use_clock();
    bmc.start();
    bmc.provision("self").unwrap();
    let leaf_not_after = || -> u64 {
        bmc.get(SEED_BUS, LEAF, CERT_IFACE, "ValidNotAfter")
            .trim_start_matches("t ")
            .parse()
            .unwrap()
    };
    let before = wait_for(Duration::from_secs(20), "the leaf object", || {
        object_interfaces(&bmc.bus.address, SEED_BUS, LEAF)
            .ok()
            .filter(|i| i.iter().any(|n| n == CERT_IFACE))
            .map(|_| leaf_not_after())
    });
    let pem_before = bmc.get(SEED_BUS, LEAF, CERT_IFACE, "CertificateString");
    // Ten days before notAfter the daemon renews on its timer; D-Bus follows.
    clock.set_now(i64::try_from(before / 1000).unwrap() - 10 * 24 * 3600);
    let after = wait_for(Duration::from_secs(20), "the renewed leaf on D-Bus", || {
        let now = leaf_not_after();
        (now > before).then_some(now)
    });
    assert!(after > before);
    let pem_after = unquote(&bmc.get(SEED_BUS, LEAF, CERT_IFACE, "CertificateString"));
    assert_ne!(pem_after, unquote(&pem_before));
    let leaf = pem_of_der(
        tmp.path(),
        &bmc.cert_dir().join("identity.der"),
        "renewed.pem",
    );
    assert_eq!(
        pem_after.trim(),
        std::fs::read_to_string(leaf).unwrap().trim()
    );
}

const AUTHORITY: &str = "/xyz/openbmc_project/certs/authority/bmcpairing";
const INSTALL_IFACE: &str = "xyz.openbmc_project.Certs.Install";

/// A self-signed CA certificate (PEM) valid from `from` to `to` days from now.
fn ca_valid(dir: &Path, name: &str, from: i64, to: i64) -> PathBuf {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let now = time::OffsetDateTime::from(SystemTime::now());
    params.not_before = now + time::Duration::days(from);
    params.not_after = now + time::Duration::days(to);
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, params.self_signed(&key).unwrap().pem()).unwrap();
    path
}

#[test]
fn trust_anchors_are_installed_and_deleted_in_our_own_store_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut bmc = Bmc::new(dir, "bmc-a", json!({}));
    bmc.start();
    let factory = Factory::new(&dir.join("factory"));
    let root_tree = || {
        let mut files = BTreeMap::new();
        files_under(&bmc.dir.join("root"), &mut files);
        files
    };
    let anchors = || {
        let tree = call(&bmc, &["tree", "--list", SEED_BUS]).unwrap();
        tree.lines()
            .map(str::trim)
            .filter(|l| l.starts_with(&format!("{AUTHORITY}/")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(anchors().is_empty());

    // Install: the factory root becomes an anchor object, a file in our store, nothing else.
    let before = root_tree();
    let path = unquote(
        &call(
            &bmc,
            &[
                "call",
                SEED_BUS,
                AUTHORITY,
                INSTALL_IFACE,
                "Install",
                "s",
                factory.root().to_str().unwrap(),
            ],
        )
        .unwrap(),
    );
    assert_eq!(anchors(), vec![path.clone()]);
    assert_eq!(
        bmc.get(SEED_BUS, &path, CERT_IFACE, "Subject"),
        "s \"CN=factory root\""
    );
    let after = root_tree();
    let added: Vec<&PathBuf> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(
        added[0].starts_with(bmc.cert_dir().join("anchors")),
        "{added:?}"
    );
    assert!(
        before.iter().all(|(p, b)| after.get(p) == Some(b)),
        "nothing else changed"
    );
    assert!(
        !bmc.dir.join("root/etc/ssl").exists(),
        "bmcweb's truststore untouched"
    );

    // The anchor objects match the upstream YAML.
    let pdi = upstream_pdi_root();
    for (object, iface) in [
        (AUTHORITY, INSTALL_IFACE),
        (path.as_str(), CERT_IFACE),
        (path.as_str(), DELETE_IFACE),
    ] {
        check_object(
            &bmc.bus.address,
            SEED_BUS,
            object,
            &yaml_path_for(&pdi, iface),
        )
        .unwrap_or_else(|p| panic!("{}", p.join("\n")));
    }

    // Bad input: refused with InvalidArgument (NotAllowed for a duplicate), nothing changes.
    let expired = ca_valid(dir, "expired root", -30, -1);
    let not_yet = ca_valid(dir, "future root", 1, 30);
    let garbage = dir.join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let huge = dir.join("huge.pem");
    std::fs::write(&huge, vec![b'A'; 100 * 1024]).unwrap();
    let leaf = dir.join("leaf.pem");
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(
        &leaf,
        rcgen::CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem(),
    )
    .unwrap();
    let snapshot = (root_tree(), anchors());
    for (what, file) in [
        ("malformed PEM", garbage.as_path()),
        ("not a CA certificate", leaf.as_path()),
        ("an expired CA", expired.as_path()),
        ("a not-yet-valid CA", not_yet.as_path()),
        ("an oversized file", huge.as_path()),
    ] {
        assert_invalid_argument(
            &bmc,
            AUTHORITY,
            &format!("{INSTALL_IFACE}.Install"),
            &[format!("string:{}", file.display())],
            what,
        );
        assert_eq!(
            (root_tree(), anchors()),
            snapshot,
            "{what} changed something"
        );
    }
    let out = Command::new("dbus-send")
        .arg(format!("--bus={}", bmc.bus.address))
        .args([
            "--print-reply",
            &format!("--dest={SEED_BUS}"),
            AUTHORITY,
            &format!("{INSTALL_IFACE}.Install"),
        ])
        .arg(format!("string:{}", factory.root().display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("Error xyz.openbmc_project.Common.Error.NotAllowed: "),
        "a duplicate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        (root_tree(), anchors()),
        snapshot,
        "a duplicate changed something"
    );

    // Delete: the object and the file go.
    call(&bmc, &["call", SEED_BUS, &path, DELETE_IFACE, "Delete"]).unwrap();
    assert!(anchors().is_empty());
    assert_eq!(root_tree(), before);
    bmc.kill9();
}
