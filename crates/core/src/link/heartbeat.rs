//! Pure timing logic of the link: the heartbeat schedule and reconnect backoff.
//!
//! No tokio and no clock reads: callers pass `now` in and sleep themselves, so both types are
//! tested without sleeping.

use std::time::{Duration, Instant};

/// What a session should do at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Nothing to do before [`Heartbeat::next_deadline`].
    Wait,
    /// Send a `Ping` now.
    SendPing,
    /// The peer has been silent longer than the timeout: the session is dead.
    Expired,
}

/// Instants shared by every session of a process on which pings fall due: `origin` plus a
/// whole number of `step`s. Sessions whose pings fall due in the same step then wake the
/// daemon once together, instead of once each at scattered instants (issue 14, idle cost of
/// a hub). A ping is due at most one step later than its interval says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    origin: Instant,
    step: Duration,
}

impl Grid {
    /// Steps of `step` from `origin` (a zero step aligns nothing).
    pub fn new(origin: Instant, step: Duration) -> Self {
        Grid { origin, step }
    }

    /// The first grid instant at or after `t` (`t` itself before the origin).
    pub fn align_up(&self, t: Instant) -> Instant {
        let step = self.step.as_nanos();
        if step == 0 {
            return t;
        }
        let since = t.saturating_duration_since(self.origin).as_nanos();
        match since % step {
            0 => t,
            rem => {
                let up = u64::try_from(step - rem).unwrap_or(u64::MAX);
                t + Duration::from_nanos(up)
            }
        }
    }
}

/// Heartbeat schedule of one session: any frame from the peer proves it alive, and we ping
/// only after `interval` without one; silence for `timeout` kills the session. Both sides
/// run this schedule, so on a quiet session the peers take turns: one `Ping`/`Alive` per
/// interval instead of one each way, half the wake-ups and frames (issue 14, idle cost).
#[derive(Clone, Debug)]
pub struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    grid: Option<Grid>,
    last_received: Instant,
    next_ping: Instant,
}

impl Heartbeat {
    /// A schedule for a session that became live at `now`.
    pub fn new(now: Instant, interval: Duration, timeout: Duration) -> Self {
        Heartbeat {
            interval,
            timeout,
            grid: None,
            last_received: now,
            next_ping: now + interval,
        }
    }

    /// The same schedule with its pings due on `grid`'s instants.
    pub fn on_grid(mut self, grid: Grid) -> Self {
        self.grid = Some(grid);
        self.next_ping = grid.align_up(self.next_ping);
        self
    }

    fn ping_after_interval_from(&self, now: Instant) -> Instant {
        let due = now + self.interval;
        self.grid.map_or(due, |g| g.align_up(due))
    }

    /// Records that a frame arrived at `now`.
    pub fn on_received(&mut self, now: Instant) {
        self.last_received = self.last_received.max(now);
        // The peer is alive as of now: asking again before another interval is wasted.
        self.next_ping = self.next_ping.max(self.ping_after_interval_from(now));
    }

    /// When the session must next be looked at.
    pub fn next_deadline(&self) -> Instant {
        self.next_ping.min(self.last_received + self.timeout)
    }

    /// What to do at `now`. `SendPing` also schedules the next ping.
    pub fn poll(&mut self, now: Instant) -> Tick {
        if now >= self.last_received + self.timeout {
            return Tick::Expired;
        }
        if now >= self.next_ping {
            // Schedule from now, not from the missed slot, so a stalled task never bursts.
            self.next_ping = self.ping_after_interval_from(now);
            return Tick::SendPing;
        }
        Tick::Wait
    }
}

/// Capped exponential backoff with jitter ("equal jitter": half fixed, half random), so
/// peers that lost each other at the same moment do not retry in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays start at `initial` and never exceed `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// Forgets past failures (after a successful session).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt. `random` is any uniformly random `u32`; the delay
    /// is `base/2 + (base/2) * random / u32::MAX` where `base = min(max, initial * 2^n)`.
    pub fn next_delay(&mut self, random: u32) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = base / 2;
        let jitter = half.mul_f64(f64::from(random) / f64::from(u32::MAX));
        half + jitter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any instant will do as the origin; the schedule only ever sees offsets from it.
    #[allow(
        clippy::disallowed_methods,
        reason = "a test needs one real Instant to offset"
    )]
    fn origin() -> Instant {
        Instant::now()
    }

    #[test]
    fn pings_every_interval_and_expires_after_silence() {
        let t0 = origin();
        let s = Duration::from_secs(1);
        let mut hb = Heartbeat::new(t0, s, 3 * s);
        assert_eq!(hb.poll(t0), Tick::Wait);
        assert_eq!(hb.next_deadline(), t0 + s);
        assert_eq!(hb.poll(t0 + s), Tick::SendPing);
        assert_eq!(hb.poll(t0 + s), Tick::Wait, "one ping per interval");
        hb.on_received(t0 + s + s / 2);
        // The answer at 1.5 s postpones the next ping to 2.5 s; then every interval of
        // silence.
        assert_eq!(hb.poll(t0 + 2 * s), Tick::Wait);
        assert_eq!(hb.next_deadline(), t0 + 2 * s + s / 2);
        assert_eq!(hb.poll(t0 + 2 * s + s / 2), Tick::SendPing);
        assert_eq!(hb.poll(t0 + 3 * s + s / 2), Tick::SendPing);
        // Last frame at 1.5 s, timeout 3 s: dead at 4.5 s, not before.
        assert_ne!(hb.poll(t0 + 4 * s), Tick::Expired);
        assert_eq!(hb.poll(t0 + 4 * s + s / 2), Tick::Expired);
    }

    #[test]
    fn a_peer_that_pings_keeps_us_from_pinging_and_silence_still_gets_a_ping() {
        let t0 = origin();
        let s = Duration::from_secs(1);
        let mut hb = Heartbeat::new(t0, s, 3 * s);
        // The peer's pings arrive every 0.9 s: we only answer them, never ping.
        for k in 1..=10u32 {
            let at = t0 + k * s * 9 / 10;
            assert_eq!(hb.poll(at), Tick::Wait, "ping {k}");
            hb.on_received(at);
        }
        // Then silence: one interval later we ask.
        let last = t0 + 9 * s;
        assert_eq!(hb.next_deadline(), last + s);
        assert_eq!(hb.poll(last + s), Tick::SendPing);
    }

    #[test]
    fn sessions_on_one_grid_fall_due_together() {
        let t0 = origin();
        let s = Duration::from_secs(2);
        let grid = Grid::new(t0, s / 4);
        // Sessions that went live at scattered instants within one step...
        let mut sessions: Vec<Heartbeat> = [1u64, 90, 260, 499]
            .into_iter()
            .map(|ms| Heartbeat::new(t0 + Duration::from_millis(ms), s, 3 * s).on_grid(grid))
            .collect();
        // ...are due at the same instant, the first step after their interval.
        let due = t0 + s + s / 4;
        assert!(sessions.iter().all(|h| h.next_deadline() == due));
        for h in &mut sessions {
            assert_eq!(h.poll(due - Duration::from_millis(1)), Tick::Wait);
            assert_eq!(h.poll(due), Tick::SendPing);
        }
        // A frame received mid-step moves the next ping to a grid instant, never earlier
        // than an interval after it.
        let mut h = Heartbeat::new(t0, s, 3 * s).on_grid(grid);
        let at = t0 + Duration::from_millis(2_100);
        h.on_received(at);
        assert_eq!(h.next_deadline(), t0 + Duration::from_millis(4_500));
        assert!(h.next_deadline() >= at + s);
        // Expiry is not moved by the grid.
        assert_eq!(h.poll(at + 3 * s), Tick::Expired);
    }

    #[test]
    fn a_grid_instant_aligns_to_itself_and_a_zero_step_aligns_nothing() {
        let t0 = origin();
        let grid = Grid::new(t0, Duration::from_millis(500));
        assert_eq!(
            grid.align_up(t0 + Duration::from_secs(1)),
            t0 + Duration::from_secs(1)
        );
        assert_eq!(
            grid.align_up(t0 + Duration::from_millis(1_001)),
            t0 + Duration::from_millis(1_500)
        );
        let t = t0 + Duration::from_millis(1_234);
        assert_eq!(Grid::new(t0, Duration::ZERO).align_up(t), t);
    }

    #[test]
    fn deadline_is_never_later_than_expiry() {
        let t0 = origin();
        let mut hb = Heartbeat::new(t0, Duration::from_secs(10), Duration::from_secs(2));
        assert_eq!(hb.next_deadline(), t0 + Duration::from_secs(2));
        assert_eq!(hb.poll(hb.next_deadline()), Tick::Expired);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let lows: Vec<_> = (0..8).map(|_| b.next_delay(0)).collect();
        assert_eq!(lows[0], Duration::from_millis(50));
        assert_eq!(lows[1], Duration::from_millis(100));
        assert_eq!(lows[7], Duration::from_secs(1), "half of the 2 s cap");
        let top = b.next_delay(u32::MAX);
        assert_eq!(top, Duration::from_secs(2));
        b.reset();
        assert!(b.next_delay(u32::MAX) <= Duration::from_millis(100));
        // Very many failures never overflow.
        for _ in 0..1000 {
            assert!(b.next_delay(12345) <= Duration::from_secs(2));
        }
    }
}
