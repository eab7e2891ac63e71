//! Feldman verifiable secret sharing over P-256.
//!
//! The secret is a P-256 scalar `s`. [`split`] draws a random polynomial
//! `f(x) = s + a1 x + ... + a(k-1) x^(k-1)` and gives member `i` (1-based) the share `f(i)`;
//! the public [`Commitment`] is `[s·G, a1·G, ..., a(k-1)·G]`. A member checks its share with
//! [`Commitment::verify`] (`f(i)·G == Σ C_j · i^j`) without learning anything about `s`, and
//! [`combine`] rebuilds `s` from any `k` verified shares by Lagrange interpolation at 0, then
//! checks it against `C_0`. Fewer than `k` shares say nothing about `s` (Shamir).
//!
//! Hand-written on `p256`'s `Scalar`/`ProjectivePoint` (already linked for ECDSA) rather than
//! the `vsss-rs` crate: every `vsss-rs` release on elliptic-curve 0.13 brings its own
//! dependency set (3.x: rand 0.8, rand_chacha, thiserror-no-std; 4.x/5.x: generic-array 1,
//! crypto-bigint, hybrid-array, num) for what is ~100 lines of group arithmetic here.
//!
//! Secrets and shares are zeroed on drop ([`zeroize`]); their `Debug` prints no value.

use p256::elliptic_curve::Field;
use p256::elliptic_curve::PrimeField;
use p256::elliptic_curve::group::Group as _;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::{AffinePoint, EncodedPoint, FieldBytes, ProjectivePoint, Scalar};
use rand_core::CryptoRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes of an encoded share value (a P-256 scalar).
pub const SCALAR_LEN: usize = 32;
/// Bytes of one compressed commitment point.
pub const POINT_LEN: usize = 33;
/// Most members of a group (share indices are `1..=MAX_MEMBERS`).
pub const MAX_MEMBERS: usize = 16;

/// Why shares could not be made, checked or combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VssError {
    /// `k` or `n` out of range (`2 <= k <= n <= MAX_MEMBERS`).
    #[error("threshold {k} of {n} out of range")]
    BadParameters {
        /// Threshold.
        k: usize,
        /// Members.
        n: usize,
    },
    /// Fewer valid shares than the threshold.
    #[error("{have} valid shares, {need} needed")]
    NotEnoughShares {
        /// Distinct valid shares given.
        have: usize,
        /// The threshold.
        need: usize,
    },
    /// A share does not match the commitment.
    #[error("share {0} does not match the commitment")]
    BadShare(u8),
    /// Bytes that are not a scalar, a point or a share index.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The interpolated secret does not match `C_0` (cannot happen with verified shares).
    #[error("reconstructed secret does not match the commitment")]
    Mismatch,
}

/// The group secret. Zeroed on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(Scalar);

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// A fresh random secret (never zero).
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        loop {
            let s = Scalar::random(&mut *rng);
            if !bool::from(s.is_zero()) {
                return Secret(s);
            }
        }
    }

    /// Its bytes (big-endian scalar), for key derivation. The caller zeroes the copy.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<[u8; SCALAR_LEN]> {
        zeroize::Zeroizing::new(self.0.to_bytes().into())
    }
}

/// One member's share: `f(index)`. Zeroed on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Share {
    #[zeroize(skip)]
    index: u8,
    value: Scalar,
}

impl core::fmt::Debug for Share {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Share({}, ..)", self.index)
    }
}

impl Share {
    /// The member index this share belongs to (1-based).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The encoded value (big-endian scalar). The caller zeroes the copy.
    pub fn value_bytes(&self) -> zeroize::Zeroizing<[u8; SCALAR_LEN]> {
        zeroize::Zeroizing::new(self.value.to_bytes().into())
    }

    /// Decodes a share.
    ///
    /// # Errors
    /// [`VssError::Malformed`] for index 0, an index above [`MAX_MEMBERS`], or a value that
    /// is not a canonical scalar.
    pub fn from_parts(index: u8, value: &[u8; SCALAR_LEN]) -> Result<Self, VssError> {
        if index == 0 || usize::from(index) > MAX_MEMBERS {
            return Err(VssError::Malformed("share index"));
        }
        let value = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::from(*value)))
            .ok_or(VssError::Malformed("share value"))?;
        Ok(Share { index, value })
    }
}

/// The public Feldman commitment `[a_0·G, ..., a_(k-1)·G]`; its length is the threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commitment(Vec<AffinePoint>);

impl Commitment {
    /// The threshold `k` (number of coefficients).
    pub fn threshold(&self) -> usize {
        self.0.len()
    }

    /// `Σ C_j · x^j`: what `f(x)·G` must be.
    fn expected(&self, x: Scalar) -> ProjectivePoint {
        let mut acc = ProjectivePoint::IDENTITY;
        // Horner: ((C_(k-1) x + C_(k-2)) x + ...) + C_0.
        for c in self.0.iter().rev() {
            acc = acc * x + ProjectivePoint::from(*c);
        }
        acc
    }

    /// True if `share` is the value of the committed polynomial at its index.
    pub fn verify(&self, share: &Share) -> bool {
        let x = Scalar::from(u64::from(share.index));
        ProjectivePoint::GENERATOR * share.value == self.expected(x)
    }

    /// True if both commit to the same secret (`C_0` equal): a reshare keeps the secret.
    pub fn same_secret(&self, other: &Commitment) -> bool {
        !self.0.is_empty() && self.0.first() == other.0.first()
    }

    /// Compressed SEC1 points, concatenated (`POINT_LEN` bytes each).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * POINT_LEN);
        for p in &self.0 {
            out.extend_from_slice(p.to_encoded_point(true).as_bytes());
        }
        out
    }

    /// Decodes [`Commitment::to_bytes`].
    ///
    /// # Errors
    /// [`VssError::Malformed`] unless `bytes` is 2..=[`MAX_MEMBERS`] valid compressed
    /// points, none the identity.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VssError> {
        if !bytes.len().is_multiple_of(POINT_LEN) {
            return Err(VssError::Malformed("commitment length"));
        }
        let k = bytes.len() / POINT_LEN;
        if !(2..=MAX_MEMBERS).contains(&k) {
            return Err(VssError::Malformed("commitment length"));
        }
        let mut points = Vec::with_capacity(k);
        for chunk in bytes.chunks_exact(POINT_LEN) {
            let encoded =
                EncodedPoint::from_bytes(chunk).map_err(|_| VssError::Malformed("point"))?;
            if !encoded.is_compressed() {
                return Err(VssError::Malformed("point"));
            }
            let point = Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&encoded))
                .ok_or(VssError::Malformed("point"))?;
            if bool::from(ProjectivePoint::from(point).is_identity()) {
                return Err(VssError::Malformed("point"));
            }
            points.push(point);
        }
        Ok(Commitment(points))
    }
}

/// Splits `secret` into `n` shares (indices `1..=n`) of which any `k` rebuild it.
///
/// # Errors
/// [`VssError::BadParameters`] unless `2 <= k <= n <= MAX_MEMBERS`.
pub fn split(
    secret: &Secret,
    k: usize,
    n: usize,
    rng: &mut impl CryptoRngCore,
) -> Result<(Commitment, Vec<Share>), VssError> {
    if !(2 <= k && k <= n && n <= MAX_MEMBERS) {
        return Err(VssError::BadParameters { k, n });
    }
    let mut coefficients: Vec<Scalar> = Vec::with_capacity(k);
    coefficients.push(secret.0);
    for _ in 1..k {
        coefficients.push(Scalar::random(&mut *rng));
    }
    let commitment = Commitment(
        coefficients
            .iter()
            .map(|a| (ProjectivePoint::GENERATOR * a).to_affine())
            .collect(),
    );
    let mut shares = Vec::with_capacity(n);
    for i in 1..=n {
        let index = u8::try_from(i).map_err(|_| VssError::BadParameters { k, n })?;
        let x = Scalar::from(u64::from(index));
        let mut value = Scalar::ZERO;
        for a in coefficients.iter().rev() {
            value = value * x + a;
        }
        shares.push(Share { index, value });
    }
    coefficients.zeroize();
    Ok((commitment, shares))
}

/// Rebuilds the secret from `shares`: each is checked against `commitment` (a share that
/// fails is reported, not used), duplicates of an index count once, and the first
/// `commitment.threshold()` valid ones are interpolated at 0.
///
/// # Errors
/// [`VssError::NotEnoughShares`] with fewer than `k` distinct valid shares;
/// [`VssError::Mismatch`] if the result is not the committed secret.
pub fn combine(shares: &[Share], commitment: &Commitment) -> Result<Secret, VssError> {
    let k = commitment.threshold();
    let mut chosen: Vec<&Share> = Vec::with_capacity(k);
    for share in shares {
        if chosen.len() == k {
            break;
        }
        if chosen.iter().any(|c| c.index == share.index) || !commitment.verify(share) {
            continue;
        }
        chosen.push(share);
    }
    if chosen.len() < k {
        return Err(VssError::NotEnoughShares {
            have: chosen.len(),
            need: k,
        });
    }
    let mut secret = Scalar::ZERO;
    for (j, share_j) in chosen.iter().enumerate() {
        let x_j = Scalar::from(u64::from(share_j.index));
        let mut num = Scalar::ONE;
        let mut den = Scalar::ONE;
        for (m, share_m) in chosen.iter().enumerate() {
            if m == j {
                continue;
            }
            let x_m = Scalar::from(u64::from(share_m.index));
            num *= x_m;
            den *= x_m - x_j;
        }
        let inv = Option::<Scalar>::from(den.invert()).ok_or(VssError::Mismatch)?;
        secret += share_j.value * num * inv;
    }
    let secret = Secret(secret);
    let expected = commitment.0.first().ok_or(VssError::Mismatch)?;
    if (ProjectivePoint::GENERATOR * secret.0).to_affine() != *expected {
        return Err(VssError::Mismatch);
    }
    Ok(secret)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    /// A deterministic CSPRNG stand-in for tests: SHA-256(seed || counter) blocks.
    pub(crate) struct TestRng {
        seed: u64,
        counter: u64,
    }

    impl TestRng {
        pub(crate) fn new(seed: u64) -> Self {
            TestRng { seed, counter: 0 }
        }
    }

    impl rand_core::RngCore for TestRng {
        fn next_u32(&mut self) -> u32 {
            let mut b = [0u8; 4];
            self.fill_bytes(&mut b);
            u32::from_le_bytes(b)
        }
        fn next_u64(&mut self) -> u64 {
            let mut b = [0u8; 8];
            self.fill_bytes(&mut b);
            u64::from_le_bytes(b)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for chunk in dest.chunks_mut(32) {
                let block = Sha256::new()
                    .chain_update(self.seed.to_le_bytes())
                    .chain_update(self.counter.to_le_bytes())
                    .finalize();
                self.counter += 1;
                chunk.copy_from_slice(&block[..chunk.len()]);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl rand_core::CryptoRng for TestRng {}

    fn params() -> impl Strategy<Value = (usize, usize, u64)> {
        (2usize..=6)
            .prop_flat_map(|n| (2usize..=n, Just(n)))
            .prop_flat_map(|(k, n)| (Just(k), Just(n), any::<u64>()))
    }

    proptest! {
        // Group arithmetic is slow in debug builds; 32 cases each still cover every (k, n).
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn any_k_shares_rebuild_the_secret_and_each_verifies((k, n, seed) in params(), pick in any::<u64>()) {
            let mut rng = TestRng::new(seed);
            let secret = Secret::random(&mut rng);
            let (commitment, shares) = split(&secret, k, n, &mut rng).unwrap();
            prop_assert_eq!(commitment.threshold(), k);
            prop_assert!(shares.iter().all(|s| commitment.verify(s)));
            // A rotating choice of k of the n shares.
            let start = usize::try_from(pick % n as u64).unwrap();
            let chosen: Vec<Share> = (0..k).map(|i| shares[(start + i) % n].clone()).collect();
            let rebuilt = combine(&chosen, &commitment).unwrap();
            prop_assert_eq!(*rebuilt.to_bytes(), *secret.to_bytes());
        }

        #[test]
        fn k_minus_one_shares_are_not_enough((k, n, seed) in params()) {
            let mut rng = TestRng::new(seed);
            let secret = Secret::random(&mut rng);
            let (commitment, shares) = split(&secret, k, n, &mut rng).unwrap();
            let err = combine(&shares[..k - 1], &commitment).unwrap_err();
            prop_assert_eq!(err, VssError::NotEnoughShares { have: k - 1, need: k });
        }

        #[test]
        fn a_flipped_byte_fails_verification_and_is_skipped((k, n, seed) in params(), at in 0usize..32, bit in 0u8..8) {
            prop_assume!(n > k);
            let mut rng = TestRng::new(seed);
            let secret = Secret::random(&mut rng);
            let (commitment, shares) = split(&secret, k, n, &mut rng).unwrap();
            let mut bytes = *shares[0].value_bytes();
            bytes[at] ^= 1 << bit;
            // A flipped byte is either not a scalar any more or a wrong one.
            if let Ok(bad) = Share::from_parts(shares[0].index(), &bytes) {
                prop_assert!(!commitment.verify(&bad));
                let mut given = vec![bad];
                given.extend(shares[1..].iter().cloned());
                let rebuilt = combine(&given, &commitment).unwrap();
                prop_assert_eq!(*rebuilt.to_bytes(), *secret.to_bytes());
            }
        }

        #[test]
        fn commitments_round_trip_and_garbage_is_refused((k, n, seed) in params(), junk in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut rng = TestRng::new(seed);
            let (commitment, _) = split(&Secret::random(&mut rng), k, n, &mut rng).unwrap();
            prop_assert_eq!(Commitment::from_bytes(&commitment.to_bytes()).unwrap(), commitment);
            // Never panics on arbitrary bytes.
            let _ = Commitment::from_bytes(&junk);
        }
    }

    #[test]
    fn parameters_are_checked() {
        let mut rng = TestRng::new(1);
        let s = Secret::random(&mut rng);
        for (k, n) in [(1, 3), (4, 3), (0, 0), (2, MAX_MEMBERS + 1)] {
            assert_eq!(
                split(&s, k, n, &mut rng).unwrap_err(),
                VssError::BadParameters { k, n }
            );
        }
    }

    #[test]
    fn duplicate_indices_count_once() {
        let mut rng = TestRng::new(2);
        let s = Secret::random(&mut rng);
        let (c, shares) = split(&s, 2, 3, &mut rng).unwrap();
        let twice = vec![shares[0].clone(), shares[0].clone()];
        assert_eq!(
            combine(&twice, &c).unwrap_err(),
            VssError::NotEnoughShares { have: 1, need: 2 }
        );
    }

    #[test]
    fn share_decoding_refuses_index_zero_and_out_of_range_values() {
        assert!(Share::from_parts(0, &[1; 32]).is_err());
        assert!(Share::from_parts(17, &[1; 32]).is_err());
        assert!(
            Share::from_parts(1, &[0xff; 32]).is_err(),
            "above the group order"
        );
        assert!(Share::from_parts(1, &[1; 32]).is_ok());
    }

    #[test]
    fn debug_never_prints_values() {
        let mut rng = TestRng::new(3);
        let s = Secret::random(&mut rng);
        let (_, shares) = split(&s, 2, 3, &mut rng).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(format!("{:?}", shares[1]), "Share(2, ..)");
    }
}
