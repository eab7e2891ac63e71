//! The SPDM 1.2 transcripts M1 and L1, hashed incrementally so their memory stays bounded
//! whatever a peer sends.
//!
//! `VCA` = GET_VERSION..ALGORITHMS, exact bytes. `M1 = VCA || B || C`, where B holds every
//! GET_DIGESTS/DIGESTS and GET_CERTIFICATE/CERTIFICATE pair since VCA (or since the last
//! CHALLENGE_AUTH) and C is CHALLENGE || CHALLENGE_AUTH without its signature.
//! `L1 = VCA || every GET_MEASUREMENTS/MEASUREMENTS pair since the last signed one`, ending
//! with the signed MEASUREMENTS without its signature. ERROR and RESPOND_IF_READY never enter.

use super::crypto::{HashAlgo, Hasher};

/// Upper bound on the VCA bytes buffered before the hash is known. VCA messages are small
/// (the largest, NEGOTIATE_ALGORITHMS, is capped at 128 bytes by the codec).
pub const MAX_VCA_LEN: usize = 4096;

/// Transcript state for one connection (either role).
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    vca: Vec<u8>,
    hashes: Option<Running>,
}

#[derive(Clone, Debug)]
struct Running {
    algo: HashAlgo,
    m: Hasher,
    l: Hasher,
}

/// The transcript was used out of order or outgrew its bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranscriptError {
    /// A B/C/L append before the hash algorithm was fixed.
    #[error("transcript used before algorithms were negotiated")]
    NotNegotiated,
    /// VCA exceeded [`MAX_VCA_LEN`].
    #[error("version/capabilities/algorithms transcript too large")]
    VcaTooLarge,
}

impl Transcript {
    /// An empty transcript.
    pub fn new() -> Self {
        Transcript::default()
    }

    /// Forgets everything (GET_VERSION restarts the connection).
    pub fn reset(&mut self) {
        self.vca.clear();
        self.hashes = None;
    }

    /// Appends one message of VCA.
    ///
    /// # Errors
    /// [`TranscriptError::VcaTooLarge`].
    pub fn append_vca(&mut self, message: &[u8]) -> Result<(), TranscriptError> {
        if self.vca.len().saturating_add(message.len()) > MAX_VCA_LEN {
            return Err(TranscriptError::VcaTooLarge);
        }
        self.vca.extend_from_slice(message);
        Ok(())
    }

    /// VCA so far.
    pub fn vca(&self) -> &[u8] {
        &self.vca
    }

    /// Fixes the hash after ALGORITHMS; M and L both start as H-state over VCA.
    pub fn negotiated(&mut self, algo: HashAlgo) {
        let mut m = algo.hasher();
        m.update(&self.vca);
        let l = m.clone();
        self.hashes = Some(Running { algo, m, l });
    }

    fn running(&mut self) -> Result<&mut Running, TranscriptError> {
        self.hashes.as_mut().ok_or(TranscriptError::NotNegotiated)
    }

    /// Appends a B message (digests/certificate exchange).
    ///
    /// # Errors
    /// [`TranscriptError::NotNegotiated`].
    pub fn append_b(&mut self, message: &[u8]) -> Result<(), TranscriptError> {
        self.running()?.m.update(message);
        Ok(())
    }

    /// H(M1) for `challenge || challenge_auth_without_signature`; then B restarts, as the
    /// spec (and libspdm) reset it after CHALLENGE_AUTH.
    ///
    /// # Errors
    /// [`TranscriptError::NotNegotiated`].
    pub fn finish_m1(
        &mut self,
        challenge: &[u8],
        auth_unsigned: &[u8],
    ) -> Result<Vec<u8>, TranscriptError> {
        let vca = self.vca.clone();
        let run = self.running()?;
        let mut m = run.m.clone();
        m.update(challenge);
        m.update(auth_unsigned);
        let digest = m.peek();
        let mut fresh = run.algo.hasher();
        fresh.update(&vca);
        run.m = fresh;
        Ok(digest)
    }

    /// Appends an unsigned GET_MEASUREMENTS/MEASUREMENTS pair to L.
    ///
    /// # Errors
    /// [`TranscriptError::NotNegotiated`].
    pub fn append_l(&mut self, request: &[u8], response: &[u8]) -> Result<(), TranscriptError> {
        let run = self.running()?;
        run.l.update(request);
        run.l.update(response);
        Ok(())
    }

    /// H(L1) ending with `request || response_without_signature`; then L restarts.
    ///
    /// # Errors
    /// [`TranscriptError::NotNegotiated`].
    pub fn finish_l1(
        &mut self,
        request: &[u8],
        response_unsigned: &[u8],
    ) -> Result<Vec<u8>, TranscriptError> {
        let vca = self.vca.clone();
        let run = self.running()?;
        run.l.update(request);
        run.l.update(response_unsigned);
        let digest = run.l.peek();
        let mut fresh = run.algo.hasher();
        fresh.update(&vca);
        run.l = fresh;
        Ok(digest)
    }
}
