//! [`Schedule`]: when a forward contract's slots open. Slot `n` opens at `start + n * every_secs`, for
//! every `n >= 0` with an opening time before `end`. Slots are computed, never enumerated up front.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The longest term the exchange accepts: five years of 365 days.
pub const MAX_TERM_SECS: i64 = 5 * 365 * 24 * 3600;

/// A cadence: `{"start": t, "end": t, "every_secs": 3600}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Opening time of slot 0 (RFC 3339, UTC).
    pub start: DateTime<Utc>,
    /// No slot opens at or after this time.
    pub end: DateTime<Utc>,
    /// Seconds between slot openings.
    #[schema(example = 3600)]
    pub every_secs: u32,
}

/// Why a schedule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// End not after start.
    #[error("schedule end must be after start")]
    EndBeforeStart,
    /// Cadence below the exchange's minimum.
    #[error("every_secs is {got}; the shortest cadence accepted is {min} seconds")]
    CadenceTooShort {
        /// What was asked.
        got: u32,
        /// The configured minimum.
        min: u32,
    },
    /// Longer than five years.
    #[error("the term is longer than 5 years; split it into several contracts")]
    TermTooLong,
    /// Starts in the past.
    #[error("schedule start is in the past; start at or after now")]
    StartInPast,
}

impl Schedule {
    /// Checks the schedule against the exchange's rules at time `now`.
    pub fn validate(&self, min_cadence_secs: u32, now: DateTime<Utc>) -> Result<(), ScheduleError> {
        if self.end <= self.start {
            return Err(ScheduleError::EndBeforeStart);
        }
        if self.every_secs < min_cadence_secs.max(1) {
            return Err(ScheduleError::CadenceTooShort { got: self.every_secs, min: min_cadence_secs });
        }
        if (self.end - self.start).num_seconds() > MAX_TERM_SECS {
            return Err(ScheduleError::TermTooLong);
        }
        if self.start < now {
            return Err(ScheduleError::StartInPast);
        }
        Ok(())
    }

    /// Number of slots: openings strictly before `end`.
    pub fn slot_count(&self) -> u64 {
        let span = (self.end - self.start).num_seconds();
        if span <= 0 || self.every_secs == 0 {
            return 0;
        }
        let span = span as u64;
        let every = u64::from(self.every_secs);
        span.div_ceil(every)
    }

    /// Opening time of slot `n`, or `None` past the last slot.
    pub fn slot_opens_at(&self, n: u64) -> Option<DateTime<Utc>> {
        if n >= self.slot_count() {
            return None;
        }
        let offset = i64::try_from(n.checked_mul(u64::from(self.every_secs))?).ok()?;
        self.start.checked_add_signed(Duration::seconds(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_year_of_hourly_slots_is_8760() {
        let s = Schedule { start: at(0), end: at(365 * 24 * 3600), every_secs: 3600 };
        assert_eq!(s.slot_count(), 8760);
        assert_eq!(s.slot_opens_at(8759), Some(at(8759 * 3600)));
        assert_eq!(s.slot_opens_at(8760), None);
    }

    #[test]
    fn validation_names_the_problem() {
        let now = at(0);
        let ok = Schedule { start: at(10), end: at(100_000), every_secs: 60 };
        assert_eq!(ok.validate(60, now), Ok(()));
        assert_eq!(Schedule { end: at(5), ..ok }.validate(60, now), Err(ScheduleError::EndBeforeStart));
        assert_eq!(
            Schedule { every_secs: 10, ..ok }.validate(60, now),
            Err(ScheduleError::CadenceTooShort { got: 10, min: 60 })
        );
        assert_eq!(Schedule { every_secs: 10, ..ok }.validate(10, now), Ok(()));
        assert_eq!(
            Schedule { end: at(MAX_TERM_SECS + 11), ..ok }.validate(60, now),
            Err(ScheduleError::TermTooLong)
        );
        assert_eq!(ok.validate(60, at(11)), Err(ScheduleError::StartInPast));
    }

    proptest! {
        #[test]
        fn every_slot_opens_before_end(span in 1i64..10_000_000, every in 1u32..100_000) {
            let s = Schedule { start: at(0), end: at(span), every_secs: every };
            let n = s.slot_count();
            prop_assert!(n >= 1);
            prop_assert!(s.slot_opens_at(n - 1).unwrap() < s.end);
            prop_assert!(s.start + Duration::seconds(i64::try_from(n).unwrap() * i64::from(every)) >= s.end);
        }
    }
}
