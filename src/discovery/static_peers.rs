//! Static peers from the configuration, for switched racks where LLDP cannot see past the
//! switch. Each is reported once as seen; they never expire.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Event, Neighbour, Source, SourceFuture};
use crate::config::StaticPeer;

/// Pseudo-interface name of static neighbours (never a real interface name, so `"peer"`
/// never resolves to a static entry).
pub const INTERFACE: &str = "static";

/// The configured peers as a discovery source.
#[derive(Debug, Clone)]
pub struct StaticPeers {
    peers: Vec<StaticPeer>,
}

impl StaticPeers {
    /// A source for `peers`.
    pub fn new(peers: Vec<StaticPeer>) -> Self {
        StaticPeers { peers }
    }

    /// The events this source reports.
    pub fn events(&self) -> Vec<Event> {
        self.peers
            .iter()
            .map(|p| {
                Event::Seen(Neighbour {
                    interface: INTERFACE.to_owned(),
                    chassis_id: format!("static:{}", p.name),
                    system_name: Some(p.name.clone()),
                    addresses: vec![p.address],
                    port: Some(p.port),
                })
            })
            .collect()
    }
}

impl Source for StaticPeers {
    fn name(&self) -> &'static str {
        "static"
    }

    fn run(
        self: Box<Self>,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> SourceFuture {
        Box::pin(async move {
            for event in self.events() {
                if events.send(event).await.is_err() {
                    return Ok(());
                }
            }
            cancel.cancelled().await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_static_peer_reaches_the_source_once() {
        let peers = vec![
            StaticPeer {
                name: "skiboards".into(),
                address: "192.0.2.7".parse().unwrap(),
                port: 8090,
            },
            StaticPeer {
                name: "bmc-c".into(),
                address: "fd00::3".parse().unwrap(),
                port: 9000,
            },
        ];
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(Box::new(StaticPeers::new(peers)).run(tx, cancel.clone()));
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        let Event::Seen(a) = first else {
            panic!("expected Seen")
        };
        let Event::Seen(b) = second else {
            panic!("expected Seen")
        };
        assert_eq!(a.system_name.as_deref(), Some("skiboards"));
        assert_eq!(a.port, Some(8090));
        assert_eq!(b.preferred_address(), Some("fd00::3".parse().unwrap()));
        assert_eq!(b.interface, INTERFACE);
        cancel.cancel();
        task.await.unwrap().unwrap();
        assert!(rx.recv().await.is_none(), "nothing more after cancel");
    }
}
