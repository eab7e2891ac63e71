//! A framed connection over any byte stream (TLS in production, a duplex pipe in tests).
//!
//! Owns the read buffer; [`Connection::read_frame`] is cancel safe because bytes already
//! read stay in that buffer, so it can sit in a `select!` next to timers.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use bmc_pairing_core::link::frame::{Frame, InvalidFrame};

/// Errors on a framed connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream failed.
    #[error("connection i/o")]
    Io(#[from] io::Error),
    /// The peer sent bytes that are not a valid frame.
    #[error("invalid frame from peer")]
    Frame(#[from] InvalidFrame),
    /// The peer closed the stream in the middle of a frame.
    #[error("connection closed mid-frame")]
    Truncated,
}

/// A frame buffer at most this large is kept after a frame (a `Hello` or a heartbeat fits).
const SMALL_FRAME: usize = 128;

/// Bytes still missing from the frame at the front of `buf`: the rest of the two-byte
/// length field, or the rest of the frame it announces (at least 1).
fn bytes_wanted(buf: &[u8]) -> usize {
    match buf {
        [hi, lo, ..] => (2 + usize::from(u16::from_be_bytes([*hi, *lo])))
            .saturating_sub(buf.len())
            .max(1),
        _ => 2 - buf.len(),
    }
}

/// Frames over a stream.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        Connection {
            stream,
            // Grows to the largest frame seen, not to the cap: a heartbeat-only session (most
            // of a hub's) keeps a few dozen bytes instead of a maximal frame's thousands.
            buf: Vec::new(),
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// Reads the next frame; `Ok(None)` on a clean end of stream between frames.
    ///
    /// # Errors
    /// [`Error`] on I/O failure, an invalid frame, or EOF inside a frame.
    ///
    /// # Cancel safety
    /// Cancel safe: a partly received frame stays buffered for the next call.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, Error> {
        loop {
            if let Some((frame, used)) = Frame::decode(&self.buf)? {
                self.buf.drain(..used);
                if self.buf.capacity() > SMALL_FRAME && self.buf.len() <= SMALL_FRAME {
                    // A large frame (group or quorum) is rare: give its buffer back.
                    self.buf.shrink_to(SMALL_FRAME);
                }
                return Ok(Some(frame));
            }
            // Read only what completes the length field or the frame it announces: decode
            // has already rejected a length above the cap, so at most one maximal frame is
            // ever buffered. `read_buf` fills spare capacity and commits only what it read,
            // so a cancelled read leaves the buffer as it was (cancel safe).
            let want = bytes_wanted(&self.buf);
            self.buf.reserve(want);
            let n = (&mut self.stream)
                .take(u64::try_from(want).unwrap_or(u64::MAX))
                .read_buf(&mut self.buf)
                .await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::Truncated)
                };
            }
        }
    }

    /// Writes one frame and flushes it.
    ///
    /// # Errors
    /// [`Error`] on I/O failure or an unencodable frame.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled write may leave part of a frame on the wire, so the
    /// session must be closed afterwards.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), Error> {
        let bytes = frame.to_bytes()?;
        self.stream.write_all(&bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Shuts the write side down (TLS close_notify, then FIN).
    ///
    /// # Errors
    /// I/O errors; usually ignorable at that point.
    pub async fn shutdown(&mut self) -> Result<(), Error> {
        self.stream.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_survive_byte_by_byte_delivery() {
        let (a, mut b) = tokio::io::duplex(1);
        let mut conn = Connection::new(a);
        let frames = [
            Frame::Hello {
                seq: 1,
                boot_id: 0,
                name: "bmc-b".into(),
            },
            Frame::Ping { seq: 2 },
        ];
        let writer = tokio::spawn(async move {
            for f in [
                Frame::Hello {
                    seq: 1,
                    boot_id: 0,
                    name: "bmc-b".into(),
                },
                Frame::Ping { seq: 2 },
            ] {
                b.write_all(&f.to_bytes().unwrap()).await.unwrap();
            }
            b.shutdown().await.unwrap();
            b
        });
        for f in frames {
            assert_eq!(conn.read_frame().await.unwrap(), Some(f));
        }
        assert!(conn.read_frame().await.unwrap().is_none());
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn truncated_and_oversized_input_are_errors() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = Connection::new(a);
        b.write_all(&[0, 10, 1]).await.unwrap();
        b.shutdown().await.unwrap();
        assert!(matches!(conn.read_frame().await, Err(Error::Truncated)));

        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = Connection::new(a);
        b.write_all(&[0xff, 0xff, 1, 1]).await.unwrap();
        assert!(matches!(
            conn.read_frame().await,
            Err(Error::Frame(InvalidFrame::BadLength(_)))
        ));
    }

    #[tokio::test]
    async fn memory_per_connection_stays_small_after_a_large_frame() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = Connection::new(a);
        // A session's read is held across every await of its task: nothing frame-sized may
        // live in it (it used to hold a stack chunk of the frame cap, thousands of bytes per
        // peer once group frames raised the cap).
        assert!(std::mem::size_of_val(&conn.read_frame()) < 256);
        let large = Frame::GroupList {
            list: vec![7; bmc_pairing_core::link::frame::MAX_GROUP_LIST_LEN],
        };
        let writer = {
            let large = large.clone();
            tokio::spawn(async move {
                b.write_all(&large.to_bytes().unwrap()).await.unwrap();
                b.write_all(&Frame::Ping { seq: 9 }.to_bytes().unwrap())
                    .await
                    .unwrap();
                b
            })
        };
        assert_eq!(conn.read_frame().await.unwrap(), Some(large));
        assert!(
            conn.buf.capacity() <= SMALL_FRAME,
            "{}",
            conn.buf.capacity()
        );
        assert_eq!(
            conn.read_frame().await.unwrap(),
            Some(Frame::Ping { seq: 9 })
        );
        assert!(conn.buf.capacity() <= SMALL_FRAME);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_cancelled_read_keeps_the_bytes_it_had() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut conn = Connection::new(a);
        let bytes = Frame::Ping { seq: 5 }.to_bytes().unwrap();
        let (head, tail) = bytes.split_at(3);
        b.write_all(head).await.unwrap();
        // The read takes the first bytes, then waits for the rest: cancel it there.
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), conn.read_frame()).await;
        assert!(waited.is_err());
        b.write_all(tail).await.unwrap();
        assert_eq!(
            conn.read_frame().await.unwrap(),
            Some(Frame::Ping { seq: 5 })
        );
    }
}
