//! [`Schedule`]: when a forward contract's slots open. Slot `n` opens at `start + n * every_secs`, for
//! every `n >= 0` with an opening time before `end`. Slots are computed, never enumerated up front.
//!
//! This is the one place slot-time arithmetic lives: which slot opens when, which slots open in a
//! time range, how many fall in a clock hour. Capacity, collateral, escrow, materialisation and
//! settlement all ask a `Schedule` (or a sub-schedule of a block of slots, [`Schedule::slice`]).

use std::ops::Range;

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
    #[schema(example = 3600, minimum = 1)]
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
    /// A time outside [`accepted_times`].
    #[error("schedule start and end must be between 2000-01-01 and 2200-01-01 (UTC)")]
    OutOfRange,
}

/// The earliest time the exchange accepts from a client: 2000-01-01T00:00:00Z.
pub const EARLIEST_ACCEPTED_SECS: i64 = 946_684_800;
/// The latest time the exchange accepts from a client: 2200-01-01T00:00:00Z (far from the
/// ends of what dates can represent, so arithmetic on accepted times cannot overflow).
pub const LATEST_ACCEPTED_SECS: i64 = 7_258_118_400;

/// The times the exchange accepts from clients (schedules, offer windows, query ranges).
pub fn accepted_times() -> std::ops::RangeInclusive<DateTime<Utc>> {
    let at = |secs| DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    at(EARLIEST_ACCEPTED_SECS)..=at(LATEST_ACCEPTED_SECS)
}

impl Schedule {
    /// Checks the schedule against the exchange's rules at time `now`.
    pub fn validate(&self, min_cadence_secs: u32, now: DateTime<Utc>) -> Result<(), ScheduleError> {
        let accepted = accepted_times();
        if !accepted.contains(&self.start) || !accepted.contains(&self.end) {
            return Err(ScheduleError::OutOfRange);
        }
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

    /// Opening time of the last slot, or `None` for a schedule without slots.
    pub fn last_opens_at(&self) -> Option<DateTime<Utc>> {
        self.slot_count().checked_sub(1).and_then(|n| self.slot_opens_at(n))
    }

    /// The first slot opening at or after `t`; [`Schedule::slot_count`] when none does.
    /// Exact to the microsecond (a slot opening half a second before `t` is not "at or after").
    pub fn first_slot_at_or_after(&self, t: DateTime<Utc>) -> u64 {
        let count = self.slot_count();
        if t <= self.start || self.every_secs == 0 {
            return 0;
        }
        let offset = (t - self.start).num_microseconds().map_or(i128::MAX, i128::from);
        let every = i128::from(self.every_secs) * 1_000_000;
        let n = (offset + every - 1) / every;
        u64::try_from(n).unwrap_or(u64::MAX).min(count)
    }

    /// The slots opening in `[from, to)`, as a range of slot numbers (empty when none do).
    pub fn slots_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Range<u64> {
        let first = self.first_slot_at_or_after(from);
        first..self.first_slot_at_or_after(to).max(first)
    }

    /// The slots `range` as a schedule of their own (same cadence, starting at the first of them).
    /// `None` when the range is empty or reaches past the last slot.
    pub fn slice(&self, range: Range<u64>) -> Option<Schedule> {
        if range.is_empty() || range.end > self.slot_count() {
            return None;
        }
        let start = self.slot_opens_at(range.start)?;
        let len = i64::try_from(range.end - range.start).ok()?;
        let end = start.checked_add_signed(Duration::seconds(len.checked_mul(i64::from(self.every_secs))?))?;
        Some(Schedule { start, end, every_secs: self.every_secs })
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

    #[test]
    fn slots_between_is_exact_to_the_microsecond() {
        let s = Schedule { start: at(0), end: at(600), every_secs: 60 };
        assert_eq!(s.slots_between(at(0), at(60)), 0..1);
        assert_eq!(s.first_slot_at_or_after(at(60)), 1);
        let just_after = at(60) + Duration::milliseconds(500);
        assert_eq!(s.first_slot_at_or_after(just_after), 2, "slot 1 opened half a second before");
        assert_eq!(s.first_slot_at_or_after(at(10_000)), 10);
        assert_eq!(s.slots_between(at(10_000), at(20_000)), 10..10);
        assert_eq!(s.last_opens_at(), Some(at(540)));
        let slice = s.slice(3..5).unwrap();
        assert_eq!((slice.start, slice.slot_count(), slice.last_opens_at()), (at(180), 2, Some(at(240))));
        assert_eq!(s.slice(3..11), None);
        assert_eq!(s.slice(4..4), None);
    }

    proptest! {
        #[test]
        fn slots_between_counts_every_opening_in_the_range(span in 1i64..100_000, every in 1u32..10_000, a in -5_000i64..110_000, len in 0i64..50_000) {
            let s = Schedule { start: at(0), end: at(span), every_secs: every };
            let range = s.slots_between(at(a), at(a + len));
            let brute = (0..s.slot_count()).filter(|n| {
                let t = s.slot_opens_at(*n).unwrap();
                at(a) <= t && t < at(a + len)
            });
            prop_assert_eq!(range.clone().count(), brute.count());
            for n in range {
                let t = s.slot_opens_at(n).unwrap();
                prop_assert!(at(a) <= t && t < at(a + len));
            }
        }

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
