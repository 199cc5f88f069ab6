//! Prover stake: bonding and releasing it under the rolling collateral rule.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;

use pcx_domain::{AccountId, AccountKind, EntryKind, JournalEntry, Money};

use pcx_capacity_reservation::allocation::ReservationRole;
use pcx_capacity_reservation::offer::backing_required;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::service::funds::post_error;
use crate::store::{self, ledger::Balances};
use crate::AppState;

/// Moves `amount` from available to bonded.
pub async fn stake(conn: &mut PgConnection, prover: AccountId, amount: Money) -> ApiResult<(i64, Balances)> {
    let entry = JournalEntry::internal(
        EntryKind::Stake,
        prover,
        AccountKind::Available,
        AccountKind::Bonded,
        amount,
        format!("stake:{prover}"),
    )
    .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()))?;
    let posted = store::ledger::post(conn, &entry).await.map_err(|e| post_error(e, "stake"))?;
    Ok((posted.entry_id, store::ledger::balances(conn, prover).await?))
}

/// Stake that secures what the prover owes in `[now, now + collateral window)`: its primary and
/// backup slots opening in the window, the largest slash of every job it holds, and the backing
/// of its active offers. None of it can be unstaked, so no slash can be dodged.
pub async fn collateral_locked(conn: &mut PgConnection, state: &AppState, prover: AccountId, now: DateTime<Utc>) -> ApiResult<Decimal> {
    let market = &state.settings.market;
    let mut locked = Decimal::ZERO;
    for role in [ReservationRole::Primary, ReservationRole::Backup] {
        let required =
            store::contracts::collateral_required(conn, &[prover.0], role, now, now + market.collateral_window, market.slash_multiplier).await?;
        locked += required.first().map_or(Decimal::ZERO, |(_, r)| *r);
    }
    locked += crate::service::settlement::live_exposure(conn, state, prover).await?.as_decimal();
    let exposure = store::offers::hourly_exposures(conn, &[prover.0], now).await?.first().map_or(Decimal::ZERO, |(_, e)| *e);
    locked += backing_required(market.slash_multiplier, market.collateral_window, exposure);
    Ok(locked)
}

/// Moves `amount` from bonded back to available, unless it secures something (see [`collateral_locked`]).
pub async fn unstake(conn: &mut PgConnection, state: &AppState, prover: AccountId, amount: Money, now: DateTime<Utc>) -> ApiResult<(i64, Balances)> {
    let bonded = store::contracts::lock_bonded(conn, &[prover.0]).await?;
    let bonded = bonded.first().map_or(Decimal::ZERO, |(_, b)| *b);
    let locked = collateral_locked(conn, state, prover, now).await?;
    let free = (bonded - locked).max(Decimal::ZERO);
    if amount.as_decimal() > free {
        let free = Money::round_stored(free).unwrap_or(Money::ZERO);
        return Err(ApiError::new(
            ErrorCode::StakeLocked,
            format!(
                "only {free} of your bonded stake is free; the rest secures your slots in the next {} h, the jobs you hold \
                 and your active offers",
                state.settings.market.collateral_window.num_hours()
            ),
        )
        .with_hint("cancel offers you no longer want to sell, or wait for your slots to settle"));
    }
    let entry = JournalEntry::internal(
        EntryKind::Unstake,
        prover,
        AccountKind::Bonded,
        AccountKind::Available,
        amount,
        format!("unstake:{prover}"),
    )
    .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()))?;
    let posted = store::ledger::post(conn, &entry).await.map_err(|e| post_error(e, "unstake"))?;
    Ok((posted.entry_id, store::ledger::balances(conn, prover).await?))
}
