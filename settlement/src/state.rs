//! The states and reason codes of slots, jobs and contracts, with their stable names.
//!
//! A slot is `scheduled` until it opens, then `proving` while jobs go out, then one final state. A
//! job is `offered` to a prover (or to the open market), `claimed` under a lease, then `delivered`
//! or `failed` with a [`JobFailure`]. A contract is `active`, `suspended` (with a reason) while its
//! buyer cannot fund the escrow window, and `completed` once every slot is settled. Every name
//! here is what the database stores and the API shows; nothing else spells them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Gives an enum of unit variants its stable names: `as_str`, `parse`, `ALL`.
macro_rules! stable_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The stable name, as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// Parses a stable name.
            pub fn parse(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|value| value.as_str() == name)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

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
    /// Final: no valid proof by the deadline; the buyer was refunded (and compensated by any slash).
    Missed,
    /// Final: the buyer posted no input; paid anyway (take-or-pay).
    Unused,
    /// Final: the contract was suspended when the slot opened; nothing was paid.
    Cancelled,
}

stable_names!(SlotState {
    Scheduled => "scheduled",
    Proving => "proving",
    Delivered => "delivered",
    Missed => "missed",
    Unused => "unused",
    Cancelled => "cancelled",
});

impl SlotState {
    /// The states a slot never leaves.
    pub const FINAL: &'static [SlotState] =
        &[SlotState::Delivered, SlotState::Missed, SlotState::Unused, SlotState::Cancelled];
    /// The states of a slot not yet settled.
    pub const LIVE: &'static [SlotState] = &[SlotState::Scheduled, SlotState::Proving];

    /// True for the states a slot never leaves.
    pub fn is_final(self) -> bool {
        Self::FINAL.contains(&self)
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
    /// The exchange opened the slot too late for it to be proved by its deadline (it was down or
    /// behind): refunded, nobody slashed.
    ExchangeLate,
    /// The exchange was down while the slot was being proved and its deadline passed: refunded,
    /// nobody slashed.
    ExchangeDown,
}

stable_names!(SlotReason {
    DeliveredByPrimary => "delivered_by_primary",
    DeliveredByBackup => "delivered_by_backup",
    DeliveredByOpenMarket => "delivered_by_open_market",
    NoInput => "no_input",
    NoValidProofByDeadline => "no_valid_proof_by_deadline",
    ContractSuspended => "contract_suspended",
    ExchangeLate => "exchange_late",
    ExchangeDown => "exchange_down",
});

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be claimed (by its named prover, or anyone for the open market).
    Offered,
    /// Claimed; its prover holds a lease.
    Claimed,
    /// Final: its proof verified and the slot was delivered.
    Delivered,
    /// Final: see its [`JobFailure`].
    Failed,
}

stable_names!(JobState {
    Offered => "offered",
    Claimed => "claimed",
    Delivered => "delivered",
    Failed => "failed",
});

impl JobState {
    /// The states of a job still out (at most one per slot).
    pub const LIVE: &'static [JobState] = &[JobState::Offered, JobState::Claimed];
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

stable_names!(JobRole {
    Primary => "primary",
    Backup => "backup",
    Open => "open",
});

impl JobRole {
    /// The reason a delivery by this role records.
    pub fn delivery_reason(self) -> SlotReason {
        match self {
            JobRole::Primary => SlotReason::DeliveredByPrimary,
            JobRole::Backup => SlotReason::DeliveredByBackup,
            JobRole::Open => SlotReason::DeliveredByOpenMarket,
        }
    }
}

/// Why a job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobFailure {
    /// Not claimed within its ack window.
    AckTimeout,
    /// Claimed, but no proof before the lease expired.
    LeaseExpired,
    /// Given back by the agent before its lease ended.
    Released,
    /// The proof did not verify (slashed more).
    InvalidProof,
    /// The slot's deadline passed while the job was out.
    DeadlinePassed,
    /// The job's window overlapped a time the exchange was down: not the prover's fault.
    ExchangeOutage,
}

stable_names!(JobFailure {
    AckTimeout => "ack_timeout",
    LeaseExpired => "lease_expired",
    Released => "released",
    InvalidProof => "invalid_proof",
    DeadlinePassed => "deadline_passed",
    ExchangeOutage => "exchange_outage",
});

impl JobFailure {
    /// True when the failure is the prover's doing (it counts against it and moves the slot on to
    /// the next prover); only the exchange's own outage is not.
    pub fn is_prover_fault(self) -> bool {
        self != JobFailure::ExchangeOutage
    }
}

/// The status of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractStatus {
    /// Running.
    Active,
    /// Its buyer cannot fund the escrow window: its unfunded slots are cancelled until it can.
    Suspended,
    /// Every slot settled; leftover escrow released.
    Completed,
    /// Ended early (reserved for a later cancellation rule; nothing sets it yet).
    Cancelled,
}

stable_names!(ContractStatus {
    Active => "active",
    Suspended => "suspended",
    Completed => "completed",
    Cancelled => "cancelled",
});

impl ContractStatus {
    /// The statuses whose slots the scheduler still works on.
    pub const RUNNING: &'static [ContractStatus] = &[ContractStatus::Active, ContractStatus::Suspended];
}

/// Why a contract is suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractReason {
    /// The buyer's available balance cannot fund the next slots of the escrow window.
    EscrowUnderfunded,
}

stable_names!(ContractReason {
    EscrowUnderfunded => "escrow_underfunded",
});

/// Why a slot's primary was replaced before the slot opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Replacement {
    /// The primary's bonded stake no longer covered its slots in the collateral window; its
    /// first backup became the primary for this slot.
    PrimaryUndercollateralised,
}

stable_names!(Replacement {
    PrimaryUndercollateralised => "primary_undercollateralised",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_wire_format() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + Serialize>(all: &[T], name: fn(T) -> &'static str, parse: fn(&str) -> Option<T>) {
            for &value in all {
                assert_eq!(parse(name(value)), Some(value));
                assert_eq!(serde_json::to_value(value).unwrap(), name(value));
            }
        }
        check(SlotState::ALL, SlotState::as_str, SlotState::parse);
        check(SlotReason::ALL, SlotReason::as_str, SlotReason::parse);
        check(JobState::ALL, JobState::as_str, JobState::parse);
        check(JobRole::ALL, JobRole::as_str, JobRole::parse);
        check(JobFailure::ALL, JobFailure::as_str, JobFailure::parse);
        check(ContractStatus::ALL, ContractStatus::as_str, ContractStatus::parse);
        check(ContractReason::ALL, ContractReason::as_str, ContractReason::parse);
        check(Replacement::ALL, Replacement::as_str, Replacement::parse);
        assert_eq!(SlotState::parse("open"), None);
    }

    #[test]
    fn final_states_are_final() {
        assert!(SlotState::FINAL.iter().all(|s| s.is_final()));
        assert!(SlotState::LIVE.iter().all(|s| !s.is_final()));
        assert_eq!(SlotState::FINAL.len() + SlotState::LIVE.len(), SlotState::ALL.len());
    }
}
