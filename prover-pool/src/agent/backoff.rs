//! Exponential backoff with jitter for calls to the exchange.
//!
//! The n-th retry (n = 0, 1, ...) waits a random time in `[base/2, base]` where
//! `base = min(250 ms * 2^n, 5 s)`: 250 ms, 500 ms, 1 s, 2 s, 4 s, then 5 s for ever. The jitter
//! keeps the workers of one agent, and many agents after an exchange restart, from retrying in
//! lockstep. No delay ever exceeds the cap.

use std::time::Duration;

use rand::Rng;

/// First delay.
pub(crate) const INITIAL: Duration = Duration::from_millis(250);
/// Largest delay.
pub(crate) const CAP: Duration = Duration::from_secs(5);

/// The retry schedule of one call.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    retries: u32,
}

impl Backoff {
    /// A schedule whose next delay is the first.
    pub(crate) fn new() -> Backoff {
        Backoff { retries: 0 }
    }

    /// The delay before retry `n` without jitter: `min(INITIAL * 2^n, CAP)`.
    pub(crate) fn base_delay(n: u32) -> Duration {
        // 2^5 * 250 ms already exceeds the cap; keeping the shift small avoids overflow.
        INITIAL.saturating_mul(1 << n.min(5)).min(CAP)
    }

    /// The delay before the next retry, jittered into `[base/2, base]`; advances the schedule.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = Self::base_delay(self.retries);
        self.retries = self.retries.saturating_add(1);
        let base_ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(base_ms / 2..=base_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_250_ms_up_to_5_s() {
        let ms: Vec<u128> = (0..8).map(|n| Backoff::base_delay(n).as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(Backoff::base_delay(u32::MAX), CAP);
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_base_delay() {
        let mut backoff = Backoff::new();
        for n in 0..50 {
            let delay = backoff.next_delay();
            let base = Backoff::base_delay(n);
            assert!(delay >= base / 2 && delay <= base, "retry {n}: {delay:?} outside [{:?}, {base:?}]", base / 2);
            assert!(delay <= CAP);
        }
    }
}
