//! The lldpd source on its own: real LLDP frames from a real lldpd across a veth pair
//! between two network namespaces reach `LldpdSource`, driven in-process against the
//! namespace's lldpd (lldpcli run through `ip netns exec`). Link loss, lldpd restarts and
//! cancellation are followed; the child process never outlives the source.
#![cfg(test)]

use std::net::IpAddr;
use std::time::Duration;

use bmc_pairing_manager::discovery::lldpd::LldpdSource;
use bmc_pairing_manager::discovery::{Error, Event, Neighbour, Source};
use bmc_test_support::rig::{Options, Rig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

async fn next_matching(
    rx: &mut mpsc::Receiver<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> bool,
) -> Event {
    tokio::time::timeout(LIMIT, async {
        loop {
            let ev = rx.recv().await.expect("source stopped");
            if pick(&ev) {
                return ev;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {LIMIT:?}"))
}

fn seen_named(name: &str) -> impl FnMut(&Event) -> bool + '_ {
    move |e| matches!(e, Event::Seen(n) if n.system_name.as_deref() == Some(name))
}

fn lldpcli_pids(ns: &bmc_test_support::netns::Netns) -> Vec<u32> {
    ns.pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "lldpcli")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_lldp_frames_across_a_veth_reach_the_lldpd_source() {
    let mut rig = Rig::start(
        &["bmc-a", "bmc-b"],
        Options {
            start_daemons: false,
            ..Options::default()
        },
    );
    let (ns, socket) = {
        let a = rig.bmc("bmc-a");
        (a.ns.name.clone(), a.lldpd_socket.clone())
    };
    let source = LldpdSource::with_command(
        ["ip", "netns", "exec", &ns, "lldpcli"]
            .map(str::to_owned)
            .to_vec(),
        Some(socket),
    );
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(Box::new(source).run(tx, cancel.clone()));

    // B's frames: its name and its ULA.
    let Event::Seen(b) = next_matching(&mut rx, "B seen", seen_named("bmc-b")).await else {
        unreachable!()
    };
    assert_eq!(b.interface, "eth0");
    assert!(!b.chassis_id.is_empty());
    let ula: IpAddr = "fd00:b3c::b".parse().unwrap();
    assert_eq!(b.addresses, vec![ula]);
    assert_eq!(b.preferred_address(), Some(ula));
    assert_eq!(b.port, None);

    // The IPv4 path, with no private range: B advertises the exact address 127.0.0.1
    // (lldpd sends a sole exact pattern unchecked), and back.
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
    let Event::Seen(b4) = next_matching(
        &mut rx,
        "B with an IPv4 address",
        |e| matches!(e, Event::Seen(n) if n.addresses == [v4]),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(b4.chassis_id, b.chassis_id);
    assert_eq!(b4.preferred_address(), Some(v4));
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
        "B with its ULA again",
        |e| matches!(e, Event::Seen(n) if n.addresses == [ula]),
    )
    .await;
    let is_lost_b = |b: &Neighbour| {
        let b = b.clone();
        move |e: &Event| {
            matches!(e, Event::Lost { interface, chassis_id }
                if *interface == b.interface && *chassis_id == b.chassis_id)
        }
    };

    // Carrier loss: lldpd forgets B at once, and so does the source.
    rig.set_link("bmc-b", false);
    next_matching(&mut rx, "B lost on link down", is_lost_b(&b)).await;
    rig.set_link("bmc-b", true);
    next_matching(&mut rx, "B seen again on link up", seen_named("bmc-b")).await;

    // A change B advertises arrives as a new Seen with the full state.
    rig.bmc("bmc-b")
        .lldpcli(&["configure", "system", "hostname", "bmc-b-renamed"]);
    next_matching(&mut rx, "B's new name", seen_named("bmc-b-renamed")).await;

    // lldpd dies: the watch ends and is restarted with backoff; the new lldpd's snapshot
    // reports B again (with its current name).
    assert_eq!(
        lldpcli_pids(&rig.bmc("bmc-a").ns).len(),
        1,
        "one watch child"
    );
    rig.bmc_mut("bmc-a").restart_lldpd();
    next_matching(
        &mut rx,
        "B seen through the restarted lldpd",
        seen_named("bmc-b-renamed"),
    )
    .await;

    // Cancel: the source returns and its lldpcli child is gone.
    cancel.cancel();
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("source stops on cancel")
        .unwrap()
        .unwrap();
    let a_ns = &rig.bmc("bmc-a").ns;
    bmc_test_support::wait_for(LIMIT, "no lldpcli left in A's namespace", || {
        lldpcli_pids(a_ns).is_empty().then_some(())
    });
}

#[tokio::test]
async fn a_missing_lldpcli_is_unavailable_not_a_retry_loop() {
    let source = LldpdSource::with_command(vec!["/nonexistent/lldpcli".into()], None);
    let (tx, _rx) = mpsc::channel(4);
    let result = tokio::time::timeout(LIMIT, Box::new(source).run(tx, CancellationToken::new()))
        .await
        .expect("returns at once");
    assert!(
        matches!(
            result,
            Err(Error::Unavailable {
                source_name: "lldpd",
                ..
            })
        ),
        "{result:?}"
    );
}
