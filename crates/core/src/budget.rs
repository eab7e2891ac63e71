//! Budgets for work an unauthenticated party can make us do, above all TPM signatures: a TLS
//! server signs its CertificateVerify before it sees the client's certificate, and an SPDM
//! responder signs for any requester. A real TPM signs in 30-100 ms, so without a budget a few
//! clients would saturate it and starve our own pairing.
//!
//! [`TokenBucket`] is the classic bucket, in integer time (no floats): credit accrues with
//! time up to a burst, each use spends one period. [`SignBudget`] puts three of them in front
//! of signing: one shared by everyone unauthenticated, one per source address (so one
//! flooding source cannot use up everyone's share), and one reserved for sources that are
//! pinned peers (which get precedence: a flood never delays a known peer's reconnect).
//! Pure: the caller passes the time in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A rate and a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Uses per second in the long run (at least 1).
    pub per_second: u32,
    /// Uses allowed at once after a quiet period (at least 1).
    pub burst: u32,
}

impl Rate {
    fn period(self) -> Duration {
        Duration::from_secs(1) / self.per_second.max(1)
    }

    fn ceiling(self) -> Duration {
        self.period().saturating_mul(self.burst.max(1))
    }
}

/// A token bucket: starts full; [`TokenBucket::take`] spends one token if there is one.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: Rate,
    credit: Duration,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(rate: Rate, now: Instant) -> Self {
        TokenBucket {
            rate,
            credit: rate.ceiling(),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        self.credit = self.credit.saturating_add(elapsed).min(self.rate.ceiling());
    }

    /// True if a token was available at `now` (and is now spent).
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        match self.credit.checked_sub(self.rate.period()) {
            Some(left) => {
                self.credit = left;
                true
            }
            None => false,
        }
    }

    /// When the next token will be there: `None` when one is at `now`.
    pub fn ready_at(&self, now: Instant) -> Option<Instant> {
        let elapsed = now.saturating_duration_since(self.last);
        let credit = self.credit.saturating_add(elapsed).min(self.rate.ceiling());
        let missing = self.rate.period().saturating_sub(credit);
        (!missing.is_zero()).then(|| now + missing)
    }

    /// True if the bucket would be full at `now` (nothing spent recently): it can be
    /// forgotten without changing any answer.
    fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.credit.saturating_add(elapsed) >= self.rate.ceiling()
    }
}

/// The limits of a [`SignBudget`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignLimits {
    /// Shared by every unauthenticated source.
    pub global: Rate,
    /// For each source address.
    pub per_source: Rate,
    /// Shared by the sources that are pinned peers, instead of the two above.
    pub pinned: Rate,
}

/// Why a signature was not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// This source used its own share.
    #[error("the signing budget of this source is used up")]
    Source,
    /// All unauthenticated sources together used theirs.
    #[error("the shared signing budget is used up")]
    Global,
    /// Pinned peers used theirs (only a misbehaving or impersonated peer gets here).
    #[error("the pinned peers' signing budget is used up")]
    Pinned,
}

/// Most sources tracked at once; beyond it, sources whose buckets are full are forgotten
/// (which changes no answer), and failing that the budget refuses new sources.
pub const MAX_TRACKED_SOURCES: usize = 1024;

/// The budget in front of signing for unauthenticated parties.
#[derive(Clone, Debug)]
pub struct SignBudget {
    limits: SignLimits,
    global: TokenBucket,
    pinned: TokenBucket,
    sources: HashMap<IpAddr, TokenBucket>,
}

impl SignBudget {
    /// A full budget at `now`.
    pub fn new(limits: SignLimits, now: Instant) -> Self {
        SignBudget {
            limits,
            global: TokenBucket::new(limits.global, now),
            pinned: TokenBucket::new(limits.pinned, now),
            sources: HashMap::new(),
        }
    }

    /// Asks for one signature for `source` at `now`; `pinned` says the source is the address
    /// of a pinned peer. A refusal spends nothing.
    ///
    /// # Errors
    /// [`Refused`] says which share is used up.
    pub fn allow(&mut self, source: IpAddr, pinned: bool, now: Instant) -> Result<(), Refused> {
        if pinned {
            return if self.pinned.take(now) {
                Ok(())
            } else {
                Err(Refused::Pinned)
            };
        }
        if !self.sources.contains_key(&source) && self.sources.len() >= MAX_TRACKED_SOURCES {
            self.sources.retain(|_, bucket| !bucket.is_full(now));
            if self.sources.len() >= MAX_TRACKED_SOURCES {
                return Err(Refused::Global);
            }
        }
        let per_source = self.limits.per_source;
        let bucket = self
            .sources
            .entry(source)
            .or_insert_with(|| TokenBucket::new(per_source, now));
        // Check the source's share first, spend the shared one only when both have a token.
        let mut trial = bucket.clone();
        if !trial.take(now) {
            *bucket = trial;
            return Err(Refused::Source);
        }
        if !self.global.take(now) {
            return Err(Refused::Global);
        }
        *bucket = trial;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(
        clippy::disallowed_methods,
        reason = "a test needs one real Instant to offset"
    )]
    fn origin() -> Instant {
        Instant::now()
    }

    fn rate(per_second: u32, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let t0 = origin();
        let mut b = TokenBucket::new(rate(10, 3), t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(99)));
        assert!(b.take(t0 + Duration::from_millis(100)), "one period later");
        // A long quiet period refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 3);
    }

    #[test]
    fn a_spent_bucket_says_when_its_next_token_is_there() {
        let t0 = origin();
        let mut b = TokenBucket::new(rate(10, 2), t0);
        assert_eq!(b.ready_at(t0), None, "full");
        assert!(b.take(t0) && b.take(t0));
        assert_eq!(b.ready_at(t0), Some(t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_millis(40);
        assert_eq!(b.ready_at(later), Some(t0 + Duration::from_millis(100)));
        assert_eq!(b.ready_at(t0 + Duration::from_millis(100)), None);
        assert!(b.take(t0 + Duration::from_millis(100)));
    }

    fn limits() -> SignLimits {
        SignLimits {
            global: rate(10, 10),
            per_source: rate(2, 2),
            pinned: rate(5, 5),
        }
    }

    #[test]
    fn one_source_cannot_use_up_the_shared_budget() {
        let t0 = origin();
        let mut budget = SignBudget::new(limits(), t0);
        let flooder = IpAddr::from([127, 0, 0, 9]);
        let allowed = (0..1000)
            .filter(|_| budget.allow(flooder, false, t0).is_ok())
            .count();
        assert_eq!(allowed, 2, "its own burst only");
        assert_eq!(budget.allow(flooder, false, t0), Err(Refused::Source));
        let other = IpAddr::from([127, 0, 0, 10]);
        assert!(budget.allow(other, false, t0).is_ok());
    }

    #[test]
    fn many_sources_are_bounded_by_the_shared_budget_over_time() {
        let t0 = origin();
        let mut budget = SignBudget::new(limits(), t0);
        let mut allowed = 0;
        // Ten seconds of a flood from 500 addresses, each trying 100 times a second.
        for ms in (0..10_000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            for host in 0..500u32 {
                let source = IpAddr::from((0x7f00_0000u32 + host).to_be_bytes());
                if budget.allow(source, false, now).is_ok() {
                    allowed += 1;
                }
            }
        }
        assert!(
            allowed <= 10 + 10 * 10,
            "burst + rate x time, got {allowed}"
        );
        assert!(allowed >= 90, "the budget is spent, not wasted: {allowed}");
    }

    #[test]
    fn pinned_peers_keep_their_share_during_a_flood() {
        let t0 = origin();
        let mut budget = SignBudget::new(limits(), t0);
        for host in 0..200u32 {
            let source = IpAddr::from((0x7f00_0000u32 + host).to_be_bytes());
            let _ = budget.allow(source, false, t0);
        }
        assert_eq!(
            budget.allow(IpAddr::from([127, 1, 1, 1]), false, t0),
            Err(Refused::Global)
        );
        let peer = IpAddr::from([127, 0, 0, 2]);
        assert!(budget.allow(peer, true, t0).is_ok());
    }

    #[test]
    fn the_source_table_is_bounded() {
        let t0 = origin();
        let mut budget = SignBudget::new(
            SignLimits {
                global: rate(1_000_000, 1_000_000),
                ..limits()
            },
            t0,
        );
        for host in 0..5000u32 {
            let source = IpAddr::from((0x7f00_0000u32 + host).to_be_bytes());
            let _ = budget.allow(source, false, t0);
        }
        assert!(budget.sources.len() <= MAX_TRACKED_SOURCES);
        // Quiet sources are forgotten, so new ones are served again later.
        let later = t0 + Duration::from_secs(5);
        assert!(
            budget
                .allow(IpAddr::from([192, 0, 2, 1]), false, later)
                .is_ok()
        );
    }
}
