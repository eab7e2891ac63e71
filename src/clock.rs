//! Wall-clock time with a floor.
//!
//! BMC clocks can start at the epoch until NTP or the host sets them. Certificates are
//! never issued with a 1970 notBefore, and validity is never checked against a time before
//! the floor: the later of the build time and the last known good time (persisted in the
//! state file by the pairing driver).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bmc_pairing_core::pairing::{TimeView, UNTRUSTED_CLOCK_WINDOW};

/// Build time of this binary, unix seconds (SOURCE_DATE_EPOCH when set).
pub fn build_epoch() -> u64 {
    option_env!("BMC_PAIRING_BUILD_EPOCH")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Unix seconds of `t`, 0 before the epoch.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What this process knows about the time now, for certificate checks: its clock against
/// the floor `max(floor_unix, build time)`, under the pairing core's time rule
/// ([`TimeView`]: a clock behind the floor is not believed, and validity is then checked
/// over the plausible interval after the floor).
pub fn time_view(floor_unix: u64) -> TimeView {
    TimeView {
        clock: unix_secs(SystemTime::now()),
        floor: floor_unix.max(build_epoch()),
        window: UNTRUSTED_CLOCK_WINDOW,
    }
}

/// `max(now, floor, build time)`.
pub fn floored_now(floor_unix: u64) -> SystemTime {
    let floor = UNIX_EPOCH + Duration::from_secs(floor_unix.max(build_epoch()));
    SystemTime::now().max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_never_before_the_build() {
        assert!(
            build_epoch() > 1_700_000_000,
            "build.rs must set the build epoch"
        );
        assert!(unix_secs(floored_now(0)) >= build_epoch());
        let future = unix_secs(SystemTime::now()) + 10_000;
        assert!(unix_secs(floored_now(future)) >= future);
    }
}
