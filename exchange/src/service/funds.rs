//! Deposits and withdrawals: each is one journal entry, posted in the caller's transaction.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, JournalEntry, Money};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::{self, ledger::PostError};

/// A completed movement.
#[derive(Debug, Clone)]
pub struct Movement {
    /// Id of the movement (what the journal entry references).
    pub id: Uuid,
    /// Journal entry id.
    pub entry_id: i64,
    /// The reference stored with the entry.
    pub reference: String,
    /// The account's balances afterwards.
    pub balances: store::ledger::Balances,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// The API error for a failed posting of a `what` (deposit, stake, ...).
pub(crate) fn post_error(err: PostError, what: &str) -> ApiError {
    match err {
        PostError::InsufficientFunds => ApiError::new(
            ErrorCode::InsufficientFunds,
            format!("the balance does not cover this {what}; check GET /v1/accounts/me/balances"),
        ),
        PostError::UnknownAccount => ApiError::new(ErrorCode::NotFound, "no such account"),
        PostError::Db(err) => err.into(),
    }
}

/// Credits `amount` from outside to `account`'s available balance (operator only).
pub async fn deposit(
    conn: &mut PgConnection,
    account: AccountId,
    amount: Money,
    external_reference: Option<&str>,
) -> ApiResult<Movement> {
    if store::accounts::by_id(conn, account).await?.is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, format!("account_id: no account {account}")));
    }
    let id = Uuid::new_v4();
    let reference = match external_reference {
        Some(external) => format!("deposit:{id}:{external}"),
        None => format!("deposit:{id}"),
    };
    let entry = JournalEntry::deposit(account, amount, reference.clone())
        .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()))?;
    let posted = store::ledger::post(conn, &entry).await.map_err(|e| post_error(e, "deposit"))?;
    // A buyer who pays in gets its suspended contracts' escrow retried at the next tick.
    store::progress::retry_escrow_now(conn, account).await?;
    let balances = store::ledger::balances(conn, account).await?;
    Ok(Movement { id, entry_id: posted.entry_id, reference, balances, created_at: posted.created_at })
}

/// Pays `amount` out of `account`'s available balance. Refused whole (409) if it does not cover it.
pub async fn withdraw(conn: &mut PgConnection, account: AccountId, amount: Money) -> ApiResult<Movement> {
    let id = Uuid::new_v4();
    let reference = format!("withdrawal:{id}");
    let entry = JournalEntry::withdrawal(account, amount, reference.clone())
        .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()))?;
    let posted = store::ledger::post(conn, &entry).await.map_err(|e| post_error(e, "withdrawal"))?;
    let balances = store::ledger::balances(conn, account).await?;
    Ok(Movement { id, entry_id: posted.entry_id, reference, balances, created_at: posted.created_at })
}
