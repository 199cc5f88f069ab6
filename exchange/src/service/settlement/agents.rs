//! The agents' side of settlement: claiming jobs (the ones an agent already holds first, so a
//! claim retried after a lost answer gets its job back), submitting proofs (verified before any
//! transaction opens, with the verifying key loaded at start), and giving jobs back.

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use pcx_domain::AccountId;
use pcx_prover_pool::circuit::Verdict;
use pcx_settlement::slot;
use pcx_settlement::state::{JobFailure, SlotState};
use pcx_settlement::timing::expected_prove;
use pcx_settlement::SettlementError;

use super::apply;
use super::deliveries::{Checked, Delivery, Submission};
use super::proof_checks::ProofToCheck;
use super::context::Context;
use crate::auth::Principal;
use crate::batch::{self, Batcher};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::idempotency::{self, JsonReply};
use crate::retry::contended;
use crate::store::{self, jobs::Ticket};
use crate::AppState;

fn lease_lost(why: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::LeaseLost, format!("this job is no longer yours to prove: {why}")).with_hint("drop the job and claim another")
}

fn not_yours(job: Uuid) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no job {job} of yours"))
}

fn decision_error(err: SettlementError) -> ApiError {
    match err {
        SettlementError::LeaseLost(lost) => lease_lost(lost.0),
        other => ApiError::internal(other),
    }
}

/// The jobs an agent can prove: built-in circuits by size, registered circuits by id.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// Sizes of the built-in circuit.
    pub sizes: &'a [i16],
    /// Registered circuits.
    pub circuits: &'a [String],
}

/// One claim at `now` for `agent` of `prover`: a job it holds that is not `in_hand` (its answer
/// was lost), else a new one it can prove (its own first, then the open market). `None` when
/// there is none.
pub async fn claim(
    state: &AppState,
    prover: AccountId,
    agent: Uuid,
    wanted: Wanted<'_>,
    in_hand: &[Uuid],
    now: DateTime<Utc>,
) -> ApiResult<Option<Ticket>> {
    contended("claim a job", || claim_once(state, prover, agent, wanted, in_hand, now)).await
}

async fn claim_once(
    state: &AppState,
    prover: AccountId,
    agent: Uuid,
    wanted: Wanted<'_>,
    in_hand: &[Uuid],
    now: DateTime<Utc>,
) -> ApiResult<Option<Ticket>> {
    let mut tx = state.begin().await?;
    let id = match store::jobs::held_by(&mut tx, agent, prover, in_hand, now).await? {
        Some(held) => Some(held),
        None => claim_new(&mut tx, state, prover, agent, wanted, now).await?,
    };
    let ticket = match id {
        Some(id) => store::jobs::ticket(&mut tx, id).await?,
        None => None,
    };
    tx.commit().await?;
    Ok(ticket)
}

async fn claim_new(
    tx: &mut PgConnection,
    state: &AppState,
    prover: AccountId,
    agent: Uuid,
    wanted: Wanted<'_>,
    now: DateTime<Utc>,
) -> ApiResult<Option<Uuid>> {
    let rules = &state.settings.settlement.rules;
    let Some(job) =
        store::jobs::claimable(tx, prover, wanted.sizes, wanted.circuits, rules.slash_multiplier, now).await?
    else {
        return Ok(None);
    };
    let measured = store::agents::measured_by(tx, agent, prover).await?;
    let prove = expected_prove(&measured, &job.class.circuit, job.class.size_log2);
    let claim = slot::claim(&job.job, job.opens_at, job.deadline, prove, rules, now);
    store::jobs::mark_claimed(tx, job.job.id, prover, agent, now, claim.lease_expires_at, claim.slashable).await?;
    Ok(Some(job.job.id))
}

/// The outcome of a proof submission.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubmitOutcome {
    /// The job.
    pub job_id: Uuid,
    /// True when the proof verified and the slot is delivered.
    pub accepted: bool,
    /// The slot's state afterwards.
    pub slot_state: SlotState,
    /// Why: the delivery's reason (`delivered_by_primary`, ...), or `invalid_proof`.
    pub reason: String,
}

/// Verifies and settles a proof `prover` submits for `job_id`, honouring `key` (the agents use
/// the job id): with the submissions that arrive with it ([`super::deliveries`]), the proof is
/// checked first, with no database connection held, then a valid one is delivered together with
/// the batch's other valid ones, and an invalid one fails its job in a transaction of its own.
pub async fn submit(
    state: &AppState,
    principal: Principal,
    key: Option<String>,
    request_hash: Vec<u8>,
    prover: AccountId,
    job_id: Uuid,
    proof: String,
) -> ApiResult<JsonReply> {
    let ticket = state
        .tickets
        .call(job_id)
        .await
        .map_err(ApiError::internal)??
        .filter(|t| t.job.prover == Some(prover))
        .ok_or_else(|| not_yours(job_id))?;
    let input = ticket.input.clone().ok_or_else(|| ApiError::internal("a proving slot has no input"))?;
    let circuit = state.circuit(&ticket.class).await?;
    let check = ProofToCheck { circuit, input, proof: proof.clone() };
    let slot = (ticket.contract_id, ticket.n);
    let delivery = Delivery { state: state.clone(), principal, key, request_hash, prover, job_id, slot, proof, public_signals: Vec::new() };
    match state.submissions.call(Submission { check, delivery }).await.map_err(ApiError::internal)? {
        Checked::Answered(answer) => answer,
        Checked::Settling(answer) => answer.await.map_err(|_| ApiError::internal("the settling of a proof ended without an answer"))?,
    }
}

/// Submissions' jobs read in batches: one statement for the tickets of the submissions that
/// arrive together (each read after its request arrived), two statements in flight at most.
pub type Tickets = Batcher<Uuid, ApiResult<Option<Ticket>>>;

/// Tickets per statement at most (a batch of submissions is at most 64 proofs).
const TICKETS_PER_STATEMENT: usize = 64;

/// The [`Tickets`] of `db`.
pub fn tickets(db: PgPool) -> Tickets {
    Batcher::new(
        TICKETS_PER_STATEMENT,
        2,
        Arc::new(move |ids: Vec<Uuid>| {
            let db = db.clone();
            Box::pin(async move {
                let read = async { store::jobs::tickets(&mut *db.acquire().await?, &ids).await }.await;
                batch::answers_of_read(read, ids.len(), |tickets| ids.iter().map(|id| tickets.get(id).cloned()).collect())
            })
        }),
    )
}

/// Settles one verified submission in a transaction of its own (retried on contention),
/// honouring its idempotency key.
pub(super) async fn settle_alone(delivery: &Delivery, verdict: Verdict) -> ApiResult<JsonReply> {
    let d = delivery;
    contended("settle a proof", || {
        let (app, verdict, proof) = (d.state.clone(), verdict.clone(), d.proof.clone());
        let (prover, job_id, slot) = (d.prover, d.job_id, d.slot);
        idempotency::run(&d.state, d.principal, d.key.clone(), d.request_hash.clone(), move |conn| {
            Box::pin(async move {
                let outcome = settle_proof(conn, &app, prover, job_id, slot, &proof, verdict).await?;
                idempotency::reply(StatusCode::OK, &outcome)
            })
        })
    })
    .await
}

async fn settle_proof(
    conn: &mut PgConnection,
    state: &AppState,
    prover: AccountId,
    job_id: Uuid,
    (contract, n): (Uuid, u64),
    proof: &str,
    verdict: Verdict,
) -> ApiResult<SubmitOutcome> {
    let now = state.now();
    let rules = &state.settings.settlement.rules;
    let row = store::slots::lock(conn, contract, n).await?.ok_or_else(|| ApiError::internal("slot vanished"))?;
    let job = store::jobs::lock(conn, job_id).await?.ok_or_else(|| not_yours(job_id))?;
    slot::check_lease(&row.slot, &job.job, prover, now).map_err(|lost| lease_lost(lost.0))?;
    match verdict {
        Verdict::Valid { public_signals } => {
            let delivered = slot::deliver(&row.slot, &job.job, prover, rules, now).map_err(decision_error)?;
            apply::delivery(conn, &row.slot, &job.job, &delivered, proof, &public_signals, now).await?;
            Ok(SubmitOutcome {
                job_id,
                accepted: true,
                slot_state: SlotState::Delivered,
                reason: delivered.settlement.reason.as_str().into(),
            })
        }
        Verdict::Invalid => {
            fail_held(conn, state, &row, &job.job, JobFailure::InvalidProof, now).await?;
            Ok(SubmitOutcome {
                job_id,
                accepted: false,
                slot_state: SlotState::Proving,
                reason: JobFailure::InvalidProof.as_str().into(),
            })
        }
    }
}

/// Fails a job its prover holds (an invalid proof, a release) and offers the next one.
async fn fail_held(
    conn: &mut PgConnection,
    state: &AppState,
    row: &store::slots::SlotRow,
    job: &slot::Job,
    failure: JobFailure,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let bonded = apply::bonded(conn, job.prover).await?;
    let ctx = Context::load(conn, now).await?;
    let times = ctx.times(&row.slot, &row.class);
    let rules = &state.settings.settlement.rules;
    let failed = slot::fail(&row.slot, job, failure, bonded, &ctx.outages, &times, rules, now, true).map_err(decision_error)?;
    apply::failure(conn, &row.slot, job, &failed, now).await?;
    Ok(())
}

/// Gives a claimed job back: it fails as `released` (charged like a miss when it was the
/// prover's to make) and the next prover gets the slot at once.
pub async fn release(state: &AppState, prover: AccountId, job_id: Uuid) -> ApiResult<()> {
    contended("release a job", || release_once(state, prover, job_id)).await
}

async fn release_once(state: &AppState, prover: AccountId, job_id: Uuid) -> ApiResult<()> {
    let now = state.now();
    let mut tx = state.begin().await?;
    let ticket = store::jobs::ticket(&mut tx, job_id).await?.filter(|t| t.job.prover == Some(prover)).ok_or_else(|| not_yours(job_id))?;
    let row = store::slots::lock(&mut tx, ticket.contract_id, ticket.n).await?.ok_or_else(|| ApiError::internal("slot vanished"))?;
    let job = store::jobs::lock(&mut tx, job_id).await?.ok_or_else(|| not_yours(job_id))?;
    slot::check_lease(&row.slot, &job.job, prover, now).map_err(|lost| lease_lost(lost.0))?;
    fail_held(&mut tx, state, &row, &job.job, JobFailure::Released, now).await?;
    tx.commit().await?;
    Ok(())
}
