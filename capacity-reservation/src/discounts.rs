//! The published volume-discount schedule.
//!
//! A quote's discount is the volume discount for the contract's total proofs plus the term discount
//! for its length, capped at `max_total_bps`. Each table is a list of thresholds with the discount
//! that applies from that threshold on; the largest threshold reached wins.
//!
//! Invariants (checked by [`DiscountSchedule::validate`]): thresholds strictly increase, discounts
//! never decrease, every discount and the cap are below 10,000 bps, so the discount is monotone in
//! volume and in term and a price never reaches zero.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A discount from a volume threshold on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeStep {
    /// Applies when the contract commits at least this many proofs.
    pub min_proofs: u64,
    /// Discount in basis points (1/100 of a percent).
    pub discount_bps: u32,
}

/// A discount from a term length on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TermStep {
    /// Applies when the contract runs at least this many days.
    pub min_days: u32,
    /// Discount in basis points.
    pub discount_bps: u32,
}

/// The schedule published at `GET /v1/discounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscountSchedule {
    /// Discounts by committed volume (total proofs).
    pub volume: Vec<VolumeStep>,
    /// Discounts by term length.
    pub term: Vec<TermStep>,
    /// The sum of both never exceeds this.
    pub max_total_bps: u32,
}

/// Why a schedule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscountError {
    /// Thresholds must strictly increase and discounts must not decrease.
    #[error("discount steps must have strictly increasing thresholds and non-decreasing discounts")]
    NotMonotone,
    /// A discount of 100% or more.
    #[error("discounts must be below 10000 bps")]
    TooLarge,
}

impl Default for DiscountSchedule {
    /// The default schedule: a year of hourly proofs (8,760) gets 8% + 4% = 12%, a week (168) 1%.
    fn default() -> Self {
        DiscountSchedule {
            volume: vec![
                VolumeStep { min_proofs: 100, discount_bps: 100 },
                VolumeStep { min_proofs: 1_000, discount_bps: 300 },
                VolumeStep { min_proofs: 5_000, discount_bps: 500 },
                VolumeStep { min_proofs: 8_760, discount_bps: 800 },
                VolumeStep { min_proofs: 50_000, discount_bps: 1_000 },
            ],
            term: vec![
                TermStep { min_days: 30, discount_bps: 100 },
                TermStep { min_days: 90, discount_bps: 200 },
                TermStep { min_days: 365, discount_bps: 400 },
            ],
            max_total_bps: 1_500,
        }
    }
}

impl DiscountSchedule {
    /// Checks the invariants in the module docs.
    pub fn validate(&self) -> Result<(), DiscountError> {
        let volume_ok = self
            .volume
            .windows(2)
            .all(|w| w[0].min_proofs < w[1].min_proofs && w[0].discount_bps <= w[1].discount_bps);
        let term_ok = self
            .term
            .windows(2)
            .all(|w| w[0].min_days < w[1].min_days && w[0].discount_bps <= w[1].discount_bps);
        if !volume_ok || !term_ok {
            return Err(DiscountError::NotMonotone);
        }
        let too_large = self.max_total_bps >= 10_000
            || self.volume.iter().any(|s| s.discount_bps >= 10_000)
            || self.term.iter().any(|s| s.discount_bps >= 10_000);
        if too_large {
            return Err(DiscountError::TooLarge);
        }
        Ok(())
    }

    /// Discount in bps for a contract of `proofs` proofs over `term_secs` seconds.
    pub fn discount_bps(&self, proofs: u64, term_secs: i64) -> u32 {
        let days = u32::try_from(term_secs.max(0) / 86_400).unwrap_or(u32::MAX);
        let volume = self
            .volume
            .iter()
            .filter(|s| proofs >= s.min_proofs)
            .map(|s| s.discount_bps)
            .max()
            .unwrap_or(0);
        let term = self.term.iter().filter(|s| days >= s.min_days).map(|s| s.discount_bps).max().unwrap_or(0);
        volume.saturating_add(term).min(self.max_total_bps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_year_is_discounted_more_than_a_week() {
        let s = DiscountSchedule::default();
        s.validate().unwrap();
        let week = s.discount_bps(168, 7 * 86_400);
        let year = s.discount_bps(8_760, 365 * 86_400);
        assert_eq!(week, 100);
        assert_eq!(year, 1_200);
    }

    #[test]
    fn invalid_schedules_are_refused() {
        let mut s = DiscountSchedule::default();
        s.volume.swap(0, 1);
        assert_eq!(s.validate(), Err(DiscountError::NotMonotone));
        let s = DiscountSchedule { max_total_bps: 10_000, ..DiscountSchedule::default() };
        assert_eq!(s.validate(), Err(DiscountError::TooLarge));
    }

    proptest! {
        #[test]
        fn discount_is_monotone_in_volume_and_term(
            p1 in 0u64..200_000, p2 in 0u64..200_000,
            t1 in 0i64..(5 * 365 * 86_400), t2 in 0i64..(5 * 365 * 86_400),
        ) {
            let s = DiscountSchedule::default();
            let (plo, phi) = (p1.min(p2), p1.max(p2));
            let (tlo, thi) = (t1.min(t2), t1.max(t2));
            prop_assert!(s.discount_bps(plo, t1) <= s.discount_bps(phi, t1));
            prop_assert!(s.discount_bps(p1, tlo) <= s.discount_bps(p1, thi));
            prop_assert!(s.discount_bps(phi, thi) <= s.max_total_bps);
        }
    }
}
