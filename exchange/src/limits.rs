//! Bounds on what one client can hold: how long a request may take, by kind of route. (The
//! connection-level bounds, headers and idle keep-alive, are in [`crate::ServerLimits`].)
//!
//! | route | bound |
//! |---|---|
//! | ordinary routes | `PCX_REQUEST_TIMEOUT_SECS` (30 s), then 408 `request_timeout` |
//! | `POST /v1/agent/jobs/claim` (long-poll, waits ≤ 30 s) | 30 s + the ordinary bound |
//! | `POST /v1/circuits` (upload and checks) | `PCX_UPLOAD_TIMEOUT_SECS` (900 s) |
//! | `GET /v1/oracle/stream` (SSE) | none per request; bounded by the subscriber cap |
//!
//! A request cut off is dropped: its transaction, if any, rolls back, so nothing half-written
//! stays; an `Idempotency-Key` retry is then safe.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// The longest an agent's claim may wait for a job.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(30);

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
