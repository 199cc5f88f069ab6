//! The scheduler's contract transitions: materialising slots a horizon ahead, keeping each
//! contract's escrow window funded (or suspending it, with backoff), completing finished ones.
//! The rules are `pcx_settlement::contract`; this applies them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use pcx_settlement::contract;
use pcx_settlement::state::ContractStatus;

use crate::error::{ApiError, ApiResult};
use crate::retry::contended;
use crate::service::webhooks::emit;
use crate::store::{self, ledger::PostError};
use crate::webhooks::{settlement::contract as contract_event, EventType};
use crate::AppState;

/// Most slots materialised per contract per tick.
const MATERIALISE_CHUNK: u64 = 5_000;

/// Materialises the slots opening within the horizon; returns how many.
pub async fn materialise_due(state: &AppState, now: DateTime<Utc>) -> ApiResult<u64> {
    contended("materialise slots", || materialise(state, now)).await
}

async fn materialise(state: &AppState, now: DateTime<Utc>) -> ApiResult<u64> {
    let settings = &state.settings.settlement;
    let horizon_end = now + settings.horizon;
    let mut tx = state.begin().await?;
    let mut inserted = 0;
    let mut classes = Vec::new();
    for row in store::progress::to_materialise(&mut tx, horizon_end, settings.batch).await? {
        let Some(plan) = contract::materialise(&row.progress, horizon_end, MATERIALISE_CHUNK) else { continue };
        let schedule = &row.progress.schedule;
        let slots: Vec<_> = plan
            .range
            .clone()
            .filter_map(|n| schedule.slot_opens_at(n).map(|t| (n, t, t + row.deadline_after())))
            .collect();
        inserted += store::slots::insert(&mut tx, row.progress.id, &slots).await?;
        store::progress::set_materialised(&mut tx, row.progress.id, plan.range.end, plan.next_at).await?;
        classes.push(row.class);
    }
    tx.commit().await?;
    for class in &classes {
        state.keys_warmer.warm(class);
    }
    Ok(inserted)
}

/// What an escrow top-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Funding {
    /// The window is funded further.
    Funded,
    /// The buyer cannot pay: suspended until its retry.
    Suspended,
    /// Nothing to do.
    Nothing,
}

/// Tops up the escrow windows that moved past what is locked; returns (funded, suspended).
pub async fn fund_due(state: &AppState, now: DateTime<Utc>) -> ApiResult<(u64, u64)> {
    let window = state.settings.market.escrow_window;
    let due = store::progress::due_for_escrow(&mut *state.db.acquire().await?, now + window, now, state.settings.settlement.batch).await?;
    let (mut funded, mut suspended) = (0, 0);
    for id in due {
        match contended("fund an escrow window", || fund(state, id, now)).await? {
            Funding::Funded => funded += 1,
            Funding::Suspended => suspended += 1,
            Funding::Nothing => {}
        }
    }
    Ok((funded, suspended))
}

async fn fund(state: &AppState, id: Uuid, now: DateTime<Utc>) -> ApiResult<Funding> {
    let mut tx = state.begin().await?;
    let Some(row) = store::progress::lock(&mut tx, id).await? else { return Ok(Funding::Nothing) };
    let progress = &row.progress;
    if !ContractStatus::RUNNING.contains(&progress.status) {
        return Ok(Funding::Nothing);
    }
    let blocks = store::progress::priced_blocks(&mut tx, id).await?;
    let window = state.settings.market.escrow_window;
    let Some(up) = contract::top_up(progress, &blocks, window, now).map_err(ApiError::internal)? else {
        // Every slot is funded or past: nothing will be due again.
        store::progress::funded(&mut tx, id, progress.escrow_until, None, pcx_domain::Money::ZERO).await?;
        tx.commit().await?;
        return Ok(Funding::Nothing);
    };
    if let Some(entry) = &up.entry {
        match store::ledger::post(&mut tx, entry).await {
            Ok(_) => {}
            Err(PostError::InsufficientFunds) => {
                drop(tx);
                return suspend(state, id, now).await;
            }
            Err(PostError::Db(err)) => return Err(err.into()),
            Err(err) => return Err(ApiError::internal(err)),
        }
    }
    store::progress::funded(&mut tx, id, up.range.end, up.next_at, up.amount).await?;
    if up.resumes {
        emit(&mut tx, &contract_event(progress.buyer, EventType::ContractResumed, id, now, serde_json::json!({"status": "active"})))
            .await?;
    }
    // Warn the buyer while there is time: what is left would not pay for another top-up like this one.
    if up.next_at.is_some() && up.amount.is_positive() {
        let available = store::ledger::balances(&mut tx, progress.buyer).await?.available;
        if available < up.amount {
            emit(
                &mut tx,
                &contract_event(
                    progress.buyer,
                    EventType::EscrowLow,
                    id,
                    now,
                    serde_json::json!({"available": available, "next_top_up": up.amount, "next_top_up_at": up.next_at}),
                ),
            )
            .await?;
        }
    }
    tx.commit().await?;
    if up.resumes {
        tracing::info!(contract = %id, "contract resumed: escrow funded again");
    }
    Ok(Funding::Funded)
}

async fn suspend(state: &AppState, id: Uuid, now: DateTime<Utc>) -> ApiResult<Funding> {
    let mut tx = state.begin().await?;
    let Some(row) = store::progress::lock(&mut tx, id).await? else { return Ok(Funding::Nothing) };
    let suspension = contract::suspend(&row.progress, now);
    store::progress::suspend(&mut tx, id, &suspension).await?;
    if row.progress.status == ContractStatus::Active {
        let data = serde_json::json!({"status": "suspended", "reason": suspension.reason, "retry_at": suspension.retry_at});
        emit(&mut tx, &contract_event(row.progress.buyer, EventType::ContractSuspended, id, now, data)).await?;
    }
    tx.commit().await?;
    if row.progress.status == ContractStatus::Active {
        tracing::warn!(contract = %id, retry_at = %suspension.retry_at, "contract suspended: the buyer cannot fund the escrow window");
    }
    Ok(Funding::Suspended)
}

/// Completes the contracts whose slots are all settled, releasing leftover escrow; returns how many.
pub async fn complete_due(state: &AppState, now: DateTime<Utc>) -> ApiResult<u64> {
    let due = store::progress::to_complete(&mut *state.db.acquire().await?, state.settings.settlement.batch).await?;
    let mut completed = 0;
    for id in due {
        if contended("complete a contract", || complete(state, id, now)).await? {
            completed += 1;
        }
    }
    Ok(completed)
}

async fn complete(state: &AppState, id: Uuid, now: DateTime<Utc>) -> ApiResult<bool> {
    let mut tx = state.begin().await?;
    let Some(row) = store::progress::lock(&mut tx, id).await? else { return Ok(false) };
    if !ContractStatus::RUNNING.contains(&row.progress.status) {
        return Ok(false);
    }
    if let Some(entry) = contract::release(&row.progress).map_err(ApiError::internal)? {
        super::apply::post(&mut tx, &entry).await?;
    }
    store::progress::complete(&mut tx, id, now).await?;
    emit(&mut tx, &contract_event(row.progress.buyer, EventType::ContractCompleted, id, now, serde_json::json!({"status": "completed"})))
        .await?;
    tx.commit().await?;
    Ok(true)
}
