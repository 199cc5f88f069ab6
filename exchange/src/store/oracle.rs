//! The oracle's inputs from the market, and its rounds.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// An active ask as a price source.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AskRow {
    /// Offer.
    pub id: i64,
    /// Prover.
    pub prover_id: Uuid,
    /// Circuit.
    pub circuit: String,
    /// Size.
    pub size_log2: i16,
    /// Deadline.
    pub deadline_secs: i32,
    /// Price.
    pub price_per_proof: Decimal,
    /// Posted.
    pub created_at: DateTime<Utc>,
    /// Window end.
    pub window_end: DateTime<Utc>,
}

/// Asks whose window is open at `now`.
pub async fn open_asks(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Vec<AskRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, prover_id, circuit, size_log2, deadline_secs, price_per_proof, created_at, window_end
           FROM offers WHERE status = 'active' AND window_start <= $1 AND window_end > $1",
    )
    .bind(now)
    .fetch_all(conn)
    .await
}

/// A contract bought recently, as an executed price.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExecutedRow {
    /// Contract.
    pub id: Uuid,
    /// The primary prover of its first block.
    pub prover_id: Uuid,
    /// Circuit.
    pub circuit: String,
    /// Size.
    pub size_log2: i16,
    /// Deadline.
    pub deadline_secs: i32,
    /// Average locked price.
    pub price_per_proof: Decimal,
    /// Bought.
    pub created_at: DateTime<Utc>,
    /// Term end.
    pub ends_at: DateTime<Utc>,
}

/// Contracts bought since `since`.
pub async fn executed_since(conn: &mut PgConnection, since: DateTime<Utc>) -> Result<Vec<ExecutedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.id, b.primary_prover_id AS prover_id, c.circuit, c.size_log2, c.deadline_secs, c.price_per_proof,
                c.created_at, c.ends_at
           FROM contracts c JOIN contract_blocks b ON b.contract_id = c.id AND b.block_no = 0
          WHERE c.created_at >= $1",
    )
    .bind(since)
    .fetch_all(conn)
    .await
}

/// Delivered and missed slots since `since`, per circuit, size and deadline.
pub async fn outcomes_since(
    conn: &mut PgConnection,
    since: DateTime<Utc>,
) -> Result<Vec<(String, i16, i32, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.circuit, c.size_log2, c.deadline_secs,
                count(*) FILTER (WHERE s.state = 'delivered'), count(*) FILTER (WHERE s.state = 'missed')
           FROM slots s JOIN contracts c ON c.id = s.contract_id
          WHERE s.settled_at >= $1 AND s.state IN ('delivered', 'missed')
          GROUP BY c.circuit, c.size_log2, c.deadline_secs",
    )
    .bind(since)
    .fetch_all(conn)
    .await
}

/// A stored round.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RoundRow {
    /// Feed.
    pub feed_id: String,
    /// Round.
    pub round_id: i64,
    /// Price.
    pub price: Option<Decimal>,
    /// Confidence.
    pub conf: Option<Decimal>,
    /// q50.
    pub q50: Option<Decimal>,
    /// q80.
    pub q80: Option<Decimal>,
    /// q95.
    pub q95: Option<Decimal>,
    /// q99.
    pub q99: Option<Decimal>,
    /// Status as signed.
    pub status: String,
    /// Distinct sources.
    pub n_sources: i32,
    /// Published.
    pub published_at: DateTime<Utc>,
    /// Valid until.
    pub valid_until: DateTime<Utc>,
    /// Methodology version.
    pub methodology_version: i32,
    /// EIP-712 typed data.
    pub typed_data: serde_json::Value,
    /// Signature.
    pub signature: String,
    /// Sources with weights and exclusions.
    pub sources: serde_json::Value,
    /// Forward curve.
    pub curve: serde_json::Value,
}

const ROUND: &str = "feed_id, round_id, price, conf, q50, q80, q95, q99, status, n_sources, published_at, valid_until, \
                     methodology_version, typed_data, signature, sources, curve";

/// Stores a round.
pub async fn insert_round(conn: &mut PgConnection, r: &RoundRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO oracle_rounds ({ROUND}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    ))
    .bind(&r.feed_id)
    .bind(r.round_id)
    .bind(r.price)
    .bind(r.conf)
    .bind(r.q50)
    .bind(r.q80)
    .bind(r.q95)
    .bind(r.q99)
    .bind(&r.status)
    .bind(r.n_sources)
    .bind(r.published_at)
    .bind(r.valid_until)
    .bind(r.methodology_version)
    .bind(&r.typed_data)
    .bind(&r.signature)
    .bind(&r.sources)
    .bind(&r.curve)
    .execute(conn)
    .await?;
    Ok(())
}

/// The latest round of every feed.
pub async fn latest_rounds(conn: &mut PgConnection) -> Result<Vec<RoundRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT DISTINCT ON (feed_id) {ROUND} FROM oracle_rounds ORDER BY feed_id, round_id DESC"
    ))
    .fetch_all(conn)
    .await
}

/// Rounds of a feed published in `[from, to]`, oldest first, at most `limit`.
pub async fn history(
    conn: &mut PgConnection,
    feed: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RoundRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ROUND} FROM oracle_rounds WHERE feed_id = $1 AND published_at >= $2 AND published_at <= $3
          ORDER BY round_id LIMIT $4"
    ))
    .bind(feed)
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The round of a feed in force at `at`: the last one published at or before it.
pub async fn round_at(conn: &mut PgConnection, feed: &str, at: DateTime<Utc>) -> Result<Option<RoundRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {ROUND} FROM oracle_rounds WHERE feed_id = $1 AND published_at <= $2 ORDER BY round_id DESC LIMIT 1"
    ))
    .bind(feed)
    .bind(at)
    .fetch_optional(conn)
    .await
}

/// Halted feeds.
pub async fn halts(conn: &mut PgConnection) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT feed_id, reason FROM oracle_halts").fetch_all(conn).await
}

/// Halts or resumes a feed.
pub async fn set_halt(conn: &mut PgConnection, feed: &str, reason: Option<&str>) -> Result<(), sqlx::Error> {
    match reason {
        Some(reason) => {
            sqlx::query("INSERT INTO oracle_halts (feed_id, reason) VALUES ($1, $2) ON CONFLICT (feed_id) DO UPDATE SET reason = $2")
                .bind(feed)
                .bind(reason)
                .execute(conn)
                .await?;
        }
        None => {
            sqlx::query("DELETE FROM oracle_halts WHERE feed_id = $1").bind(feed).execute(conn).await?;
        }
    }
    Ok(())
}
