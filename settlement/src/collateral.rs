//! Collateral as the window rolls: what a prover's stake secures, and which slots a primary loses
//! when its stake no longer covers them.
//!
//! A primary's bonded stake must cover `slash_multiplier x price` for each of its slots opening in
//! the collateral window. The scheduler checks this as the window rolls forward and stake changes
//! (slashes): the earliest slots stay covered with the primary; each later one that is not covered
//! goes to its first backup, the former primary becoming its last backup, with the reason
//! `primary_undercollateralised` on the slot. A slot without a backup stays where it is.
//!
//! The jobs a prover holds (offered to it or claimed by it) are secured at unstaking: no unstake
//! releases their largest slash, `slash_multiplier x invalid_slash_factor x price` each.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use pcx_domain::{AccountId, Money, MoneyError};

use crate::state::Replacement;

/// The largest slash a live job of price `price` can cost its prover.
pub fn job_exposure(price: Money, slash_multiplier: Decimal, invalid_slash_factor: Decimal) -> Result<Money, MoneyError> {
    Money::round_stored(price.as_decimal() * slash_multiplier * invalid_slash_factor)
}

/// What a primary slot of price `price` in the window requires.
pub fn slot_exposure(price: Money, slash_multiplier: Decimal) -> Result<Money, MoneyError> {
    Money::round_stored(price.as_decimal() * slash_multiplier)
}

/// A scheduled slot of the prover's as primary, in the collateral window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimarySlot {
    /// Contract.
    pub contract_id: Uuid,
    /// Slot.
    pub n: u64,
    /// When it opens.
    pub opens_at: DateTime<Utc>,
    /// Its price.
    pub price: Money,
    /// Its backups, in order.
    pub backups: Vec<AccountId>,
}

/// A slot handed from its primary to its first backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// Contract.
    pub contract_id: Uuid,
    /// Slot.
    pub n: u64,
    /// The primary it had.
    pub previous: AccountId,
    /// Its new primary.
    pub primary: AccountId,
    /// Its new backups.
    pub backups: Vec<AccountId>,
    /// Why.
    pub reason: Replacement,
}

/// The slots `prover` must hand over so that `free` (its bond) covers the rest (see the module docs).
pub fn uncovered(
    prover: AccountId,
    free: Money,
    slots: &[PrimarySlot],
    slash_multiplier: Decimal,
) -> Result<Vec<Reassignment>, MoneyError> {
    let mut ordered: Vec<&PrimarySlot> = slots.iter().collect();
    ordered.sort_by_key(|s| (s.opens_at, s.contract_id, s.n));
    let mut covered = Money::ZERO;
    let mut handed = Vec::new();
    for slot in ordered {
        let need = slot_exposure(slot.price, slash_multiplier)?;
        let with = covered.checked_add(need)?;
        match slot.backups.split_first() {
            Some((first, rest)) if with > free => {
                let mut backups = rest.to_vec();
                backups.push(prover);
                handed.push(Reassignment {
                    contract_id: slot.contract_id,
                    n: slot.n,
                    previous: prover,
                    primary: *first,
                    backups,
                    reason: Replacement::PrimaryUndercollateralised,
                });
            }
            _ => covered = with,
        }
    }
    Ok(handed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + h * 3600, 0).unwrap()
    }

    fn id(b: u8) -> AccountId {
        AccountId(Uuid::from_bytes([b; 16]))
    }

    fn slots(n: u64, backups: &[AccountId]) -> Vec<PrimarySlot> {
        (0..n)
            .map(|i| PrimarySlot { contract_id: Uuid::nil(), n: i, opens_at: at(i as i64), price: Money::parse("1").unwrap(), backups: backups.to_vec() })
            .collect()
    }

    #[test]
    fn the_latest_uncovered_slots_go_to_the_first_backup() {
        let handed = uncovered(id(1), Money::parse("46").unwrap(), &slots(24, &[id(2), id(3)]), Decimal::TWO).unwrap();
        assert_eq!(handed.len(), 1);
        assert_eq!((handed[0].n, handed[0].primary, handed[0].previous), (23, id(2), id(1)));
        assert_eq!(handed[0].backups, vec![id(3), id(1)]);
        assert!(uncovered(id(1), Money::parse("48").unwrap(), &slots(24, &[id(2)]), Decimal::TWO).unwrap().is_empty());
    }

    #[test]
    fn a_slot_without_a_backup_stays() {
        assert!(uncovered(id(1), Money::ZERO, &slots(3, &[]), Decimal::TWO).unwrap().is_empty());
        assert_eq!(job_exposure(Money::parse("0.01").unwrap(), Decimal::TWO, Decimal::TWO).unwrap(), Money::parse("0.04").unwrap());
    }
}
