//! The double-entry vocabulary of the ledger.
//!
//! Every movement of money is one [`JournalEntry`] made of [`Posting`]s, each a signed amount on one
//! [`LedgerAccount`]. Invariants, enforced here when an entry is built and again by the database:
//! - the postings of an entry sum to exactly zero;
//! - an entry has at least two postings and none of them is zero;
//! - user accounts are of kinds `available`, `escrow`, `bonded`; exchange accounts of kinds `fees`,
//!   `insurance`, `external`. Only `external` (the outside world: deposits in, withdrawals out) may go
//!   negative; the store refuses any posting that would take another balance below zero.
//!
//! Sign convention: a posting adds its amount to the account's balance. A deposit of 10 is
//! `external -10, user.available +10`, so `external` holds minus the net deposits and the sum of all
//! balances is always zero.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AccountId, Money, MoneyError};

/// The kind of a ledger account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A user's freely usable funds.
    Available,
    /// A buyer's funds locked for upcoming slots.
    Escrow,
    /// A prover's stake, slashable.
    Bonded,
    /// The exchange's fee income.
    Fees,
    /// The exchange's insurance fund.
    Insurance,
    /// The world outside the exchange: deposits come from it, withdrawals go to it. May be negative.
    External,
}

impl AccountKind {
    /// Every kind, in display order.
    pub const ALL: [AccountKind; 6] = [
        AccountKind::Available,
        AccountKind::Escrow,
        AccountKind::Bonded,
        AccountKind::Fees,
        AccountKind::Insurance,
        AccountKind::External,
    ];

    /// Stable name used in the database and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Available => "available",
            AccountKind::Escrow => "escrow",
            AccountKind::Bonded => "bonded",
            AccountKind::Fees => "fees",
            AccountKind::Insurance => "insurance",
            AccountKind::External => "external",
        }
    }

    /// Parses the stored name back.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// True for the kinds a user account has; false for the exchange's own accounts.
    pub fn is_user_kind(self) -> bool {
        matches!(self, AccountKind::Available | AccountKind::Escrow | AccountKind::Bonded)
    }

    /// Only `external` may hold a negative balance.
    pub fn may_go_negative(self) -> bool {
        self == AccountKind::External
    }
}

/// Who owns a ledger account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A buyer or prover account.
    User(AccountId),
    /// The exchange itself.
    Exchange,
}

/// One ledger account: an owner and a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LedgerAccount {
    /// Who owns it.
    pub owner: Owner,
    /// What it holds.
    pub kind: AccountKind,
}

impl LedgerAccount {
    /// A user's account of the given kind (`available`, `escrow` or `bonded`).
    pub fn user(account: AccountId, kind: AccountKind) -> Self {
        debug_assert!(kind.is_user_kind());
        Self { owner: Owner::User(account), kind }
    }

    /// The exchange's account of the given kind (`fees`, `insurance` or `external`).
    pub fn exchange(kind: AccountKind) -> Self {
        debug_assert!(!kind.is_user_kind());
        Self { owner: Owner::Exchange, kind }
    }
}

/// What a journal entry records; stable names shown in ledger listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Funds credited by the operator from outside.
    Deposit,
    /// Funds paid out to the outside.
    Withdrawal,
    /// A prover bonds stake: `available -> bonded`.
    Stake,
    /// A prover releases stake: `bonded -> available`.
    Unstake,
    /// A buyer's funds locked for upcoming slots: `available -> escrow`.
    EscrowLock,
    /// A settled slot's payment: `buyer.escrow -> prover.available + fees`.
    SlotPayment,
    /// A failed job's slash: `prover.bonded -> buyer.available + insurance`.
    Slash,
    /// A missed slot's refund: `buyer.escrow -> buyer.available`.
    Refund,
    /// The step-in bonus of a backup that delivered: `insurance -> prover.available`.
    StepInBonus,
    /// Escrow left over when a contract completes: `escrow -> available`.
    EscrowRelease,
}

impl EntryKind {
    /// Stable name used in the database and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Deposit => "deposit",
            EntryKind::Withdrawal => "withdrawal",
            EntryKind::Stake => "stake",
            EntryKind::Unstake => "unstake",
            EntryKind::EscrowLock => "escrow_lock",
            EntryKind::SlotPayment => "slot_payment",
            EntryKind::Slash => "slash",
            EntryKind::Refund => "refund",
            EntryKind::StepInBonus => "step_in_bonus",
            EntryKind::EscrowRelease => "escrow_release",
        }
    }

    /// Parses the stored name back.
    pub fn parse(s: &str) -> Option<Self> {
        [
            EntryKind::Deposit,
            EntryKind::Withdrawal,
            EntryKind::Stake,
            EntryKind::Unstake,
            EntryKind::EscrowLock,
            EntryKind::SlotPayment,
            EntryKind::Slash,
            EntryKind::Refund,
            EntryKind::StepInBonus,
            EntryKind::EscrowRelease,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One line of a journal entry: a signed amount on one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    /// The account whose balance changes.
    pub account: LedgerAccount,
    /// Added to the balance (negative: taken from it).
    pub amount: Money,
}

/// Why a journal entry cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Postings do not sum to zero.
    #[error("journal entry postings sum to {0}, not zero")]
    Unbalanced(Money),
    /// Fewer than two postings, or a zero posting.
    #[error("a journal entry needs at least two non-zero postings")]
    Degenerate,
    /// A movement's amount must be positive.
    #[error("amount must be greater than zero")]
    NonPositiveAmount,
    /// Arithmetic overflow while summing.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// A balanced set of postings with a kind and a reference (what it settles: a withdrawal id, a slot,
/// a contract, an offer). Can only be built balanced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    kind: EntryKind,
    reference: String,
    postings: Vec<Posting>,
}

impl JournalEntry {
    /// Builds an entry, checking that its postings are non-zero and sum to zero.
    pub fn new(
        kind: EntryKind,
        reference: impl Into<String>,
        postings: Vec<Posting>,
    ) -> Result<Self, LedgerError> {
        if postings.len() < 2 || postings.iter().any(|p| p.amount == Money::ZERO) {
            return Err(LedgerError::Degenerate);
        }
        let sum = postings
            .iter()
            .try_fold(Money::ZERO, |acc, p| acc.checked_add(p.amount))?;
        if sum != Money::ZERO {
            return Err(LedgerError::Unbalanced(sum));
        }
        Ok(Self { kind, reference: reference.into(), postings })
    }

    /// Builds an entry from `(account, amount)` pairs, leaving out zero amounts (a fee of 0, a share
    /// of 0), then checking the rest as [`JournalEntry::new`] does.
    pub fn from_nonzero(
        kind: EntryKind,
        reference: impl Into<String>,
        postings: impl IntoIterator<Item = (LedgerAccount, Money)>,
    ) -> Result<Self, LedgerError> {
        let postings = postings
            .into_iter()
            .filter(|(_, amount)| *amount != Money::ZERO)
            .map(|(account, amount)| Posting { account, amount })
            .collect();
        Self::new(kind, reference, postings)
    }

    /// Moves a positive `amount` from one account to another.
    pub fn transfer(
        kind: EntryKind,
        reference: impl Into<String>,
        from: LedgerAccount,
        to: LedgerAccount,
        amount: Money,
    ) -> Result<Self, LedgerError> {
        if !amount.is_positive() {
            return Err(LedgerError::NonPositiveAmount);
        }
        Self::new(
            kind,
            reference,
            vec![
                Posting { account: from, amount: amount.negated() },
                Posting { account: to, amount },
            ],
        )
    }

    /// An operator's deposit: `external -> user.available`.
    pub fn deposit(
        account: AccountId,
        amount: Money,
        reference: impl Into<String>,
    ) -> Result<Self, LedgerError> {
        Self::transfer(
            EntryKind::Deposit,
            reference,
            LedgerAccount::exchange(AccountKind::External),
            LedgerAccount::user(account, AccountKind::Available),
            amount,
        )
    }

    /// A user's withdrawal: `user.available -> external`.
    pub fn withdrawal(
        account: AccountId,
        amount: Money,
        reference: impl Into<String>,
    ) -> Result<Self, LedgerError> {
        Self::transfer(
            EntryKind::Withdrawal,
            reference,
            LedgerAccount::user(account, AccountKind::Available),
            LedgerAccount::exchange(AccountKind::External),
            amount,
        )
    }

    /// Moves `amount` between two of one user's accounts (stake, unstake, escrow lock).
    pub fn internal(
        kind: EntryKind,
        account: AccountId,
        from: AccountKind,
        to: AccountKind,
        amount: Money,
        reference: impl Into<String>,
    ) -> Result<Self, LedgerError> {
        Self::transfer(kind, reference, LedgerAccount::user(account, from), LedgerAccount::user(account, to), amount)
    }

    /// What the entry records.
    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    /// What it settles.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Its postings; they sum to zero.
    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn money(units: i64) -> Money {
        Money::from_decimal(Decimal::new(units, 6)).unwrap()
    }

    #[test]
    fn unbalanced_entries_cannot_be_built() {
        let user = AccountId::new_random();
        let err = JournalEntry::new(
            EntryKind::Deposit,
            "r",
            vec![
                Posting { account: LedgerAccount::exchange(AccountKind::External), amount: money(-5) },
                Posting { account: LedgerAccount::user(user, AccountKind::Available), amount: money(4) },
            ],
        )
        .unwrap_err();
        assert_eq!(err, LedgerError::Unbalanced(money(-1)));
    }

    #[test]
    fn zero_and_negative_transfers_are_refused() {
        let user = AccountId::new_random();
        assert_eq!(JournalEntry::deposit(user, Money::ZERO, "r"), Err(LedgerError::NonPositiveAmount));
        assert_eq!(JournalEntry::withdrawal(user, money(-1), "r"), Err(LedgerError::NonPositiveAmount));
    }

    proptest! {
        #[test]
        fn deposits_and_withdrawals_are_balanced(units in 1i64..1_000_000_000_000_000) {
            let user = AccountId::new_random();
            for entry in [JournalEntry::deposit(user, money(units), "r").unwrap(),
                          JournalEntry::withdrawal(user, money(units), "r").unwrap()] {
                let sum = entry.postings().iter().fold(Money::ZERO, |a, p| a.checked_add(p.amount).unwrap());
                prop_assert_eq!(sum, Money::ZERO);
            }
        }
    }
}
