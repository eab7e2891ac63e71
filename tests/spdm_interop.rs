//! Interoperability with DMTF's reference implementation (libspdm's spdm-emu, built from
//! `../shared/third_party/dmtf-spdm` by `scripts/dmtf-spdm.sh`), both directions, over the
//! emulator's TCP and NONE socket protocols, with P-256/SHA-256 and P-384/SHA-384:
//!
//! - our `bmc-attestation attest` → `spdm_responder_emu`, trusting only libspdm's sample CA;
//! - `spdm_requester_emu` → our `bmc-attestation respond`, serving the daemon's own identity
//!   (TPM key in swtpm, chain made as `ProvisionPeer("self")` makes it) for P-256 and a
//!   P-384 identity of ours, with the requester's trust anchor replaced by our CA.
//!
//! The reference requester only warns when the root is not its anchor, so these runs use
//! its trust-checking build and read libspdm's own check results: a run counts as trusted
//! only when the chain verified to our CA and both signatures verified.
//!
//! And the failures that must be caught, in both directions: a wrong root, a tampered
//! CHALLENGE_AUTH or MEASUREMENTS signature (changed in flight by a relay), and a responder
//! signing with another key than its leaf's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bmc_test_support::dmtf::ours::{
    AttestRun, Identity, OurResponder, attestation_binary, fixed_args,
};
use bmc_test_support::dmtf::reference::{
    EmuResponder, Ending, KeyFolder, Reference, RequesterBuild, RequesterChecks, RequesterRun,
    RequesterSetup,
};
use bmc_test_support::dmtf::relay::{Relay, Tamper};
use bmc_test_support::dmtf::{Curve, EmuTransport};

/// The trust-checking requester, leaving the responder running at the end.
fn trust_checking(transport: EmuTransport, curve: Curve) -> RequesterSetup {
    RequesterSetup {
        build: RequesterBuild::TrustChecking,
        transport,
        curve,
        ending: Ending::Continue,
    }
}

const CHALLENGE_AUTH: u8 = 0x03;
const MEASUREMENTS: u8 = 0x60;

/// Our requester against libspdm's responder: trusted with libspdm's CA as the only anchor,
/// refused with another root as the only anchor.
fn our_requester_against_the_reference(curve: Curve, transport: EmuTransport) {
    let reference = Reference::get();
    let tmp = tempfile::tempdir().unwrap();
    let folder = KeyFolder::new(reference, &tmp.path().join("keys"));
    let mut responder = EmuResponder::start(
        reference,
        &folder,
        transport,
        curve,
        &tmp.path().join("responder.log"),
    );

    let run = AttestRun::run(
        responder.port(),
        transport,
        &reference.sample(curve, "ca.cert.der"),
    );
    assert!(run.trusted(), "{curve:?} {transport:?}: {}", run.output);
    let verdict = &run.report["verdict"];
    assert_eq!(verdict["algorithms"]["base_asym"], curve.report_name());
    assert_eq!(verdict["trust"]["Anchored"]["anchor"], 0, "{verdict}");
    // libspdm's sample responder reports 8 measurement blocks; all arrived, signed.
    assert_eq!(verdict["measurements"].as_array().map(Vec::len), Some(8));

    // Another root as the only anchor: the same responder is refused.
    let run = AttestRun::run(
        responder.port(),
        transport,
        &reference.sample(curve, "ca1.cert.der"),
    );
    assert!(!run.trusted(), "wrong root accepted: {}", run.output);
    assert_eq!(run.code, Some(1));
    assert!(
        run.error()
            .contains("chain does not lead to a trusted root"),
        "{}",
        run.output
    );
    assert!(
        responder.process().exited().is_none(),
        "our requester ends with CONTINUE; the responder must still run:\n{}",
        responder.process().output()
    );
}

#[test]
fn our_requester_trusts_the_reference_responder_p256_tcp() {
    our_requester_against_the_reference(Curve::P256, EmuTransport::Tcp);
}

#[test]
fn our_requester_trusts_the_reference_responder_p256_none() {
    our_requester_against_the_reference(Curve::P256, EmuTransport::None);
}

#[test]
fn our_requester_trusts_the_reference_responder_p384_tcp() {
    our_requester_against_the_reference(Curve::P384, EmuTransport::Tcp);
}

#[test]
fn our_requester_trusts_the_reference_responder_p384_none() {
    our_requester_against_the_reference(Curve::P384, EmuTransport::None);
}

/// Two measured files for a responder that has no configuration of its own.
fn measure_args(dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for (name, text) in [("image.bin", "firmware"), ("os-release", "ID=openbmc\n")] {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        args.extend(["--measure".to_owned(), p.display().to_string()]);
    }
    args
}

fn identity_for(curve: Curve, dir: &Path) -> (Identity, Vec<String>) {
    match curve {
        Curve::P256 => {
            let id = Identity::daemon(dir);
            let args = id.respond_args.clone();
            (id, args)
        }
        Curve::P384 => {
            let id = Identity::p384(dir);
            let mut args = id.respond_args.clone();
            args.extend(measure_args(dir));
            (id, args)
        }
    }
}

/// The reference requester (trust-checking build) against our responder with our own
/// identity: trusted with our CA as its anchor; with libspdm's CA left in place the chain
/// check fails, which the exit status alone would not show.
fn reference_requester_against_ours(curve: Curve, transport: EmuTransport) {
    let reference = Reference::get();
    let tmp = tempfile::tempdir().unwrap();
    let (identity, args) = identity_for(curve, &tmp.path().join("identity"));
    let ours = OurResponder::start(
        transport.framing_arg(),
        &args,
        &tmp.path().join("respond.log"),
    );

    let with_our_ca = KeyFolder::new(reference, &tmp.path().join("our-anchor"));
    with_our_ca.replace(curve, "ca.cert.der", &identity.ca_der);
    let run = RequesterRun::run(
        reference,
        &with_our_ca,
        trust_checking(transport, curve),
        ours.port(),
        &tmp.path().join("requester.log"),
    );
    let checks = run.checks();
    assert!(
        checks.trusted(),
        "{curve:?} {transport:?}: {checks:?}\n{}\nour responder:\n{}",
        run.log,
        ours.process().output()
    );

    let with_libspdm_ca = KeyFolder::new(reference, &tmp.path().join("libspdm-anchor"));
    let run = RequesterRun::run(
        reference,
        &with_libspdm_ca,
        trust_checking(transport, curve),
        ours.port(),
        &tmp.path().join("requester-wrong-root.log"),
    );
    let checks = run.checks();
    assert!(!checks.trusted(), "wrong root trusted: {checks:?}");
    assert!(!checks.chain_trusted);
    assert!(
        checks
            .failures
            .iter()
            .any(|f| f.contains("verify_peer_cert_chain_buffer - FAIL")),
        "{checks:?}"
    );
    // The trap this guards against: the Release requester exits 0 on a wrong root.
    assert!(checks.exit_ok, "{checks:?}");
}

#[test]
fn reference_requester_trusts_our_daemon_identity_p256_tcp() {
    reference_requester_against_ours(Curve::P256, EmuTransport::Tcp);
}

#[test]
fn reference_requester_trusts_our_daemon_identity_p256_none() {
    reference_requester_against_ours(Curve::P256, EmuTransport::None);
}

#[test]
fn reference_requester_trusts_our_p384_identity_tcp() {
    reference_requester_against_ours(Curve::P384, EmuTransport::Tcp);
}

#[test]
fn reference_requester_trusts_our_p384_identity_none() {
    reference_requester_against_ours(Curve::P384, EmuTransport::None);
}

#[test]
fn reference_checks_are_read_from_its_log_not_assumed() {
    // The reading of the trust-checking requester's log, on lines it really prints.
    let pass = "!!! verify_peer_cert_chain_buffer - PASS !!!\n\
                !!! verify_challenge_signature - PASS !!!\n\
                !!! verify_measurement_signature - PASS !!!\n";
    let ok = |exit_ok, log: &str| RequesterChecks::from_log(exit_ok, log);
    assert!(ok(true, pass).trusted());
    assert!(!ok(false, pass).trusted(), "a failed exit is never trusted");
    assert!(
        !ok(true, "").trusted(),
        "a silent log (Release build) is never trusted"
    );
    let root = format!(
        "{pass}!!! verify_peer_cert_chain_buffer - FAIL (all root cert hash mismatch) !!!\n"
    );
    assert!(!ok(true, &root).trusted());
}

/// Our requester, through a relay that flips a bit of one signature of libspdm's
/// responder: refused, naming the signature.
fn our_requester_refuses_a_tampered_signature(curve: Curve, transport: EmuTransport) {
    let reference = Reference::get();
    let tmp = tempfile::tempdir().unwrap();
    let folder = KeyFolder::new(reference, &tmp.path().join("keys"));
    let responder = EmuResponder::start(
        reference,
        &folder,
        transport,
        curve,
        &tmp.path().join("responder.log"),
    );
    let anchor = reference.sample(curve, "ca.cert.der");
    for (code, name) in [
        (CHALLENGE_AUTH, "CHALLENGE_AUTH"),
        (MEASUREMENTS, "MEASUREMENTS"),
    ] {
        let relay = Relay::start(responder.port(), transport, Tamper::FlipLastByteOf(code));
        let run = AttestRun::run(relay.port(), transport, &anchor);
        assert_eq!(relay.tampered(), 1, "{name} was not changed in flight");
        assert!(!run.trusted(), "tampered {name} accepted: {}", run.output);
        assert!(
            run.error()
                .contains(&format!("{name} signature does not verify")),
            "{}",
            run.output
        );
    }
    // Untouched, the same path is trusted: the relay alone breaks nothing.
    let relay = Relay::start(responder.port(), transport, Tamper::Nothing);
    assert!(AttestRun::run(relay.port(), transport, &anchor).trusted());
}

#[test]
fn our_requester_refuses_tampered_reference_signatures_p256_tcp() {
    our_requester_refuses_a_tampered_signature(Curve::P256, EmuTransport::Tcp);
}

#[test]
fn our_requester_refuses_tampered_reference_signatures_p384_none() {
    our_requester_refuses_a_tampered_signature(Curve::P384, EmuTransport::None);
}

#[test]
fn reference_requester_refuses_our_tampered_signatures() {
    let reference = Reference::get();
    let tmp = tempfile::tempdir().unwrap();
    let transport = EmuTransport::Tcp;
    let (identity, args) = identity_for(Curve::P384, &tmp.path().join("identity"));
    let ours = OurResponder::start(
        transport.framing_arg(),
        &args,
        &tmp.path().join("respond.log"),
    );
    let folder = KeyFolder::new(reference, &tmp.path().join("keys"));
    folder.replace(identity.curve, "ca.cert.der", &identity.ca_der);
    for (code, check) in [
        (CHALLENGE_AUTH, "verify_challenge_signature - FAIL"),
        (MEASUREMENTS, "verify_measurement_signature - FAIL"),
    ] {
        let relay = Relay::start(ours.port(), transport, Tamper::FlipLastByteOf(code));
        let run = RequesterRun::run(
            reference,
            &folder,
            trust_checking(transport, identity.curve),
            relay.port(),
            &tmp.path().join(format!("requester-{code:02x}.log")),
        );
        let checks = run.checks();
        assert_eq!(relay.tampered(), 1, "response {code:#04x} was not changed");
        assert!(!checks.trusted(), "{checks:?}");
        assert!(!checks.exit_ok, "libspdm fails the run on a bad signature");
        assert!(
            checks.failures.iter().any(|f| f.contains(check)),
            "{checks:?}"
        );
    }
}

#[test]
fn our_requester_refuses_a_reference_responder_signing_with_another_key() {
    // libspdm's responder with its leaf certificate but another P-256 key (the requester's
    // sample key) in place of its own.
    let reference = Reference::get();
    let tmp = tempfile::tempdir().unwrap();
    let curve = Curve::P256;
    let folder = KeyFolder::new(reference, &tmp.path().join("keys"));
    let other_key = std::fs::read(reference.sample(curve, "end_requester.key")).unwrap();
    folder.replace(curve, "end_responder.key", &other_key);
    let responder = EmuResponder::start(
        reference,
        &folder,
        EmuTransport::Tcp,
        curve,
        &tmp.path().join("responder.log"),
    );
    let run = AttestRun::run(
        responder.port(),
        EmuTransport::Tcp,
        &reference.sample(curve, "ca.cert.der"),
    );
    assert!(!run.trusted(), "{}", run.output);
    assert!(
        run.error()
            .contains("CHALLENGE_AUTH signature does not verify"),
        "{}",
        run.output
    );
}

#[test]
fn respond_refuses_to_start_with_a_key_that_is_not_its_leafs() {
    let tmp = tempfile::tempdir().unwrap();
    let ours = Identity::p384(&tmp.path().join("ours"));
    let other = Identity::p384(&tmp.path().join("other"));
    // Our chain with the other identity's key.
    let mut args = fixed_args(
        &tmp.path().join("other/identity.p8"),
        &[
            tmp.path().join("ours/ca.der"),
            tmp.path().join("ours/identity.der"),
        ],
    );
    args.insert(0, "respond".into());
    args.extend(["--listen".into(), "127.0.0.1:0".into()]);
    let out = std::process::Command::new(attestation_binary())
        .args(&args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("leaf certificate is not for the identity key"),
        "{stderr}"
    );
    drop((ours, other));
}

/// A key store that shows the leaf's public key but signs with another key: what a
/// swapped key would look like to a requester if it got past `respond`'s start-up check.
#[derive(Debug)]
struct SwappedKey {
    shown: Arc<dyn bmc_pairing_manager::identity::KeyStore>,
    signing: Arc<dyn bmc_pairing_manager::identity::KeyStore>,
}

impl bmc_pairing_manager::identity::KeyStore for SwappedKey {
    fn backend(&self) -> bmc_pairing_manager::identity::Backend {
        self.shown.backend()
    }
    fn generate(
        &self,
        role: bmc_pairing_manager::identity::KeyRole,
    ) -> Result<bmc_pairing_manager::identity::PublicKey, bmc_pairing_core::keys::Error> {
        self.shown.generate(role)
    }
    fn public_key(
        &self,
        role: bmc_pairing_manager::identity::KeyRole,
    ) -> Result<bmc_pairing_manager::identity::PublicKey, bmc_pairing_core::keys::Error> {
        self.shown.public_key(role)
    }
    fn sign_digest(
        &self,
        role: bmc_pairing_manager::identity::KeyRole,
        digest: &[u8],
    ) -> Result<Vec<u8>, bmc_pairing_core::keys::Error> {
        self.signing.sign_digest(role, digest)
    }
    fn delete(
        &self,
        role: bmc_pairing_manager::identity::KeyRole,
    ) -> Result<(), bmc_pairing_core::keys::Error> {
        self.shown.delete(role)
    }
}

#[test]
fn reference_requester_refuses_our_responder_signing_with_another_key() {
    use bmc_pairing_core::spdm::ResponderConfig;
    use bmc_pairing_manager::attestation::keys::KeyFile;
    use bmc_pairing_manager::spdm::transport::{self, Framing, Timeouts};

    let reference = Reference::get();
    let tmp = tempfile::tempdir().unwrap();
    let ours = Identity::p384(&tmp.path().join("ours"));
    let _other = Identity::p384(&tmp.path().join("other"));
    let store = Arc::new(SwappedKey {
        shown: Arc::new(KeyFile::load(&tmp.path().join("ours/identity.p8")).unwrap()),
        signing: Arc::new(KeyFile::load(&tmp.path().join("other/identity.p8")).unwrap()),
    });
    let chain = vec![
        std::fs::read(tmp.path().join("ours/ca.der")).unwrap(),
        std::fs::read(tmp.path().join("ours/identity.der")).unwrap(),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    // Our responder, in this process, serving one connection with the swapped key.
    let served = rt.spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        transport::serve(
            &mut tcp,
            Framing::EmuTcp,
            ResponderConfig::new(chain, Vec::new()),
            store,
            &Timeouts::default(),
        )
        .await
    });
    let folder = KeyFolder::new(reference, &tmp.path().join("keys"));
    folder.replace(Curve::P384, "ca.cert.der", &ours.ca_der);
    let run = RequesterRun::run(
        reference,
        &folder,
        trust_checking(EmuTransport::Tcp, Curve::P384),
        port,
        &tmp.path().join("requester.log"),
    );
    let checks = run.checks();
    assert!(
        checks.chain_trusted,
        "the chain itself is ours and sound: {checks:?}"
    );
    assert!(!checks.trusted(), "{checks:?}");
    assert!(
        checks
            .failures
            .iter()
            .any(|f| f.contains("verify_challenge_signature - FAIL")),
        "{checks:?}"
    );
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), served).await });
}
