//! `bmc-attestation` publishes each attested peer where bmcweb looks for
//! `/redfish/v1/ComponentIntegrity`: `/xyz/openbmc_project/component_integrity/<id>` with the
//! upstream `Attestation.ComponentIntegrity`, `.IdentityAuthentication` and `.MeasurementSet`
//! interfaces, compared here with the upstream phosphor-dbus-interfaces YAML
//! (`bmc_test_support::pdi::upstream_pdi_root`).
//!
//! A client does what bmcweb does, with no object mapper on the bus: it finds the objects by
//! introspection as the mapper would, reads every property with GetAll, and calls
//! `SPDMGetSignedMeasurements` with a fresh random nonce. The signature it gets back is then
//! checked by Python `cryptography`, independently of our SPDM code, over the returned
//! transcript with the returned public key; the same transcript with another nonce in it
//! must not verify. It also reads the associations as bmcweb and the mapper would: the
//! `authenticating` endpoint (an inventory item standing for the peer) and the certificate
//! that identified the responder, in both spellings the upstream YAML uses.
#![cfg(test)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use bmc_test_support::attestation::*;
use bmc_test_support::pdi::{check_object, object_interfaces, upstream_pdi_root, yaml_path_for};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

const ROOT: &str = "/xyz/openbmc_project/component_integrity";
const INTEGRITY: &str = "xyz.openbmc_project.Attestation.ComponentIntegrity";
const IDENTITY: &str = "xyz.openbmc_project.Attestation.IdentityAuthentication";
const MEASUREMENT_SET: &str = "xyz.openbmc_project.Attestation.MeasurementSet";
const CERTIFICATE: &str = "xyz.openbmc_project.Certs.Certificate";
const ASSOCIATIONS: &str = "xyz.openbmc_project.Association.Definitions";
const ITEM: &str = "xyz.openbmc_project.Inventory.Item";
const TRUSTED_COMPONENT: &str = "xyz.openbmc_project.Inventory.Item.TrustedComponent";
const TPM: &str = "/xyz/openbmc_project/inventory/bmc_pairing/tpm";
const INVALID_ARGUMENT: &str = "xyz.openbmc_project.Common.Error.InvalidArgument";

type Quote = (OwnedObjectPath, String, String, String, String, String);

async fn connect(node: &Node) -> zbus::Connection {
    zbus::connection::Builder::address(node.bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_nonce() -> String {
    let mut n = [0u8; 32];
    getrandom(&mut n);
    hex(&n)
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(buf)
        .unwrap();
}

/// The child object paths under `path`, found by Introspect as the mapper does, recursively.
async fn discover(conn: &zbus::Connection, path: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![path.to_owned()];
    while let Some(p) = todo.pop() {
        let reply = conn
            .call_method(
                Some(ATT_BUS),
                p.as_str(),
                Some("org.freedesktop.DBus.Introspectable"),
                "Introspect",
                &(),
            )
            .await
            .unwrap();
        let xml: String = reply.body().deserialize().unwrap();
        // The object's own interfaces come before its first child node.
        let own = xml.split("<node name=\"").next().unwrap_or_default();
        if own.contains(&format!("<interface name=\"{INTEGRITY}\"")) {
            found.push(p.clone());
        }
        for part in xml.split("<node name=\"").skip(1) {
            let child = part.split('"').next().unwrap();
            todo.push(format!("{}/{child}", p.trim_end_matches('/')));
        }
    }
    found.sort();
    found
}

async fn get_all(conn: &zbus::Connection, path: &str, iface: &str) -> HashMap<String, OwnedValue> {
    conn.call_method(
        Some(ATT_BUS),
        path,
        Some("org.freedesktop.DBus.Properties"),
        "GetAll",
        &(iface,),
    )
    .await
    .unwrap()
    .body()
    .deserialize()
    .unwrap()
}

async fn signed_measurements(
    conn: &zbus::Connection,
    path: &str,
    indices: &[u64],
    nonce: &str,
    slot: u64,
) -> Result<Quote, (String, String)> {
    match conn
        .call_method(
            Some(ATT_BUS),
            path,
            Some(MEASUREMENT_SET),
            "SPDMGetSignedMeasurements",
            &(indices, nonce, slot),
        )
        .await
    {
        Ok(msg) => Ok(msg.body().deserialize::<Quote>().unwrap()),
        Err(zbus::Error::MethodError(name, text, _)) => {
            Err((name.to_string(), text.unwrap_or_default()))
        }
        Err(e) => panic!("SPDMGetSignedMeasurements failed outside D-Bus errors: {e}"),
    }
}

/// Checks an SPDM 1.2 signed-measurements transcript with Python `cryptography` alone:
/// the last signature-size bytes are the signature over
/// `combined_spdm_prefix("responder-measurements signing") || H(rest)`, ECDSA with H.
/// Prints JSON: whether the caller's nonce is the nonce of the signed GET_MEASUREMENTS,
/// whether the signature verifies, and whether it verifies with another nonce put in.
const VERIFIER: &str = r#"
import base64, hashlib, json, os, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

pem, b64, hash_name, sign_name, nonce_hex = sys.argv[1:6]
key = serialization.load_pem_public_key(pem.encode())
transcript = base64.b64decode(b64, validate=True)
hash_cls, hashlib_name = {"TPM_ALG_SHA_256": (hashes.SHA256, "sha256"),
                          "TPM_ALG_SHA_384": (hashes.SHA384, "sha384")}[hash_name]
sig_len = {"TPM_ALG_ECDSA_ECC_NIST_P256": 64, "TPM_ALG_ECDSA_ECC_NIST_P384": 96}[sign_name]
assert isinstance(key, ec.EllipticCurvePublicKey)
assert key.curve.key_size * 2 // 8 == sig_len

def verifies(t):
    body, sig = t[:-sig_len], t[-sig_len:]
    half = sig_len // 2
    der = utils.encode_dss_signature(int.from_bytes(sig[:half], "big"),
                                     int.from_bytes(sig[half:], "big"))
    ctx = b"responder-measurements signing"
    prefix = b"dmtf-spdm-v1.2.*" * 4 + b"\x00" * (36 - len(ctx)) + ctx
    message = prefix + hashlib.new(hashlib_name, body).digest()
    try:
        key.verify(der, message, ec.ECDSA(hash_cls()))
        return True
    except InvalidSignature:
        return False

nonce = bytes.fromhex(nonce_hex)
# The signed GET_MEASUREMENTS: 12 e0 <attributes with bit 0> <operation> <nonce> <slot>.
at = transcript.rfind(b"\x12\xe0")
request_nonce = transcript[at + 4:at + 36]
other = os.urandom(32)
swapped = transcript[:at + 4] + other + transcript[at + 36:]
print(json.dumps({
    "starts_with_get_version": transcript[:4].hex() == "10840000",
    "signed_request": transcript[at + 2] & 1 == 1,
    "nonce_is_callers": request_nonce == nonce,
    "verifies": verifies(transcript),
    "verifies_with_other_nonce": verifies(swapped),
    "contains": [h for h in sys.argv[6:] if bytes.fromhex(h) in transcript],
}))
"#;

fn python_check(quote: &Quote, nonce: &str, digests: &[String]) -> serde_json::Value {
    let (_, hash, pem, b64, sign, _) = quote;
    let out = Command::new("python3")
        .args(["-c", VERIFIER, pem, b64, hash, sign, nonce])
        .args(digests)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python verifier: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sha256_hex(path: &Path) -> String {
    hex(&Sha256::digest(std::fs::read(path).unwrap()))
}

struct Pair {
    _tmp: tempfile::TempDir,
    a: Node,
    b: Node,
}

/// B serves its identity; A attests it first-contact.
fn attested_pair() -> Pair {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Node::new(tmp.path(), "bmc-b", KeyKind::File, json!({}));
    b.provision();
    b.start();
    let mut a = Node::new(tmp.path(), "bmc-a", KeyKind::File, json!({}));
    a.start();
    a.busctl_json(&[
        "call",
        ATT_BUS,
        ATT_ROOT,
        REQUESTER_IFACE,
        "Attest",
        "ss",
        &b.endpoint(),
        "first-contact",
    ])
    .unwrap();
    Pair { _tmp: tmp, a, b }
}

fn expected_id(b: &Node) -> String {
    let (ip, port) = b
        .endpoint()
        .rsplit_once(':')
        .map(|(i, p)| (i.to_owned(), p.to_owned()))
        .unwrap();
    format!("ipv4_{}_{port}", ip.replace('.', "_"))
}

#[test]
fn objects_match_the_upstream_yaml() {
    let pair = attested_pair();
    let path = format!("{ROOT}/{}", expected_id(&pair.b));
    let root = upstream_pdi_root();
    assert_eq!(
        object_interfaces(&pair.a.bus.address, ATT_BUS, &path).unwrap(),
        vec![
            ASSOCIATIONS.to_owned(),
            INTEGRITY.to_owned(),
            IDENTITY.to_owned(),
            MEASUREMENT_SET.to_owned()
        ]
    );
    for iface in [INTEGRITY, IDENTITY, MEASUREMENT_SET, ASSOCIATIONS] {
        if let Err(problems) = check_object(
            &pair.a.bus.address,
            ATT_BUS,
            &path,
            &yaml_path_for(&root, iface),
        ) {
            panic!(
                "{path} differs from the upstream {iface}:\n{}",
                problems.join("\n")
            );
        }
    }
    // The whole chain (B's identity leaf and its per-BMC CA), each a Certificate; the leaf
    // also carries its associations.
    let leaf = format!(
        "/xyz/openbmc_project/certs/devices/{}/slot_0",
        expected_id(&pair.b)
    );
    let issuer = format!("{leaf}_issuer_1");
    for (cert, ifaces) in [
        (&leaf, vec![ASSOCIATIONS, CERTIFICATE]),
        (&issuer, vec![CERTIFICATE]),
    ] {
        assert_eq!(
            object_interfaces(&pair.a.bus.address, ATT_BUS, cert).unwrap(),
            ifaces,
            "{cert}"
        );
        for iface in ifaces {
            if let Err(problems) = check_object(
                &pair.a.bus.address,
                ATT_BUS,
                cert,
                &yaml_path_for(&root, iface),
            ) {
                panic!(
                    "{cert} differs from the upstream {iface}:\n{}",
                    problems.join("\n")
                );
            }
        }
    }
    assert!(
        object_interfaces(&pair.a.bus.address, ATT_BUS, &format!("{leaf}_issuer_2")).is_err(),
        "a chain of two certificates"
    );
    // The inventory item `authenticating` names. Upstream's Inventory.Item YAML is not in
    // the shared copy, so its two properties are checked here by name and type.
    let item = format!(
        "/xyz/openbmc_project/inventory/bmc_pairing/peers/{}",
        expected_id(&pair.b)
    );
    let served = bmc_test_support::pdi::introspect(&pair.a.bus.address, ATT_BUS, &item).unwrap();
    let props = &served[ITEM].properties;
    assert_eq!(props["PrettyName"].0, "s");
    assert_eq!(props["Present"].0, "b");
    assert_eq!(props.len(), 2);
    // File keys: no TPM, so no TrustedComponent.
    assert!(object_interfaces(&pair.a.bus.address, ATT_BUS, TPM).is_err());
}

/// With its keys in a TPM, bmc-attestation shows the TPM as an inventory item and a
/// TrustedComponent, exactly as the upstream YAML defines it.
#[test]
fn the_tpm_is_a_trusted_component() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::new(tmp.path(), "bmc-a", KeyKind::Tpm, json!({}));
    a.start();
    assert_eq!(
        object_interfaces(&a.bus.address, ATT_BUS, TPM).unwrap(),
        vec![ITEM.to_owned(), TRUSTED_COMPONENT.to_owned()]
    );
    if let Err(problems) = check_object(
        &a.bus.address,
        ATT_BUS,
        TPM,
        &yaml_path_for(&upstream_pdi_root(), TRUSTED_COMPONENT),
    ) {
        panic!(
            "the TPM differs from the upstream TrustedComponent:\n{}",
            problems.join("\n")
        );
    }
    assert_eq!(
        a.property(TPM, TRUSTED_COMPONENT, "TrustedComponentType"),
        json!("xyz.openbmc_project.Inventory.Item.TrustedComponent.ComponentAttachType.Unknown")
    );
    assert_eq!(a.property(TPM, ITEM, "Present"), json!(true));
}

/// Named this BMC's own inventory item (`tpm_protects`), the TPM links it with the upstream
/// TrustedComponent association `protecting` (reverse `protected_by`); the names are read
/// from the upstream YAML, not restated here.
#[test]
fn the_tpm_protects_the_bmc_it_is_told_of() {
    let yaml: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(yaml_path_for(&upstream_pdi_root(), TRUSTED_COMPONENT)).unwrap(),
    )
    .unwrap();
    let protecting = yaml["associations"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|a| a["name"].as_str() == Some("protecting"))
        .expect("upstream TrustedComponent defines protecting");
    let reverse = protecting["reverse_name"].as_str().unwrap();

    let bmc_item = "/xyz/openbmc_project/inventory/system/chassis/motherboard/bmc";
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::new(
        tmp.path(),
        "bmc-a",
        KeyKind::Tpm,
        json!({"tpm_protects": bmc_item}),
    );
    a.start();
    assert_eq!(
        object_interfaces(&a.bus.address, ATT_BUS, TPM).unwrap(),
        vec![
            ASSOCIATIONS.to_owned(),
            ITEM.to_owned(),
            TRUSTED_COMPONENT.to_owned()
        ]
    );
    assert_eq!(
        a.property(TPM, ASSOCIATIONS, "Associations"),
        json!([["protecting", reverse, bmc_item]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bmcweb_sequence_and_an_independently_checked_signature() {
    let pair = attested_pair();
    let conn = connect(&pair.a).await;

    // Discovery by introspection, as the mapper's GetSubTree would find them.
    let objects = discover(&conn, ROOT).await;
    assert_eq!(objects, vec![format!("{ROOT}/{}", expected_id(&pair.b))]);
    let path = objects[0].clone();

    // GetAll per interface, the properties bmcweb reads.
    let integrity = get_all(&conn, &path, INTEGRITY).await;
    let text = |m: &HashMap<String, OwnedValue>, k: &str| -> String {
        String::try_from(m[k].clone()).unwrap()
    };
    assert_eq!(
        text(&integrity, "Type"),
        "xyz.openbmc_project.Attestation.ComponentIntegrity.SecurityTechnologyType.SPDM"
    );
    assert_eq!(text(&integrity, "TypeVersion"), "1.2");
    assert!(bool::try_from(integrity["Enabled"].clone()).unwrap());
    let last = u64::try_from(integrity["LastUpdated"].clone()).unwrap();
    let now_ms = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    assert!(
        last <= now_ms && now_ms - last < 120_000,
        "{last} vs {now_ms}"
    );
    // The peer object says the same, in seconds.
    let peer_secs = pair.a.property(
        &format!("{ATT_PEERS}/{}", expected_id(&pair.b)),
        ATT_PEER_IFACE,
        "LastAttested",
    );
    assert_eq!(peer_secs.as_u64().unwrap(), last / 1000);
    let identity = get_all(&conn, &path, IDENTITY).await;
    assert_eq!(
        text(&identity, "ResponderVerificationStatus"),
        "xyz.openbmc_project.Attestation.IdentityAuthentication.VerificationStatus.Success"
    );

    // The associations, as the mapper reads them to answer bmcweb's
    // `<path>/authenticating` (TargetComponentURI) and the certificate links.
    let leaf_path = format!(
        "/xyz/openbmc_project/certs/devices/{}/slot_0",
        expected_id(&pair.b)
    );
    let associations = |m: HashMap<String, OwnedValue>| -> Vec<(String, String, String)> {
        Vec::try_from(m["Associations"].clone()).unwrap()
    };
    let on_component = associations(get_all(&conn, &path, ASSOCIATIONS).await);
    let item = format!(
        "/xyz/openbmc_project/inventory/bmc_pairing/peers/{}",
        expected_id(&pair.b)
    );
    assert_eq!(
        on_component,
        vec![
            (
                "authenticating".into(),
                "authenticated_by".into(),
                item.clone()
            ),
            (
                "responder_identitified_by".into(),
                "identifying_responder".into(),
                leaf_path.clone()
            ),
        ]
    );
    assert_eq!(
        associations(get_all(&conn, &leaf_path, ASSOCIATIONS).await),
        vec![(
            "identifying_responder".into(),
            "responder_identified_by".into(),
            path.clone()
        )]
    );
    // Each endpoint implements what the YAML requires of it.
    let target = get_all(&conn, &item, ITEM).await;
    assert!(bool::try_from(target["Present"].clone()).unwrap());
    assert!(text(&target, "PrettyName").contains(&pair.b.endpoint()));
    let leaf = get_all(&conn, &leaf_path, CERTIFICATE).await;
    // The rest of the chain: the leaf's issuer is the next object.
    let issuer = get_all(&conn, &format!("{leaf_path}_issuer_1"), CERTIFICATE).await;
    assert_eq!(text(&leaf, "Issuer"), text(&issuer, "Subject"));
    assert_ne!(text(&leaf, "Subject"), text(&issuer, "Subject"));

    // SPDMGetSignedMeasurements with a fresh nonce, two indices (one unsigned exchange,
    // then the signed one) and for all indices.
    let digests = [
        sha256_hex(&pair.b.measured[0]),
        sha256_hex(&pair.b.measured[1]),
    ];
    for indices in [vec![1u64, 2], vec![]] {
        let nonce = random_nonce();
        let quote = signed_measurements(&conn, &path, &indices, &nonce, 0)
            .await
            .unwrap();
        let cert_path = format!(
            "/xyz/openbmc_project/certs/devices/{}/slot_0",
            expected_id(&pair.b)
        );
        assert_eq!(quote.0.as_str(), cert_path);
        assert_eq!(quote.1, "TPM_ALG_SHA_256");
        assert_eq!(quote.4, "TPM_ALG_ECDSA_ECC_NIST_P256");
        assert_eq!(quote.5, "1.2");
        // The returned path is a served certificate whose key is the returned key.
        let cert = get_all(&conn, &cert_path, CERTIFICATE).await;
        let cert_pem = text(&cert, "CertificateString");
        let spki_pem = Command::new("sh")
            .args([
                "-c",
                "printf '%s' \"$1\" | openssl x509 -pubkey -noout",
                "-",
                &cert_pem,
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&spki_pem.stdout).trim(),
            quote.2.trim()
        );

        let checked = python_check(&quote, &nonce, &digests);
        assert_eq!(checked["starts_with_get_version"], true, "{checked}");
        assert_eq!(checked["signed_request"], true, "{checked}");
        assert_eq!(checked["nonce_is_callers"], true, "{checked}");
        assert_eq!(checked["verifies"], true, "{checked}");
        assert_eq!(checked["verifies_with_other_nonce"], false, "{checked}");
        assert_eq!(checked["contains"], json!(digests), "{checked}");
        // A replay: the same statement offered for a new nonce is not about that nonce.
        let replay = python_check(&quote, &random_nonce(), &[]);
        assert_eq!(replay["nonce_is_callers"], false, "{replay}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_and_changes_nothing() {
    let pair = attested_pair();
    let conn = connect(&pair.a).await;
    let path = format!("{ROOT}/{}", expected_id(&pair.b));
    let before = (
        get_all(&conn, &path, INTEGRITY).await,
        get_all(&conn, &path, IDENTITY).await,
    );
    let good = random_nonce();
    let cases: Vec<(Vec<u64>, String, u64)> = vec![
        (vec![], good[..62].to_owned(), 0),
        (vec![], format!("{good}00"), 0),
        (vec![], format!("{}zz", &good[..62]), 0),
        (vec![], String::new(), 0),
        (vec![0], good.clone(), 0),
        (vec![255], good.clone(), 0),
        (vec![1 << 40], good.clone(), 0),
        (vec![1, 1], good.clone(), 0),
        (vec![], good.clone(), 1),
        (vec![], good.clone(), 8),
    ];
    for (indices, nonce, slot) in cases {
        let err = signed_measurements(&conn, &path, &indices, &nonce, slot)
            .await
            .unwrap_err();
        assert_eq!(
            err.0, INVALID_ARGUMENT,
            "{indices:?} {nonce:?} {slot}: {err:?}"
        );
    }
    // Enabled false refuses the method; true allows it again.
    conn.call_method(
        Some(ATT_BUS),
        path.as_str(),
        Some("org.freedesktop.DBus.Properties"),
        "Set",
        &(INTEGRITY, "Enabled", zbus::zvariant::Value::from(false)),
    )
    .await
    .unwrap();
    let err = signed_measurements(&conn, &path, &[], &good, 0)
        .await
        .unwrap_err();
    assert_eq!(err.0, INVALID_ARGUMENT);
    conn.call_method(
        Some(ATT_BUS),
        path.as_str(),
        Some("org.freedesktop.DBus.Properties"),
        "Set",
        &(INTEGRITY, "Enabled", zbus::zvariant::Value::from(true)),
    )
    .await
    .unwrap();
    let after = (
        get_all(&conn, &path, INTEGRITY).await,
        get_all(&conn, &path, IDENTITY).await,
    );
    assert_eq!(before, after);
    // Nobody but an attestation sets the verification status.
    let refused = conn
        .call_method(
            Some(ATT_BUS),
            path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "Set",
            &(
                IDENTITY,
                "ResponderVerificationStatus",
                zbus::zvariant::Value::from(
                    "xyz.openbmc_project.Attestation.IdentityAuthentication.VerificationStatus.Failed",
                ),
            ),
        )
        .await;
    assert!(refused.is_err());
    assert!(
        signed_measurements(&conn, &path, &[1], &good, 0)
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_identity_check_shows_failed_and_quotes_stay_pinned() {
    let pair = attested_pair();
    let conn = connect(&pair.a).await;
    let path = format!("{ROOT}/{}", expected_id(&pair.b));
    let before = get_all(&conn, &path, INTEGRITY).await;
    // Pinned to a key B does not hold: B does not prove that identity.
    pair.a
        .busctl_json(&[
            "call",
            ATT_BUS,
            ATT_ROOT,
            REQUESTER_IFACE,
            "Attest",
            "ss",
            &pair.b.endpoint(),
            &format!("pinned:{}", "0".repeat(64)),
        ])
        .unwrap();
    let identity = get_all(&conn, &path, IDENTITY).await;
    assert_eq!(
        String::try_from(identity["ResponderVerificationStatus"].clone()).unwrap(),
        "xyz.openbmc_project.Attestation.IdentityAuthentication.VerificationStatus.Failed"
    );
    let after = get_all(&conn, &path, INTEGRITY).await;
    assert_eq!(
        String::try_from(after["TypeVersion"].clone()).unwrap(),
        "1.2"
    );
    assert!(
        u64::try_from(after["LastUpdated"].clone()).unwrap()
            >= u64::try_from(before["LastUpdated"].clone()).unwrap()
    );
    // Signed measurements still come from the identity B proved before.
    let nonce = random_nonce();
    let quote = signed_measurements(&conn, &path, &[2], &nonce, 0)
        .await
        .unwrap();
    let checked = python_check(&quote, &nonce, &[]);
    assert_eq!(checked["verifies"], true, "{checked}");
}

/// The object mapper learns of objects made after a service started only from
/// InterfacesAdded, which D-Bus emits from an ObjectManager above the object: a peer's
/// ComponentIntegrity object and its certificate are announced when they appear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_objects_are_announced_for_the_mapper() {
    use futures_util::StreamExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Node::new(tmp.path(), "bmc-b", KeyKind::File, json!({}));
    b.provision();
    b.start();
    let mut a = Node::new(tmp.path(), "bmc-a", KeyKind::File, json!({}));
    a.start();
    let conn = connect(&a).await;
    let owner = zbus::fdo::DBusProxy::new(&conn)
        .await
        .unwrap()
        .get_name_owner(ATT_BUS.try_into().unwrap())
        .await
        .unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(owner.as_str())
        .unwrap()
        .interface("org.freedesktop.DBus.ObjectManager")
        .unwrap()
        .member("InterfacesAdded")
        .unwrap()
        .build();
    let mut added = zbus::MessageStream::for_match_rule(rule, &conn, None)
        .await
        .unwrap();
    a.busctl_json(&[
        "call",
        ATT_BUS,
        ATT_ROOT,
        REQUESTER_IFACE,
        "Attest",
        "ss",
        &b.endpoint(),
        "first-contact",
    ])
    .unwrap();
    let id = expected_id(&b);
    let component = format!("{ROOT}/{id}");
    let cert = format!("/xyz/openbmc_project/certs/devices/{id}/slot_0");
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let complete = |seen: &HashMap<String, Vec<String>>| {
        seen.get(&component).is_some_and(|i| i.len() == 4)
            && seen.get(&cert).is_some_and(|i| i.len() == 2)
            && seen.contains_key(&format!("{cert}_issuer_1"))
            && seen.contains_key(&format!(
                "/xyz/openbmc_project/inventory/bmc_pairing/peers/{id}"
            ))
    };
    while !complete(&seen) {
        let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, added.next()).await else {
            break;
        };
        let (path, ifaces): (
            OwnedObjectPath,
            HashMap<String, HashMap<String, OwnedValue>>,
        ) = msg.body().deserialize().unwrap();
        seen.entry(path.to_string())
            .or_default()
            .extend(ifaces.into_keys());
    }
    let mut on_component = seen.get(&component).cloned().unwrap_or_default();
    on_component.sort();
    assert_eq!(
        on_component,
        vec![
            ASSOCIATIONS.to_owned(),
            INTEGRITY.to_owned(),
            IDENTITY.to_owned(),
            MEASUREMENT_SET.to_owned()
        ],
        "{seen:?}"
    );
    let mut on_cert = seen.get(&cert).cloned().unwrap_or_default();
    on_cert.sort();
    assert_eq!(
        on_cert,
        vec![ASSOCIATIONS.to_owned(), CERTIFICATE.to_owned()],
        "{seen:?}"
    );
    assert_eq!(
        seen.get(&format!("{cert}_issuer_1")),
        Some(&vec![CERTIFICATE.to_owned()]),
        "{seen:?}"
    );
    assert_eq!(
        seen.get(&format!(
            "/xyz/openbmc_project/inventory/bmc_pairing/peers/{id}"
        )),
        Some(&vec![ITEM.to_owned()]),
        "{seen:?}"
    );
}

/// A peer that no longer answers gets InternalFailure (the only other error the YAML allows)
/// and nothing the objects say changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_is_internal_failure_and_changes_nothing() {
    let mut pair = attested_pair();
    let conn = connect(&pair.a).await;
    let path = format!("{ROOT}/{}", expected_id(&pair.b));
    let before = (
        get_all(&conn, &path, INTEGRITY).await,
        get_all(&conn, &path, IDENTITY).await,
    );
    drop(pair.b.daemon.take());
    let err = signed_measurements(&conn, &path, &[], &random_nonce(), 0)
        .await
        .unwrap_err();
    assert_eq!(
        err.0, "xyz.openbmc_project.Common.Error.InternalFailure",
        "{err:?}"
    );
    let after = (
        get_all(&conn, &path, INTEGRITY).await,
        get_all(&conn, &path, IDENTITY).await,
    );
    assert_eq!(before, after);
}
