//! Wallet-login nonces: stored with the exact message handed out, consumed once.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use pcx_domain::AccountRole;

/// Stores a fresh nonce.
pub async fn insert(
    conn: &mut PgConnection,
    nonce: &str,
    address: &str,
    role: AccountRole,
    message: &str,
    expires_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO wallet_nonces (nonce, address, role, message, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(nonce)
        .bind(address)
        .bind(role.as_str())
        .bind(message)
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// A nonce as stored.
#[derive(Debug, Clone)]
pub struct NonceRow {
    /// Lowercase address it was issued to.
    pub address: String,
    /// Role of the account created on first login.
    pub role: AccountRole,
    /// The exact message handed out.
    pub message: String,
    /// When it stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// When it was used, if it was.
    pub used_at: Option<DateTime<Utc>>,
}

/// Locks and returns the nonce (`FOR UPDATE`: two logins racing with one nonce serialise here).
pub async fn lock(conn: &mut PgConnection, nonce: &str) -> Result<Option<NonceRow>, sqlx::Error> {
    type Raw = (String, String, String, DateTime<Utc>, Option<DateTime<Utc>>);
    let row: Option<Raw> = sqlx::query_as(
        "SELECT address, role, message, expires_at, used_at FROM wallet_nonces WHERE nonce = $1 FOR UPDATE",
    )
    .bind(nonce)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(address, role, message, expires_at, used_at)| NonceRow {
        address,
        role: AccountRole::parse(&role).unwrap_or(AccountRole::Buyer),
        message,
        expires_at,
        used_at,
    }))
}

/// Marks the nonce used.
pub async fn mark_used(conn: &mut PgConnection, nonce: &str, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE wallet_nonces SET used_at = $2 WHERE nonce = $1")
        .bind(nonce)
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes nonces that expired more than a day ago (housekeeping).
pub async fn purge_expired(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM wallet_nonces WHERE expires_at < $1 - interval '1 day'")
        .bind(now)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
