//! The scheduler's slot transitions: opening due slots, failing expired jobs, settling slots past
//! their deadline. Each is one transaction per slot: lock the slot (then its job, then ledger
//! rows), ask `pcx_settlement::slot`, apply. A transition that lost a race is retried
//! ([`crate::retry::contended`]); one that finds the slot already moved on does nothing.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use pcx_settlement::slot::{self, Opening};
use pcx_settlement::state::SlotState;

use super::apply;
use super::context::Context;
use crate::error::{ApiError, ApiResult};
use crate::retry::contended;
use crate::store;
use crate::AppState;

/// Most batches of one kind of transition in one tick (each batch is `PCX_SETTLEMENT_BATCH` rows).
pub const MAX_BATCHES_PER_TICK: usize = 25;

/// Transitions of one kind run this many at a time: they touch different slots, and their ledger
/// rows are locked in one order, so they only ever wait for one another, never deadlock (and a
/// deadlock would be retried anyway).
const CONCURRENT_TRANSITIONS: usize = 4;

/// Runs `transition` (retried on contention) for every key `due` lists, batch after batch, up to
/// [`MAX_BATCHES_PER_TICK`]; returns how many transitions happened.
async fn each_due<K, D, DF, T, TF>(state: &AppState, what: &str, due: D, transition: T) -> ApiResult<u64>
where
    K: Copy,
    D: Fn(i64) -> DF,
    DF: std::future::Future<Output = ApiResult<Vec<K>>>,
    T: Fn(K) -> TF,
    TF: std::future::Future<Output = ApiResult<bool>>,
{
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let batch = state.settings.settlement.batch;
    let transition = &transition;
    let mut done = 0;
    for _ in 0..MAX_BATCHES_PER_TICK {
        let keys = due(batch).await?;
        let happened: Vec<bool> = stream::iter(keys.iter().copied())
            .map(|key| contended(what, move || transition(key)))
            .buffer_unordered(CONCURRENT_TRANSITIONS)
            .try_collect()
            .await?;
        done += happened.into_iter().filter(|h| *h).count() as u64;
        if (keys.len() as i64) < batch {
            break;
        }
    }
    Ok(done)
}

/// Opens the slots due at `now`; returns how many opened (or settled at opening).
pub async fn open_due(state: &AppState, ctx: &Context, now: DateTime<Utc>) -> ApiResult<u64> {
    let due = |batch| async move { Ok(store::slots::due_to_open(&mut *state.db.acquire().await?, now, batch).await?) };
    each_due(state, "open a slot", due, |(contract, n)| open(state, ctx, contract, n, now)).await
}

/// Opens one slot: cancelled, unused (paid), too late (refunded), or its first job offered.
async fn open(state: &AppState, ctx: &Context, contract: Uuid, n: u64, now: DateTime<Utc>) -> ApiResult<bool> {
    let mut tx = state.begin().await?;
    let Some(row) = store::slots::lock(&mut tx, contract, n).await? else { return Ok(false) };
    if row.slot.state != SlotState::Scheduled {
        return Ok(false);
    }
    let times = ctx.times(&row.slot, &row.class);
    let done = match slot::open(&row.slot, &times, &ctx.outages, &state.settings.settlement.rules, now).map_err(ApiError::internal)? {
        Opening::Settle(settlement) => {
            if settlement.state == SlotState::Missed {
                tracing::warn!(%contract, slot = n, reason = settlement.reason.as_str(), "slot opened too late to be proved: refunded");
            }
            apply::settle(&mut tx, &row.slot, SlotState::Scheduled, &settlement, now).await?
        }
        Opening::Prove(job) => {
            let started = store::slots::start_proving(&mut tx, &row.slot).await?;
            if started {
                apply::offer(&mut tx, &row.slot, &job).await?;
            }
            started
        }
    };
    tx.commit().await?;
    Ok(done)
}

/// Fails the jobs whose ack window or lease ran out by `now`; returns how many.
pub async fn expire_due(state: &AppState, ctx: &Context, now: DateTime<Utc>) -> ApiResult<u64> {
    let due = |batch| async move { Ok(store::jobs::expired(&mut *state.db.acquire().await?, now, batch).await?) };
    each_due(state, "expire a job", due, |(job, contract, n)| expire(state, ctx, job, contract, n, now)).await
}

async fn expire(state: &AppState, ctx: &Context, job: Uuid, contract: Uuid, n: u64, now: DateTime<Utc>) -> ApiResult<bool> {
    let mut tx = state.begin().await?;
    let Some(row) = store::slots::lock(&mut tx, contract, n).await? else { return Ok(false) };
    let Some(job) = store::jobs::lock(&mut tx, job).await? else { return Ok(false) };
    let Some(failure) = slot::expiry(&job.job, now) else { return Ok(false) };
    if row.slot.state != SlotState::Proving {
        return Ok(false);
    }
    let bonded = apply::bonded(&mut tx, job.job.prover).await?;
    let times = ctx.times(&row.slot, &row.class);
    let rules = &state.settings.settlement.rules;
    let failed = slot::fail(&row.slot, &job.job, failure, bonded, &ctx.outages, &times, rules, now, true).map_err(ApiError::internal)?;
    let done = apply::failure(&mut tx, &row.slot, &job.job, &failed, now).await?;
    tx.commit().await?;
    Ok(done)
}

/// Settles the proving slots whose deadline passed by `now`; returns how many.
pub async fn miss_due(state: &AppState, ctx: &Context, now: DateTime<Utc>) -> ApiResult<u64> {
    let due = |batch| async move { Ok(store::slots::past_deadline(&mut *state.db.acquire().await?, now, batch).await?) };
    each_due(state, "settle a missed slot", due, |(contract, n)| miss(state, ctx, contract, n, now)).await
}

async fn miss(state: &AppState, ctx: &Context, contract: Uuid, n: u64, now: DateTime<Utc>) -> ApiResult<bool> {
    let mut tx = state.begin().await?;
    let Some(row) = store::slots::lock(&mut tx, contract, n).await? else { return Ok(false) };
    if row.slot.state != SlotState::Proving || row.slot.deadline > now {
        return Ok(false);
    }
    let live = store::jobs::live_of(&mut tx, contract, n).await?;
    let bonded = apply::bonded(&mut tx, live.as_ref().and_then(|j| j.job.prover)).await?;
    let rules = &state.settings.settlement.rules;
    let missed = slot::miss(&row.slot, live.as_ref().map(|j| (&j.job, bonded)), &ctx.outages, rules, now).map_err(ApiError::internal)?;
    if let (Some(live), Some(failed)) = (&live, &missed.job) {
        apply::failure(&mut tx, &row.slot, &live.job, failed, now).await?;
    }
    let done = apply::settle(&mut tx, &row.slot, SlotState::Proving, &missed.settlement, now).await?;
    tracing::warn!(%contract, slot = n, reason = missed.settlement.reason.as_str(), "slot missed: buyer refunded");
    tx.commit().await?;
    Ok(done)
}
