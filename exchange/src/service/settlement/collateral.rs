//! Collateral as the window rolls: the scheduler checks that each primary's bond still covers its
//! upcoming slots in the collateral window, and hands the slots it no longer covers to their
//! backups (`pcx_settlement::collateral`). Its offers stop selling meanwhile (quotes leave out
//! provers whose bond does not back their offers). The jobs a prover holds are protected another
//! way: unstaking never releases what their slash could take.

use chrono::{DateTime, Utc};

use pcx_domain::{AccountId, Money};
use pcx_settlement::collateral::{job_exposure, slot_exposure, uncovered};

use crate::error::{ApiError, ApiResult};
use crate::retry::contended;
use crate::store;
use crate::AppState;

/// What a prover's live jobs could cost it: the largest slash of each.
pub async fn live_exposure(conn: &mut sqlx::PgConnection, state: &AppState, prover: AccountId) -> ApiResult<Money> {
    let rules = &state.settings.settlement.rules;
    let mut total = Money::ZERO;
    for price in store::jobs::live_prices(conn, prover).await? {
        let exposure = job_exposure(price, rules.slash_multiplier, rules.invalid_slash_factor).map_err(ApiError::internal)?;
        total = total.checked_add(exposure).map_err(ApiError::internal)?;
    }
    Ok(total)
}

/// Re-checks every primary with scheduled slots in the window at `now`; returns how many slots
/// changed hands.
pub async fn check(state: &AppState, now: DateTime<Utc>) -> ApiResult<u64> {
    let window = state.settings.market.collateral_window;
    let multiplier = state.settings.settlement.rules.slash_multiplier;
    let mut conn = state.db.acquire().await?;
    let priced = store::slots::primary_prices(&mut conn, now, now + window).await?;
    let provers: Vec<uuid::Uuid> = priced.iter().map(|(p, _)| p.0).collect();
    let bonded: std::collections::HashMap<uuid::Uuid, rust_decimal::Decimal> =
        store::ledger::bonded_of(&mut conn, &provers).await?.into_iter().collect();
    drop(conn);
    let mut handed = 0;
    for (prover, prices) in priced {
        let required = slot_exposure(prices, multiplier).map_err(ApiError::internal)?;
        // A first look without locks; the slots are handed over under the bond's lock.
        if required.as_decimal() > bonded.get(&prover.0).copied().unwrap_or_default() {
            handed += contended("hand uncovered slots to backups", || hand_over(state, prover, now)).await?;
        }
    }
    Ok(handed)
}

async fn hand_over(state: &AppState, prover: AccountId, now: DateTime<Utc>) -> ApiResult<u64> {
    let window = state.settings.market.collateral_window;
    let multiplier = state.settings.settlement.rules.slash_multiplier;
    let mut tx = state.begin().await?;
    let bonded = super::apply::bonded(&mut tx, Some(prover)).await?;
    let slots = store::slots::primary_slots(&mut tx, prover, now, now + window).await?;
    let mut handed = 0;
    for r in uncovered(prover, bonded, &slots, multiplier).map_err(ApiError::internal)? {
        if store::slots::reassign(&mut tx, &r).await? {
            tracing::warn!(contract = %r.contract_id, slot = r.n, previous = %r.previous, primary = %r.primary,
                           reason = r.reason.as_str(), "primary replaced by its backup");
            handed += 1;
        }
    }
    tx.commit().await?;
    Ok(handed)
}
