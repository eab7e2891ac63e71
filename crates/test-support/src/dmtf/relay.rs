//! A TCP relay in front of a responder that speaks the emulators' platform protocol
//! (`Command u32 BE | TransportType u32 BE | PayloadSize u32 BE | Payload`).
//!
//! It forwards whole platform messages, with TCP_NODELAY on both sockets and TCP_QUICKACK
//! re-armed before every read, so an emulator's header fields (each its own `send()`) are
//! acknowledged at once instead of after the ~40 ms delayed ACK. Optionally it changes SPDM
//! responses on their way to the requester ([`Tamper`]) and counts how often it did, so a
//! test can tell that what it checks really happened.
#![allow(clippy::panic)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use super::EmuTransport;

/// Platform header length.
const HEADER_LEN: usize = 12;
/// The platform command that carries a transport message.
const NORMAL: u32 = 1;
/// Largest payload relayed (an SPDM message plus its transport header, with room).
const MAX_PAYLOAD: usize = 0x1_0000;

/// A change made to SPDM responses in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// Forward everything unchanged.
    Nothing,
    /// Flip one bit in the last byte (inside the signature) of every response with this
    /// code: 0x03 CHALLENGE_AUTH, 0x60 MEASUREMENTS.
    FlipLastByteOf(u8),
}

/// A running relay: connections to [`Relay::port`] are forwarded to the responder.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    tampered: Arc<AtomicUsize>,
    acceptor: Option<JoinHandle<()>>,
}

impl Relay {
    /// Relays 127.0.0.1:`upstream` for `transport` (which decides where the SPDM message
    /// starts inside a payload).
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub fn start(upstream: u16, transport: EmuTransport, tamper: Tamper) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"))
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let tampered = Arc::new(AtomicUsize::new(0));
        let acceptor = {
            let stop = stop.clone();
            let tampered = tampered.clone();
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let spdm_offset = match transport {
                        // A DSP0287 frame header sits before the message.
                        EmuTransport::Tcp => 4,
                        EmuTransport::None => 0,
                    };
                    pump_both(client, server, spdm_offset, tamper, tampered.clone());
                }
            })
        };
        Relay {
            port,
            stop,
            tampered,
            acceptor: Some(acceptor),
        }
    }

    /// Relays 127.0.0.1:`upstream` unchanged, whatever the emulator transport (MCTP too).
    ///
    /// # Panics
    /// As [`Relay::start`].
    pub fn plain(upstream: u16) -> Relay {
        Relay::start(upstream, EmuTransport::None, Tamper::Nothing)
    }

    /// The port requesters connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many responses were changed so far.
    pub fn tampered(&self) -> usize {
        self.tampered.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn configure(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = socket2::SockRef::from(s).set_tcp_quickack(true);
}

fn pump_both(
    client: TcpStream,
    server: TcpStream,
    spdm_offset: usize,
    tamper: Tamper,
    tampered: Arc<AtomicUsize>,
) {
    configure(&client);
    configure(&server);
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || pump(client, server, None));
    std::thread::spawn(move || pump(server2, client2, Some((spdm_offset, tamper, tampered))));
}

/// Reads exactly `buf.len()` bytes with QUICKACK re-armed before each read.
fn read_exact_acking(from: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let _ = socket2::SockRef::from(&*from).set_tcp_quickack(true);
        let n = from.read(&mut buf[done..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        done += n;
    }
    Ok(())
}

/// Forwards whole platform messages from `from` to `to` until either side closes; with
/// `responses`, applies the tamper to SPDM responses.
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    responses: Option<(usize, Tamper, Arc<AtomicUsize>)>,
) {
    loop {
        let mut header = [0u8; HEADER_LEN];
        if read_exact_acking(&mut from, &mut header).is_err() {
            break;
        }
        let field =
            |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let (command, size) = (field(0), field(8) as usize);
        if size > MAX_PAYLOAD {
            break;
        }
        let mut payload = vec![0u8; size];
        if read_exact_acking(&mut from, &mut payload).is_err() {
            break;
        }
        if let Some((offset, Tamper::FlipLastByteOf(code), tampered)) = &responses
            && command == NORMAL
            && payload.get(offset + 1) == Some(code)
            && let Some(last) = payload.last_mut()
        {
            *last ^= 0x01;
            tampered.fetch_add(1, Ordering::SeqCst);
        }
        // One write per message, as a well-behaved peer sends it.
        let mut message = header.to_vec();
        message.extend_from_slice(&payload);
        if to.write_all(&message).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
