//! Why a settlement decision cannot be made.

use uuid::Uuid;

use pcx_domain::{LedgerError, MoneyError};

use crate::slot::LeaseLost;
use crate::state::SlotState;

/// A decision that cannot be made. Only [`SettlementError::LeaseLost`] is the caller's doing (an
/// agent submitting for a job it no longer holds); the others mean the exchange asked about a slot
/// in the wrong state, or amounts beyond what money can hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// The slot is not in the state the decision is about.
    #[error("slot {n} of contract {contract} is {state}, not {expected}")]
    WrongState {
        /// Contract.
        contract: Uuid,
        /// Slot.
        n: u64,
        /// What it is.
        state: SlotState,
        /// What the decision needs.
        expected: SlotState,
    },
    /// The submitting prover does not hold the job's lease.
    #[error(transparent)]
    LeaseLost(#[from] LeaseLost),
    /// An amount overflowed.
    #[error(transparent)]
    Money(#[from] MoneyError),
    /// An entry could not be built balanced.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}
