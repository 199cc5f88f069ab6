//! Times the exchange was down, as settlement sees them.
//!
//! The scheduler records when it last completed a tick. A tick that starts more than the outage
//! threshold after the last one (`PCX_OUTAGE_AFTER_SECS`) finds a gap: the exchange was down, or
//! too far behind to be trusted with anyone's deadline. Nothing that expired in, or was squeezed
//! by, such a gap is charged to a prover: a job whose window overlaps an outage fails as
//! [`JobFailure::ExchangeOutage`](crate::state::JobFailure), unslashed.

use chrono::{DateTime, Duration, Utc};

/// A span in which the exchange did not settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// The last tick before it.
    pub from: DateTime<Utc>,
    /// The first tick after it.
    pub to: DateTime<Utc>,
}

impl Outage {
    /// The outage a tick at `now` reveals, if the previous one (`last_tick`) was too long ago.
    pub fn detect(last_tick: Option<DateTime<Utc>>, now: DateTime<Utc>, threshold: Duration) -> Option<Outage> {
        let from = last_tick?;
        (now - from > threshold).then_some(Outage { from, to: now })
    }

    /// True when the outage overlaps `[from, to]`.
    pub fn overlaps(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.from < to && from < self.to
    }
}

/// True when `t` falls within `grace` after the end of any of `outages` (agents are reconnecting).
pub fn recovering(outages: &[Outage], t: DateTime<Utc>, grace: Duration) -> bool {
    outages.iter().any(|o| o.to <= t && t < o.to + grace)
}

/// True when any of `outages` overlaps `[from, to]`.
pub fn any_overlaps(outages: &[Outage], from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
    outages.iter().any(|o| o.overlaps(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_gap_longer_than_the_threshold_is_an_outage() {
        let threshold = Duration::seconds(10);
        assert_eq!(Outage::detect(None, at(100), threshold), None);
        assert_eq!(Outage::detect(Some(at(95)), at(100), threshold), None);
        let outage = Outage::detect(Some(at(50)), at(100), threshold).unwrap();
        assert!(outage.overlaps(at(40), at(60)));
        assert!(outage.overlaps(at(99), at(130)));
        assert!(!outage.overlaps(at(100), at(130)), "a job offered after the restart");
        assert!(!outage.overlaps(at(10), at(50)), "a job that ended before the last tick");
        assert!(recovering(&[outage], at(100), Duration::seconds(30)));
        assert!(recovering(&[outage], at(129), Duration::seconds(30)));
        assert!(!recovering(&[outage], at(130), Duration::seconds(30)));
        assert!(!recovering(&[outage], at(99), Duration::seconds(30)));
    }
}
