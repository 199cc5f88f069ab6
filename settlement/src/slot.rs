//! The life of one slot, as decisions: opening it, offering its jobs, failing them, delivering it,
//! and settling it at its deadline.
//!
//! Each function takes the slot and job as they are (typed, as the exchange loaded them under
//! lock), the measured times of the provers involved, the [`Rules`] and `now`, and returns what
//! must happen: the slot's next state and reason, the job to offer next, and the balanced journal
//! entries with their references. The exchange applies a decision in one transaction, guarded by
//! the state it loaded, so a decision is applied once or not at all.
//!
//! # The order of provers
//! The primary first, then each named backup in order, then the open market (any qualified
//! prover). The position in that order is the number of failures charged to provers so far; a
//! job lost to the exchange's own outage goes back to the same prover.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use pcx_domain::{AccountId, JournalEntry, Money};

use crate::error::SettlementError;
use crate::money::{bonus_entry, payment_entry, refund_entry, slash, slash_entry};
use crate::outage::{any_overlaps, recovering, Outage};
use crate::rules::Rules;
use crate::state::{JobFailure, JobRole, JobState, SlotReason, SlotState};
use crate::timing::{Next, ProveTime, Windows};

/// A materialised slot and what settlement needs of its contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The contract.
    pub contract_id: Uuid,
    /// Slot number.
    pub n: u64,
    /// When it opens.
    pub opens_at: DateTime<Utc>,
    /// The proof must be verified by then.
    pub deadline: DateTime<Utc>,
    /// Its locked price (price per proof x proofs per slot).
    pub price: Money,
    /// The contract's buyer.
    pub buyer: AccountId,
    /// The primary prover.
    pub primary: AccountId,
    /// The backups, in order.
    pub backups: Vec<AccountId>,
    /// Its state.
    pub state: SlotState,
    /// Whether the buyer posted its input.
    pub input_posted: bool,
    /// Whether its payment is in escrow (slots below the contract's escrow mark).
    pub funded: bool,
    /// Failures charged to provers so far: the position in the order of provers.
    pub prover_failures: u32,
    /// Slashed funds set aside in insurance for whoever steps in and delivers.
    pub step_in_bonus: Money,
}

/// A job of a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Id.
    pub id: Uuid,
    /// Attempt number (0 for the first job of the slot).
    pub attempt: u32,
    /// Primary, backup, open market.
    pub role: JobRole,
    /// Its prover (for the open market: whoever claimed it).
    pub prover: Option<AccountId>,
    /// State.
    pub state: JobState,
    /// When it was offered.
    pub offered_at: DateTime<Utc>,
    /// Claim by then.
    pub ack_deadline: DateTime<Utc>,
    /// No lease reaches past this.
    pub lease_until: DateTime<Utc>,
    /// When the lease of a claimed job ends.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Whether a failure is charged to its prover.
    pub slashable: bool,
    /// Offered late by the exchange (see [`crate::timing`]).
    pub late: bool,
}

/// A job to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Attempt number.
    pub attempt: u32,
    /// Who it is for.
    pub role: JobRole,
    /// The named prover (none for the open market).
    pub prover: Option<AccountId>,
    /// Now.
    pub offered_at: DateTime<Utc>,
    /// Its windows.
    pub windows: Windows,
}

/// The measured proving times of the provers a slot may go to (from their live agents).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProveTimes {
    /// Per prover.
    pub named: HashMap<AccountId, chrono::Duration>,
    /// The open market's typical time.
    pub open_market: ProveTime,
}

impl ProveTimes {
    fn of(&self, prover: Option<AccountId>) -> ProveTime {
        match prover {
            Some(p) => self.named.get(&p).copied(),
            None => self.open_market,
        }
    }
}

/// A slot's final settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// Its final state.
    pub state: SlotState,
    /// Why.
    pub reason: SlotReason,
    /// The entries that settle its money (payment, bonus or refund), in posting order.
    pub entries: Vec<JournalEntry>,
    /// What leaves the contract's escrow.
    pub escrow_out: Money,
}

/// What opening a slot does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// It settles at once (cancelled, unused, or too late to be proved).
    Settle(Settlement),
    /// It is proved: offer this job.
    Prove(NewJob),
}

/// A slash of a failed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slashed {
    /// Who.
    pub prover: AccountId,
    /// How much in all.
    pub total: Money,
    /// The share set aside for whoever steps in.
    pub bonus: Money,
    /// The entry.
    pub entry: JournalEntry,
}

/// What failing a job does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// The failure recorded (an outage overrides the timeouts).
    pub failure: JobFailure,
    /// Its slash, when charged and the prover has stake.
    pub slash: Option<Slashed>,
    /// The prover whose record gets a miss (charged failures only).
    pub charged_to: Option<AccountId>,
    /// Whether the slot moves on to the next prover in order.
    pub advances: bool,
    /// The job to offer now, if the deadline has not passed.
    pub next: Option<NewJob>,
}

/// What a deadline without a valid proof does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// The live job's failure, if one was out.
    pub job: Option<Failed>,
    /// The refund.
    pub settlement: Settlement,
}

/// What a valid proof does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The settlement (payment and any step-in bonus).
    pub settlement: Settlement,
    /// Who delivered.
    pub prover: AccountId,
}

/// Who is asked at `position` in the order of provers.
pub fn holder_at(slot: &Slot, position: u32) -> (JobRole, Option<AccountId>) {
    match usize::try_from(position).unwrap_or(usize::MAX) {
        0 => (JobRole::Primary, Some(slot.primary)),
        k if k <= slot.backups.len() => (JobRole::Backup, Some(slot.backups[k - 1])),
        _ => (JobRole::Open, None),
    }
}

/// The job for `position`, offered at `now` as attempt `attempt`. It is late (see
/// [`crate::timing`]) when it is the slot's first and the slot opened late, or when an outage
/// ended less than an ack timeout ago.
#[allow(clippy::too_many_arguments)]
pub fn offer(
    slot: &Slot,
    position: u32,
    attempt: u32,
    times: &ProveTimes,
    outages: &[Outage],
    rules: &Rules,
    now: DateTime<Utc>,
) -> NewJob {
    let timing = &rules.timing;
    let late = (attempt == 0 && timing.opened_late(slot.opens_at, now)) || recovering(outages, now, timing.ack_timeout);
    let (role, prover) = holder_at(slot, position);
    let windows = if role == JobRole::Open {
        // Anyone may take it until the deadline; whether a claimer can be charged is decided at
        // its claim, from its own measured time.
        Windows { ack_deadline: slot.deadline, lease_until: slot.deadline, slashable: true, late }
    } else {
        let (_, next) = holder_at(slot, position + 1);
        timing.windows(slot.opens_at, now, slot.deadline, times.of(prover), Next::Prover(times.of(next)), late)
    };
    NewJob { attempt, role, prover, offered_at: now, windows }
}

fn expect_state(slot: &Slot, expected: SlotState) -> Result<(), SettlementError> {
    if slot.state == expected {
        Ok(())
    } else {
        Err(SettlementError::WrongState { contract: slot.contract_id, n: slot.n, state: slot.state, expected })
    }
}

fn refund(slot: &Slot, reason: SlotReason) -> Result<Settlement, SettlementError> {
    Ok(Settlement {
        state: SlotState::Missed,
        reason,
        entries: vec![refund_entry(slot.contract_id, slot.n, slot.buyer, slot.price)?],
        escrow_out: slot.price,
    })
}

/// Opens a slot at `now`: cancelled when its contract could not fund it, unused (and paid) without
/// input, missed with `exchange_late` when the exchange opened it too late for its primary to prove
/// it (refunded, nobody slashed), else its first job goes to the primary.
pub fn open(slot: &Slot, times: &ProveTimes, outages: &[Outage], rules: &Rules, now: DateTime<Utc>) -> Result<Opening, SettlementError> {
    expect_state(slot, SlotState::Scheduled)?;
    if !slot.funded {
        return Ok(Opening::Settle(Settlement {
            state: SlotState::Cancelled,
            reason: SlotReason::ContractSuspended,
            entries: Vec::new(),
            escrow_out: Money::ZERO,
        }));
    }
    if !slot.input_posted {
        let entry = payment_entry(slot.contract_id, slot.n, slot.buyer, slot.primary, slot.price, rules.fee_bps)?;
        return Ok(Opening::Settle(Settlement {
            state: SlotState::Unused,
            reason: SlotReason::NoInput,
            entries: vec![entry],
            escrow_out: slot.price,
        }));
    }
    if !rules.timing.slashable(times.of(Some(slot.primary)), slot.opens_at, now, slot.deadline) {
        return Ok(Opening::Settle(refund(slot, SlotReason::ExchangeLate)?));
    }
    Ok(Opening::Prove(offer(slot, 0, 0, times, outages, rules, now)))
}

/// Fails a live job of a proving slot at `now` (`bonded` is its prover's bond). A timeout whose
/// window overlaps an outage becomes `exchange_outage`: not charged, and the slot stays with the
/// same prover. A charged failure slashes (capped by the bond) and moves the slot on. With
/// `offer_next` and time left, the next job is offered at once.
#[allow(clippy::too_many_arguments)]
pub fn fail(
    slot: &Slot,
    job: &Job,
    failure: JobFailure,
    bonded: Money,
    outages: &[Outage],
    times: &ProveTimes,
    rules: &Rules,
    now: DateTime<Utc>,
    offer_next: bool,
) -> Result<Failed, SettlementError> {
    expect_state(slot, SlotState::Proving)?;
    let timed_out = matches!(failure, JobFailure::AckTimeout | JobFailure::LeaseExpired | JobFailure::DeadlinePassed);
    let failure = if timed_out && any_overlaps(outages, job.offered_at, now) { JobFailure::ExchangeOutage } else { failure };
    let charged_to = job.prover.filter(|_| failure.is_prover_fault() && job.slashable);
    let slash = match charged_to {
        Some(prover) => {
            let factor = (failure == JobFailure::InvalidProof).then_some(rules.invalid_slash_factor);
            let split = slash(slot.price, rules.slash_multiplier, factor, bonded)?;
            match split.total.is_positive() {
                true => Some(Slashed {
                    prover,
                    total: split.total,
                    bonus: split.step_in_bonus,
                    entry: slash_entry(job.id, prover, slot.buyer, &split)?,
                }),
                false => None,
            }
        }
        None => None,
    };
    let advances = failure.is_prover_fault();
    let next = (offer_next && now < slot.deadline).then(|| {
        let position = slot.prover_failures + u32::from(advances);
        offer(slot, position, job.attempt + 1, times, outages, rules, now)
    });
    Ok(Failed { failure, slash, charged_to, advances, next })
}

/// How a live job has expired at `now`, if it has: not claimed in its ack window, or its lease
/// ran out.
pub fn expiry(job: &Job, now: DateTime<Utc>) -> Option<JobFailure> {
    match job.state {
        JobState::Offered if job.ack_deadline <= now => Some(JobFailure::AckTimeout),
        JobState::Claimed if job.lease_expires_at.is_some_and(|l| l <= now) => Some(JobFailure::LeaseExpired),
        _ => None,
    }
}

/// A claim of an offered job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The lease ends then.
    pub lease_expires_at: DateTime<Utc>,
    /// Whether a failure is charged to the claimer.
    pub slashable: bool,
}

/// The claim at `now` of `job` (of a slot opening at `opens_at`, due at `deadline`) by a prover
/// with measured time `claimer`. A named job offered on time keeps the chargeability fixed when it
/// was offered; an open-market or late job is chargeable when the claimer still has its own time
/// to do the work.
pub fn claim(
    job: &Job,
    opens_at: DateTime<Utc>,
    deadline: DateTime<Utc>,
    claimer: ProveTime,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Claim {
    let timing = &rules.timing;
    let slashable = match (job.role, job.late) {
        (JobRole::Open, _) | (_, true) => timing.slashable(claimer, opens_at, now, deadline),
        (JobRole::Primary | JobRole::Backup, false) => job.slashable,
    };
    Claim { lease_expires_at: timing.lease_on_claim(now, job.lease_until, deadline, claimer), slashable }
}

/// Why a submission is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this job is no longer yours to prove: {0}")]
pub struct LeaseLost(pub String);

/// Checks that `prover` may submit a proof for `job` at `now`.
pub fn check_lease(slot: &Slot, job: &Job, prover: AccountId, now: DateTime<Utc>) -> Result<(), LeaseLost> {
    if job.state != JobState::Claimed || job.prover != Some(prover) {
        return Err(LeaseLost(format!("the job is {}", job.state)));
    }
    if slot.state != SlotState::Proving {
        return Err(LeaseLost(format!("the slot is {}", slot.state)));
    }
    if job.lease_expires_at.is_some_and(|l| l <= now) || slot.deadline <= now {
        return Err(LeaseLost("its lease has expired".into()));
    }
    Ok(())
}

/// Delivers a slot whose job's proof verified: pays its price to the prover (less the fee) and,
/// when a backup or the open market stepped in, the bonus earlier slashes set aside.
pub fn deliver(slot: &Slot, job: &Job, prover: AccountId, rules: &Rules, now: DateTime<Utc>) -> Result<Delivered, SettlementError> {
    check_lease(slot, job, prover, now).map_err(SettlementError::LeaseLost)?;
    let mut entries = vec![payment_entry(slot.contract_id, slot.n, slot.buyer, prover, slot.price, rules.fee_bps)?];
    if job.role != JobRole::Primary && slot.step_in_bonus.is_positive() {
        entries.push(bonus_entry(slot.contract_id, slot.n, prover, slot.step_in_bonus)?);
    }
    Ok(Delivered {
        settlement: Settlement { state: SlotState::Delivered, reason: job.role.delivery_reason(), entries, escrow_out: slot.price },
        prover,
    })
}

/// Settles a proving slot whose deadline passed without a valid proof: its live job (if any)
/// fails, the buyer is refunded. The reason is `exchange_down` when the exchange was down at any
/// time between the slot's opening and now.
pub fn miss(
    slot: &Slot,
    live: Option<(&Job, Money)>,
    outages: &[Outage],
    rules: &Rules,
    now: DateTime<Utc>,
) -> Result<Missed, SettlementError> {
    expect_state(slot, SlotState::Proving)?;
    let job = live
        .map(|(job, bonded)| fail(slot, job, JobFailure::DeadlinePassed, bonded, outages, &ProveTimes::default(), rules, now, false))
        .transpose()?;
    let outage_took_it = job.as_ref().is_some_and(|failed| failed.failure == JobFailure::ExchangeOutage)
        || any_overlaps(outages, slot.opens_at, now);
    let reason = if outage_took_it { SlotReason::ExchangeDown } else { SlotReason::NoValidProofByDeadline };
    Ok(Missed { job, settlement: refund(slot, reason)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timing::Timing;
    use chrono::Duration;
    use pcx_domain::{AccountKind, EntryKind};
    use rust_decimal::Decimal;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + secs, 0).unwrap()
    }

    fn rules() -> Rules {
        Rules {
            fee_bps: 100,
            slash_multiplier: Decimal::TWO,
            invalid_slash_factor: Decimal::TWO,
            timing: Timing {
                ack_timeout: Duration::seconds(30),
                max_lease: Duration::seconds(300),
                handover: Duration::seconds(2),
                tick: Duration::seconds(1),
            },
        }
    }

    fn id(byte: u8) -> AccountId {
        AccountId(Uuid::from_bytes([byte; 16]))
    }

    fn slot() -> Slot {
        Slot {
            contract_id: Uuid::from_bytes([9; 16]),
            n: 3,
            opens_at: at(0),
            deadline: at(30),
            price: Money::parse("1").unwrap(),
            buyer: id(1),
            primary: id(2),
            backups: vec![id(3)],
            state: SlotState::Scheduled,
            input_posted: true,
            funded: true,
            prover_failures: 0,
            step_in_bonus: Money::ZERO,
        }
    }

    fn times() -> ProveTimes {
        ProveTimes {
            named: [(id(2), Duration::milliseconds(400)), (id(3), Duration::milliseconds(400))].into_iter().collect(),
            open_market: Some(Duration::milliseconds(400)),
        }
    }

    fn job_of(new: &NewJob, id: u8) -> Job {
        Job {
            id: Uuid::from_bytes([id; 16]),
            attempt: new.attempt,
            role: new.role,
            prover: new.prover,
            state: JobState::Claimed,
            offered_at: new.offered_at,
            ack_deadline: new.windows.ack_deadline,
            lease_until: new.windows.lease_until,
            lease_expires_at: Some(new.windows.lease_until),
            slashable: new.windows.slashable,
            late: new.windows.late,
        }
    }

    fn sum_of(entries: &[JournalEntry], account: pcx_domain::LedgerAccount) -> Money {
        entries
            .iter()
            .flat_map(|e| e.postings())
            .filter(|p| p.account == account)
            .fold(Money::ZERO, |acc, p| acc.checked_add(p.amount).unwrap())
    }

    #[test]
    fn opening_cancels_unfunded_pays_unused_and_offers_the_primary() {
        let r = rules();
        let cancelled = open(&Slot { funded: false, ..slot() }, &times(), &[], &r, at(0)).unwrap();
        assert!(matches!(cancelled, Opening::Settle(Settlement { state: SlotState::Cancelled, ref entries, .. }) if entries.is_empty()));
        let Opening::Settle(unused) = open(&Slot { input_posted: false, ..slot() }, &times(), &[], &r, at(0)).unwrap() else { panic!() };
        assert_eq!((unused.state, unused.reason), (SlotState::Unused, SlotReason::NoInput));
        assert_eq!(unused.entries[0].kind(), EntryKind::SlotPayment);
        assert_eq!(sum_of(&unused.entries, pcx_domain::LedgerAccount::user(id(2), AccountKind::Available)), Money::parse("0.99").unwrap());
        let Opening::Prove(job) = open(&slot(), &times(), &[], &r, at(0)).unwrap() else { panic!() };
        assert_eq!((job.role, job.prover, job.attempt), (JobRole::Primary, Some(id(2)), 0));
        assert!(open(&Slot { state: SlotState::Proving, ..slot() }, &times(), &[], &r, at(0)).is_err());
    }

    #[test]
    fn a_slot_opened_too_late_is_refunded_without_a_job() {
        let Opening::Settle(late) = open(&slot(), &times(), &[], &rules(), at(29)).unwrap() else { panic!("no job that late") };
        assert_eq!((late.state, late.reason), (SlotState::Missed, SlotReason::ExchangeLate));
        assert_eq!(late.entries[0].kind(), EntryKind::Refund);
        assert!(matches!(open(&slot(), &times(), &[], &rules(), at(5)).unwrap(), Opening::Prove(_)), "5 s late still leaves time");
    }

    #[test]
    fn a_charged_failure_slashes_and_moves_on_to_the_backup() {
        let r = rules();
        let proving = Slot { state: SlotState::Proving, ..slot() };
        let Opening::Prove(first) = open(&slot(), &times(), &[], &r, at(0)).unwrap() else { panic!() };
        let job = job_of(&first, 7);
        let expiry = job.lease_expires_at.unwrap();
        let failed = fail(&proving, &job, JobFailure::LeaseExpired, Money::parse("100").unwrap(), &[], &times(), &r, expiry, true).unwrap();
        let slashed = failed.slash.clone().unwrap();
        assert_eq!((slashed.prover, slashed.total, slashed.bonus), (id(2), Money::parse("2").unwrap(), Money::parse("0.5").unwrap()));
        assert_eq!(failed.charged_to, Some(id(2)));
        let next = failed.next.unwrap();
        assert_eq!((next.role, next.prover, next.attempt), (JobRole::Backup, Some(id(3)), 1));
        assert!(next.windows.lease_until <= proving.deadline);
        assert!(next.windows.ack_deadline > expiry);
    }

    #[test]
    fn an_outage_is_nobodys_fault_and_keeps_the_prover() {
        let r = rules();
        let proving = Slot { state: SlotState::Proving, ..slot() };
        let Opening::Prove(first) = open(&slot(), &times(), &[], &r, at(0)).unwrap() else { panic!() };
        let job = job_of(&first, 7);
        let outage = [Outage { from: at(5), to: at(20) }];
        let failed = fail(&proving, &job, JobFailure::LeaseExpired, Money::parse("100").unwrap(), &outage, &times(), &r, at(20), true).unwrap();
        assert_eq!(failed.failure, JobFailure::ExchangeOutage);
        assert_eq!((failed.slash, failed.charged_to, failed.advances), (None, None, false));
        assert_eq!(failed.next.unwrap().prover, Some(id(2)), "the same prover gets a fresh job");
        // An invalid proof is the prover's act, outage or not.
        let invalid = fail(&proving, &job, JobFailure::InvalidProof, Money::parse("100").unwrap(), &outage, &times(), &r, at(20), true).unwrap();
        assert_eq!(invalid.slash.unwrap().total, Money::parse("4").unwrap());
    }

    #[test]
    fn an_unslashable_job_fails_without_a_slash_but_moves_on() {
        let r = rules();
        let proving = Slot { state: SlotState::Proving, prover_failures: 1, ..slot() };
        let late_backup = offer(&proving, 1, 1, &times(), &[], &r, at(29));
        assert!(!late_backup.windows.slashable);
        let failed = fail(&proving, &job_of(&late_backup, 8), JobFailure::DeadlinePassed, Money::parse("100").unwrap(), &[], &times(), &r, at(30), false).unwrap();
        assert_eq!((failed.slash, failed.charged_to, failed.advances, failed.next), (None, None, true, None));
    }

    #[test]
    fn expiry_and_claims_follow_the_windows() {
        let r = rules();
        let new = offer(&slot(), 0, 0, &times(), &[], &r, at(0));
        let offered = Job { state: JobState::Offered, lease_expires_at: None, ..job_of(&new, 7) };
        assert_eq!(expiry(&offered, new.windows.ack_deadline - Duration::seconds(1)), None);
        assert_eq!(expiry(&offered, new.windows.ack_deadline), Some(JobFailure::AckTimeout));
        let claimed = claim(&offered, at(0), at(30), Some(Duration::milliseconds(400)), &r, at(1));
        assert_eq!(claimed.lease_expires_at, new.windows.lease_until);
        let held = Job { state: JobState::Claimed, lease_expires_at: Some(claimed.lease_expires_at), ..offered.clone() };
        assert_eq!(expiry(&held, claimed.lease_expires_at), Some(JobFailure::LeaseExpired));
        // An open-market claim one second before the deadline cannot be charged.
        let open = Job { role: JobRole::Open, prover: None, lease_until: at(30), ..offered };
        assert!(!claim(&open, at(0), at(30), Some(Duration::milliseconds(400)), &r, at(29)).slashable);
        assert!(claim(&open, at(0), at(30), Some(Duration::milliseconds(400)), &r, at(10)).slashable);
    }

    #[test]
    fn delivery_pays_the_prover_and_a_backup_gets_the_bonus() {
        let r = rules();
        let proving = Slot { state: SlotState::Proving, prover_failures: 1, step_in_bonus: Money::parse("0.5").unwrap(), ..slot() };
        let backup = job_of(&offer(&proving, 1, 1, &times(), &[], &r, at(10)), 8);
        let done = deliver(&proving, &backup, id(3), &r, at(12)).unwrap();
        assert_eq!(done.settlement.reason, SlotReason::DeliveredByBackup);
        assert_eq!(sum_of(&done.settlement.entries, pcx_domain::LedgerAccount::user(id(3), AccountKind::Available)), Money::parse("1.49").unwrap());
        assert!(deliver(&proving, &backup, id(2), &r, at(12)).is_err(), "not the holder's");
        assert!(deliver(&proving, &backup, id(3), &r, at(30)).is_err(), "past the deadline");
    }

    #[test]
    fn a_deadline_refunds_and_names_an_outage_when_there_was_one() {
        let r = rules();
        let proving = Slot { state: SlotState::Proving, ..slot() };
        let job = job_of(&offer(&proving, 0, 0, &times(), &[], &r, at(0)), 7);
        let plain = miss(&proving, Some((&job, Money::parse("100").unwrap())), &[], &r, at(30)).unwrap();
        assert_eq!(plain.settlement.reason, SlotReason::NoValidProofByDeadline);
        assert!(plain.job.unwrap().slash.is_some());
        let down = miss(&proving, Some((&job, Money::parse("100").unwrap())), &[Outage { from: at(2), to: at(60) }], &r, at(60)).unwrap();
        assert_eq!(down.settlement.reason, SlotReason::ExchangeDown);
        assert_eq!(down.job.unwrap().slash, None);
        assert_eq!(down.settlement.entries[0].kind(), EntryKind::Refund);
    }
}
