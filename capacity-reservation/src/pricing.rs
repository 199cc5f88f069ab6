//! Prices: a prover's tiered ask, and the arithmetic of a quote (discount, fee, totals, escrow).
//!
//! Invariants:
//! - tiers lower the price past a number of proofs: thresholds strictly increase, prices strictly
//!   decrease and stay above zero;
//! - a contract's total is exactly the sum over its provers of (locked price x proofs), each locked
//!   price rounded once with banker's rounding to 6 decimals; the quoted average is informational.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use pcx_domain::{Money, MoneyError};

/// Lower price past a number of proofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceTier {
    /// Proofs after the first `from_proofs` of a contract cost `price_per_proof`.
    pub from_proofs: u64,
    /// Price per proof past the threshold.
    pub price_per_proof: Money,
}

/// An ask: a base price and optional volume tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TieredPrice {
    base: Money,
    tiers: Vec<PriceTier>,
}

/// Why a price or its tiers are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// Zero or negative.
    #[error("prices must be greater than zero")]
    NotPositive,
    /// Tiers out of order.
    #[error("tiers must have strictly increasing from_proofs (above 0) and strictly decreasing prices below the base price")]
    TiersNotMonotone,
    /// Arithmetic overflow.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl TieredPrice {
    /// A price with tiers, checked.
    pub fn new(base: Money, tiers: Vec<PriceTier>) -> Result<Self, PriceError> {
        if !base.is_positive() || tiers.iter().any(|t| !t.price_per_proof.is_positive()) {
            return Err(PriceError::NotPositive);
        }
        let mut previous = (0u64, base);
        for tier in &tiers {
            if tier.from_proofs <= previous.0 || tier.price_per_proof >= previous.1 {
                return Err(PriceError::TiersNotMonotone);
            }
            previous = (tier.from_proofs, tier.price_per_proof);
        }
        Ok(Self { base, tiers })
    }

    /// The base price.
    pub fn base(&self) -> Money {
        self.base
    }

    /// The tiers.
    pub fn tiers(&self) -> &[PriceTier] {
        &self.tiers
    }

    /// Exact cost of the first `proofs` proofs of a contract: proofs 1..=t1 at the base price,
    /// t1+1..=t2 at tier 1's price, and so on.
    pub fn cost(&self, proofs: u64) -> Result<Decimal, PriceError> {
        let mut total = Decimal::ZERO;
        let mut counted = 0u64;
        let mut price = self.base;
        for tier in &self.tiers {
            if proofs <= tier.from_proofs {
                break;
            }
            let n = tier.from_proofs - counted;
            total = add(total, mul(price.as_decimal(), n)?)?;
            counted = tier.from_proofs;
            price = tier.price_per_proof;
        }
        add(total, mul(price.as_decimal(), proofs - counted)?)
    }
}

fn mul(price: Decimal, n: u64) -> Result<Decimal, PriceError> {
    price.checked_mul(Decimal::from(n)).ok_or(PriceError::Money(MoneyError::Overflow))
}

fn add(a: Decimal, b: Decimal) -> Result<Decimal, PriceError> {
    a.checked_add(b).ok_or(PriceError::Money(MoneyError::Overflow))
}

/// `amount x (10_000 - bps) / 10_000`, rounded to a storable amount (banker's rounding).
pub fn apply_discount(amount: Decimal, discount_bps: u32) -> Result<Money, PriceError> {
    let keep = Decimal::from(10_000u32.saturating_sub(discount_bps));
    let value = amount
        .checked_mul(keep)
        .and_then(|v| v.checked_div(Decimal::from(10_000u32)))
        .ok_or(PriceError::Money(MoneyError::Overflow))?;
    Ok(Money::round_stored(value)?)
}

/// `amount x bps / 10_000`, rounded to a storable amount (banker's rounding).
pub fn basis_points_of(amount: Money, bps: u32) -> Result<Money, PriceError> {
    let value = amount
        .as_decimal()
        .checked_mul(Decimal::from(bps))
        .and_then(|v| v.checked_div(Decimal::from(10_000u32)))
        .ok_or(PriceError::Money(MoneyError::Overflow))?;
    Ok(Money::round_stored(value)?)
}

/// `price x n` exactly (a price has at most 6 decimals, so the product does too).
pub fn times(price: Money, n: u64) -> Result<Money, PriceError> {
    Ok(Money::from_decimal(mul(price.as_decimal(), n)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    #[test]
    fn tiers_lower_the_price_past_their_threshold() {
        let p = TieredPrice::new(
            m("1"),
            vec![
                PriceTier { from_proofs: 100, price_per_proof: m("0.9") },
                PriceTier { from_proofs: 1000, price_per_proof: m("0.8") },
            ],
        )
        .unwrap();
        assert_eq!(p.cost(50).unwrap(), Decimal::from(50));
        assert_eq!(p.cost(100).unwrap(), Decimal::from(100));
        assert_eq!(p.cost(101).unwrap().to_string(), "100.9");
        assert_eq!(p.cost(1010).unwrap().to_string(), "918.0");
    }

    #[test]
    fn tiers_out_of_order_are_refused() {
        let up = vec![PriceTier { from_proofs: 10, price_per_proof: m("1.5") }];
        assert_eq!(TieredPrice::new(m("1"), up), Err(PriceError::TiersNotMonotone));
        let zero = vec![PriceTier { from_proofs: 0, price_per_proof: m("0.5") }];
        assert_eq!(TieredPrice::new(m("1"), zero), Err(PriceError::TiersNotMonotone));
        assert_eq!(TieredPrice::new(Money::ZERO, vec![]), Err(PriceError::NotPositive));
    }

    #[test]
    fn discount_and_fee_round_half_to_even() {
        assert_eq!(apply_discount(Decimal::new(1_000_005, 6), 5_000).unwrap(), m("0.500002"));
        assert_eq!(basis_points_of(m("0.000150"), 1_000).unwrap(), m("0.000015"));
    }

    proptest! {
        #[test]
        fn cost_is_monotone_and_never_above_base_price(
            base in 1i64..10_000_000, cut in 1i64..100, t in 1u64..1_000, n in 0u64..5_000
        ) {
            let base = Money::from_decimal(Decimal::new(base, 6)).unwrap();
            let lower = Money::from_decimal(Decimal::new((base.as_decimal() * Decimal::new(100 - cut, 2) * Decimal::from(1_000_000)).trunc().try_into().unwrap_or(1), 6)).unwrap();
            prop_assume!(lower.is_positive() && lower < base);
            let p = TieredPrice::new(base, vec![PriceTier { from_proofs: t, price_per_proof: lower }]).unwrap();
            prop_assert!(p.cost(n).unwrap() <= p.cost(n + 1).unwrap());
            prop_assert!(p.cost(n).unwrap() <= base.as_decimal() * Decimal::from(n));
        }
    }
}
