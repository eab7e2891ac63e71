//! What `bmc-attestation` serves on D-Bus is exactly its PDI YAML: every object (the manager
//! object and a peer object created by one attestation) is introspected over a real bus and
//! compared member by member with `dbus-interfaces-yaml/yaml` (see `bmc_test_support::pdi`).
#![cfg(test)]

use std::path::{Path, PathBuf};

use bmc_test_support::attestation::*;
use bmc_test_support::pdi::{
    self, Interface, check_object, check_service, diff, object_interfaces, yaml_interface,
};
use serde_json::json;

fn yaml_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus-interfaces-yaml/yaml")
}

fn yaml(name: &str) -> PathBuf {
    yaml_root().join(format!(
        "xyz/openbmc_project/BmcPairing/Attestation/{name}.interface.yaml"
    ))
}

#[test]
fn every_object_matches_its_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Node::new(tmp.path(), "bmc-b", KeyKind::File, json!({}));
    b.provision();
    b.start();
    let mut a = Node::new(tmp.path(), "bmc-a", KeyKind::File, json!({}));
    a.start();
    let reply = a
        .busctl_json(&[
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
    let peer = reply["data"][0].as_str().unwrap().to_owned();
    assert_eq!(a.peer_paths(), vec![peer.clone()]);

    // Each object serves exactly the interfaces we have YAML for.
    assert_eq!(
        object_interfaces(&a.bus.address, ATT_BUS, ATT_ROOT).unwrap(),
        vec![REQUESTER_IFACE.to_owned(), RESPONDER_IFACE.to_owned()]
    );
    assert_eq!(
        object_interfaces(&a.bus.address, ATT_BUS, &peer).unwrap(),
        vec![ATT_PEER_IFACE.to_owned()]
    );
    for (path, file) in [
        (ATT_ROOT, "Requester"),
        (ATT_ROOT, "Responder"),
        (peer.as_str(), "Peer"),
    ] {
        if let Err(problems) = check_object(&a.bus.address, ATT_BUS, path, &yaml(file)) {
            panic!(
                "{path} differs from {file}.interface.yaml:\n{}",
                problems.join("\n")
            );
        }
    }
    // And the whole service, object by object, found from the tree.
    let root = yaml_root();
    let upstream = pdi::upstream_pdi_root();
    // Upstream's `Inventory.Item` (the peer's inventory item, the `authenticating`
    // endpoint) is not in the shared copy of phosphor-dbus-interfaces; its two properties
    // are stated here as upstream defines them (no flags: writable).
    let item_root = tempfile::tempdir().unwrap();
    let item_yaml = item_root
        .path()
        .join("yaml/xyz/openbmc_project/Inventory/Item.interface.yaml");
    std::fs::create_dir_all(item_yaml.parent().unwrap()).unwrap();
    std::fs::write(
        &item_yaml,
        "properties:\n    - name: PrettyName\n      type: string\n    - name: Present\n      type: boolean\n",
    )
    .unwrap();
    let checked = check_service(
        &a.bus.address,
        ATT_BUS,
        &[
            root.as_path(),
            upstream.as_path(),
            item_root.path().join("yaml").as_path(),
        ],
    )
    .unwrap_or_else(|p| panic!("{}", p.join("\n")));
    assert!(checked.contains(&peer), "{checked:?}");
}

#[test]
fn the_comparison_catches_each_kind_of_drift() {
    let (_, spec) = yaml_interface(&yaml("Peer")).unwrap();
    assert!(diff("t", &spec, &spec).is_empty());
    let mut served = spec.clone();
    served.methods.get_mut("Attest").unwrap().1[1].1 = "s".into();
    served.properties.get_mut("Port").unwrap().0 = "u".into();
    served.properties.get_mut("Outcome").unwrap().1 = "readwrite".into();
    served.signals.get_mut("Attested").unwrap()[0].0 = "ok".into();
    served
        .properties
        .insert("Extra".into(), ("s".into(), "read".into()));
    served.methods.remove("Attest");
    let problems = diff("t", &spec, &served);
    assert_eq!(problems.len(), 5, "{problems:#?}");
    let empty = Interface::default();
    assert!(!diff("t", &spec, &empty).is_empty());
}

#[test]
fn pdi_types_map_to_signatures() {
    let cases = [
        ("boolean", "b"),
        ("array[array[byte]]", "aay"),
        ("array[struct[byte,string,string,string]]", "a(ysss)"),
        ("dict[string, variant[string,int64]]", "a{sv}"),
        ("enum[self.Outcome]", "s"),
        ("set[uint16]", "aq"),
        (
            "struct[object_path, dict[string, array[uint32]]]",
            "(oa{sau})",
        ),
        ("size", "t"),
    ];
    for (t, sig) in cases {
        assert_eq!(pdi::pdi_signature(t).unwrap(), sig, "{t}");
    }
    for bad in [
        "bool",
        "array[]",
        "array[string",
        "dict[string]",
        "array[foo]",
    ] {
        assert!(pdi::pdi_signature(bad).is_err(), "{bad}");
    }
}

#[test]
fn introspection_xml_is_read() {
    let xml = r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
  <!-- a comment with <tags> -->
  <interface name="a.B">
    <method name="M">
      <arg name="x" type="s" direction="in"/>
      <arg name="y" type="a(ys)" direction="out"/>
    </method>
    <method name="N"/>
    <signal name="S"><arg name="ok" type="b"/></signal>
    <property name="P" type="q" access="read">
      <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
    </property>
  </interface>
  <node name="child"><interface name="c.D"/></node>
  <node name="leaf"/>
</node>"#;
    let parsed = pdi::parse_introspection(xml).unwrap();
    assert_eq!(parsed.keys().collect::<Vec<_>>(), ["a.B"]);
    let i = &parsed["a.B"];
    assert_eq!(
        i.methods["M"],
        (
            vec![("x".into(), "s".into())],
            vec![("y".into(), "a(ys)".into())]
        )
    );
    assert_eq!(i.methods["N"], (vec![], vec![]));
    assert_eq!(i.signals["S"], vec![("ok".to_owned(), "b".to_owned())]);
    assert_eq!(i.properties["P"], ("q".to_owned(), "read".to_owned()));
}

#[test]
fn interface_names_come_from_the_yaml_path() {
    assert_eq!(
        pdi::interface_name_of(&yaml("Peer")).unwrap(),
        "xyz.openbmc_project.BmcPairing.Attestation.Peer"
    );
    assert!(pdi::interface_name_of(Path::new("x/Peer.interface.yaml")).is_err());
    assert_eq!(
        pdi::yaml_path_for(Path::new("/r"), "a.b.C"),
        PathBuf::from("/r/a/b/C.interface.yaml")
    );
}
