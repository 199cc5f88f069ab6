//! Prover agents: their heartbeats and what they measured.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::AccountId;
use pcx_settlement::timing::Measured;

/// Records an agent's heartbeat; false when the agent id belongs to another prover.
pub async fn heartbeat(
    conn: &mut PgConnection,
    agent: Uuid,
    prover: AccountId,
    workers: i32,
    backend: &str,
    capabilities: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO agents (id, prover_id, workers, backend, capabilities, started_at, last_seen)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (id) DO UPDATE SET workers = $3, backend = $4, capabilities = $5, last_seen = $6
          WHERE agents.prover_id = $2",
    )
    .bind(agent)
    .bind(prover.0)
    .bind(workers)
    .bind(backend)
    .bind(capabilities)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One capability as stored (the heartbeat's JSON); unknown fields are ignored.
#[derive(Deserialize)]
struct StoredCapability {
    circuit: String,
    size_log2: u8,
    prove_ms: u64,
    /// The whole agent's rate (workers x per worker); 0 when absent, so such an entry adds nothing.
    #[serde(default)]
    proofs_per_hour: u64,
}

fn stored(capabilities: serde_json::Value) -> Vec<StoredCapability> {
    // A heartbeat was validated when it was stored; an entry that no longer parses is left out.
    serde_json::from_value(capabilities).unwrap_or_default()
}

fn measured(capabilities: serde_json::Value) -> Vec<Measured> {
    stored(capabilities)
        .into_iter()
        .map(|c| Measured {
            circuit: c.circuit,
            size_log2: c.size_log2,
            prove: chrono::Duration::milliseconds(i64::try_from(c.prove_ms).unwrap_or(i64::MAX)),
        })
        .collect()
}

/// What the agents seen since `since` measured, per prover (all provers when `provers` is None).
pub async fn measured_since(
    conn: &mut PgConnection,
    provers: Option<&[AccountId]>,
    since: DateTime<Utc>,
) -> Result<HashMap<AccountId, Vec<Measured>>, sqlx::Error> {
    let ids: Option<Vec<Uuid>> = provers.map(|p| p.iter().map(|a| a.0).collect());
    let rows: Vec<(Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT prover_id, capabilities FROM agents WHERE last_seen >= $1 AND ($2::uuid[] IS NULL OR prover_id = ANY($2))",
    )
    .bind(since)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<AccountId, Vec<Measured>> = HashMap::new();
    for (prover, capabilities) in rows {
        out.entry(AccountId(prover)).or_default().extend(measured(capabilities));
    }
    Ok(out)
}

/// What one agent measured (if it belongs to `prover`).
pub async fn measured_by(conn: &mut PgConnection, agent: Uuid, prover: AccountId) -> Result<Vec<Measured>, sqlx::Error> {
    let caps: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT capabilities FROM agents WHERE id = $1 AND prover_id = $2")
            .bind(agent)
            .bind(prover.0)
            .fetch_optional(conn)
            .await?;
    Ok(caps.map(measured).unwrap_or_default())
}

/// Proofs per hour that `prover`'s agents seen since `since` measured for `circuit` at
/// `size_log2`: the sum over those agents of each one's advertised rate (bench x workers).
///
/// The capabilities are read in Rust rather than cast in SQL: the heartbeat only checks that
/// `proofs_per_hour` is a u64, which a `bigint` cast could overflow. An agent listing the class
/// twice counts once (its best rate), as it has one set of workers; the sum saturates.
pub async fn measured_capacity(
    conn: &mut PgConnection,
    prover: AccountId,
    circuit: &str,
    size_log2: u8,
    since: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let rows: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT capabilities FROM agents WHERE prover_id = $1 AND last_seen >= $2")
            .bind(prover.0)
            .bind(since)
            .fetch_all(conn)
            .await?;
    let total = rows
        .into_iter()
        .map(|caps| {
            stored(caps)
                .into_iter()
                .filter(|c| c.circuit == circuit && c.size_log2 == size_log2)
                .map(|c| c.proofs_per_hour)
                .max()
                .unwrap_or(0)
        })
        .fold(0u64, u64::saturating_add);
    Ok(i64::try_from(total).unwrap_or(i64::MAX))
}
