//! A contract's progress: which slots to materialise, the rolling escrow window, suspension with
//! backoff, and completion.
//!
//! # Escrow
//! A buyer keeps the next escrow window of its slots' payments locked. As the window rolls, the
//! scheduler locks the payments of the slots entering it, from the first slot that has neither
//! opened nor been funded yet: a contract resuming after a suspension funds only the slots still
//! to open, never those cancelled meanwhile. A buyer that cannot pay gets its contract suspended
//! (reason `escrow_underfunded`) and retried with exponential backoff (1 min doubling to 1 h, or at
//! once after a deposit), so unfunded contracts never hold up anyone else's.

use std::ops::Range;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use pcx_domain::{AccountId, AccountKind, EntryKind, JournalEntry, Money, MoneyError, Schedule};

use crate::error::SettlementError;
use crate::reference;
use crate::state::{ContractReason, ContractStatus};

/// First retry of a suspended contract's escrow.
pub const FIRST_RETRY: Duration = Duration::minutes(1);
/// Longest wait between retries.
pub const MAX_RETRY: Duration = Duration::hours(1);

/// What the scheduler knows of a contract's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Contract.
    pub id: Uuid,
    /// Buyer.
    pub buyer: AccountId,
    /// Status.
    pub status: ContractStatus,
    /// When its slots open.
    pub schedule: Schedule,
    /// Slots below this are materialised.
    pub materialised_until: u64,
    /// Slots below this have their payment in escrow (or were cancelled).
    pub escrow_until: u64,
    /// Slots below this have opened (settled or being proved).
    pub opened_until: u64,
    /// What its escrow holds.
    pub escrow_held: Money,
    /// Escrow top-ups that failed in a row.
    pub escrow_failures: u32,
}

/// A run of slots at one locked price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PricedBlock {
    /// Slots `[first_slot, end_slot)`.
    pub first_slot: u64,
    /// End (exclusive).
    pub end_slot: u64,
    /// Price of one slot (price per proof x proofs per slot).
    pub price_per_slot: Money,
}

/// The price of slots `range` over `blocks`.
pub fn price_of(blocks: &[PricedBlock], range: &Range<u64>) -> Result<Money, MoneyError> {
    blocks.iter().try_fold(Money::ZERO, |acc, b| {
        let overlap = range.end.min(b.end_slot).saturating_sub(range.start.max(b.first_slot));
        let cost = Money::round_stored(b.price_per_slot.as_decimal() * rust_decimal::Decimal::from(overlap))?;
        acc.checked_add(cost)
    })
}

/// Slots to materialise now, at most `chunk`, and when the next one opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialise {
    /// Slot numbers.
    pub range: Range<u64>,
    /// When the next slot to materialise opens (`None` once all are).
    pub next_at: Option<DateTime<Utc>>,
}

/// The slots of `progress` opening up to `horizon_end` not yet materialised, at most `chunk`.
pub fn materialise(progress: &Progress, horizon_end: DateTime<Utc>, chunk: u64) -> Option<Materialise> {
    let count = progress.schedule.slot_count();
    let from = progress.materialised_until;
    if from >= count {
        return None;
    }
    let due = progress.schedule.first_slot_at_or_after(horizon_end + Duration::microseconds(1));
    let to = due.max(from + 1).min(from.saturating_add(chunk.max(1))).min(count);
    Some(Materialise { range: from..to, next_at: progress.schedule.slot_opens_at(to) })
}

/// A top-up of the escrow window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUp {
    /// Slots whose payments are locked.
    pub range: Range<u64>,
    /// Their price.
    pub amount: Money,
    /// `available -> escrow` (none when the slots cost nothing).
    pub entry: Option<JournalEntry>,
    /// When the next slot past the window opens.
    pub next_at: Option<DateTime<Utc>>,
    /// True when the contract was suspended and resumes with this top-up.
    pub resumes: bool,
}

/// The top-up that brings `progress`'s escrow up to `now + window` (see the module docs).
pub fn top_up(progress: &Progress, blocks: &[PricedBlock], window: Duration, now: DateTime<Utc>) -> Result<Option<TopUp>, SettlementError> {
    let count = progress.schedule.slot_count();
    let from = progress.escrow_until.max(progress.opened_until);
    let to = progress.schedule.first_slot_at_or_after(now + window).max(from + 1).min(count);
    if from >= count || to <= from {
        return Ok(None);
    }
    let range = from..to;
    let amount = price_of(blocks, &range)?;
    let entry = amount
        .is_positive()
        .then(|| {
            JournalEntry::internal(
                EntryKind::EscrowLock,
                progress.buyer,
                AccountKind::Available,
                AccountKind::Escrow,
                amount,
                reference::escrow_top_up(progress.id, from, to),
            )
        })
        .transpose()?;
    Ok(Some(TopUp {
        range,
        amount,
        entry,
        next_at: progress.schedule.slot_opens_at(to),
        resumes: progress.status == ContractStatus::Suspended,
    }))
}

/// A contract suspended for want of escrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspension {
    /// Why.
    pub reason: ContractReason,
    /// When to try again.
    pub retry_at: DateTime<Utc>,
    /// Failed top-ups in a row, this one included.
    pub failures: u32,
}

/// The suspension of a contract whose buyer could not fund a top-up at `now`.
pub fn suspend(progress: &Progress, now: DateTime<Utc>) -> Suspension {
    let doublings = progress.escrow_failures.min(10);
    let wait = (FIRST_RETRY * 2i32.pow(doublings)).min(MAX_RETRY);
    Suspension { reason: ContractReason::EscrowUnderfunded, retry_at: now + wait, failures: progress.escrow_failures.saturating_add(1) }
}

/// The release of what a contract's escrow still holds when every slot is settled.
pub fn release(progress: &Progress) -> Result<Option<JournalEntry>, SettlementError> {
    if !progress.escrow_held.is_positive() {
        return Ok(None);
    }
    Ok(Some(JournalEntry::internal(
        EntryKind::EscrowRelease,
        progress.buyer,
        AccountKind::Escrow,
        AccountKind::Available,
        progress.escrow_held,
        reference::escrow_release(progress.id),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + secs, 0).unwrap()
    }

    fn progress() -> Progress {
        Progress {
            id: Uuid::nil(),
            buyer: AccountId(Uuid::nil()),
            status: ContractStatus::Active,
            schedule: Schedule { start: at(60), end: at(60 + 20 * 60), every_secs: 60 },
            materialised_until: 0,
            escrow_until: 10,
            opened_until: 0,
            escrow_held: Money::parse("0.1").unwrap(),
            escrow_failures: 0,
        }
    }

    fn blocks() -> Vec<PricedBlock> {
        vec![
            PricedBlock { first_slot: 0, end_slot: 15, price_per_slot: Money::parse("0.01").unwrap() },
            PricedBlock { first_slot: 15, end_slot: 20, price_per_slot: Money::parse("0.02").unwrap() },
        ]
    }

    #[test]
    fn the_window_rolls_one_slot_at_a_time() {
        let up = top_up(&progress(), &blocks(), Duration::seconds(600), at(61)).unwrap().unwrap();
        assert_eq!(up.range, 10..11);
        assert_eq!(up.amount, Money::parse("0.01").unwrap());
        assert_eq!(up.next_at, Some(at(60 + 11 * 60)));
        assert!(!up.resumes);
        assert_eq!(price_of(&blocks(), &(13..17)).unwrap(), Money::parse("0.06").unwrap());
    }

    #[test]
    fn resuming_funds_only_slots_still_to_open() {
        let suspended = Progress { status: ContractStatus::Suspended, opened_until: 13, ..progress() };
        let up = top_up(&suspended, &blocks(), Duration::seconds(600), at(60 + 12 * 60 + 40)).unwrap().unwrap();
        assert_eq!(up.range, 13..20);
        assert_eq!(up.amount, Money::parse("0.12").unwrap(), "2 x 0.01 + 5 x 0.02");
        assert!(up.resumes);
    }

    #[test]
    fn suspension_backs_off_to_an_hour() {
        let first = suspend(&progress(), at(0));
        assert_eq!((first.retry_at, first.failures), (at(60), 1));
        let later = suspend(&Progress { escrow_failures: 3, ..progress() }, at(0));
        assert_eq!(later.retry_at, at(8 * 60));
        let capped = suspend(&Progress { escrow_failures: 40, ..progress() }, at(0));
        assert_eq!(capped.retry_at, at(3600));
    }

    #[test]
    fn materialisation_reaches_the_horizon_in_chunks() {
        let m = materialise(&progress(), at(60 + 5 * 60), 1000).unwrap();
        assert_eq!(m.range, 0..6);
        assert_eq!(m.next_at, Some(at(60 + 6 * 60)));
        let chunked = materialise(&progress(), at(100_000), 4).unwrap();
        assert_eq!(chunked.range, 0..4);
        let done = materialise(&Progress { materialised_until: 20, ..progress() }, at(100_000), 4);
        assert_eq!(done, None);
        let all = materialise(&progress(), at(100_000), 1000).unwrap();
        assert_eq!((all.range, all.next_at), (0..20, None));
    }
}
