//! The events settlement's transitions report, built from the decisions `pcx_settlement` made
//! (pure: the shell writes them to the outbox in the transition's own transaction).

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use pcx_domain::ledger::{AccountKind, Owner};
use pcx_domain::{AccountId, Money};
use pcx_settlement::slot::{Delivered, Failed, Job, NewJob, Settlement, Slot};
use pcx_settlement::state::{JobFailure, SlotState};

use super::{Event, EventType};

fn slot_data(slot: &Slot) -> serde_json::Map<String, serde_json::Value> {
    let mut data = serde_json::Map::new();
    data.insert("contract_id".into(), json!(slot.contract_id));
    data.insert("slot".into(), json!(slot.n));
    data
}

fn slot_event(account: AccountId, kind: EventType, slot: &Slot, now: DateTime<Utc>, data: serde_json::Value) -> Event {
    let mut all = slot_data(slot);
    if let serde_json::Value::Object(extra) = data {
        all.extend(extra);
    }
    Event { account, kind, subject: Event::slot_subject(slot.contract_id, slot.n), occurred_at: now, data: all.into() }
}

/// What was paid to `prover`'s available balance by `entries` (zero if nothing).
fn paid_to(prover: AccountId, settlement: &Settlement) -> Money {
    settlement
        .entries
        .iter()
        .flat_map(|entry| entry.postings())
        .filter(|p| p.account.owner == Owner::User(prover) && p.account.kind == AccountKind::Available && p.amount.is_positive())
        .try_fold(Money::ZERO, |sum, p| sum.checked_add(p.amount))
        .unwrap_or(Money::ZERO)
}

/// A slot settled without a proof: `slot.missed` or `slot.unused` for its buyer (a cancelled
/// slot, of a suspended contract, is told by `contract.suspended`).
pub fn settled(slot: &Slot, settlement: &Settlement, now: DateTime<Utc>) -> Option<Event> {
    let kind = match settlement.state {
        SlotState::Missed => EventType::SlotMissed,
        SlotState::Unused => EventType::SlotUnused,
        _ => return None,
    };
    Some(slot_event(slot.buyer, kind, slot, now, json!({"state": settlement.state, "reason": settlement.reason})))
}

/// A slot delivered: `slot.delivered` for its buyer (where to fetch the proof), and
/// `payment.received` for its prover.
pub fn delivered(slot: &Slot, job: &Job, delivered: &Delivered, now: DateTime<Utc>) -> Vec<Event> {
    let settlement = &delivered.settlement;
    let proof_url = format!("/v1/contracts/{}/slots/{}/proof", slot.contract_id, slot.n);
    vec![
        slot_event(
            slot.buyer,
            EventType::SlotDelivered,
            slot,
            now,
            json!({"state": settlement.state, "reason": settlement.reason, "delivered_by": delivered.prover.0,
                   "job_id": job.id, "proof_url": proof_url}),
        ),
        slot_event(
            delivered.prover,
            EventType::PaymentReceived,
            slot,
            now,
            json!({"job_id": job.id, "amount": paid_to(delivered.prover, settlement)}),
        ),
    ]
}

/// A job offered to a named prover: `job.offered` for it.
pub fn offered(slot: &Slot, job_id: Uuid, job: &NewJob, now: DateTime<Utc>) -> Option<Event> {
    let prover = job.prover?;
    Some(slot_event(
        prover,
        EventType::JobOffered,
        slot,
        now,
        json!({"job_id": job_id, "attempt": job.attempt, "role": job.role, "ack_deadline": job.windows.ack_deadline,
               "deadline": slot.deadline}),
    ))
}

/// A live job failed: `job.expired` for its prover when it ran out of time, `stake.slashed`
/// when it was slashed, and `slot.failed_over` for the buyer when the slot moves on to the next
/// prover.
pub fn failed(slot: &Slot, job: &Job, failed: &Failed, now: DateTime<Utc>) -> Vec<Event> {
    let mut events = Vec::new();
    // Every end without a proof but the prover's own release and its invalid proof (told by
    // `stake.slashed`): also the exchange's outage, which charges nobody (`data.failure` says).
    let expired = matches!(
        failed.failure,
        JobFailure::AckTimeout | JobFailure::LeaseExpired | JobFailure::DeadlinePassed | JobFailure::ExchangeOutage
    );
    if let (true, Some(prover)) = (expired, job.prover) {
        events.push(slot_event(prover, EventType::JobExpired, slot, now, json!({"job_id": job.id, "failure": failed.failure})));
    }
    if let Some(slash) = &failed.slash {
        events.push(slot_event(
            slash.prover,
            EventType::StakeSlashed,
            slot,
            now,
            json!({"job_id": job.id, "failure": failed.failure, "amount": slash.total}),
        ));
    }
    if let (true, Some(next)) = (failed.advances, &failed.next) {
        events.push(slot_event(
            slot.buyer,
            EventType::SlotFailedOver,
            slot,
            now,
            json!({"failed_job_id": job.id, "failure": failed.failure, "from": job.prover.map(|p| p.0),
                   "to": next.prover.map(|p| p.0), "role": next.role, "attempt": next.attempt}),
        ));
    }
    events
}

/// A contract's own event for its buyer.
pub fn contract(buyer: AccountId, kind: EventType, contract: Uuid, now: DateTime<Utc>, data: serde_json::Value) -> Event {
    let mut all = serde_json::Map::new();
    all.insert("contract_id".into(), json!(contract));
    if let serde_json::Value::Object(extra) = data {
        all.extend(extra);
    }
    Event { account: buyer, kind, subject: Event::contract_subject(contract), occurred_at: now, data: all.into() }
}
