//! The oracle's public routes: feeds, latest prices, the forward curve, history, sources, the
//! signer, and the SSE stream; plus the operator's halt.

use std::convert::Infallible;
use std::time::Duration as StdDuration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use pcx_domain::ProofClass;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery};
use crate::service::oracle::{round_view, RoundView, StreamEvent};
use crate::store;
use crate::AppState;

/// A feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedView {
    /// Id, `groth16-bn254:hash-chain:<size_log2>:<deadline_secs>`.
    pub feed_id: String,
    /// The class priced: the deadline is the bucket (proof verified within that many seconds).
    pub proof_class: ProofClass,
    /// Latest round id, if any.
    pub latest_round_id: Option<i64>,
    /// Latest status.
    pub status: Option<pcx_oracle::round::FeedStatus>,
    /// Latest price.
    #[schema(value_type = Option<String>)]
    pub price: Option<rust_decimal::Decimal>,
    /// Latest confidence (half the weighted inter-quartile range).
    #[schema(value_type = Option<String>)]
    pub conf: Option<rust_decimal::Decimal>,
    /// Latest quantiles `{"50", "80", "95", "99"}`, as `prices/latest` shows them.
    #[schema(value_type = Option<Object>)]
    pub quantiles: Value,
    /// When the latest round was published.
    pub published_at: Option<DateTime<Utc>>,
    /// Until when the latest round may be used.
    pub valid_until: Option<DateTime<Utc>>,
    /// Distinct sources of the latest round.
    pub n_sources: Option<i32>,
}

/// Every feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedsResponse {
    /// Feeds.
    pub feeds: Vec<FeedView>,
}

/// Lists the feeds with their latest round's values (one request for a whole price board; the
/// signed typed data is at `prices/latest`).
#[utoipa::path(get, path = "/v1/oracle/feeds", tag = "oracle", responses((status = 200, body = FeedsResponse)))]
pub async fn feeds(State(state): State<AppState>) -> Json<FeedsResponse> {
    let now = Utc::now();
    let feeds = state
        .oracle
        .feeds()
        .iter()
        .map(|f| {
            let latest = state.oracle.latest(&f.feed_id);
            let view = latest.as_ref().map(|p| round_view(&p.row, now));
            FeedView {
                feed_id: f.feed_id.clone(),
                proof_class: f.proof_class.clone(),
                latest_round_id: view.as_ref().map(|v| v.round_id),
                status: view.as_ref().map(|v| v.status),
                price: view.as_ref().and_then(|v| v.price),
                conf: view.as_ref().and_then(|v| v.conf),
                published_at: view.as_ref().map(|v| v.published_at),
                valid_until: view.as_ref().map(|v| v.valid_until),
                n_sources: view.as_ref().map(|v| v.n_sources),
                quantiles: view.map(|v| v.quantiles).unwrap_or(Value::Null),
            }
        })
        .collect();
    Json(FeedsResponse { feeds })
}

/// Which feed.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedQuery {
    /// Feed id from `GET /v1/oracle/feeds`.
    #[param(example = "groth16-bn254:hash-chain:12:600")]
    pub feed: String,
}

fn unknown_feed(feed: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no feed `{feed}`; see GET /v1/oracle/feeds"))
}

fn no_round(feed: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("feed `{feed}` has published no round yet; retry in a few seconds"))
}

/// The latest signed round of a feed. No account needed.
#[utoipa::path(get, path = "/v1/oracle/prices/latest", tag = "oracle", params(FeedQuery),
    responses((status = 200, body = RoundView), (status = 404, body = ErrorEnvelope)))]
pub async fn latest(State(state): State<AppState>, ApiQuery(q): ApiQuery<FeedQuery>) -> ApiResult<Response> {
    let published = state.oracle.latest(&q.feed).ok_or_else(|| {
        if state.oracle.feed(&q.feed).is_some() { no_round(&q.feed) } else { unknown_feed(&q.feed) }
    })?;
    let now = Utc::now();
    if now <= published.row.valid_until {
        // The hot path: the body was serialised once, when the round was published.
        return Ok(([(header::CONTENT_TYPE, "application/json")], published.body.clone()).into_response());
    }
    Ok(Json(round_view(&published.row, now)).into_response())
}

/// The forward curve of a feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurveResponse {
    /// Feed.
    pub feed_id: String,
    /// Round it was computed with.
    pub round_id: i64,
    /// When.
    pub published_at: DateTime<Utc>,
    /// Points by tenor: spot, 1w, 1m, 3m, 1y.
    #[schema(value_type = Vec<Object>)]
    pub points: Value,
}

/// The forward curve (price per proof by tenor, after the published term discount).
#[utoipa::path(get, path = "/v1/oracle/curve", tag = "oracle", params(FeedQuery),
    responses((status = 200, body = CurveResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn curve(State(state): State<AppState>, ApiQuery(q): ApiQuery<FeedQuery>) -> ApiResult<Json<CurveResponse>> {
    let published = state.oracle.latest(&q.feed).ok_or_else(|| {
        if state.oracle.feed(&q.feed).is_some() { no_round(&q.feed) } else { unknown_feed(&q.feed) }
    })?;
    Ok(Json(CurveResponse {
        feed_id: published.row.feed_id.clone(),
        round_id: published.row.round_id,
        published_at: published.row.published_at,
        points: published.row.curve.clone(),
    }))
}

/// A history query: rounds between two times, or the round in force at one time.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Feed id from `GET /v1/oracle/feeds`.
    #[param(example = "groth16-bn254:hash-chain:12:600")]
    pub feed: String,
    /// From (RFC 3339; default 24 h before `to`).
    pub from: Option<DateTime<Utc>>,
    /// To (RFC 3339; default now).
    pub to: Option<DateTime<Utc>>,
    /// Instead of a range: the round in force at this time.
    pub at: Option<DateTime<Utc>>,
    /// At most this many rounds (1..=1000, default 500).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Rounds of a feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryResponse {
    /// Feed.
    pub feed_id: String,
    /// Rounds, oldest first.
    pub rounds: Vec<RoundView>,
}

/// History of a feed: the rounds published between `from` and `to`, or the round in force `at` a time.
#[utoipa::path(get, path = "/v1/oracle/history", tag = "oracle", params(HistoryQuery),
    responses((status = 200, body = HistoryResponse), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn history(State(state): State<AppState>, ApiQuery(q): ApiQuery<HistoryQuery>) -> ApiResult<Json<HistoryResponse>> {
    if state.oracle.feed(&q.feed).is_none() {
        return Err(unknown_feed(&q.feed));
    }
    let accepted = pcx_domain::schedule::accepted_times();
    if [q.from, q.to, q.at].iter().flatten().any(|t| !accepted.contains(t)) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "from, to and at must be between 2000-01-01 and 2200-01-01 (UTC)"));
    }
    let now = Utc::now();
    // A public read: from the read replica when one is set (DATABASE_READ_URL).
    let mut conn = state.read_db.acquire().await?;
    let rows = if let Some(at) = q.at {
        store::oracle::round_at(&mut conn, &q.feed, at).await?.into_iter().collect()
    } else {
        let to = q.to.unwrap_or(now);
        let from = q.from.unwrap_or(to - chrono::Duration::hours(24));
        if from > to {
            return Err(ApiError::new(ErrorCode::InvalidQuery, "from must not be after to"));
        }
        let limit = q.limit.unwrap_or(500);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::new(ErrorCode::InvalidQuery, "limit: must be between 1 and 1000"));
        }
        store::oracle::history(&mut conn, &q.feed, from, to, i64::from(limit)).await?
    };
    Ok(Json(HistoryResponse { feed_id: q.feed, rounds: rows.iter().map(|r| round_view(r, now)).collect() }))
}

/// What went into a feed's latest round.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourcesResponse {
    /// Feed.
    pub feed_id: String,
    /// Round.
    pub round_id: i64,
    /// Quotes with weights and exclusions (`stale`, `insane`, `outlier`), external providers with
    /// their status and why they were excluded, delivery outcomes and the reliability used.
    #[schema(value_type = Object)]
    pub sources: Value,
}

/// The sources of a feed's latest round, with weights and exclusions.
#[utoipa::path(get, path = "/v1/oracle/sources", tag = "oracle", params(FeedQuery),
    responses((status = 200, body = SourcesResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn sources(State(state): State<AppState>, ApiQuery(q): ApiQuery<FeedQuery>) -> ApiResult<Json<SourcesResponse>> {
    let published = state.oracle.latest(&q.feed).ok_or_else(|| {
        if state.oracle.feed(&q.feed).is_some() { no_round(&q.feed) } else { unknown_feed(&q.feed) }
    })?;
    Ok(Json(SourcesResponse {
        feed_id: published.row.feed_id.clone(),
        round_id: published.row.round_id,
        sources: published.row.sources.clone(),
    }))
}

/// The oracle's signing identity.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignerResponse {
    /// Address that signs every round.
    pub address: String,
    /// EIP-712 domain of the rounds.
    #[schema(value_type = Object)]
    pub domain: Value,
    /// Primary type of the typed data.
    pub primary_type: String,
    /// Methodology version (docs/ORACLE.md).
    pub methodology_version: u16,
}

/// The oracle's address and EIP-712 domain.
#[utoipa::path(get, path = "/v1/oracle/signer", tag = "oracle", responses((status = 200, body = SignerResponse)))]
pub async fn signer(State(state): State<AppState>) -> Json<SignerResponse> {
    Json(SignerResponse {
        address: state.oracle.signer.address().to_checksum(None),
        domain: state.oracle.signer.domain_json(),
        primary_type: "PriceRound".into(),
        methodology_version: pcx_oracle::METHODOLOGY_VERSION,
    })
}

/// Server-sent events: `round` (a new round, as `prices/latest` shows it), `status` (a feed's status
/// changed) and `heartbeat` (every 15 s). Up to `PCX_MAX_SSE_SUBSCRIBERS` subscribers at once (then
/// 503 `too_many_subscribers` with `Retry-After`); a slow one skips what it missed.
#[utoipa::path(get, path = "/v1/oracle/stream", tag = "oracle",
    responses((status = 200, content_type = "text/event-stream", body = StreamEvent,
               description = "A stream of server-sent events; each message's `event:` field is `event` and its `data:` field the JSON of `data`"),
              (status = 503, body = ErrorEnvelope, description = "too_many_subscribers (with Retry-After)")))]
pub async fn stream(
    State(state): State<AppState>,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>> {
    // The permit travels with the stream: it is given back when the client goes away and the
    // server drops the stream.
    let permit = state.caps.subscriber()?;
    let receiver = state.oracle.subscribe();
    let events = futures_util::stream::unfold((receiver, permit), |(mut receiver, permit)| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => {
                    let sse = Event::default().event(event.kind).data(event.data.as_str());
                    return Some((Ok(sse), (receiver, permit)));
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(skipped, "a slow SSE subscriber skipped events");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(StdDuration::from_secs(15))))
}

/// A halt or resume.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HaltRequest {
    /// Feed id.
    pub feed_id: String,
    /// True to halt, false to resume.
    pub halted: bool,
    /// Why (shown in the feed's sources).
    pub reason: Option<String>,
}

/// Halted state of a feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct HaltResponse {
    /// Feed id.
    pub feed_id: String,
    /// Whether it is halted; its next round says so.
    pub halted: bool,
}

/// Halts or resumes a feed (operator only): a halted feed publishes `halted` rounds without a price.
#[utoipa::path(post, path = "/v1/admin/oracle/halt", tag = "admin", security(("bearer" = [])), request_body = HaltRequest,
    responses((status = 200, body = HaltResponse), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn halt(State(state): State<AppState>, caller: Caller, ApiJson(req): ApiJson<HaltRequest>) -> ApiResult<Json<HaltResponse>> {
    caller.require_admin()?;
    if state.oracle.feed(&req.feed_id).is_none() {
        return Err(unknown_feed(&req.feed_id));
    }
    let mut conn = state.db.acquire().await?;
    let reason = req.halted.then(|| req.reason.clone().unwrap_or_else(|| "halted by the operator".into()));
    store::oracle::set_halt(&mut conn, &req.feed_id, reason.as_deref()).await?;
    Ok(Json(HaltResponse { feed_id: req.feed_id, halted: req.halted }))
}
