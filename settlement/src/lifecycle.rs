//! Slot and job states, failure reasons, and the failover order.
//!
//! A slot is `scheduled` until it opens. At opening it becomes `unused` (no input posted: still paid,
//! the capacity was held), `cancelled` (its contract is suspended), or `proving`: a job goes to the
//! primary. A job that is not claimed within the ack timeout, whose lease expires, that is released,
//! or whose proof does not verify, fails: its prover is slashed and the next job goes at once to the
//! next backup, then to the open market (any qualified prover, first valid proof wins), until the
//! slot's deadline. A valid proof before the deadline makes the slot `delivered`; a deadline with no
//! valid proof makes it `missed` (the buyer is refunded and compensated).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The state of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Not open yet.
    Scheduled,
    /// Open: a job is out to a prover.
    Proving,
    /// Final: a valid proof arrived before the deadline.
    Delivered,
    /// Final: no valid proof by the deadline; the buyer was refunded and compensated.
    Missed,
    /// Final: the buyer posted no input; paid anyway (take-or-pay).
    Unused,
    /// Final: the contract was suspended when the slot opened; nothing was paid.
    Cancelled,
}

impl SlotState {
    /// Stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Scheduled => "scheduled",
            SlotState::Proving => "proving",
            SlotState::Delivered => "delivered",
            SlotState::Missed => "missed",
            SlotState::Unused => "unused",
            SlotState::Cancelled => "cancelled",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            SlotState::Scheduled,
            SlotState::Proving,
            SlotState::Delivered,
            SlotState::Missed,
            SlotState::Unused,
            SlotState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    /// True for the states a slot never leaves.
    pub fn is_final(self) -> bool {
        !matches!(self, SlotState::Scheduled | SlotState::Proving)
    }
}

/// Machine-readable reason of a slot's final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotReason {
    /// Delivered by the primary.
    DeliveredByPrimary,
    /// Delivered by a named backup after the primary failed.
    DeliveredByBackup,
    /// Delivered by a prover from the open market after all named provers failed.
    DeliveredByOpenMarket,
    /// The buyer posted no input before the slot opened.
    NoInput,
    /// Nobody delivered a valid proof before the deadline.
    NoValidProofByDeadline,
    /// The contract was suspended (escrow could not be funded).
    ContractSuspended,
}

impl SlotReason {
    /// Stable code, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotReason::DeliveredByPrimary => "delivered_by_primary",
            SlotReason::DeliveredByBackup => "delivered_by_backup",
            SlotReason::DeliveredByOpenMarket => "delivered_by_open_market",
            SlotReason::NoInput => "no_input",
            SlotReason::NoValidProofByDeadline => "no_valid_proof_by_deadline",
            SlotReason::ContractSuspended => "contract_suspended",
        }
    }
}

/// Who a job is offered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobRole {
    /// The slot's primary.
    Primary,
    /// A named backup.
    Backup,
    /// Any qualified prover (first valid proof wins).
    Open,
}

impl JobRole {
    /// Stable name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            JobRole::Primary => "primary",
            JobRole::Backup => "backup",
            JobRole::Open => "open",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [JobRole::Primary, JobRole::Backup, JobRole::Open].into_iter().find(|r| r.as_str() == s)
    }

    /// The reason a delivery by this role records.
    pub fn delivery_reason(self) -> SlotReason {
        match self {
            JobRole::Primary => SlotReason::DeliveredByPrimary,
            JobRole::Backup => SlotReason::DeliveredByBackup,
            JobRole::Open => SlotReason::DeliveredByOpenMarket,
        }
    }
}

/// Why a job failed; each one slashes the prover that held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobFailure {
    /// Not claimed within the ack timeout.
    AckTimeout,
    /// Claimed, but no proof before the lease expired.
    LeaseExpired,
    /// Given back by the agent before its lease ended.
    Released,
    /// The proof did not verify (slashed more).
    InvalidProof,
    /// The slot's deadline passed while the job was out.
    DeadlinePassed,
}

impl JobFailure {
    /// Stable code, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobFailure::AckTimeout => "ack_timeout",
            JobFailure::LeaseExpired => "lease_expired",
            JobFailure::Released => "released",
            JobFailure::InvalidProof => "invalid_proof",
            JobFailure::DeadlinePassed => "deadline_passed",
        }
    }
}

/// Who is asked next after `failed_attempts` failed jobs, for a slot with `backups` named backups:
/// the primary first, then each backup in order, then the open market.
pub fn next_role(failed_attempts: usize, backups: usize) -> (JobRole, Option<usize>) {
    match failed_attempts {
        0 => (JobRole::Primary, None),
        n if n <= backups => (JobRole::Backup, Some(n - 1)),
        _ => (JobRole::Open, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_goes_primary_then_backups_in_order_then_open_market() {
        assert_eq!(next_role(0, 2), (JobRole::Primary, None));
        assert_eq!(next_role(1, 2), (JobRole::Backup, Some(0)));
        assert_eq!(next_role(2, 2), (JobRole::Backup, Some(1)));
        assert_eq!(next_role(3, 2), (JobRole::Open, None));
        assert_eq!(next_role(7, 2), (JobRole::Open, None));
        assert_eq!(next_role(1, 0), (JobRole::Open, None));
    }

    #[test]
    fn states_round_trip_and_know_which_are_final() {
        for s in ["scheduled", "proving", "delivered", "missed", "unused", "cancelled"] {
            assert_eq!(SlotState::parse(s).unwrap().as_str(), s);
        }
        assert!(!SlotState::Proving.is_final());
        assert!(SlotState::Unused.is_final());
    }
}
