//! Simulated time for the code under test: wall time and monotonic time both follow turmoil's
//! logical clock, so leases, switch stamps and latencies are reproducible from the seed.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agentgate_runtime::clock::Clock;

/// Wall-clock time at the start of every simulation (2026-01-01T00:00:00Z).
pub const EPOCH_MS: u64 = 1_767_225_600_000;

/// The last simulated time seen, for reads from outside a host (blocking-pool threads).
static LAST_MS: AtomicU64 = AtomicU64::new(0);

/// Milliseconds of simulated time since the simulation started.
pub fn sim_ms() -> u64 {
    match turmoil::sim_elapsed() {
        Some(d) => {
            let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            LAST_MS.fetch_max(ms, Ordering::Relaxed);
            ms
        }
        None => LAST_MS.load(Ordering::Relaxed),
    }
}

/// Resets the fallback between simulations run on the same thread.
pub fn reset() {
    LAST_MS.store(0, Ordering::Relaxed);
}

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    #[allow(clippy::disallowed_methods)]
    *BASE.get_or_init(Instant::now)
}

/// The simulation's clock. `frozen_monotonic` makes a deliberately broken clock whose monotonic
/// time never advances (an edge on it never sees its lease run out).
#[derive(Debug, Clone, Copy, Default)]
pub struct SimClock {
    pub frozen_monotonic: bool,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        EPOCH_MS + sim_ms()
    }

    fn monotonic(&self) -> Instant {
        if self.frozen_monotonic {
            return base();
        }
        base() + Duration::from_millis(sim_ms())
    }
}
