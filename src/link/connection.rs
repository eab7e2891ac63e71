//! A framed connection over any byte stream (TLS in production, a duplex pipe in tests).
//!
//! Owns the read buffer; [`Connection::read_frame`] is cancel safe because bytes already
//! read stay in that buffer, so it can sit in a `select!` next to timers.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use bmc_pairing_core::link::frame::{Frame, InvalidFrame, MAX_FRAME_LEN};

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
            buf: Vec::with_capacity(MAX_FRAME_LEN),
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
        let mut chunk = [0u8; MAX_FRAME_LEN];
        loop {
            if let Some((frame, used)) = Frame::decode(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            // Never buffer more than one maximal frame: decode has already rejected any
            // length above the cap, so this bound is what keeps memory fixed per peer.
            let room = MAX_FRAME_LEN
                .saturating_sub(self.buf.len())
                .clamp(1, chunk.len());
            let (slot, _) = chunk.split_at_mut(room);
            let n = self.stream.read(slot).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::Truncated)
                };
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
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
}
