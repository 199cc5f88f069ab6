//! Stored responses of POSTs made with an `Idempotency-Key`.

use sqlx::PgConnection;

/// A stored response.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// SHA-256 of the request it answered.
    pub request_hash: Vec<u8>,
    /// Its HTTP status.
    pub status_code: u16,
    /// Its JSON body.
    pub body: serde_json::Value,
}

/// The stored response for `(principal, key)`, if any.
pub async fn find(conn: &mut PgConnection, principal: &str, key: &str) -> Result<Option<StoredResponse>, sqlx::Error> {
    let row: Option<(Vec<u8>, i16, serde_json::Value)> = sqlx::query_as(
        "SELECT request_hash, status_code, response FROM idempotency_keys WHERE principal = $1 AND key = $2",
    )
    .bind(principal)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(request_hash, status, body)| StoredResponse {
        request_hash,
        status_code: u16::try_from(status).unwrap_or(200),
        body,
    }))
}

/// Stores a response. Fails with a unique violation when a concurrent request with the same key
/// committed first; the caller then rolls back and answers with the stored response.
pub async fn store(
    conn: &mut PgConnection,
    principal: &str,
    key: &str,
    response: &StoredResponse,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(principal)
    .bind(key)
    .bind(&response.request_hash)
    .bind(i16::try_from(response.status_code).unwrap_or(200))
    .bind(&response.body)
    .execute(conn)
    .await?;
    Ok(())
}
