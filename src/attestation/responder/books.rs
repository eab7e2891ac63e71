//! The SPDM listener's books: which connections wait for their first byte, which hold a
//! session, and who gives way to a newcomer. Every requester is unauthenticated, so the rules
//! are about fairness between addresses and about what a connection has done, never about
//! who it claims to be.
//!
//! - A new connection is accepted into the *waiting* room, where it costs a socket and
//!   nothing else until its first byte arrives. When its address already has its share there,
//!   it displaces that address's oldest waiting connection, if that one has waited
//!   [`Limits::min_wait`], and is refused otherwise; when the room is full, it displaces the
//!   oldest waiting connection of the address with the most waiting. A silent flood from many
//!   addresses therefore churns only itself, and a requester (which sends its first request
//!   at once) is through the room before a flood of fewer addresses than the room has places
//!   can reach it.
//! - Every place is kept for at least `min_wait`: when the room is full of connections younger
//!   than that, the listener stops accepting until the oldest is old enough
//!   ([`Books::full_until`]). A flood of more silent connections than places then churns at
//!   most `waiting / min_wait` connections a second (each one an accept, a task and a close),
//!   not as fast as it can reconnect, which would take the CPU the pairing needs.
//! - A connection that has sent something asks for a *session*. When its address has its
//!   share of sessions, or all sessions are taken, it displaces the idlest session, if that
//!   one has received no request for the idle allowance; otherwise it is refused. A session
//!   that is working (requests every few milliseconds) is never displaced.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bmc_pairing_core::budget::{Rate, TokenBucket};
use tokio_util::sync::CancellationToken;

use crate::spdm::transport::Activity;

/// How often, at most, a newcomer may displace a waiting connection or be closed for its
/// address's share, with the burst: a silent flood costs an accept and a close per
/// connection, and without a bound it reconnects as fast as the CPU lets it.
pub(super) const CHURN: Rate = Rate {
    per_second: 2000,
    burst: 200,
};

/// Places in the waiting room per session. A place costs a socket and a small task, so the
/// room is generous: 256 places with the default 8 sessions.
pub const WAITING_PER_SESSION: usize = 32;

/// Most places the waiting room has, whatever the session count, so that the responder stays
/// within its unit's `LimitNOFILE` at the largest `max_sessions`.
pub const MAX_WAITING: usize = 1024;

/// Places in the waiting room for `sessions` sessions.
pub fn waiting_places(sessions: usize) -> usize {
    sessions
        .saturating_mul(WAITING_PER_SESSION)
        .min(MAX_WAITING)
}

/// How long a waiting connection keeps its place at least (see the module documentation).
pub(super) const MIN_WAIT: Duration = Duration::from_millis(100);

/// What the listener may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Limits {
    /// Sessions in all.
    pub(super) sessions: usize,
    /// Sessions, and places in the waiting room, of one address.
    pub(super) per_source: usize,
    /// Places in the waiting room.
    pub(super) waiting: usize,
    /// How long a session may go without a request before a newcomer may displace it.
    pub(super) idle_allowance: Duration,
    /// How long a waiting connection keeps its place at least.
    pub(super) min_wait: Duration,
}

/// Why a connection that has spoken got no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum Turned {
    /// Its address has its share of working sessions.
    #[error("its address has {0} working sessions")]
    SourceFull(usize),
    /// All sessions are working.
    #[error("{0} sessions are working")]
    Full(usize),
}

#[derive(Debug)]
struct Waiting {
    id: u64,
    source: IpAddr,
    since: Instant,
    cancel: CancellationToken,
}

#[derive(Debug)]
struct Working {
    id: u64,
    source: IpAddr,
    cancel: CancellationToken,
    activity: Arc<Activity>,
}

/// The listener's books (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Books {
    waiting: VecDeque<Waiting>,
    working: Vec<Working>,
    next_id: u64,
    /// Displacements and refusals in the waiting room ([`CHURN`]); made at the first.
    churn: Option<TokenBucket>,
}

impl Books {
    /// Admits a new connection from `source` to the waiting room at `now`; returns its id and
    /// the token that is cancelled if it is displaced, or `None` when its address has its
    /// share of places, all taken less than `min_wait` ago (the caller closes it).
    pub(super) fn wait(
        &mut self,
        source: IpAddr,
        limits: Limits,
        parent: &CancellationToken,
        now: Instant,
    ) -> Option<(u64, CancellationToken)> {
        let per_source = limits.per_source.max(1);
        while self.waiting.iter().filter(|w| w.source == source).count() >= per_source {
            self.churned(now);
            let oldest = self.waiting.iter().find(|w| w.source == source)?;
            if now.saturating_duration_since(oldest.since) < limits.min_wait {
                return None;
            }
            self.displace_waiting(source);
        }
        while self.waiting.len() >= limits.waiting.max(1) {
            let crowded = self.most_waiting_source();
            match crowded {
                Some(s) => {
                    self.churned(now);
                    self.displace_waiting(s);
                }
                None => break,
            }
        }
        self.next_id = self.next_id.wrapping_add(1);
        let cancel = parent.child_token();
        self.waiting.push_back(Waiting {
            id: self.next_id,
            source,
            since: now,
            cancel: cancel.clone(),
        });
        Some((self.next_id, cancel))
    }

    fn churned(&mut self, now: Instant) {
        let _ = self
            .churn
            .get_or_insert_with(|| TokenBucket::new(CHURN, now))
            .take(now);
    }

    /// Until when the listener accepts nothing: while the waiting room is full of
    /// connections younger than `min_wait` ([`Books::full_until`]), and while the churn
    /// allowance ([`CHURN`]) is spent.
    pub(super) fn paused_until(&self, limits: Limits, now: Instant) -> Option<Instant> {
        let churn = self.churn.as_ref().and_then(|c| c.ready_at(now));
        self.full_until(limits, now).max(churn)
    }

    /// When the waiting room is full and its oldest connection has waited less than
    /// `min_wait`: the instant it will have.
    pub(super) fn full_until(&self, limits: Limits, now: Instant) -> Option<Instant> {
        if self.waiting.len() < limits.waiting.max(1) {
            return None;
        }
        let oldest = self.waiting.iter().map(|w| w.since).min()?;
        let until = oldest + limits.min_wait;
        (until > now).then_some(until)
    }

    fn most_waiting_source(&self) -> Option<IpAddr> {
        let mut counts: BTreeMap<IpAddr, usize> = BTreeMap::new();
        for w in &self.waiting {
            *counts.entry(w.source).or_default() += 1;
        }
        counts.into_iter().max_by_key(|(_, n)| *n).map(|(s, _)| s)
    }

    fn displace_waiting(&mut self, source: IpAddr) {
        if let Some(at) = self.waiting.iter().position(|w| w.source == source)
            && let Some(victim) = self.waiting.remove(at)
        {
            tracing::debug!(%source, "a silent spdm connection gives way to a newcomer");
            victim.cancel.cancel();
        }
    }

    /// Moves waiting connection `id` (from `source`, which has now sent something) to a
    /// session, displacing an idle one if need be.
    ///
    /// # Errors
    /// [`Turned`] when every session it could displace is working.
    pub(super) fn work(
        &mut self,
        id: u64,
        source: IpAddr,
        limits: Limits,
        now: Instant,
    ) -> Result<Arc<Activity>, Turned> {
        let Some(at) = self.waiting.iter().position(|w| w.id == id) else {
            // Displaced while its first byte arrived; its token is cancelled already.
            return Err(Turned::Full(self.working.len()));
        };
        let per_source = limits.per_source.max(1);
        if self.working.iter().filter(|w| w.source == source).count() >= per_source
            && !self.displace_idle(Some(source), limits.idle_allowance, now)
        {
            return Err(Turned::SourceFull(per_source));
        }
        let max = limits.sessions.max(1);
        if self.working.len() >= max && !self.displace_idle(None, limits.idle_allowance, now) {
            return Err(Turned::Full(max));
        }
        let Some(entry) = self.waiting.remove(at) else {
            return Err(Turned::Full(max));
        };
        let activity = Arc::new(Activity::new());
        self.working.push(Working {
            id,
            source,
            cancel: entry.cancel,
            activity: activity.clone(),
        });
        Ok(activity)
    }

    /// Cancels the session (of `source`, if given) that has gone longest without a request,
    /// if that is at least `allowance`.
    fn displace_idle(&mut self, source: Option<IpAddr>, allowance: Duration, now: Instant) -> bool {
        let idlest = self
            .working
            .iter()
            .enumerate()
            .filter(|(_, w)| source.is_none_or(|s| s == w.source))
            .map(|(at, w)| (at, w.activity.idle(now)))
            .max_by_key(|(_, idle)| *idle);
        match idlest {
            Some((at, idle)) if idle >= allowance => {
                let victim = self.working.swap_remove(at);
                tracing::debug!(source = %victim.source, ?idle, "an idle spdm session gives way to a newcomer");
                victim.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Forgets connection `id`, waiting or working.
    pub(super) fn close(&mut self, id: u64) {
        self.waiting.retain(|w| w.id != id);
        self.working.retain(|w| w.id != id);
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.waiting.len(), self.working.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        sessions: 2,
        per_source: 2,
        waiting: 4,
        idle_allowance: Duration::from_secs(1),
        min_wait: Duration::from_millis(100),
    };

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_silent_flood_from_fewer_addresses_than_places_never_displaces_a_newcomer() {
        let parent = CancellationToken::new();
        let mut books = Books::default();
        let start = Instant::now();
        let (_, requester) = books.wait(ip(1), LIMITS, &parent, start).unwrap();
        // Two flooding addresses, reconnecting a thousand times over 10 s: each displaces
        // its own, or is refused.
        for i in 0..1000u32 {
            let now = start + Duration::from_millis(u64::from(i) * 10);
            let _ = books.wait(ip(100 + u8::try_from(i % 2).unwrap()), LIMITS, &parent, now);
        }
        assert!(!requester.is_cancelled());
        assert_eq!(books.counts(), (4, 0));
    }

    #[test]
    fn an_address_reconnecting_faster_than_the_minimum_wait_is_refused_not_churned() {
        let parent = CancellationToken::new();
        let mut books = Books::default();
        let now = Instant::now();
        let (_, first) = books.wait(ip(9), LIMITS, &parent, now).unwrap();
        let (_, second) = books.wait(ip(9), LIMITS, &parent, now).unwrap();
        let soon = now + LIMITS.min_wait / 2;
        assert!(books.wait(ip(9), LIMITS, &parent, soon).is_none());
        assert!(!first.is_cancelled() && !second.is_cancelled());
        // Once its oldest has waited long enough, a newcomer takes that one's place.
        let later = now + LIMITS.min_wait;
        assert!(books.wait(ip(9), LIMITS, &parent, later).is_some());
        assert!(first.is_cancelled() && !second.is_cancelled());
        assert_eq!(books.counts(), (2, 0));
    }

    #[test]
    fn a_full_room_of_young_connections_pauses_the_listener_until_the_oldest_is_old_enough() {
        let parent = CancellationToken::new();
        let mut books = Books::default();
        let now = Instant::now();
        for last in 1..=3 {
            let _ = books.wait(
                ip(last),
                LIMITS,
                &parent,
                now + Duration::from_millis(u64::from(last)),
            );
        }
        assert_eq!(books.full_until(LIMITS, now), None, "not full yet");
        let _ = books.wait(ip(4), LIMITS, &parent, now + Duration::from_millis(4));
        let oldest_ready = now + Duration::from_millis(1) + LIMITS.min_wait;
        assert_eq!(books.full_until(LIMITS, now), Some(oldest_ready));
        assert_eq!(books.full_until(LIMITS, oldest_ready), None);
    }

    #[test]
    fn churn_beyond_its_allowance_pauses_the_listener() {
        let parent = CancellationToken::new();
        let mut books = Books::default();
        let limits = Limits {
            waiting: 1024,
            ..LIMITS
        };
        let now = Instant::now();
        for _ in 0..2 {
            let _ = books.wait(ip(7), limits, &parent, now);
        }
        assert_eq!(books.paused_until(limits, now), None, "no churn yet");
        // The same address keeps reconnecting at one instant: each attempt is refused, and
        // once the burst is spent the listener waits for the next allowance.
        for _ in 0..CHURN.burst {
            assert!(books.wait(ip(7), limits, &parent, now).is_none());
        }
        let period = Duration::from_secs(1) / CHURN.per_second;
        assert_eq!(books.paused_until(limits, now), Some(now + period));
        assert_eq!(books.paused_until(limits, now + period), None);
    }

    #[test]
    fn a_full_room_displaces_the_most_crowded_address() {
        let parent = CancellationToken::new();
        let mut books = Books::default();
        let (_, lone) = books.wait(ip(1), LIMITS, &parent, Instant::now()).unwrap();
        let (_, first_of_two) = books.wait(ip(2), LIMITS, &parent, Instant::now()).unwrap();
        let _ = books.wait(ip(2), LIMITS, &parent, Instant::now()).unwrap();
        let _ = books.wait(ip(3), LIMITS, &parent, Instant::now()).unwrap();
        let _ = books.wait(ip(4), LIMITS, &parent, Instant::now()).unwrap();
        assert!(first_of_two.is_cancelled());
        assert!(!lone.is_cancelled());
    }

    #[test]
    fn working_sessions_stay_and_idle_ones_give_way() {
        let parent = CancellationToken::new();
        let mut books = Books::default();
        let now = Instant::now();
        let (a, a_token) = books.wait(ip(1), LIMITS, &parent, Instant::now()).unwrap();
        let (b, _) = books.wait(ip(2), LIMITS, &parent, Instant::now()).unwrap();
        let (c, c_token) = books.wait(ip(3), LIMITS, &parent, Instant::now()).unwrap();
        let a_activity = books.work(a, ip(1), LIMITS, now).unwrap();
        let b_activity = books.work(b, ip(2), LIMITS, now).unwrap();
        // Both sessions just received requests: the third is refused, and stays waiting
        // no longer (the caller closes it).
        a_activity.touch();
        b_activity.touch();
        assert!(matches!(
            books.work(c, ip(3), LIMITS, now),
            Err(Turned::Full(2))
        ));
        assert!(!c_token.is_cancelled());
        // Later, B keeps working and A has been idle past the allowance: A gives way.
        let later = Instant::now() + Duration::from_secs(2);
        let (d, _) = books.wait(ip(4), LIMITS, &parent, Instant::now()).unwrap();
        b_activity.touch_at(later);
        assert!(books.work(d, ip(4), LIMITS, later).is_ok());
        assert!(a_token.is_cancelled());
        assert_eq!(books.counts(), (1, 2));
    }

    #[test]
    fn one_address_gets_its_share_of_sessions() {
        let parent = CancellationToken::new();
        let mut books = Books::default();
        let limits = Limits {
            sessions: 8,
            per_source: 1,
            ..LIMITS
        };
        let now = Instant::now();
        let (a, _) = books.wait(ip(1), limits, &parent, Instant::now()).unwrap();
        books.work(a, ip(1), limits, now).unwrap().touch();
        let (b, _) = books.wait(ip(1), limits, &parent, Instant::now()).unwrap();
        assert!(matches!(
            books.work(b, ip(1), limits, now),
            Err(Turned::SourceFull(1))
        ));
        books.close(b);
        assert_eq!(books.counts(), (0, 1));
    }
}
