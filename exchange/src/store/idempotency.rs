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

/// The stored responses among `keys` (pairs of principal and key), by pair.
pub async fn find_many(
    conn: &mut PgConnection,
    keys: &[(String, String)],
) -> Result<std::collections::HashMap<(String, String), StoredResponse>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let (principals, keys): (Vec<&str>, Vec<&str>) = keys.iter().map(|(p, k)| (p.as_str(), k.as_str())).unzip();
    let rows: Vec<(String, String, Vec<u8>, i16, serde_json::Value)> = sqlx::query_as(
        "SELECT i.principal, i.key, i.request_hash, i.status_code, i.response
           FROM unnest($1::text[], $2::text[]) AS wanted (principal, key)
           JOIN idempotency_keys i ON i.principal = wanted.principal AND i.key = wanted.key",
    )
    .bind(&principals)
    .bind(&keys)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(principal, key, request_hash, status, body)| {
            ((principal, key), StoredResponse { request_hash, status_code: u16::try_from(status).unwrap_or(200), body })
        })
        .collect())
}

/// Stores several responses in one statement (pairs of principal and key with their response);
/// fails like [`store`] when any key was stored by a concurrent request first.
pub async fn store_many(conn: &mut PgConnection, responses: &[(&str, &str, &StoredResponse)]) -> Result<(), sqlx::Error> {
    if responses.is_empty() {
        return Ok(());
    }
    let principals: Vec<&str> = responses.iter().map(|r| r.0).collect();
    let keys: Vec<&str> = responses.iter().map(|r| r.1).collect();
    let hashes: Vec<&[u8]> = responses.iter().map(|r| r.2.request_hash.as_slice()).collect();
    let statuses: Vec<i16> = responses.iter().map(|r| i16::try_from(r.2.status_code).unwrap_or(200)).collect();
    let bodies: Vec<String> = responses.iter().map(|r| r.2.body.to_string()).collect();
    sqlx::query(
        "INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response)
         SELECT principal, key, request_hash, status_code, response::jsonb
           FROM unnest($1::text[], $2::text[], $3::bytea[], $4::smallint[], $5::text[])
                AS r (principal, key, request_hash, status_code, response)",
    )
    .bind(&principals)
    .bind(&keys)
    .bind(&hashes)
    .bind(&statuses)
    .bind(&bodies)
    .execute(conn)
    .await?;
    Ok(())
}
