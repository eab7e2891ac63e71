//! In-process D-Bus for interface tests (the oo7 pattern): a server connection serving one
//! object and a client connection, joined by a socket pair, peer to peer. No dbus-daemon, no
//! bus names: each interface is tested on its own, next to its code.

use tokio::sync::{mpsc, watch};
use zbus::object_server::Interface;

use crate::pairing::handle::{Command, Handle, Snapshot};

/// A server serving `iface` at `path`, and a client connected to it. Keep both alive.
pub(crate) async fn serve<I: Interface>(
    path: &str,
    iface: I,
) -> (zbus::Connection, zbus::Connection) {
    let guid = zbus::Guid::generate();
    let (a, b) = tokio::net::UnixStream::pair().unwrap();
    let server = zbus::connection::Builder::unix_stream(a)
        .server(guid)
        .unwrap()
        .p2p()
        .serve_at(path, iface)
        .unwrap()
        .build();
    let client = zbus::connection::Builder::unix_stream(b).p2p().build();
    let (server, client) = tokio::join!(server, client);
    (server.unwrap(), client.unwrap())
}

/// A handle whose commands the test answers itself, showing `snapshot`.
pub(crate) fn handle(
    snapshot: Snapshot,
) -> (Handle, mpsc::Receiver<Command>, watch::Sender<Snapshot>) {
    let (commands, rx) = mpsc::channel(4);
    let (tx, snapshot) = watch::channel(snapshot);
    (
        Handle {
            commands,
            snapshot,
            round_trips: crate::link::RoundTrips::new(),
        },
        rx,
        tx,
    )
}

/// `method` on `iface` at `path` with `body`: the reply body, or the D-Bus error name and
/// message.
pub(crate) async fn call<B>(
    client: &zbus::Connection,
    path: &str,
    iface: &str,
    method: &str,
    body: &B,
) -> Result<zbus::Message, (String, String)>
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    client
        .call_method(None::<&str>, path, Some(iface), method, body)
        .await
        .map_err(|e| match e {
            zbus::Error::MethodError(name, text, _) => (name.to_string(), text.unwrap_or_default()),
            other => (other.to_string(), String::new()),
        })
}

/// Property `name` of `iface` at `path`, as a plain value.
pub(crate) async fn get<T>(client: &zbus::Connection, path: &str, iface: &str, name: &str) -> T
where
    T: TryFrom<zbus::zvariant::OwnedValue>,
    T::Error: std::fmt::Debug,
{
    let reply = call(
        client,
        path,
        "org.freedesktop.DBus.Properties",
        "Get",
        &(iface, name),
    )
    .await
    .unwrap();
    let value: zbus::zvariant::OwnedValue = reply.body().deserialize().unwrap();
    T::try_from(value).unwrap()
}
