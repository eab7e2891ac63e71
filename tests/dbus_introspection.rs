//! What `bmc-pairing-manager` serves on D-Bus is exactly the YAML: every object it exports
//! (the PDI Provisioning object, the seed 000 object, a per-peer object after pairing) is
//! introspected over a real bus and compared member by member with
//! `dbus-interfaces-yaml/yaml` (our interfaces) and `dbus-interfaces-yaml/upstream` (the
//! upstream Provisioning interface we serve exactly), and the identity certificates with
//! upstream phosphor-dbus-interfaces' own `Certs` YAML ([`upstream_pdi_root`]). Enum-typed
//! properties must hold values of their YAML enumeration.
//!
//! [`upstream_pdi_root`]: bmc_test_support::pdi::upstream_pdi_root
#![cfg(test)]

use std::path::{Path, PathBuf};

use bmc_test_support::pdi::{check_service, object_interfaces, yaml_path_for};
use bmc_test_support::*;
use serde_json::json;

const TRUST_QUORUM_PATH: &str = "/xyz/openbmc_project/BmcPairingManager/trust_quorum";
const TRUST_QUORUM_IFACE: &str = "xyz.openbmc_project.BmcPairing.TrustQuorum";

fn roots() -> [PathBuf; 2] {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus-interfaces-yaml");
    [base.join("yaml"), base.join("upstream")]
}

/// `(property, enum name)` pairs of an interface YAML whose type is `enum[self.X]`, plus the
/// values each enum allows.
fn enum_properties(yaml: &Path) -> Vec<(String, Vec<String>)> {
    let doc: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(yaml).unwrap()).unwrap();
    let enums: Vec<(String, Vec<String>)> = doc["enumerations"]
        .as_sequence()
        .map(|s| {
            s.iter()
                .map(|e| {
                    let values = e["values"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .map(|v| v["name"].as_str().unwrap().to_owned())
                        .collect();
                    (e["name"].as_str().unwrap().to_owned(), values)
                })
                .collect()
        })
        .unwrap_or_default();
    doc["properties"]
        .as_sequence()
        .map(|props| {
            props
                .iter()
                .filter_map(|p| {
                    let t = p["type"].as_str()?;
                    let e = t.strip_prefix("enum[self.")?.strip_suffix(']')?;
                    let values = enums.iter().find(|(n, _)| n == e)?.1.clone();
                    Some((
                        p["name"].as_str()?.to_owned(),
                        values.into_iter().map(|v| format!("{e}.{v}")).collect(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_object_matches_its_yaml_and_enum_values_are_declared() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", json!({}));
    let mut b = Bmc::new(tmp.path(), "bmc-b", json!({}));
    a.start();
    b.start();
    pair(&a, &b);
    let peer = a.peer_paths().remove(0);

    let [ours, upstream] = roots();
    // The identity certificates are served as upstream PDI's Certs interfaces.
    let pdi = bmc_test_support::pdi::upstream_pdi_root();
    let checked = check_service(
        &a.bus.address,
        SEED_BUS,
        &[ours.as_path(), upstream.as_path(), pdi.as_path()],
    )
    .unwrap_or_else(|problems| {
        panic!(
            "served interfaces differ from the YAML:\n{}",
            problems.join("\n")
        )
    });
    for path in [
        PDI_PATH,
        SEED_PATH,
        peer.as_str(),
        "/xyz/openbmc_project/certs/server/bmcpairing",
        "/xyz/openbmc_project/certs/server/bmcpairing/ca",
        "/xyz/openbmc_project/certs/server/bmcpairing/identity",
        TRUST_QUORUM_PATH,
    ] {
        assert!(
            checked.iter().any(|p| p == path),
            "{path} was not checked: {checked:?}"
        );
    }
    // Exactly the interfaces of the design, nothing more.
    assert_eq!(
        object_interfaces(&a.bus.address, SEED_BUS, PDI_PATH).unwrap(),
        vec![PDI_IFACE.to_owned()]
    );
    assert_eq!(
        object_interfaces(&a.bus.address, SEED_BUS, &peer).unwrap(),
        vec![PEER_IFACE.to_owned()]
    );
    // The manager object: the seed surface, our identity validity, upstream FactoryReset
    // (each compared with its YAML above).
    let mut at_manager = object_interfaces(&a.bus.address, SEED_BUS, SEED_PATH).unwrap();
    at_manager.sort();
    assert_eq!(
        at_manager,
        vec![
            "xyz.openbmc_project.BmcPairing.Identity".to_owned(),
            SEED_IFACE.to_owned(),
            "xyz.openbmc_project.Common.FactoryReset".to_owned(),
        ]
    );

    // Enum-typed properties carry "<interface>.<Enum>.<Value>" with a declared value.
    assert_eq!(
        object_interfaces(&a.bus.address, SEED_BUS, TRUST_QUORUM_PATH).unwrap(),
        vec![TRUST_QUORUM_IFACE.to_owned()]
    );
    for (path, iface) in [
        (PDI_PATH, PDI_IFACE),
        (peer.as_str(), PEER_IFACE),
        (TRUST_QUORUM_PATH, TRUST_QUORUM_IFACE),
    ] {
        let yaml = [&ours, &upstream]
            .iter()
            .map(|r| yaml_path_for(r, iface))
            .find(|p| p.is_file())
            .unwrap();
        let props = enum_properties(&yaml);
        assert!(!props.is_empty(), "{iface} has enum properties");
        for (prop, allowed) in props {
            let value = a.get(SEED_BUS, path, iface, &prop);
            let value = value.trim_start_matches("s ").trim_matches('"');
            let suffix = value
                .strip_prefix(&format!("{iface}."))
                .unwrap_or_else(|| panic!("{prop} = {value}: not prefixed by {iface}"));
            assert!(
                allowed.iter().any(|a| a == suffix),
                "{prop} = {value} is not one of {allowed:?}"
            );
        }
    }
}
