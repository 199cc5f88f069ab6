//! Applying settlement decisions: each function writes what a `pcx_settlement` decision says, on
//! the caller's transaction, guarded by the state the decision was made from. A guard that does
//! not hold means another transition got there first; the caller's transaction then changes
//! nothing (it returns `false`, and the caller drops it).
//!
//! Each also writes the webhook events its transition reports (`crate::webhooks::settlement`)
//! to the outbox, on the same transaction: they exist if and only if the transition committed.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, JournalEntry, Money};
use pcx_settlement::slot::{Delivered, Failed, Job, NewJob, Settlement, Slot};
use pcx_settlement::state::SlotState;

use crate::error::{ApiError, ApiResult};
use crate::service::webhooks::emit_all;
use crate::store::{self, ledger::PostError};
use crate::webhooks::settlement as events;

/// Posts a settlement entry. Settlement never moves money that is not there, so a refusal is the
/// exchange's own error, not the caller's.
pub async fn post(conn: &mut PgConnection, entry: &JournalEntry) -> ApiResult<()> {
    store::ledger::post(conn, entry).await.map(|_| ()).map_err(|err| match err {
        PostError::InsufficientFunds => ApiError::internal(format!("settlement posting {} would overdraw", entry.reference())),
        PostError::UnknownAccount => ApiError::internal(format!("settlement posting {} names no account", entry.reference())),
        PostError::Db(err) => err.into(),
    })
}

/// A prover's bond, locked (zero when it has none).
pub async fn bonded(conn: &mut PgConnection, prover: Option<AccountId>) -> ApiResult<Money> {
    let Some(prover) = prover else { return Ok(Money::ZERO) };
    let rows = store::contracts::lock_bonded(conn, &[prover.0]).await?;
    let bonded = rows.first().map_or(rust_decimal::Decimal::ZERO, |(_, b)| *b);
    Money::from_decimal(bonded).map_err(ApiError::internal)
}

/// Moves a slot from `from` to its final state and posts its settlement.
pub async fn settle(conn: &mut PgConnection, slot: &Slot, from: SlotState, settlement: &Settlement, now: DateTime<Utc>) -> ApiResult<bool> {
    if !store::slots::settle(conn, slot, from, settlement, now).await? {
        return Ok(false);
    }
    for entry in &settlement.entries {
        post(conn, entry).await?;
    }
    if settlement.escrow_out.is_positive() {
        store::progress::spend_escrow(conn, slot.contract_id, settlement.escrow_out).await?;
    }
    emit_all(conn, events::settled(slot, settlement, now)).await?;
    Ok(true)
}

/// Offers a job.
pub async fn offer(conn: &mut PgConnection, slot: &Slot, job: &NewJob) -> ApiResult<Uuid> {
    let id = store::jobs::insert(conn, slot, job).await?;
    emit_all(conn, events::offered(slot, id, job, job.offered_at)).await?;
    tracing::debug!(contract = %slot.contract_id, slot = slot.n, attempt = job.attempt, role = job.role.as_str(), "job offered");
    Ok(id)
}

/// Fails a live job: its slash, the prover's record, the slot's count, and the next job.
pub async fn failure(conn: &mut PgConnection, slot: &Slot, job: &Job, failed: &Failed, now: DateTime<Utc>) -> ApiResult<bool> {
    if !store::jobs::finish(conn, job.id, Err(failed.failure), now).await? {
        return Ok(false);
    }
    let bonus = failed.slash.as_ref().map_or(Money::ZERO, |s| s.bonus);
    if let Some(slash) = &failed.slash {
        post(conn, &slash.entry).await?;
    }
    if let Some(prover) = failed.charged_to {
        store::reputation::record(conn, prover, slot.contract_id, false).await?;
    }
    store::slots::count_failure(conn, slot, failed.advances, bonus).await?;
    emit_all(conn, events::failed(slot, job, failed, now)).await?;
    tracing::info!(
        contract = %slot.contract_id, slot = slot.n, prover = ?job.prover, failure = failed.failure.as_str(),
        slashed = %failed.slash.as_ref().map_or(Money::ZERO, |s| s.total), "job failed"
    );
    if let Some(next) = &failed.next {
        offer(conn, slot, next).await?;
    }
    Ok(true)
}

/// Records a delivery: the job, the slot with its proof, the payment, the prover's record.
pub async fn delivery(
    conn: &mut PgConnection,
    slot: &Slot,
    job: &Job,
    delivered: &Delivered,
    proof: &str,
    public_signals: &[String],
    now: DateTime<Utc>,
) -> ApiResult<bool> {
    if !store::jobs::finish(conn, job.id, Ok(()), now).await? {
        return Ok(false);
    }
    let settlement = &delivered.settlement;
    if !store::slots::deliver(conn, slot, settlement.reason, delivered.prover, proof, public_signals, now).await? {
        return Ok(false);
    }
    for entry in &settlement.entries {
        post(conn, entry).await?;
    }
    store::progress::spend_escrow(conn, slot.contract_id, settlement.escrow_out).await?;
    store::reputation::record(conn, delivered.prover, slot.contract_id, true).await?;
    emit_all(conn, events::delivered(slot, job, delivered, now)).await?;
    tracing::info!(contract = %slot.contract_id, slot = slot.n, prover = %delivered.prover, reason = settlement.reason.as_str(), "slot delivered");
    Ok(true)
}
