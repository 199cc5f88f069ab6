//! Operations: health and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::background::LoopHealth;
use crate::error::{ApiError, ErrorCode, ErrorEnvelope};
use crate::AppState;

/// Health of the exchange.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
    /// `ok` when the database answered.
    pub database: String,
    /// The background loops running here (settlement scheduler, oracle) and their last tick.
    pub background: Vec<LoopHealth>,
    /// Whether this replica holds the worker lease and so runs the background work (see
    /// docs/DEPLOY.md); absent when it does not compete for it (`PCX_ROLE=api`).
    pub holds_worker_lease: Option<bool>,
    /// Version of the running pcx.
    pub version: String,
}

/// Health: 200 when the database answers and every background loop completed a tick within
/// `PCX_HEALTH_STALL_SECS`; otherwise 503 saying which part is not well.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, body = HealthResponse), (status = 503, body = ErrorEnvelope)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<HealthResponse>, ApiError> {
    if let Some(down) = state.availability.down() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            // The driver's reason is in the log (it may name hosts); the answer says since when.
            format!("the database does not answer since {}", down.since.format("%Y-%m-%dT%H:%M:%SZ")),
        )
        .with_retry_after(crate::availability::RETRY_AFTER_SECS));
    }
    let ping = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db),
    )
    .await;
    match ping {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::warn!(%err, "health check: database error");
            return Err(ApiError::new(ErrorCode::Unavailable, "the database does not answer")
                .with_retry_after(crate::availability::RETRY_AFTER_SECS));
        }
        Err(_) => {
            return Err(ApiError::new(ErrorCode::Unavailable, "the database does not answer within 3 s")
                .with_retry_after(crate::availability::RETRY_AFTER_SECS))
        }
    }
    let bound = state.settings.settlement.health_stall;
    let background = state.background.health(bound);
    let stalled: Vec<String> = background
        .iter()
        .filter(|l| l.stalled)
        .map(|l| format!("{} completed its last tick {} ms ago", l.name, l.last_tick_age_ms))
        .collect();
    if !stalled.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("stalled past {} s: {}", bound.as_secs(), stalled.join("; ")),
        ));
    }
    Ok(Json(HealthResponse {
        status: "ok".into(),
        database: "ok".into(),
        background,
        holds_worker_lease: state.background.holds_worker_lease(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// Prometheus metrics (text exposition format): request counts and latencies, and this
/// replica's view of the database and the worker lease.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    let gauge = |text: &mut String, name: &str, help: &str, value: bool| {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}\n", u8::from(value)));
    };
    gauge(&mut text, "pcx_database_up", "1 while the database answers this replica's probe.", state.availability.down().is_none());
    if let Some(held) = state.background.holds_worker_lease() {
        gauge(&mut text, "pcx_worker_lease_held", "1 while this replica holds the worker lease (exactly one should).", held);
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
