//! Submitted proofs verified and settled together ([`Submissions`]): the submissions that arrive
//! while others are being handled form one batch, whose proofs are verified as one batch
//! ([`super::proof_checks`]) and whose valid ones are then delivered by one transaction
//! ([`deliver_together`]), one statement per table for all of them, so the rows they share (the
//! buyer's escrow, the prover's balance and record, the exchange's fees) are locked once per
//! batch instead of once per proof, and the batch's deliveries do not queue behind each other's
//! commits. One batch is verified at a time (on every core) and one settling transaction runs at
//! a time, beside it: while the verified batches settle, the next one is verified.
//! An invalid proof fails its job in a transaction of its own ([`super::agents`]'s path).
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
use tokio::sync::oneshot;
use uuid::Uuid;

use pcx_domain::{AccountId, JournalEntry, Money};
use pcx_prover_pool::circuit::Verdict;
use pcx_prover_pool::keys::KeyStore;
use pcx_settlement::slot::{self, Delivered};
use pcx_settlement::state::SlotState;

use super::agents::{settle_alone, SubmitOutcome};
use super::proof_checks::{check_on_blocking_pool, ProofToCheck, PROOFS_PER_BATCH};
use crate::auth::Principal;
use crate::batch::{all_answered, Batcher, Unwritten};
use crate::error::{ApiError, ApiResult};
use crate::idempotency::{self, JsonReply, Keyed};
use crate::store::{self, jobs::JobRow, slots::SlotRow};
use crate::webhooks::settlement as events;
use crate::AppState;

/// A valid proof of a job, to be delivered.
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

impl Delivery {
    fn keyed(&self) -> Keyed<'_> {
        Keyed { principal: self.principal, key: self.key.as_deref(), request_hash: &self.request_hash }
    }
}

/// A submitted proof: what to check, and what to deliver if it is valid (its `public_signals`
/// are filled in by the check).
pub struct Submission {
    /// The proof against the slot's circuit and input.
    pub check: ProofToCheck,
    /// The delivery it makes if it verifies.
    pub delivery: Delivery,
}

/// What checking a submission gives its caller: its answer, or where the answer comes from once
/// its delivery is settled.
pub enum Checked {
    /// Answered already (an error of the exchange's).
    Answered(ApiResult<JsonReply>),
    /// Verified; the answer comes when its settling transaction (or its job's failure) committed.
    Settling(oneshot::Receiver<ApiResult<JsonReply>>),
}

/// See the module docs.
pub type Submissions = Batcher<Submission, Checked>;

/// The settling stage: each item is the valid deliveries of one verified batch; the batches
/// verified while a transaction runs are settled together by the next.
type Settling = Batcher<Vec<Delivery>, Vec<ApiResult<JsonReply>>>;

/// Verified batches per settling transaction at most.
const BATCHES_PER_TRANSACTION: usize = 4;

/// The [`Submissions`] of this process, verifying with the keys of `keys`. One batch is verified
/// at a time, on every core (so what arrives meanwhile forms the next batch, not a batch of
/// one), and one settling transaction runs at a time, beside the verification of the next batch.
pub fn submissions(keys: Arc<KeyStore>) -> Submissions {
    let settling: Settling = Batcher::new(BATCHES_PER_TRANSACTION, 1, Arc::new(|groups| Box::pin(settle_groups(groups))));
    Batcher::new(
        PROOFS_PER_BATCH,
        1,
        Arc::new(move |items| {
            let (keys, settling) = (Arc::clone(&keys), settling.clone());
            Box::pin(verify(keys, settling, items))
        }),
    )
}

/// Verified batches' deliveries in one [`deliver_together`], answered per batch.
async fn settle_groups(groups: Vec<Vec<Delivery>>) -> Vec<Vec<ApiResult<JsonReply>>> {
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    let mut answers = deliver_together(groups.into_iter().flatten().collect()).await.into_iter();
    sizes.into_iter().map(|n| answers.by_ref().take(n).collect()).collect()
}

/// One batch: its proofs verified together; then, on a task of its own (the next batch is
/// verified meanwhile), its valid ones handed to the settling stage as one group and its invalid
/// ones failed one by one.
async fn verify(keys: Arc<KeyStore>, settling: Settling, items: Vec<Submission>) -> Vec<Checked> {
    let (checks, deliveries): (Vec<ProofToCheck>, Vec<Delivery>) = items.into_iter().map(|s| (s.check, s.delivery)).unzip();
    let started = std::time::Instant::now();
    let verdicts = check_on_blocking_pool(keys, checks).await;
    tracing::debug!(proofs = verdicts.len(), micros = started.elapsed().as_micros() as u64, "batch verified");
    let mut checked = Vec::with_capacity(deliveries.len());
    let (mut valid, mut invalid) = (Vec::new(), Vec::new());
    for (mut delivery, verdict) in deliveries.into_iter().zip(verdicts) {
        let (answer, answered) = oneshot::channel();
        match verdict {
            Ok(Verdict::Valid { public_signals }) => {
                delivery.public_signals = public_signals;
                valid.push((delivery, answer));
            }
            Ok(Verdict::Invalid) => invalid.push((delivery, answer)),
            Err(err) => {
                checked.push(Checked::Answered(Err(ApiError::internal(err))));
                continue;
            }
        }
        checked.push(Checked::Settling(answered));
    }
    tokio::spawn(async move {
        let (deliveries, answers): (Vec<Delivery>, Vec<_>) = valid.into_iter().unzip();
        // A settling batch that broke answers nobody: its callers' channels close (an error).
        if !deliveries.is_empty() {
            if let Ok(settled) = settling.call(deliveries).await {
                for (answer, result) in answers.into_iter().zip(settled) {
                    let _ = answer.send(result);
                }
            }
        }
        for (delivery, answer) in invalid {
            let _ = answer.send(settle_alone(&delivery, Verdict::Invalid).await);
        }
    });
    checked
}

/// Delivers `items` (valid proofs): transactions of distinct slots, one after the other, then
/// what must go alone; each answered as the route answers.
pub async fn deliver_together(items: Vec<Delivery>) -> Vec<ApiResult<JsonReply>> {
    tracing::debug!(deliveries = items.len(), "deliveries settled together");
    let mut answers: Vec<Option<ApiResult<JsonReply>>> = vec![None; items.len()];
    let mut alone: Vec<usize> = Vec::new();
    let mut pending: Vec<usize> = (0..items.len()).collect();
    while !pending.is_empty() {
        // A slot moves at most once per transaction (a second submission waits for the next).
        let mut slots = HashSet::new();
        let (round, later): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| slots.insert(items[i].slot));
        let batch: Vec<&Delivery> = round.iter().map(|&i| &items[i]).collect();
        let started = std::time::Instant::now();
        let done = deliver_in_one_transaction(&batch).await;
        tracing::debug!(deliveries = batch.len(), micros = started.elapsed().as_micros() as u64, "settling transaction");
        match done {
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
        let verdict = Verdict::Valid { public_signals: items[i].public_signals.clone() };
        answers[i] = Some(settle_alone(&items[i], verdict).await);
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
    // Replays first: a key already answered gets its stored response and moves nothing.
    let keyed: Vec<Keyed<'_>> = batch.iter().map(|d| d.keyed()).collect();
    let mut answers = idempotency::replays(&mut tx, &keyed).await?;

    // Slots, then jobs, locked as the one-by-one path locks them; then each decision.
    let moving: Vec<usize> = (0..batch.len()).filter(|&i| answers[i].is_none()).collect();
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

    for d in &deciding {
        let outcome = SubmitOutcome {
            job_id: d.item.job_id,
            accepted: true,
            slot_state: SlotState::Delivered,
            reason: d.delivered.settlement.reason.as_str().into(),
        };
        answers[d.index] = Some(idempotency::reply(StatusCode::OK, &outcome));
    }
    let answered: Vec<(Keyed<'_>, &ApiResult<JsonReply>)> =
        deciding.iter().filter_map(|d| Some((keyed[d.index], answers[d.index].as_ref()?))).collect();
    idempotency::store_answers(&mut tx, &answered).await?;
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
