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
}

fn measured(capabilities: serde_json::Value) -> Vec<Measured> {
    // A heartbeat was validated when it was stored; an entry that no longer parses is left out.
    let list: Vec<StoredCapability> = serde_json::from_value(capabilities).unwrap_or_default();
    list.into_iter()
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
