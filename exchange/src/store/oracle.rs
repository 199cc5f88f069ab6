//! The oracle's inputs from the market, and its rounds.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_capacity_reservation::offer::OfferStatus;
use pcx_oracle::round::FeedStatus;
use pcx_oracle::sources::{Ask, Executed};

use super::offers::proof_class_from_columns;

/// A priced, classed row: an offer or a contract as a price source.
#[derive(sqlx::FromRow)]
struct RawSource<Id> {
    id: Id,
    prover_id: Uuid,
    system: String,
    circuit: String,
    size_log2: i16,
    deadline_secs: i32,
    price_per_proof: Decimal,
    at: DateTime<Utc>,
    until: DateTime<Utc>,
}

/// An offer as a price source, with what backs it.
#[derive(sqlx::FromRow)]
struct RawAsk {
    #[sqlx(flatten)]
    source: RawSource<i64>,
    proofs_per_hour: i32,
    bonded: Decimal,
}

/// A contract as a price source, with its buyer.
#[derive(sqlx::FromRow)]
struct RawExecuted {
    #[sqlx(flatten)]
    source: RawSource<Uuid>,
    buyer_id: Uuid,
}

impl<Id> RawSource<Id> {
    fn class(&self) -> Result<pcx_domain::ProofClass, sqlx::Error> {
        proof_class_from_columns(&self.system, self.circuit.clone(), self.size_log2, self.deadline_secs)
    }
}

/// Active asks whose window is open at `now`, as price sources.
pub async fn open_asks(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Vec<Ask>, sqlx::Error> {
    let rows: Vec<RawAsk> = sqlx::query_as(
        "SELECT o.id, o.prover_id, o.system, o.circuit, o.size_log2, o.deadline_secs, o.price_per_proof, o.created_at AS at,
                o.window_end AS until, o.proofs_per_hour, coalesce(l.balance, 0) AS bonded
           FROM offers o
           LEFT JOIN ledger_accounts l ON l.owner_id = o.prover_id AND l.kind = $3
          WHERE o.status = $2 AND o.window_start <= $1 AND o.window_end > $1",
    )
    .bind(now)
    .bind(OfferStatus::Active.as_str())
    .bind(pcx_domain::AccountKind::Bonded.as_str())
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|RawAsk { source: r, proofs_per_hour, bonded }| {
            Ok(Ask {
                class: r.class()?,
                id: r.id,
                prover: r.prover_id.to_string(),
                price: r.price_per_proof,
                posted_at: r.at,
                window_end: r.until,
                proofs_per_hour: u32::try_from(proofs_per_hour).unwrap_or(0),
                bonded,
            })
        })
        .collect()
}

/// Contracts bought since `since`, as executed prices (the primary of their first block).
pub async fn executed_since(conn: &mut PgConnection, since: DateTime<Utc>) -> Result<Vec<Executed>, sqlx::Error> {
    let rows: Vec<RawExecuted> = sqlx::query_as(
        "SELECT c.id, b.primary_prover_id AS prover_id, c.system, c.circuit, c.size_log2, c.deadline_secs, c.price_per_proof,
                c.created_at AS at, c.ends_at AS until, c.buyer_id
           FROM contracts c JOIN contract_blocks b ON b.contract_id = c.id AND b.block_no = 0
          WHERE c.created_at >= $1",
    )
    .bind(since)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|RawExecuted { source: r, buyer_id: buyer }| {
            Ok(Executed {
                class: r.class()?,
                id: r.id.to_string(),
                prover: r.prover_id.to_string(),
                buyer: buyer.to_string(),
                price: r.price_per_proof,
                bought_at: r.at,
                ends_at: r.until,
            })
        })
        .collect()
}

/// A stored round.
#[derive(Debug, Clone)]
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
    pub status: FeedStatus,
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

#[derive(sqlx::FromRow)]
struct RawRound {
    feed_id: String,
    round_id: i64,
    price: Option<Decimal>,
    conf: Option<Decimal>,
    q50: Option<Decimal>,
    q80: Option<Decimal>,
    q95: Option<Decimal>,
    q99: Option<Decimal>,
    status: String,
    n_sources: i32,
    published_at: DateTime<Utc>,
    valid_until: DateTime<Utc>,
    methodology_version: i32,
    typed_data: serde_json::Value,
    signature: String,
    sources: serde_json::Value,
    curve: serde_json::Value,
}

impl TryFrom<RawRound> for RoundRow {
    type Error = sqlx::Error;
    fn try_from(r: RawRound) -> Result<Self, Self::Error> {
        Ok(RoundRow {
            status: super::named(FeedStatus::parse, &r.status, "feed status")?,
            feed_id: r.feed_id,
            round_id: r.round_id,
            price: r.price,
            conf: r.conf,
            q50: r.q50,
            q80: r.q80,
            q95: r.q95,
            q99: r.q99,
            n_sources: r.n_sources,
            published_at: r.published_at,
            valid_until: r.valid_until,
            methodology_version: r.methodology_version,
            typed_data: r.typed_data,
            signature: r.signature,
            sources: r.sources,
            curve: r.curve,
        })
    }
}

fn rounds(raws: Vec<RawRound>) -> Result<Vec<RoundRow>, sqlx::Error> {
    raws.into_iter().map(TryInto::try_into).collect()
}

const ROUND: &str = "feed_id, round_id, price, conf, q50, q80, q95, q99, status, n_sources, published_at, valid_until, \
                     methodology_version, typed_data, signature, sources, curve";

/// The channel on which every stored round is announced (payload: `<feed_id> <round_id>`),
/// delivered to every replica's listener when the storing transaction commits.
pub const ROUNDS_CHANNEL: &str = "pcx_oracle_rounds";

/// Stores a round and announces it on [`ROUNDS_CHANNEL`] (at commit, if in a transaction).
pub async fn insert_round(conn: &mut PgConnection, r: &RoundRow) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(ROUNDS_CHANNEL)
        .bind(format!("{} {}", r.feed_id, r.round_id))
        .execute(&mut *conn)
        .await?;
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
    .bind(r.status.as_str())
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
    rounds(
        sqlx::query_as(&format!("SELECT DISTINCT ON (feed_id) {ROUND} FROM oracle_rounds ORDER BY feed_id, round_id DESC"))
            .fetch_all(conn)
            .await?,
    )
}

/// The latest round id of each of `feeds` that has a round (one primary-key probe per feed).
pub async fn latest_round_ids(conn: &mut PgConnection, feeds: &[String]) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT f.feed_id, r.round_id
           FROM unnest($1::text[]) AS f(feed_id)
           CROSS JOIN LATERAL (SELECT round_id FROM oracle_rounds o WHERE o.feed_id = f.feed_id
                                ORDER BY round_id DESC LIMIT 1) r",
    )
    .bind(feeds)
    .fetch_all(conn)
    .await
}

/// One round.
pub async fn round(conn: &mut PgConnection, feed: &str, round_id: i64) -> Result<Option<RoundRow>, sqlx::Error> {
    let raw: Option<RawRound> = sqlx::query_as(&format!("SELECT {ROUND} FROM oracle_rounds WHERE feed_id = $1 AND round_id = $2"))
        .bind(feed)
        .bind(round_id)
        .fetch_optional(conn)
        .await?;
    raw.map(TryInto::try_into).transpose()
}

/// Rounds of a feed published in `[from, to]`, oldest first, at most `limit`.
pub async fn history(
    conn: &mut PgConnection,
    feed: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<RoundRow>, sqlx::Error> {
    rounds(
        sqlx::query_as(&format!(
            "SELECT {ROUND} FROM oracle_rounds WHERE feed_id = $1 AND published_at >= $2 AND published_at <= $3
              ORDER BY round_id LIMIT $4"
        ))
        .bind(feed)
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(conn)
        .await?,
    )
}

/// The round of a feed in force at `at`: the last one published at or before it.
pub async fn round_at(conn: &mut PgConnection, feed: &str, at: DateTime<Utc>) -> Result<Option<RoundRow>, sqlx::Error> {
    let raw: Option<RawRound> = sqlx::query_as(&format!(
        "SELECT {ROUND} FROM oracle_rounds WHERE feed_id = $1 AND published_at <= $2 ORDER BY round_id DESC LIMIT 1"
    ))
    .bind(feed)
    .bind(at)
    .fetch_optional(conn)
    .await?;
    raw.map(TryInto::try_into).transpose()
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
