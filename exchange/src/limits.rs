//! Bounds on what one client can hold: how long a request may take, by kind of route. (The
//! connection-level bounds, headers and idle keep-alive, are in [`crate::ServerLimits`].)
//!
//! | route | bound |
//! |---|---|
//! | ordinary routes | `PCX_REQUEST_TIMEOUT_SECS` (30 s), then 408 `request_timeout` |
//! | `POST /v1/agent/jobs/claim` (long-poll, waits ≤ 30 s) | 30 s + the ordinary bound; at most `PCX_MAX_CLAIM_WAITERS` (256) waiting at once |
//! | `POST /v1/circuits` (upload and checks) | `PCX_UPLOAD_TIMEOUT_SECS` (900 s) |
//! | `GET /v1/oracle/stream` (SSE) | none per request; at most `PCX_MAX_SSE_SUBSCRIBERS` (1000) at once |
//!
//! A request cut off is dropped: its transaction, if any, rolls back, so nothing half-written
//! stays; an `Idempotency-Key` retry is then safe.
//!
//! The long-lived requests are counted ([`Caps`]): each holds a permit for as long as it streams
//! or waits, and one past the cap is refused at once with 503 and `Retry-After`, rather than
//! queued, since a queued subscriber or claim would hold its connection all the same.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Settings;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::AppState;

/// The longest an agent's claim may wait for a job.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(30);

/// When a refused subscriber should try again, in seconds: subscribers come and go slowly.
const SUBSCRIBER_RETRY_SECS: u32 = 5;
/// When a refused waiting claim should try again, in seconds: a waiting claim ends within 30 s,
/// most much sooner (a job turns up, the agent stops).
const CLAIM_RETRY_SECS: u32 = 2;

/// The counted long-lived requests: SSE subscribers and waiting claims, one permit each.
#[derive(Debug)]
pub struct Caps {
    subscribers: Arc<Semaphore>,
    max_subscribers: usize,
    claim_waiters: Arc<Semaphore>,
    max_claim_waiters: usize,
}

impl Caps {
    /// The caps of `settings` (`PCX_MAX_SSE_SUBSCRIBERS`, `PCX_MAX_CLAIM_WAITERS`).
    pub fn new(settings: &Settings) -> Caps {
        // Semaphore::new panics above MAX_PERMITS (usize::MAX >> 3): no real cap is near it.
        let max_subscribers = settings.max_sse_subscribers.min(Semaphore::MAX_PERMITS);
        let max_claim_waiters = settings.max_claim_waiters.min(Semaphore::MAX_PERMITS);
        Caps {
            subscribers: Arc::new(Semaphore::new(max_subscribers)),
            max_subscribers,
            claim_waiters: Arc::new(Semaphore::new(max_claim_waiters)),
            max_claim_waiters,
        }
    }

    /// SSE subscribers connected now.
    pub fn subscribers(&self) -> usize {
        self.max_subscribers.saturating_sub(self.subscribers.available_permits())
    }

    /// Claims waiting for a job now.
    pub fn waiting_claims(&self) -> usize {
        self.max_claim_waiters.saturating_sub(self.claim_waiters.available_permits())
    }

    /// A subscriber's permit, held for as long as its stream lives; 503 `too_many_subscribers`
    /// when the cap is reached.
    pub fn subscriber(&self) -> ApiResult<OwnedSemaphorePermit> {
        Arc::clone(&self.subscribers).try_acquire_owned().map_err(|_| {
            ApiError::new(
                ErrorCode::TooManySubscribers,
                format!(
                    "the oracle stream already has {} subscribers, the most it serves at once (PCX_MAX_SSE_SUBSCRIBERS); \
                     retry after {SUBSCRIBER_RETRY_SECS} s, or poll GET /v1/oracle/prices/latest meanwhile",
                    self.max_subscribers
                ),
            )
            .with_retry_after(SUBSCRIBER_RETRY_SECS)
        })
    }

    /// A waiting claim's permit, held until it answers; 503 `too_many_waiting_claims` when the cap
    /// is reached.
    pub fn claim_waiter(&self) -> ApiResult<OwnedSemaphorePermit> {
        Arc::clone(&self.claim_waiters).try_acquire_owned().map_err(|_| {
            ApiError::new(
                ErrorCode::TooManyWaitingClaims,
                format!(
                    "{} claims are already waiting for jobs, the most the exchange holds at once (PCX_MAX_CLAIM_WAITERS); \
                     retry after {CLAIM_RETRY_SECS} s",
                    self.max_claim_waiters
                ),
            )
            .with_retry_after(CLAIM_RETRY_SECS)
        })
    }
}

/// Middleware: answers 408 `request_timeout` when a request outlives its route's bound.
pub async fn request_deadline(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let settings = &state.settings;
    let (limit, setting) = match (route.as_deref(), request.method()) {
        (Some("/v1/oracle/stream"), _) => return next.run(request).await,
        (Some("/v1/agent/jobs/claim"), _) => (settings.request_timeout + MAX_CLAIM_WAIT, "PCX_REQUEST_TIMEOUT_SECS + 30"),
        (Some("/v1/circuits"), &Method::POST) => (settings.upload_timeout, "PCX_UPLOAD_TIMEOUT_SECS"),
        _ => (settings.request_timeout, "PCX_REQUEST_TIMEOUT_SECS"),
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("the request was not done within {} s ({setting}); nothing of it was kept", limit.as_secs()),
        )
        .into_response(),
    }
}
