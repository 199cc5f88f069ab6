//! Verified proofs settled together: the valid proofs whose submissions arrive while others are
//! being settled are delivered by one transaction ([`Deliveries`]), one statement per table for
//! all of them, so the rows they share (the buyer's escrow, the prover's balance and record, the
//! exchange's fees) are locked once per batch instead of once per proof, and the batch's
//! deliveries do not queue behind each other's commits.
//!
//! Each slot still has one final state, reached once: the batch locks its slots (in key order)
//! and jobs (in id order), asks `pcx_settlement::slot::deliver` for each as the one-by-one path
//! does, and writes guarded by the states it locked; a guard that does not hold, a refused
//! posting or any failed statement rolls the whole batch back, and its deliveries run again one
//! by one ([`super::agents`]'s path), each answered exactly as alone. So do the ones whose lease
//! was lost (they are answered `lease_lost` by that path, which words it). A submission whose
//! agent stopped waiting once its batch began is still settled (its proof is valid; the agent's
//! retry with the same `Idempotency-Key`, the job id, gets the stored answer); one whose agent
//! went away before is left out, as a request's own transaction would be dropped with it.

use std::collections::HashSet;
use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use pcx_domain::{AccountId, JournalEntry, Money};
use pcx_prover_pool::circuit::Verdict;
use pcx_settlement::slot::{self, Delivered};
use pcx_settlement::state::SlotState;

use super::agents::{settle_alone, SubmitOutcome};
use crate::auth::Principal;
use crate::batch::{all_answered, Batcher, Unwritten};
use crate::error::{ApiError, ApiResult};
use crate::idempotency::{self, JsonReply};
use crate::store::{self, idempotency::StoredResponse, jobs::JobRow, slots::SlotRow};
use crate::webhooks::settlement as events;
use crate::AppState;

/// A valid proof of a job, to be delivered (what [`super::submit`] hands on once it verified).
#[derive(Clone)]
pub struct Delivery {
    /// The exchange (its pool, clock and rules; the first item's serves the batch).
    pub state: AppState,
    /// Who submits (the idempotency key's scope).
    pub principal: Principal,
    /// The request's `Idempotency-Key`.
    pub key: Option<String>,
    /// [`idempotency::request_hash`] of the request.
    pub request_hash: Vec<u8>,
    /// The prover submitting.
    pub prover: AccountId,
    /// The job proved.
    pub job_id: Uuid,
    /// Its slot: contract and number.
    pub slot: (Uuid, u64),
    /// The proof, as submitted.
    pub proof: String,
    /// Its public signals, as verified.
    pub public_signals: Vec<String>,
}

/// See the module docs.
pub type Deliveries = Batcher<Delivery, ApiResult<JsonReply>>;

/// Deliveries per transaction at most.
const DELIVERIES_PER_BATCH: usize = 64;

/// The [`Deliveries`] of this process. Two transactions may be in flight, so one gathers its
/// batch while the other waits for its commit.
pub fn deliveries() -> Deliveries {
    Batcher::new(DELIVERIES_PER_BATCH, 2, Arc::new(|items| Box::pin(deliver_together(items))))
}

/// One batch: transactions of distinct slots, one after the other, then what must go alone.
async fn deliver_together(items: Vec<Delivery>) -> Vec<ApiResult<JsonReply>> {
    tracing::debug!(deliveries = items.len(), "deliveries settled together");
    let mut answers: Vec<Option<ApiResult<JsonReply>>> = vec![None; items.len()];
    let mut alone: Vec<usize> = Vec::new();
    let mut pending: Vec<usize> = (0..items.len()).collect();
    while !pending.is_empty() {
        // A slot moves at most once per transaction (a second submission waits for the next).
        let mut slots = HashSet::new();
        let (round, later): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| slots.insert(items[i].slot));
        let batch: Vec<&Delivery> = round.iter().map(|&i| &items[i]).collect();
        match deliver_in_one_transaction(&batch).await {
            Ok(done) => {
                for (&i, answer) in round.iter().zip(done) {
                    match answer {
                        Some(answer) => answers[i] = Some(answer),
                        None => alone.push(i),
                    }
                }
            }
            Err(unwritten) => match unwritten.unavailable() {
                Some(err) => {
                    for &i in &round {
                        answers[i] = Some(Err(err.clone()));
                    }
                }
                None => {
                    tracing::debug!(error = %unwritten, deliveries = round.len(), "deliveries failed before their commit; one by one");
                    alone.extend(&round);
                }
            },
        }
        pending = later;
    }
    alone.sort_unstable();
    for i in alone {
        let d = &items[i];
        let verdict = Verdict::Valid { public_signals: d.public_signals.clone() };
        let answer =
            settle_alone(&d.state, d.principal, d.key.clone(), d.request_hash.clone(), d.prover, d.job_id, d.slot, &d.proof, verdict).await;
        answers[i] = Some(answer);
    }
    all_answered(answers)
}

/// A delivery the batch makes: its item, slot, job and what settlement decided.
struct Deciding<'a> {
    index: usize,
    item: &'a Delivery,
    slot: &'a SlotRow,
    job: &'a JobRow,
    delivered: Delivered,
}

/// The deliveries of `batch` (of distinct slots) in one transaction. `Ok` holds each item's
/// answer, `None` for those to be run alone (their lease is not as the batch needs it); an
/// error before the commit means nothing was written.
async fn deliver_in_one_transaction(batch: &[&Delivery]) -> Result<Vec<Option<ApiResult<JsonReply>>>, Unwritten> {
    let state = &batch[0].state;
    let rules = &state.settings.settlement.rules;
    // The batch's statements are the same every time: a generic plan spares planning them anew
    // for each batch (PostgreSQL would keep choosing custom plans for their array parameters).
    let mut tx = state.db.begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan").await?;
    let now = state.now();
    let mut answers: Vec<Option<ApiResult<JsonReply>>> = vec![None; batch.len()];
    let mut replayed = vec![false; batch.len()];

    // Replays first: a key already answered gets its stored response and moves nothing.
    let scoped: Vec<(String, String)> =
        batch.iter().filter_map(|d| d.key.as_ref().map(|key| (d.principal.subject(), key.clone()))).collect();
    let stored = store::idempotency::find_many(&mut tx, &scoped).await?;
    for (i, d) in batch.iter().enumerate() {
        if let Some(found) = d.key.as_ref().and_then(|key| stored.get(&(d.principal.subject(), key.clone()))) {
            answers[i] = Some(idempotency::replay(found.clone(), &d.request_hash));
            replayed[i] = true;
        }
    }

    // Slots, then jobs, locked as the one-by-one path locks them; then each decision.
    let moving: Vec<usize> = (0..batch.len()).filter(|&i| !replayed[i]).collect();
    let slot_keys: Vec<(Uuid, u64)> = moving.iter().map(|&i| batch[i].slot).collect();
    let slots = store::slots::lock_many(&mut tx, &slot_keys).await?;
    let job_ids: Vec<Uuid> = moving.iter().map(|&i| batch[i].job_id).collect();
    let jobs = store::jobs::lock_many(&mut tx, &job_ids).await?;
    let mut deciding: Vec<Deciding<'_>> = Vec::new();
    for &i in &moving {
        let item = batch[i];
        let (Some(slot), Some(job)) = (slots.get(&item.slot), jobs.get(&item.job_id)) else { continue };
        if job.contract_id != item.slot.0 || job.n != item.slot.1 {
            continue;
        }
        // A lost lease (or any refusal) is answered by the one-by-one path, in its words.
        if let Ok(delivered) = slot::deliver(&slot.slot, &job.job, item.prover, rules, now) {
            deciding.push(Deciding { index: i, item, slot, job, delivered });
        }
    }

    write(&mut tx, &deciding, now).await?;

    let mut to_store: Vec<(String, &str, StoredResponse)> = Vec::new();
    for d in &deciding {
        let outcome = SubmitOutcome {
            job_id: d.item.job_id,
            accepted: true,
            slot_state: SlotState::Delivered,
            reason: d.delivered.settlement.reason.as_str().into(),
        };
        let answer = idempotency::reply(StatusCode::OK, &outcome);
        if let (Some(key), Ok((status, body))) = (&d.item.key, &answer) {
            let response = StoredResponse { request_hash: d.item.request_hash.clone(), status_code: status.as_u16(), body: body.clone() };
            to_store.push((d.item.principal.subject(), key.as_str(), response));
        }
        answers[d.index] = Some(answer);
    }
    let stores: Vec<(&str, &str, &StoredResponse)> = to_store.iter().map(|(p, k, r)| (p.as_str(), *k, r)).collect();
    store::idempotency::store_many(&mut tx, &stores).await?;
    // A failed commit may still have committed (the answer was lost): it is answered as an
    // error, never run again, as a delivery alone would be.
    if let Err(err) = tx.commit().await {
        let err = ApiError::from(err);
        return Ok(vec![Some(Err(err)); batch.len()]);
    }
    for d in &deciding {
        tracing::info!(
            contract = %d.slot.slot.contract_id, slot = d.slot.slot.n, prover = %d.delivered.prover,
            reason = d.delivered.settlement.reason.as_str(), "slot delivered"
        );
    }
    Ok(answers)
}

/// What `apply::delivery` writes for one delivery, for all of `deciding` at once: the jobs, the
/// slots with their proofs, the payments, the escrow spent, the provers' records, the events.
async fn write(tx: &mut sqlx::PgConnection, deciding: &[Deciding<'_>], now: DateTime<Utc>) -> Result<(), Unwritten> {
    if deciding.is_empty() {
        return Ok(());
    }
    let job_ids: Vec<Uuid> = deciding.iter().map(|d| d.job.job.id).collect();
    if !store::jobs::finish_delivered(tx, &job_ids, now).await? {
        return Err(Unwritten::Raced("a job"));
    }
    let slots: Vec<store::slots::Delivery<'_>> = deciding
        .iter()
        .map(|d| store::slots::Delivery {
            slot: &d.slot.slot,
            reason: d.delivered.settlement.reason,
            prover: d.delivered.prover,
            proof: &d.item.proof,
            public_signals: &d.item.public_signals,
        })
        .collect();
    if !store::slots::deliver_many(tx, &slots, now).await? {
        return Err(Unwritten::Raced("a slot"));
    }
    let entries: Vec<&JournalEntry> = deciding.iter().flat_map(|d| &d.delivered.settlement.entries).collect();
    store::ledger::post_many(tx, &entries).await?;
    let spent: Vec<(Uuid, Money)> = deciding.iter().map(|d| (d.slot.slot.contract_id, d.delivered.settlement.escrow_out)).collect();
    store::progress::spend_escrow_many(tx, &spent).await?;
    let records: Vec<(AccountId, Uuid)> = deciding.iter().map(|d| (d.delivered.prover, d.slot.slot.contract_id)).collect();
    store::reputation::record_deliveries(tx, &records).await?;
    let told: Vec<crate::webhooks::Event> =
        deciding.iter().flat_map(|d| events::delivered(&d.slot.slot, &d.job.job, &d.delivered, now)).collect();
    store::webhooks::emit_many(tx, &told).await?;
    Ok(())
}
