//! Prover stake: bonding and releasing it under the rolling collateral rule.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;

use pcx_domain::{AccountId, AccountKind, EntryKind, JournalEntry, Money};

use crate::config::MarketSettings;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::service::funds::post_error;
use crate::store::{self, ledger::Balances};

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

/// Stake that secures the prover's primary slots in `[now, now + collateral window)`.
pub async fn collateral_locked(
    conn: &mut PgConnection,
    prover: AccountId,
    market: &MarketSettings,
    now: DateTime<Utc>,
) -> Result<Decimal, sqlx::Error> {
    let required = store::contracts::collateral_required(
        conn,
        &[prover.0],
        now,
        now + market.collateral_window,
        market.slash_multiplier,
    )
    .await?;
    Ok(required.first().map_or(Decimal::ZERO, |(_, r)| *r))
}

/// Moves `amount` from bonded back to available, unless it secures slots within the collateral window.
pub async fn unstake(
    conn: &mut PgConnection,
    prover: AccountId,
    amount: Money,
    market: &MarketSettings,
    now: DateTime<Utc>,
) -> ApiResult<(i64, Balances)> {
    let bonded = store::contracts::lock_bonded(conn, &[prover.0]).await?;
    let bonded = bonded.first().map_or(Decimal::ZERO, |(_, b)| *b);
    let locked = collateral_locked(conn, prover, market, now).await?;
    let free = (bonded - locked).max(Decimal::ZERO);
    if amount.as_decimal() > free {
        let free = Money::round_stored(free).unwrap_or(Money::ZERO);
        return Err(ApiError::new(
            ErrorCode::StakeLocked,
            format!(
                "only {free} of your bonded stake is free; the rest secures your primary slots in the next {} h",
                market.collateral_window.num_hours()
            ),
        ));
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
