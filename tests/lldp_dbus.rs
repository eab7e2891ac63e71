//! The phosphor-networkd D-Bus source on its own. Real LLDP frames from a real lldpd in
//! another network namespace reach `LldpDbus` through the networkd stand-in (which deletes
//! and re-creates the receive object on every change); forged signals from another bus
//! client are ignored; an owner change is followed; and a service without an ObjectManager is
//! read directly (an IPv4-only neighbour on loopback).
#![cfg(test)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bmc_pairing_manager::dbus::owner::TrustedUsers;
use bmc_pairing_manager::discovery::lldp_dbus::{LldpDbus, ROOT, SERVICE, receive_path};
use bmc_pairing_manager::discovery::{Event, Source};
use bmc_test_support::rig::{Options, Rig, Source as RigSource};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zbus::zvariant::{ObjectPath, Value};

const LIMIT: Duration = Duration::from_secs(20);

async fn next_matching(
    rx: &mut mpsc::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> bool,
) -> (Event, Vec<Event>) {
    let mut skipped = Vec::new();
    tokio::time::timeout(LIMIT, async {
        loop {
            let ev = rx.recv().await.expect("source stopped");
            if pick(&ev) {
                return (ev, skipped);
            }
            skipped.push(ev);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {LIMIT:?}"))
}

fn seen_named(name: &str) -> impl FnMut(&Event) -> bool + '_ {
    move |e| matches!(e, Event::Seen(n) if n.system_name.as_deref() == Some(name))
}

fn is_lost(e: &Event) -> bool {
    matches!(e, Event::Lost { interface, .. } if interface == "eth0")
}

/// Another client on the bus pretends to be networkd: InterfacesAdded for eth0's receive
/// object naming an impostor, and InterfacesRemoved for it.
async fn forge(bus: &str) {
    let conn = zbus::connection::Builder::address(bus)
        .unwrap()
        .build()
        .await
        .unwrap();
    let path = receive_path("eth0");
    let tlvs: HashMap<&str, Value<'_>> = [
        ("ChassisId", Value::from("ev:il")),
        ("SystemName", Value::from("evil")),
        ("ManagementAddressIPv6", Value::from("fd00:b3c::e")),
        ("ManagementAddressIPv4", Value::from("")),
    ]
    .into_iter()
    .collect();
    let ifaces: HashMap<&str, HashMap<&str, Value<'_>>> =
        [("xyz.openbmc_project.Network.LLDP.TLVs", tlvs)]
            .into_iter()
            .collect();
    let p = ObjectPath::try_from(path.as_str()).unwrap();
    conn.emit_signal(
        None::<()>,
        ROOT,
        "org.freedesktop.DBus.ObjectManager",
        "InterfacesAdded",
        &(p.clone(), ifaces),
    )
    .await
    .unwrap();
    conn.emit_signal(
        None::<()>,
        ROOT,
        "org.freedesktop.DBus.ObjectManager",
        "InterfacesRemoved",
        &(p, vec!["xyz.openbmc_project.Network.LLDP.TLVs"]),
    )
    .await
    .unwrap();
    // A round trip to the bus daemon after the forgeries: it has dispatched them by now
    // (messages from one connection are handled in order).
    zbus::fdo::DBusProxy::new(&conn)
        .await
        .unwrap()
        .get_id()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_lldp_reaches_the_dbus_source_through_the_networkd_standin() {
    let mut rig = Rig::start(
        &["bmc-a", "bmc-b"],
        Options {
            source: RigSource::Networkd,
            start_daemons: false,
            ..Options::default()
        },
    );
    let bus = rig.bmc("bmc-a").bmc.bus.address.clone();
    let source = LldpDbus::new(Some(bus.clone()), "eth0".into(), TrustedUsers::root());
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Box::new(source).run(tx, cancel.clone()));

    let ula: IpAddr = "fd00:b3c::b".parse().unwrap();
    let (Event::Seen(b), _) = next_matching(&mut rx, "B seen", seen_named("bmc-b")).await else {
        unreachable!()
    };
    assert_eq!(b.interface, "eth0");
    assert!(!b.chassis_id.is_empty());
    assert_eq!(b.addresses, vec![ula]);

    // IPv4 through ManagementAddressIPv4, with no private range: B advertises 127.0.0.1.
    let v4: IpAddr = "127.0.0.1".parse().unwrap();
    let b_ctl = rig.bmc("bmc-b");
    b_ctl.lldpcli(&[
        "configure",
        "system",
        "ip",
        "management",
        "pattern",
        "127.0.0.1",
    ]);
    next_matching(
        &mut rx,
        "B with IPv4",
        |e| matches!(e, Event::Seen(n) if n.addresses == [v4] && n.chassis_id == b.chassis_id),
    )
    .await;
    b_ctl.lldpcli(&[
        "configure",
        "system",
        "ip",
        "management",
        "pattern",
        "fd00:b3c::b",
    ]);
    next_matching(
        &mut rx,
        "B with its ULA",
        |e| matches!(e, Event::Seen(n) if n.addresses == [ula]),
    )
    .await;

    // Link loss removes the receive object; link up re-creates it.
    rig.set_link("bmc-b", false);
    next_matching(&mut rx, "B lost", is_lost).await;
    rig.set_link("bmc-b", true);
    next_matching(&mut rx, "B seen again", seen_named("bmc-b")).await;

    // Signals from anyone but the owner of xyz.openbmc_project.LLDP are ignored. A forged
    // InterfacesAdded would show as "evil"; a forged InterfacesRemoved as a Lost before any
    // real change (a real change is a delete and re-create, so it is checked in a quiet
    // window first: this can only miss a leak, never invent one).
    forge(&bus).await;
    let quiet = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(quiet.is_err(), "forged signals leaked: {quiet:?}");
    rig.bmc("bmc-b")
        .lldpcli(&["configure", "system", "hostname", "bmc-b2"]);
    let (_, between) = next_matching(&mut rx, "B renamed", seen_named("bmc-b2")).await;
    assert!(
        between.iter().all(|e| match e {
            Event::Lost { chassis_id, .. } => *chassis_id == b.chassis_id,
            Event::Seen(n) => n.chassis_id == b.chassis_id,
        }),
        "forged signals leaked: {between:?}"
    );

    // networkd restarts: the old owner's neighbours are lost, the new owner is read afresh.
    rig.bmc_mut("bmc-a").restart_standin();
    let (_, before) = next_matching(&mut rx, "B from the new owner", seen_named("bmc-b2")).await;
    assert!(
        before.iter().any(is_lost),
        "the old owner's neighbour is lost first: {before:?}"
    );

    cancel.cancel();
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("stops on cancel")
        .unwrap()
        .unwrap();
}

/// A service with the receive object but no ObjectManager (GetManagedObjects fails).
struct Receive {
    ipv4: String,
}

#[zbus::interface(name = "xyz.openbmc_project.Network.LLDP.TLVs")]
impl Receive {
    #[zbus(property, name = "ChassisId")]
    fn chassis_id(&self) -> String {
        "00:11:22:33:44:55".into()
    }
    #[zbus(property, name = "SystemName")]
    fn system_name(&self) -> String {
        "skiboards".into()
    }
    #[zbus(property, name = "ManagementAddressIPv4")]
    fn management_address_ipv4(&self) -> String {
        self.ipv4.clone()
    }
    #[zbus(property, name = "ManagementAddressIPv6")]
    fn management_address_ipv6(&self) -> String {
        String::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_object_manager_the_receive_object_is_read_directly_ipv4_on_loopback() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let tmp = tempfile::tempdir().unwrap();
    let bus = bmc_test_support::Bus::start(tmp.path());
    let service = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .serve_at(
            receive_path("eth1"),
            Receive {
                ipv4: "127.0.0.1".into(),
            },
        )
        .unwrap()
        .name(SERVICE)
        .unwrap()
        .build()
        .await
        .unwrap();

    let (tx, mut rx) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let source = LldpDbus::new(
        Some(bus.address.clone()),
        "eth1".into(),
        TrustedUsers::root(),
    );
    let task = tokio::spawn(Box::new(source).run(tx, cancel.clone()));
    let (Event::Seen(n), _) = next_matching(&mut rx, "skiboards", seen_named("skiboards")).await
    else {
        unreachable!()
    };
    assert_eq!(n.interface, "eth1");
    assert_eq!(n.chassis_id, "00:11:22:33:44:55");
    assert_eq!(n.preferred_address(), Some("127.0.0.1".parse().unwrap()));

    // The service leaves the bus: its neighbour is lost.
    service.release_name(SERVICE).await.unwrap();
    next_matching(
        &mut rx,
        "skiboards lost",
        |e| matches!(e, Event::Lost { interface, .. } if interface == "eth1"),
    )
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// Not a test on its own: the unprivileged owner of the LLDP service that
/// `an_owner_that_is_not_root_is_not_believed` starts with `setpriv` (as `nobody`). It serves
/// eth1's receive object, as networkd would, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of an_owner_that_is_not_root_is_not_believed"]
async fn unprivileged_lldp_owner() {
    let Ok(bus) = std::env::var("UNPRIVILEGED_LLDP_OWNER_BUS") else {
        return;
    };
    let _service = zbus::connection::Builder::address(bus.as_str())
        .unwrap()
        .serve_at(
            receive_path("eth1"),
            Receive {
                ipv4: "127.0.0.1".into(),
            },
        )
        .unwrap()
        .name(SERVICE)
        .unwrap()
        .build()
        .await
        .unwrap();
    println!("owning {SERVICE}");
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// OpenBMC's bus policy lets any user own any name, so owning `xyz.openbmc_project.LLDP`
/// proves nothing: a neighbour served by an owner running as `nobody` is not believed (with
/// the default trust, root only), and is believed when that user is configured as trusted
/// (the control that shows the owner really served it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_is_not_root_is_not_believed() {
    use std::os::unix::fs::PermissionsExt;
    bmc_test_support::require_tool("setpriv");
    let tmp = tempfile::tempdir().unwrap();
    // `nobody` must reach the bus socket.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bus = bmc_test_support::Bus::start(&tmp.path().join("bus"));
    std::fs::set_permissions(
        tmp.path().join("bus"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "unprivileged_lldp_owner",
            "--ignored",
            "--nocapture",
        ])
        .env("UNPRIVILEGED_LLDP_OWNER_BUS", &bus.address)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _owner = bmc_test_support::Proc {
        child,
        name: "unprivileged LLDP owner".into(),
    };
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !dbus
        .name_has_owner(SERVICE.try_into().unwrap())
        .await
        .unwrap()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the helper never owned {SERVICE}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let run = |trusted: TrustedUsers| {
        let (tx, rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let source = LldpDbus::new(Some(bus.address.clone()), "eth1".into(), trusted);
        let task = tokio::spawn(Box::new(source).run(tx, cancel.clone()));
        (rx, cancel, task)
    };
    let (mut rx, cancel, task) = run(TrustedUsers::root());
    let believed = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(ev) = rx.recv().await {
            if seen_named("skiboards")(&ev) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        !believed,
        "a neighbour from an owner running as nobody was believed"
    );
    cancel.cancel();
    task.await.unwrap().unwrap();

    let (mut rx, cancel, task) = run(TrustedUsers::new([0, 65534]));
    next_matching(
        &mut rx,
        "skiboards from a trusted nobody",
        seen_named("skiboards"),
    )
    .await;
    cancel.cancel();
    task.await.unwrap().unwrap();
}
