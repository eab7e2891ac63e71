//! LLDP neighbours straight from lldpd, through its own client, without polling.
//!
//! Owns one `lldpcli -f json0 watch` child (one JSON object per neighbour change:
//! `lldp-added`, `lldp-updated`, `lldp-deleted`) plus one `lldpcli -f json0 show neighbors
//! details` snapshot each time the watch (re)starts, and turns both into [`Event`]s. The
//! child is restarted with jittered backoff when it dies and killed when the source is
//! cancelled or dropped. The output of lldpcli is outside input (it repeats what any host on
//! the link put in its frames): it is framed and parsed into typed structs, and anything
//! malformed is a typed [`InvalidOutput`], never a panic. Discovery is a hint: nothing here
//! decides whether to trust or pair.
//!
//! The watch is started before the snapshot is read, so a change after the snapshot is never
//! missed; a change that races the two is reported twice at worst (events carry the full
//! state of a neighbour, so replaying them converges). One narrow window remains: lldpcli
//! gives no sign of when its subscription is active, so a neighbour that appears between
//! the watch process starting and its subscription reaching lldpd, *and* after the snapshot
//! was read, is only seen at its next change. The watch is spawned first and the snapshot in
//! a second process after it, which makes this window a few milliseconds at start-up.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Error, Event, Neighbour, Source, SourceFuture};
use bmc_pairing_core::link::heartbeat::Backoff;

/// Largest single JSON object accepted from `lldpcli watch` (one neighbour change).
pub const MAX_MESSAGE: usize = 1 << 20;
/// Largest `show neighbors details` output accepted.
pub const MAX_SNAPSHOT: usize = 8 << 20;
/// Deadline for the snapshot command.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
/// First restart delay after the watch dies.
pub const RESTART_INITIAL: Duration = Duration::from_millis(200);
/// Restart delay cap.
pub const RESTART_MAX: Duration = Duration::from_secs(30);
/// A watch that ran at least this long counts as healthy: the next restart starts the
/// backoff afresh.
pub const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// Longest stderr line of lldpcli that is logged (the rest is cut).
const MAX_LOG_LINE: usize = 512;

/// Output of lldpcli that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOutput {
    /// Not JSON (or a truncated document).
    #[error("not JSON: {reason}")]
    Syntax {
        /// What serde_json said.
        reason: String,
    },
    /// JSON, but not the json0 shape lldpcli prints (unknown message kind, wrong types).
    #[error("unexpected JSON shape: {reason}")]
    Shape {
        /// What serde_json said.
        reason: String,
    },
    /// A message larger than the cap.
    #[error("message larger than {limit} bytes")]
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// A neighbour without the local interface name.
    #[error("neighbour without an interface name")]
    NoInterface,
    /// A neighbour without a chassis id (mandatory in LLDP).
    #[error("neighbour on {interface} without a chassis id")]
    NoChassisId {
        /// Local interface.
        interface: String,
    },
    /// A management address that is not an IPv4 or IPv6 address.
    #[error("neighbour on {interface}: management address {value:?} is not an IP address")]
    BadAddress {
        /// Local interface.
        interface: String,
        /// The text.
        value: String,
    },
}

/// One parsed lldpcli document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `show neighbors`: every current neighbour.
    Snapshot(Vec<Neighbour>),
    /// `lldp-added` from the watch.
    Added(Vec<Neighbour>),
    /// `lldp-updated` from the watch (the full new state).
    Updated(Vec<Neighbour>),
    /// `lldp-deleted` from the watch.
    Deleted(Vec<Neighbour>),
}

// The json0 format: every element is an array of objects, attributes are strings.
#[derive(Deserialize)]
enum RawDocument {
    #[serde(rename = "lldp")]
    Snapshot(Vec<RawNeighbours>),
    #[serde(rename = "lldp-added")]
    Added(Vec<RawNeighbours>),
    #[serde(rename = "lldp-updated")]
    Updated(Vec<RawNeighbours>),
    #[serde(rename = "lldp-deleted")]
    Deleted(Vec<RawNeighbours>),
}

#[derive(Deserialize)]
struct RawNeighbours {
    #[serde(default)]
    interface: Vec<RawInterface>,
}

#[derive(Deserialize)]
struct RawInterface {
    #[serde(default)]
    name: String,
    #[serde(default)]
    chassis: Vec<RawChassis>,
}

#[derive(Deserialize)]
struct RawChassis {
    #[serde(default)]
    id: Vec<RawValue>,
    #[serde(default)]
    name: Vec<RawValue>,
    #[serde(default, rename = "mgmt-ip")]
    mgmt_ip: Vec<RawValue>,
}

#[derive(Deserialize)]
struct RawValue {
    #[serde(default)]
    value: String,
}

/// Parses one json0 document printed by lldpcli (`show neighbors details` or one `watch`
/// event).
///
/// # Errors
/// [`InvalidOutput`] for anything that is not such a document, or a neighbour without an
/// interface or chassis id, or with a management address that is not an IP address.
///
/// # Panics
/// Never.
pub fn parse(bytes: &[u8]) -> Result<Change, InvalidOutput> {
    if bytes.len() > MAX_SNAPSHOT {
        return Err(InvalidOutput::TooLarge {
            limit: MAX_SNAPSHOT,
        });
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| InvalidOutput::Syntax {
        reason: e.to_string(),
    })?;
    let doc: RawDocument = serde_json::from_slice(bytes).map_err(|e| InvalidOutput::Shape {
        reason: e.to_string(),
    })?;
    Ok(match doc {
        RawDocument::Snapshot(n) => Change::Snapshot(neighbours(n)?),
        RawDocument::Added(n) => Change::Added(neighbours(n)?),
        RawDocument::Updated(n) => Change::Updated(neighbours(n)?),
        RawDocument::Deleted(n) => Change::Deleted(neighbours(n)?),
    })
}

fn neighbours(raw: Vec<RawNeighbours>) -> Result<Vec<Neighbour>, InvalidOutput> {
    raw.into_iter()
        .flat_map(|n| n.interface)
        .map(neighbour)
        .collect()
}

fn neighbour(raw: RawInterface) -> Result<Neighbour, InvalidOutput> {
    let interface = raw.name.trim().to_owned();
    if interface.is_empty() {
        return Err(InvalidOutput::NoInterface);
    }
    let chassis = raw.chassis.into_iter().next();
    let chassis_id = chassis
        .as_ref()
        .and_then(|c| c.id.iter().map(|v| v.value.trim()).find(|v| !v.is_empty()))
        .map(str::to_owned)
        .ok_or_else(|| InvalidOutput::NoChassisId {
            interface: interface.clone(),
        })?;
    let system_name = chassis
        .as_ref()
        .and_then(|c| {
            c.name
                .iter()
                .map(|v| v.value.trim())
                .find(|v| !v.is_empty())
        })
        .map(str::to_owned);
    let mut addresses = Vec::new();
    for v in chassis.iter().flat_map(|c| c.mgmt_ip.iter()) {
        let text = v.value.trim();
        let ip: IpAddr = text.parse().map_err(|_| InvalidOutput::BadAddress {
            interface: interface.clone(),
            value: text.to_owned(),
        })?;
        if !addresses.contains(&ip) {
            addresses.push(ip);
        }
    }
    Ok(Neighbour {
        interface,
        chassis_id,
        system_name,
        addresses,
        port: None,
    })
}

/// Splits the byte stream of `lldpcli -f json0 watch` into whole JSON documents. lldpcli
/// pretty-prints each event over many lines, so lines are not a framing. Sans-IO: feed it
/// bytes, take documents.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Framer::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole document, `Ok(None)` if more bytes are needed.
    ///
    /// # Errors
    /// [`InvalidOutput::Syntax`] when the buffered bytes cannot start a JSON document, and
    /// [`InvalidOutput::TooLarge`] when one document exceeds [`MAX_MESSAGE`]. The stream
    /// cannot be resynchronised after either: the caller restarts it.
    ///
    /// # Panics
    /// Never.
    pub fn next_document(&mut self) -> Result<Option<Vec<u8>>, InvalidOutput> {
        let mut docs =
            serde_json::Deserializer::from_slice(&self.buf).into_iter::<serde::de::IgnoredAny>();
        match docs.next() {
            None => {
                // Only whitespace so far.
                self.buf.clear();
                Ok(None)
            }
            Some(Ok(_)) => {
                let end = docs.byte_offset();
                if end > MAX_MESSAGE {
                    return Err(InvalidOutput::TooLarge { limit: MAX_MESSAGE });
                }
                let rest = self.buf.split_off(end.min(self.buf.len()));
                let doc = std::mem::replace(&mut self.buf, rest);
                Ok(Some(doc))
            }
            Some(Err(e)) if e.is_eof() => {
                if self.buf.len() > MAX_MESSAGE {
                    Err(InvalidOutput::TooLarge { limit: MAX_MESSAGE })
                } else {
                    Ok(None)
                }
            }
            Some(Err(e)) => Err(InvalidOutput::Syntax {
                reason: e.to_string(),
            }),
        }
    }
}

/// lldpd as a discovery source.
#[derive(Clone, Debug)]
pub struct LldpdSource {
    command: Vec<String>,
    socket: Option<PathBuf>,
}

impl LldpdSource {
    /// Reads lldpd through `lldpcli` from `PATH`; `socket` is lldpd's control socket
    /// (`lldpcli -u`), `None` for lldpcli's built-in default.
    pub fn new(socket: Option<PathBuf>) -> Self {
        Self::with_command(vec!["lldpcli".to_owned()], socket)
    }

    /// Like [`LldpdSource::new`], with the command line that runs lldpcli given in full,
    /// e.g. `["ip", "netns", "exec", "bmc-a", "lldpcli"]` to read the lldpd of another
    /// network namespace. An empty command means `lldpcli`.
    pub fn with_command(command: Vec<String>, socket: Option<PathBuf>) -> Self {
        let command = if command.is_empty() {
            vec!["lldpcli".to_owned()]
        } else {
            command
        };
        LldpdSource { command, socket }
    }

    fn lldpcli(&self, args: &[&str]) -> Command {
        let mut words = self.command.iter();
        let program = words.next().map_or("lldpcli", String::as_str);
        let mut cmd = Command::new(program);
        cmd.args(words);
        if let Some(socket) = &self.socket {
            cmd.arg("-u").arg(socket);
        }
        cmd.args(["-f", "json0"])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn display(&self) -> String {
        self.command.join(" ")
    }

    async fn run_inner(
        self,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<(), Error> {
        let mut known = Known::default();
        let mut backoff = Backoff::new(RESTART_INITIAL, RESTART_MAX);
        loop {
            let started = tokio::time::Instant::now();
            let outcome = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                o = self.session(&events, &mut known) => o,
            };
            match outcome {
                Session::ReceiverGone => return Ok(()),
                Session::NotInstalled(reason) => {
                    return Err(Error::Unavailable {
                        source_name: "lldpd",
                        reason,
                    });
                }
                Session::Ended(why) => {
                    tracing::warn!(command = %self.display(), reason = %why, "lldpd watch ended; restarting");
                }
            }
            if started.elapsed() >= HEALTHY_RUN {
                backoff.reset();
            }
            let delay = backoff.next_delay(OsRng.next_u32());
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One watch process: start it, read the snapshot, then follow the watch until it ends.
    async fn session(&self, events: &mpsc::Sender<Event>, known: &mut Known) -> Session {
        let mut watch = match self
            .lldpcli(&["watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Session::NotInstalled(format!("{} not found", self.display()));
            }
            Err(e) => return Session::Ended(format!("cannot start the watch: {e}")),
        };
        let (Some(mut stdout), Some(mut stderr)) = (watch.stdout.take(), watch.stderr.take())
        else {
            return Session::Ended("watch has no pipes".into());
        };
        let snapshot = match self.snapshot().await {
            Ok(s) => s,
            Err(why) => return Session::Ended(why),
        };
        tracing::debug!(
            neighbours = snapshot.len(),
            "lldpd snapshot read; watching for changes"
        );
        if known.replace_all(snapshot, events).await.is_err() {
            return Session::ReceiverGone;
        }
        let mut framer = Framer::new();
        let mut out = vec![0u8; 16 * 1024];
        let mut err = vec![0u8; 4 * 1024];
        let mut stderr_open = true;
        loop {
            tokio::select! {
                n = stdout.read(&mut out) => {
                    let n = match n {
                        Ok(0) => return Session::Ended(exit_text(&mut watch).await),
                        Ok(n) => n,
                        Err(e) => return Session::Ended(format!("reading the watch: {e}")),
                    };
                    framer.push(out.get(..n).unwrap_or_default());
                    loop {
                        match framer.next_document() {
                            Ok(Some(doc)) => match parse(&doc) {
                                Ok(change) => {
                                    if known.apply(change, events).await.is_err() {
                                        return Session::ReceiverGone;
                                    }
                                }
                                Err(e) => tracing::warn!(error = %crate::kit::ErrorChain(&e), "ignoring an lldpd event"),
                            },
                            Ok(None) => break,
                            Err(e) => return Session::Ended(format!("unusable watch output: {e}")),
                        }
                    }
                }
                n = read_some(&mut stderr, &mut err), if stderr_open => match n {
                    Some(text) => log_stderr(&text),
                    None => stderr_open = false,
                },
            }
        }
    }

    async fn snapshot(&self) -> Result<Vec<Neighbour>, String> {
        let child = self
            .lldpcli(&["show", "neighbors", "details"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run the snapshot: {e}"))?;
        let output = tokio::time::timeout(SNAPSHOT_TIMEOUT, collect(child))
            .await
            .map_err(|_| format!("no snapshot within {SNAPSHOT_TIMEOUT:?}"))??;
        match parse(&output) {
            Ok(Change::Snapshot(n)) => Ok(n),
            Ok(_) => Err("the snapshot is not a neighbour list".into()),
            Err(e) => Err(format!("unusable snapshot: {e}")),
        }
    }
}

enum Session {
    ReceiverGone,
    NotInstalled(String),
    Ended(String),
}

/// Reads a child's stdout up to [`MAX_SNAPSHOT`] and waits for it; a failure exit is an
/// error carrying its stderr.
async fn collect(mut child: Child) -> Result<Vec<u8>, String> {
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let limit = u64::try_from(MAX_SNAPSHOT + 1).unwrap_or(u64::MAX);
    let mut stdout = stdout.take(limit);
    let mut stderr = stderr.take(64 * 1024);
    let (o, e) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err),);
    o.map_err(|e| format!("reading the snapshot: {e}"))?;
    let _ = e;
    if out.len() > MAX_SNAPSHOT {
        return Err(format!("snapshot larger than {MAX_SNAPSHOT} bytes"));
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for lldpcli: {e}"))?;
    if status.success() {
        Ok(out)
    } else {
        Err(format!(
            "lldpcli show neighbors: {status}: {}",
            truncated(&String::from_utf8_lossy(&err))
        ))
    }
}

async fn read_some(stream: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> Option<String> {
    match stream.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned()),
    }
}

fn log_stderr(text: &str) {
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        tracing::warn!(line = %truncated(line), "lldpcli");
    }
}

fn truncated(text: &str) -> &str {
    let mut end = text.len().min(MAX_LOG_LINE);
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    text.get(..end).unwrap_or_default().trim()
}

async fn exit_text(child: &mut Child) -> String {
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => format!("lldpcli watch exited: {status}"),
        Ok(Err(e)) => format!("lldpcli watch: {e}"),
        Err(_) => "lldpcli watch closed its output".into(),
    }
}

/// Neighbours reported so far, keyed like the driver keys them.
#[derive(Default)]
struct Known(BTreeMap<(String, String), Neighbour>);

type Closed = mpsc::error::SendError<Event>;

impl Known {
    /// A fresh full list: what vanished is lost, everything listed is seen.
    async fn replace_all(
        &mut self,
        now: Vec<Neighbour>,
        events: &mpsc::Sender<Event>,
    ) -> Result<(), Closed> {
        let fresh: BTreeMap<_, _> = now
            .into_iter()
            .map(|n| ((n.interface.clone(), n.chassis_id.clone()), n))
            .collect();
        for (interface, chassis_id) in self.0.keys() {
            if !fresh.contains_key(&(interface.clone(), chassis_id.clone())) {
                events
                    .send(Event::Lost {
                        interface: interface.clone(),
                        chassis_id: chassis_id.clone(),
                    })
                    .await?;
            }
        }
        for n in fresh.values() {
            events.send(Event::Seen(n.clone())).await?;
        }
        self.0 = fresh;
        Ok(())
    }

    async fn apply(&mut self, change: Change, events: &mpsc::Sender<Event>) -> Result<(), Closed> {
        match change {
            Change::Snapshot(all) => self.replace_all(all, events).await,
            Change::Added(list) | Change::Updated(list) => {
                for n in list {
                    self.0
                        .insert((n.interface.clone(), n.chassis_id.clone()), n.clone());
                    events.send(Event::Seen(n)).await?;
                }
                Ok(())
            }
            Change::Deleted(list) => {
                for n in list {
                    self.0.remove(&(n.interface.clone(), n.chassis_id.clone()));
                    events
                        .send(Event::Lost {
                            interface: n.interface,
                            chassis_id: n.chassis_id,
                        })
                        .await?;
                }
                Ok(())
            }
        }
    }
}

impl Source for LldpdSource {
    fn name(&self) -> &'static str {
        "lldpd"
    }

    fn run(
        self: Box<Self>,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> SourceFuture {
        Box::pin(self.run_inner(events, cancel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `lldpcli -f json0 show neighbors details` from lldpd 1.0.16 (Debian bookworm), one
    /// neighbour across a veth pair, with an exact IPv4 and a ULA management address.
    const SNAPSHOT: &str = r#"{
  "lldp": [
    {
      "interface": [
        {
          "name": "va",
          "via": "LLDP",
          "rid": "1",
          "age": "0 day, 00:00:02",
          "chassis": [
            {
              "id": [{"type": "mac", "value": "de:6e:6b:dc:74:90"}],
              "name": [{"value": "bmc-b"}],
              "descr": [{"value": "Debian GNU/Linux 12 (bookworm)"}],
              "mgmt-ip": [{"value": "127.0.0.1"}, {"value": "fd00:b3c::b"}],
              "mgmt-iface": [{"value": "2"}],
              "capability": [{"type": "Bridge", "enabled": false}]
            }
          ],
          "port": [
            {
              "id": [{"type": "mac", "value": "de:6e:6b:dc:74:90"}],
              "descr": [{"value": "vb"}],
              "ttl": [{"value": "4"}]
            }
          ]
        }
      ]
    }
  ]
}
"#;

    const EMPTY: &str = "{\n  \"lldp\": [\n    {\n      \n    }\n  ]\n}\n";

    fn bmc_b() -> Neighbour {
        Neighbour {
            interface: "va".into(),
            chassis_id: "de:6e:6b:dc:74:90".into(),
            system_name: Some("bmc-b".into()),
            addresses: vec!["127.0.0.1".parse().unwrap(), "fd00:b3c::b".parse().unwrap()],
            port: None,
        }
    }

    #[test]
    fn snapshot_of_lldpd_1_0_16() {
        assert_eq!(
            parse(SNAPSHOT.as_bytes()),
            Ok(Change::Snapshot(vec![bmc_b()]))
        );
        assert_eq!(parse(EMPTY.as_bytes()), Ok(Change::Snapshot(vec![])));
    }

    #[test]
    fn watch_events() {
        for (key, kind) in [("lldp-added", 0), ("lldp-updated", 1), ("lldp-deleted", 2)] {
            let doc = SNAPSHOT.replacen("\"lldp\"", &format!("\"{key}\""), 1);
            let want = vec![bmc_b()];
            let want = match kind {
                0 => Change::Added(want),
                1 => Change::Updated(want),
                _ => Change::Deleted(want),
            };
            assert_eq!(parse(doc.as_bytes()), Ok(want), "{key}");
        }
    }

    #[test]
    fn bad_documents_are_typed_errors() {
        type Check = fn(&InvalidOutput) -> bool;
        let cases: [(&str, Check); 7] = [
            ("{", |e| matches!(e, InvalidOutput::Syntax { .. })),
            ("[]", |e| matches!(e, InvalidOutput::Shape { .. })),
            (r#"{"lldp-moved": []}"#, |e| {
                matches!(e, InvalidOutput::Shape { .. })
            }),
            (r#"{"lldp": [{"interface": [{"name": "x"}]}]}"#, |e| {
                matches!(e, InvalidOutput::NoChassisId { .. })
            }),
            (
                r#"{"lldp": [{"interface": [{"chassis": [{"id": [{"value": "c"}]}]}]}]}"#,
                |e| matches!(e, InvalidOutput::NoInterface),
            ),
            (
                r#"{"lldp": [{"interface": [{"name": "x", "chassis": [{"id": [{"value": "c"}], "mgmt-ip": [{"value": "300.1.2.3"}]}]}]}]}"#,
                |e| matches!(e, InvalidOutput::BadAddress { .. }),
            ),
            (r#"{"lldp": [{"interface": "x"}]}"#, |e| {
                matches!(e, InvalidOutput::Shape { .. })
            }),
        ];
        for (text, check) in cases {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(check(&err), "{text}: {err:?}");
        }
    }

    #[test]
    fn framer_splits_pretty_printed_documents_across_reads() {
        let stream = format!(
            "{}\n{}",
            SNAPSHOT.replacen("\"lldp\"", "\"lldp-added\"", 1),
            SNAPSHOT.replacen("\"lldp\"", "\"lldp-deleted\"", 1)
        );
        let mut framer = Framer::new();
        let mut docs = Vec::new();
        for chunk in stream.as_bytes().chunks(7) {
            framer.push(chunk);
            while let Some(doc) = framer.next_document().unwrap() {
                docs.push(parse(&doc).unwrap());
            }
        }
        assert_eq!(
            docs,
            vec![Change::Added(vec![bmc_b()]), Change::Deleted(vec![bmc_b()])]
        );
        assert_eq!(framer.next_document(), Ok(None));
    }

    #[test]
    fn framer_caps_a_document_and_rejects_garbage() {
        // A whole document over the cap, arriving in one read.
        let mut framer = Framer::new();
        let big = format!("{{\"lldp-added\": [\"{}\"]}}", "a".repeat(MAX_MESSAGE));
        framer.push(big.as_bytes());
        assert_eq!(
            framer.next_document(),
            Err(InvalidOutput::TooLarge { limit: MAX_MESSAGE })
        );
        let mut framer = Framer::new();
        framer.push(b"{\"lldp-added\": [\"");
        framer.push(&vec![b'a'; MAX_MESSAGE]);
        assert_eq!(
            framer.next_document(),
            Err(InvalidOutput::TooLarge { limit: MAX_MESSAGE })
        );
        let mut framer = Framer::new();
        framer.push(b"  ]x");
        assert!(matches!(
            framer.next_document(),
            Err(InvalidOutput::Syntax { .. })
        ));
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            "[a-z0-9:.%-]{0,12}".prop_map(serde_json::Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            let keys = prop_oneof![
                Just("lldp".to_owned()),
                Just("lldp-added".to_owned()),
                Just("lldp-deleted".to_owned()),
                Just("interface".to_owned()),
                Just("name".to_owned()),
                Just("chassis".to_owned()),
                Just("id".to_owned()),
                Just("value".to_owned()),
                Just("mgmt-ip".to_owned()),
                "[a-z-]{1,6}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(keys, inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
            let mut framer = Framer::new();
            framer.push(&bytes);
            while let Ok(Some(doc)) = framer.next_document() {
                let _ = parse(&doc);
            }
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value()) {
            let text = serde_json::to_vec(&value).unwrap();
            let _ = parse(&text);
            let mut framer = Framer::new();
            framer.push(&text);
            framer.push(b"\n");
            framer.push(&text);
            for _ in 0..2 {
                match framer.next_document() {
                    Ok(Some(doc)) => prop_assert_eq!(parse(&doc).ok(), parse(&text).ok()),
                    other => prop_assert!(false, "expected a document, got {:?}", other),
                }
            }
        }

        #[test]
        fn accepted_neighbours_have_an_interface_and_a_chassis(value in json_value()) {
            let text = serde_json::to_vec(&value).unwrap();
            if let Ok(Change::Snapshot(n) | Change::Added(n) | Change::Updated(n) | Change::Deleted(n)) = parse(&text) {
                for n in n {
                    prop_assert!(!n.interface.is_empty());
                    prop_assert!(!n.chassis_id.is_empty());
                }
            }
        }
    }
}
