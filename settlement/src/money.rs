//! How money moves when a slot settles.
//!
//! - Delivered or unused slot of price `p`: the buyer's escrow pays `p`; the exchange keeps
//!   `fee = p x fee_bps / 10_000` (banker's rounding to 6 decimals) and the prover gets `p - fee`.
//! - A failed job slashes its prover `slash_multiplier x p` (times `invalid_factor` for an invalid
//!   proof), capped by the prover's bonded stake. The slashed amount is split: half to the buyer as
//!   compensation, a quarter set aside (in insurance) as the bonus of whoever steps in and delivers,
//!   the rest to insurance. Shares add up to the slashed amount exactly.
//! - A missed slot refunds `p` from escrow to the buyer.

use rust_decimal::Decimal;

use pcx_domain::{Money, MoneyError};

/// A delivered slot's payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payment {
    /// Taken from the buyer's escrow.
    pub gross: Money,
    /// To the prover's available balance.
    pub to_prover: Money,
    /// To the exchange's fees.
    pub fee: Money,
}

/// The split of a slash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlashSplit {
    /// Taken from the prover's bonded stake.
    pub total: Money,
    /// To the buyer's available balance, now.
    pub to_buyer: Money,
    /// Set aside in insurance for the prover that steps in and delivers.
    pub step_in_bonus: Money,
    /// To the insurance fund for good.
    pub to_insurance: Money,
}

fn round(value: Decimal) -> Result<Money, MoneyError> {
    Money::round_stored(value)
}

/// The payment of a slot of price `gross` with the exchange fee `fee_bps`.
pub fn payment(gross: Money, fee_bps: u32) -> Result<Payment, MoneyError> {
    let fee = round(gross.as_decimal() * Decimal::from(fee_bps) / Decimal::from(10_000))?;
    Ok(Payment { gross, to_prover: gross.checked_sub(fee)?, fee })
}

/// The slash of a failed job on a slot of price `price`, capped by `bonded`.
pub fn slash(
    price: Money,
    slash_multiplier: Decimal,
    invalid_factor: Option<Decimal>,
    bonded: Money,
) -> Result<SlashSplit, MoneyError> {
    let factor = invalid_factor.unwrap_or(Decimal::ONE);
    let wanted = round(price.as_decimal() * slash_multiplier * factor)?;
    let total = wanted.min(bonded).max(Money::ZERO);
    let to_buyer = round(total.as_decimal() / Decimal::TWO)?;
    let step_in_bonus = round(total.as_decimal() / Decimal::from(4))?;
    let to_insurance = total.checked_sub(to_buyer)?.checked_sub(step_in_bonus)?;
    Ok(SlashSplit { total, to_buyer, step_in_bonus, to_insurance })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    #[test]
    fn payment_keeps_the_fee() {
        let p = payment(m("0.968"), 100).unwrap();
        assert_eq!(p.fee, m("0.00968"));
        assert_eq!(p.to_prover, m("0.95832"));
    }

    #[test]
    fn slash_is_capped_by_stake_and_invalid_proofs_slash_more() {
        let missed = slash(m("1"), Decimal::TWO, None, m("100")).unwrap();
        assert_eq!(missed.total, m("2"));
        assert_eq!((missed.to_buyer, missed.step_in_bonus, missed.to_insurance), (m("1"), m("0.5"), m("0.5")));
        let invalid = slash(m("1"), Decimal::TWO, Some(Decimal::TWO), m("100")).unwrap();
        assert_eq!(invalid.total, m("4"));
        let capped = slash(m("1"), Decimal::TWO, None, m("0.3")).unwrap();
        assert_eq!(capped.total, m("0.3"));
    }

    proptest! {
        #[test]
        fn shares_add_up_exactly(price in 1i64..10_000_000_000, bonded in 0i64..100_000_000_000, fee in 0u32..2_000) {
            let price = Money::from_decimal(Decimal::new(price, 6)).unwrap();
            let bonded = Money::from_decimal(Decimal::new(bonded, 6)).unwrap();
            let s = slash(price, Decimal::TWO, None, bonded).unwrap();
            prop_assert!(s.total <= bonded);
            let sum = s.to_buyer.checked_add(s.step_in_bonus).unwrap().checked_add(s.to_insurance).unwrap();
            prop_assert_eq!(sum, s.total);
            prop_assert!(!s.to_insurance.is_negative());
            let p = payment(price, fee).unwrap();
            prop_assert_eq!(p.to_prover.checked_add(p.fee).unwrap(), p.gross);
        }
    }
}
