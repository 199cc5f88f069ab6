//! How money moves when a slot settles.
//!
//! - Delivered or unused slot of price `p`: the buyer's escrow pays `p`; the exchange keeps
//!   `fee = p x fee_bps / 10_000` (banker's rounding to 6 decimals) and the prover gets `p - fee`.
//! - A failed job slashes its prover `slash_multiplier x p` (times `invalid_factor` for an invalid
//!   proof), capped by the prover's bonded stake. The slashed amount is split: half to the buyer as
//!   compensation, a quarter set aside (in insurance) as the bonus of whoever steps in and delivers,
//!   the rest to insurance. Shares add up to the slashed amount exactly.
//! - A missed slot refunds `p` from escrow to the buyer.
//!
//! The entries these movements post are built here too, each with its [`reference`](crate::reference).

use rust_decimal::Decimal;
use uuid::Uuid;

use pcx_domain::{AccountId, AccountKind, EntryKind, JournalEntry, LedgerAccount, LedgerError, Money, MoneyError};

use crate::reference;

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

/// The payment of slot `n` of `contract`: `gross` from the buyer's escrow to `prover` (less the fee).
pub fn payment_entry(contract: Uuid, n: u64, buyer: AccountId, prover: AccountId, gross: Money, fee_bps: u32) -> Result<JournalEntry, LedgerError> {
    let split = payment(gross, fee_bps)?;
    JournalEntry::from_nonzero(
        EntryKind::SlotPayment,
        reference::slot_payment(contract, n),
        [
            (LedgerAccount::user(buyer, AccountKind::Escrow), gross.negated()),
            (LedgerAccount::user(prover, AccountKind::Available), split.to_prover),
            (LedgerAccount::exchange(AccountKind::Fees), split.fee),
        ],
    )
}

/// The step-in bonus of slot `n`: what earlier slashes set aside in insurance, to `prover`.
pub fn bonus_entry(contract: Uuid, n: u64, prover: AccountId, bonus: Money) -> Result<JournalEntry, LedgerError> {
    JournalEntry::transfer(
        EntryKind::StepInBonus,
        reference::step_in_bonus(contract, n),
        LedgerAccount::exchange(AccountKind::Insurance),
        LedgerAccount::user(prover, AccountKind::Available),
        bonus,
    )
}

/// The refund of slot `n`: its price from the buyer's escrow back to its available balance.
pub fn refund_entry(contract: Uuid, n: u64, buyer: AccountId, price: Money) -> Result<JournalEntry, LedgerError> {
    JournalEntry::internal(EntryKind::Refund, buyer, AccountKind::Escrow, AccountKind::Available, price, reference::refund(contract, n))
}

/// The slash of `job`: `split.total` from `prover`'s bond, half to `buyer`, the rest to insurance
/// (whose step-in share a later delivery pays out).
pub fn slash_entry(job: Uuid, prover: AccountId, buyer: AccountId, split: &SlashSplit) -> Result<JournalEntry, LedgerError> {
    let to_insurance = split.step_in_bonus.checked_add(split.to_insurance)?;
    JournalEntry::from_nonzero(
        EntryKind::Slash,
        reference::slash(job),
        [
            (LedgerAccount::user(prover, AccountKind::Bonded), split.total.negated()),
            (LedgerAccount::user(buyer, AccountKind::Available), split.to_buyer),
            (LedgerAccount::exchange(AccountKind::Insurance), to_insurance),
        ],
    )
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
