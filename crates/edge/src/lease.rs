//! The freshness lease (design.md G2).
//!
//! The edge asks the core to confirm its snapshot: it notes when it *sent* the request, the core
//! answers with a revision that covers every commit made before the request arrived, and once the
//! local replica has reached that revision the lease runs until `sent + max_staleness`. Measuring
//! from the send time means a slow or delayed reply never extends the lease: a kill switch
//! committed at T is enforced no later than T + max_staleness, or the edge is stale and denies.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Lease {
    max_staleness: Duration,
    valid_until: Option<Instant>,
}

impl Lease {
    pub fn new(max_staleness: Duration) -> Self {
        Lease {
            max_staleness,
            valid_until: None,
        }
    }

    pub fn max_staleness(&self) -> Duration {
        self.max_staleness
    }

    /// Records a confirmation of a request sent at `sent_at`, once the replica holds the
    /// confirmed revision. A confirmation never shortens the lease.
    pub fn confirmed(&mut self, sent_at: Instant) {
        let until = sent_at + self.max_staleness;
        if self.valid_until.is_none_or(|v| until > v) {
            self.valid_until = Some(until);
        }
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        self.valid_until.is_some_and(|v| now < v)
    }

    /// How old the newest proof of freshness is: the time since the confirmed request was sent
    /// (`None` before the first confirmation). Fresh while below `max_staleness`.
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.valid_until
            .map(|v| (now + self.max_staleness).saturating_duration_since(v))
    }

    /// How long the lease still runs (zero when stale).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.valid_until
            .map_or(Duration::ZERO, |v| v.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // a fixed origin for arithmetic, not a reading of time

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn starts_stale_and_expires() {
        let t0 = Instant::now();
        let mut l = Lease::new(Duration::from_secs(2));
        assert!(!l.is_fresh(t0));
        l.confirmed(t0);
        assert!(l.is_fresh(t0 + Duration::from_millis(1999)));
        assert!(!l.is_fresh(t0 + Duration::from_secs(2)));
        assert_eq!(l.remaining(t0 + Duration::from_secs(3)), Duration::ZERO);
    }

    proptest! {
        /// Whatever order confirmations arrive in, the lease ends exactly max_staleness after
        /// the latest send that was confirmed: never later.
        #[test]
        fn lease_never_outlives_its_latest_confirmed_send(sends in prop::collection::vec(0u64..10_000, 1..20), max in 1u64..5_000) {
            let t0 = Instant::now();
            let mut l = Lease::new(Duration::from_millis(max));
            for s in &sends {
                l.confirmed(t0 + Duration::from_millis(*s));
            }
            let latest = t0 + Duration::from_millis(*sends.iter().max().unwrap());
            let end = latest + Duration::from_millis(max);
            prop_assert!(l.is_fresh(end - Duration::from_millis(1)));
            prop_assert!(!l.is_fresh(end));
        }
    }
}
