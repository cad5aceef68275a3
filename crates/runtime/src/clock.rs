//! The one place that reads time. The binaries (node, edge, CLI) take a [`Clock`] and hand it to
//! everything that needs time, so the simulation can drive time. The model never sees a clock:
//! the Raft leader stamps `Command::time_ms`, and `apply` reads time only from there.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Wall-clock milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// A monotonic instant, for measuring durations.
    fn monotonic(&self) -> Instant;
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// Seconds elapsed since `start` on `clock`, for latency histograms.
pub fn elapsed_secs(clock: &dyn Clock, start: Instant) -> f64 {
    clock
        .monotonic()
        .saturating_duration_since(start)
        .as_secs_f64()
}

/// Converts a duration to whole milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
