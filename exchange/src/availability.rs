//! Whether the database answers, as this replica last saw it, so that a database outage (a
//! restart, a failover) is answered at once with 503 `unavailable` and `Retry-After` instead of
//! every request waiting out the pool's acquire timeout first.
//!
//! A watcher probes the database every [`PROBE_EVERY`] (one `SELECT 1`, bounded by
//! [`PROBE_TIMEOUT`]). While the last probe failed, requests that need the database are refused
//! before they take a connection ([`refuse_while_down`]), and those already in flight when the
//! probe finds it down (waiting for a connection the pool keeps failing to open) are answered
//! 503 then, not when the pool's acquire timeout ends; routes served from memory (the market
//! page's files, the oracle's latest prices, feeds, signer and stream, the discounts, the API document, metrics)
//! keep answering, and `/health` says since when and why. When a probe succeeds again, requests
//! pass again: pcx recovers by itself, without a restart. A request cut off by the outage rolled
//! back whole (one transaction), so a client's retry with its `Idempotency-Key` is safe.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// How often the database is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long a probe may take before the database counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// What a refused request is told to wait before retrying, in seconds.
pub const RETRY_AFTER_SECS: u32 = 2;

/// The database as the last probe found it.
#[derive(Debug)]
pub struct Availability {
    down: tokio::sync::watch::Sender<Option<Down>>,
}

impl Default for Availability {
    fn default() -> Availability {
        Availability { down: tokio::sync::watch::channel(None).0 }
    }
}

/// Since when the database has not answered, and what the probe got.
#[derive(Debug, Clone)]
pub struct Down {
    /// The first failed probe of this outage.
    pub since: DateTime<Utc>,
    /// What failed (the driver's words, without credentials).
    pub reason: String,
}

impl Availability {
    /// `Some` while the database does not answer.
    pub fn down(&self) -> Option<Down> {
        self.down.borrow().clone()
    }

    /// Resolves when the database is found down (at once if it is now).
    pub async fn went_down(&self) -> Down {
        let mut watching = self.down.subscribe();
        loop {
            if let Some(down) = watching.borrow_and_update().clone() {
                return down;
            }
            // The sender lives as long as `self`: `changed` only fails once nothing can change.
            if watching.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn record(&self, outcome: Result<(), String>) {
        self.down.send_if_modified(|down| match (outcome, down.is_some()) {
            (Ok(()), true) => {
                tracing::info!("the database answers again");
                *down = None;
                true
            }
            (Err(reason), false) => {
                tracing::error!(%reason, "the database does not answer: requests that need it get 503 until it does");
                *down = Some(Down { since: Utc::now(), reason });
                true
            }
            _ => false,
        });
    }

    /// The refusal for a request while the database is down.
    pub fn refusal(down: &Down) -> ApiError {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the database is unavailable since {}; retry shortly", down.since.format("%Y-%m-%dT%H:%M:%SZ")),
        )
        .with_retry_after(RETRY_AFTER_SECS)
    }
}

/// Probes the database of `pool` every [`PROBE_EVERY`] until `shutdown`, recording what it finds
/// in `availability`. The probe has a connection of its own, outside the pool: the pool would
/// keep retrying to connect until its acquire timeout, while a refused connection here counts at
/// once.
pub async fn watch(pool: PgPool, availability: std::sync::Arc<Availability>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    use sqlx::Connection;
    let options = pool.connect_options();
    let mut interval = tokio::time::interval(PROBE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe: Option<sqlx::PgConnection> = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut conn = match probe.take() {
                Some(conn) => conn,
                None => sqlx::PgConnection::connect_with(&options).await?,
            };
            conn.ping().await?;
            Ok::<_, sqlx::Error>(conn)
        })
        .await;
        availability.record(match answered {
            Ok(Ok(conn)) => {
                probe = Some(conn);
                Ok(())
            }
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        });
    }
    if let Some(conn) = probe {
        let _ = conn.close().await;
    }
}

/// Routes that answer from memory, and so keep answering while the database is down.
fn served_from_memory(route: &str, method: &Method) -> bool {
    method == Method::GET
        && (route.starts_with("/docs")
            || matches!(
            route,
            "/" | "/assets/{name}"
                | "/health"
                | "/metrics"
                | "/openapi.json"
                | "/v1/discounts"
                | "/v1/oracle/prices/latest"
                | "/v1/oracle/feeds"
                | "/v1/oracle/signer"
                | "/v1/oracle/stream"
            ))
}

/// Middleware: while the database is down, a request that needs it is answered 503 at once; one
/// in flight when the database goes down is answered 503 then (its work is dropped: an open
/// transaction rolls back, and what already committed is found again by the client's retry
/// with its `Idempotency-Key`).
pub async fn refuse_while_down(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let Some(route) = route.filter(|route| !served_from_memory(route, request.method())) else {
        return next.run(request).await;
    };
    if let Some(down) = state.availability.down() {
        return Availability::refusal(&down).into_response();
    }
    tokio::select! {
        response = next.run(request) => response,
        down = state.availability.went_down() => {
            tracing::info!(%route, "the database went down while this request was in flight: answered 503");
            Availability::refusal(&down).into_response()
        }
    }
}
