//! Capacity counted where the slots are.
//!
//! An offer sells `proofs_per_hour` proofs in every clock hour of its window. A reservation holds,
//! in each clock hour, the proofs of *its* slots that open in that hour: exactly, for every
//! cadence. A contract starting at 07:02 every minute holds 58 proofs of the 07:00 hour, not 60;
//! a daily contract holds one proof in one hour a day and nothing in the other 23. An offer serves
//! every slot whose opening time lies in its window, so an offer posted at 07:01 serves a contract
//! starting at 07:02.
//!
//! The database enforces the same count when a reservation is inserted (the trigger
//! `reservations_capacity` of migration 0005, which re-derives it in SQL); the allocator uses this
//! module to propose only what the trigger will accept.
//!
//! # Peak load
//! To check a new run against an offer's reservations it is enough to look at the hours where some
//! run's count may change: for a cadence dividing the hour, its first two hours and its last one
//! (edge hours are partial); for any other cadence, every hour in which it has a slot. Between
//! those hours every count is constant, so the peak is found among them.

use std::ops::Range;

use chrono::{DateTime, Duration, Utc};

use pcx_domain::Schedule;

/// Seconds in an hour.
pub const HOUR_SECS: i64 = 3600;

/// The start of the clock hour holding `t`.
pub fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(HOUR_SECS) * HOUR_SECS, 0).unwrap_or(t)
}

fn hour() -> Duration {
    Duration::seconds(HOUR_SECS)
}

/// A reservation's slots: a run of a contract's slots (a sub-schedule), each `proofs_per_slot` proofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRun {
    /// The slots, as a schedule of their own.
    pub slots: Schedule,
    /// Proofs in each slot.
    pub proofs_per_slot: u32,
}

impl SlotRun {
    /// Slots `range` of `schedule`; `None` when empty or past its end.
    pub fn of(schedule: &Schedule, range: Range<u64>, proofs_per_slot: u32) -> Option<SlotRun> {
        Some(SlotRun { slots: schedule.slice(range)?, proofs_per_slot: proofs_per_slot.max(1) })
    }

    /// Opening time of its first slot.
    pub fn first_at(&self) -> DateTime<Utc> {
        self.slots.start
    }

    /// Opening time of its last slot.
    pub fn last_at(&self) -> DateTime<Utc> {
        self.slots.last_opens_at().unwrap_or(self.slots.start)
    }

    /// Number of slots.
    pub fn slot_count(&self) -> u64 {
        self.slots.slot_count()
    }

    /// Start of its first clock hour.
    pub fn first_hour(&self) -> DateTime<Utc> {
        floor_hour(self.first_at())
    }

    /// End of its last clock hour (exclusive).
    pub fn end_hour(&self) -> DateTime<Utc> {
        floor_hour(self.last_at()) + hour()
    }

    /// Proofs of its slots opening in `[from, to)`.
    pub fn proofs_opening_in(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
        let slots = self.slots.slots_between(from, to);
        (slots.end - slots.start).saturating_mul(u64::from(self.proofs_per_slot))
    }

    /// Proofs it holds in the clock hour starting at `hour_start`.
    pub fn proofs_in_hour(&self, hour_start: DateTime<Utc>) -> u64 {
        self.proofs_opening_in(hour_start, hour_start + hour())
    }

    /// Whether every full hour of its span holds the same count (a cadence dividing the hour).
    fn steady(&self) -> bool {
        let every = i64::from(self.slots.every_secs);
        every > 0 && every <= HOUR_SECS && HOUR_SECS % every == 0
    }

    /// The hours in `[from, to)` at which its count may differ from the hour before.
    pub fn changes(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let inside = |t: &DateTime<Utc>| from <= *t && *t < to;
        if self.steady() {
            let (first, end) = (self.first_hour(), self.end_hour());
            return [first, first + hour(), end - hour(), end].into_iter().filter(inside).collect();
        }
        let mut hours: Vec<DateTime<Utc>> = if i64::from(self.slots.every_secs) > HOUR_SECS {
            // At most one slot an hour: the hours of its slots, and the hour after each.
            let range = self.slots.slots_between(from - hour(), to);
            range
                .filter_map(|n| self.slots.slot_opens_at(n))
                .flat_map(|t| [floor_hour(t), floor_hour(t) + hour()])
                .collect()
        } else {
            let start = self.first_hour().max(floor_hour(from));
            let end = self.end_hour().min(to);
            std::iter::successors(Some(start), |h| Some(*h + hour())).take_while(|h| *h <= end).collect()
        };
        hours.retain(inside);
        hours.dedup();
        hours
    }

    /// The most proofs it holds in any one clock hour.
    pub fn peak_hourly(&self) -> u64 {
        peak_with(&[], self)
    }
}

/// The most proofs `new` and `held` hold together in any clock hour in which `new` holds some.
pub fn peak_with(held: &[&SlotRun], new: &SlotRun) -> u64 {
    let (from, to) = (new.first_hour(), new.end_hour());
    let mut hours = new.changes(from, to);
    if i64::from(new.slots.every_secs) <= HOUR_SECS {
        // `new` has a slot in every hour of its span: any hour where another count changes matters.
        for run in held.iter().filter(|r| r.first_hour() < to && from < r.end_hour()) {
            hours.extend(run.changes(from, to));
        }
    }
    hours.sort();
    hours.dedup();
    hours
        .into_iter()
        .map(|h| (new.proofs_in_hour(h), h))
        .filter(|(own, _)| *own > 0)
        .map(|(own, h)| own + held.iter().map(|r| r.proofs_in_hour(h)).sum::<u64>())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: i64) -> DateTime<Utc> {
        // 2030-03-15T08:00:00Z, on the hour.
        DateTime::from_timestamp(1_899_792_000 + secs, 0).unwrap()
    }

    fn run(start: i64, every: u32, slots: u64, pps: u32) -> SlotRun {
        let schedule = Schedule { start: at(start), end: at(start + i64::from(every) * slots as i64), every_secs: every };
        SlotRun::of(&schedule, 0..slots, pps).unwrap()
    }

    #[test]
    fn edge_hours_hold_only_their_slots() {
        let r = run(120, 60, 120, 1); // 08:02 every minute for two hours
        assert_eq!(r.proofs_in_hour(at(0)), 58);
        assert_eq!(r.proofs_in_hour(at(3600)), 60);
        assert_eq!(r.proofs_in_hour(at(7200)), 2);
        assert_eq!(r.peak_hourly(), 60);
        assert_eq!(r.first_hour(), at(0));
        assert_eq!(r.end_hour(), at(3 * 3600));
    }

    #[test]
    fn a_daily_run_holds_one_hour_a_day() {
        let daily = run(2 * 3600, 86_400, 10, 1); // 10:00 every day
        assert_eq!(daily.proofs_in_hour(at(2 * 3600)), 1);
        assert_eq!(daily.proofs_in_hour(at(3 * 3600)), 0);
        let other = run(7 * 3600, 86_400, 10, 1); // 15:00 every day
        assert_eq!(peak_with(&[&daily], &other), 1);
        let same_hour = run(2 * 3600 + 1800, 86_400, 10, 1); // 10:30
        assert_eq!(peak_with(&[&daily], &same_hour), 2);
        let hourly = run(0, 3600, 48, 1);
        assert_eq!(peak_with(&[&daily], &hourly), 2, "the hourly run meets the daily one at 10:00");
        assert_eq!(peak_with(&[&hourly], &daily), 2);
    }

    #[test]
    fn collateral_counts_the_proofs_opening_in_the_window() {
        let r = run(60, 3600, 48, 2);
        assert_eq!(r.proofs_opening_in(at(0), at(86_400)), 48);
        assert_eq!(r.proofs_opening_in(at(61), at(86_400)), 46);
    }

    proptest! {
        #[test]
        fn the_peak_is_the_hourly_maximum(
            runs in prop::collection::vec((0i64..20_000, prop::sample::select(vec![60u32, 420, 900, 1500, 3600, 5400, 7200, 86_400]), 1u64..60, 1u32..3), 1..5),
            new in (0i64..20_000, prop::sample::select(vec![60u32, 420, 900, 1500, 3600, 5400, 7200, 86_400]), 1u64..60, 1u32..3),
        ) {
            let held: Vec<SlotRun> = runs.iter().map(|(s, e, n, p)| run(*s, *e, *n, *p)).collect();
            let new = run(new.0, new.1, new.2, new.3);
            let refs: Vec<&SlotRun> = held.iter().collect();
            let mut brute = 0;
            let mut h = new.first_hour();
            while h < new.end_hour() {
                let own = new.proofs_in_hour(h);
                if own > 0 {
                    brute = brute.max(own + held.iter().map(|r| r.proofs_in_hour(h)).sum::<u64>());
                }
                h += Duration::hours(1);
            }
            prop_assert_eq!(peak_with(&refs, &new), brute);
        }
    }
}
