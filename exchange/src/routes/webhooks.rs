//! Webhook endpoints: register, list, read, delete, rotate the signing secret, and the attempts
//! made to deliver to one. Every route is the caller's own (another account's endpoint is 404).
//! Events, their bodies and their signatures: README "Webhooks" and `service::webhooks`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::service::webhooks::{self, WithSecret};
use crate::store::webhooks::{AttemptRow, WebhookRow};
use crate::webhooks::EventType;
use crate::AppState;

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where events are POSTed: an http(s) URL on a public address (not this exchange).
    #[schema(example = "https://rollup.example.org/pcx/events", max_length = 2048)]
    pub url: String,
    /// The event types it receives (those of the caller's role).
    #[schema(value_type = Vec<EventType>, example = json!(["slot.delivered", "slot.missed"]), min_items = 1, max_items = 12)]
    pub events: Vec<String>,
}

/// An endpoint as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// Its id.
    pub webhook_id: Uuid,
    /// Where events go.
    pub url: String,
    /// What it receives.
    pub events: Vec<EventType>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it was disabled: no delivery to it succeeded for a whole retry horizon. `null` while
    /// it receives events. Register it again once it answers.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
}

impl From<WebhookRow> for WebhookView {
    fn from(row: WebhookRow) -> Self {
        let (disabled_at, disabled_reason) = row.disabled.map_or((None, None), |(at, why)| (Some(at), Some(why)));
        Self { webhook_id: row.id, url: row.url, events: row.events, created_at: row.created_at, disabled_at, disabled_reason }
    }
}

/// An endpoint with its signing secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The Standard Webhooks signing secret (`whsec_` + base64): give it to your verifier. Stored
    /// sealed: it cannot be shown again (rotate it to get a new one).
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

impl From<WithSecret> for WebhookWithSecret {
    fn from(made: WithSecret) -> Self {
        Self { secret: made.secret.to_text(), webhook: made.webhook.into() }
    }
}

/// Registers an endpoint for the caller's events; the answer carries its signing secret, once.
/// At most 20 per account (409 `too_many_webhooks`). Not idempotent, like API key creation: the
/// answer holds a secret the exchange does not keep in the clear. A URL that may not receive
/// events is 422 `invalid_webhook_url`; unknown or foreign event types 422 `invalid_webhook_events`.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", operation_id = "register_webhook", security(("bearer" = [])), request_body = NewWebhook,
    responses((status = 201, body = WebhookWithSecret), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<NewWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    let account = caller.account()?;
    let made = webhooks::register(&state, account, caller.role, &req.url, &req.events).await?;
    Ok((StatusCode::CREATED, Json(made.into())))
}

/// The caller's endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhooksResponse {
    /// Oldest first.
    pub webhooks: Vec<WebhookView>,
}

/// Lists the caller's endpoints.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", operation_id = "list_webhooks", security(("bearer" = [])),
    responses((status = 200, body = WebhooksResponse), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<WebhooksResponse>> {
    let account = caller.account()?;
    let rows = webhooks::list(&state, account).await?;
    Ok(Json(WebhooksResponse { webhooks: rows.into_iter().map(Into::into).collect() }))
}

/// One of the caller's endpoints (whether it is disabled, and why).
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}", tag = "webhooks", operation_id = "get_webhook", security(("bearer" = [])),
    params(("webhook_id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 200, body = WebhookView), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn get(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<Uuid>) -> ApiResult<Json<WebhookView>> {
    let account = caller.account()?;
    Ok(Json(webhooks::get(&state, account, id).await?.into()))
}

/// A deleted endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedWebhook {
    /// Its id.
    pub webhook_id: Uuid,
    /// Always true.
    pub deleted: bool,
}

/// Deletes one of the caller's endpoints: nothing more is sent to it, pending deliveries included.
#[utoipa::path(delete, path = "/v1/webhooks/{webhook_id}", tag = "webhooks", operation_id = "delete_webhook", security(("bearer" = [])),
    params(("webhook_id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 200, body = DeletedWebhook), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, ApiPath(id): ApiPath<Uuid>) -> ApiResult<Json<DeletedWebhook>> {
    let account = caller.account()?;
    webhooks::delete(&state, account, id).await?;
    Ok(Json(DeletedWebhook { webhook_id: id, deleted: true }))
}

/// Gives one of the caller's endpoints a new signing secret (shown this once); deliveries from
/// now on are signed with it, and the old one is forgotten.
#[utoipa::path(post, path = "/v1/webhooks/{webhook_id}/rotate_secret", tag = "webhooks", operation_id = "rotate_webhook_secret", security(("bearer" = [])),
    params(("webhook_id" = Uuid, Path, description = "The endpoint's id")),
    responses((status = 201, body = WebhookWithSecret), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<WebhookWithSecret>)> {
    let account = caller.account()?;
    Ok((StatusCode::CREATED, Json(webhooks::rotate_secret(&state, account, id).await?.into())))
}

/// Paging of the attempts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AttemptsQuery {
    /// Attempts before this one (`next_before` of the previous page).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Most attempts to return (1..=500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// The attempt's id (pages go by it).
    pub attempt_id: i64,
    /// The event (`webhook-id` is `msg_` + its 32 hex digits).
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// When the attempt started.
    pub attempted_at: DateTime<Utc>,
    /// The endpoint's HTTP status; `null` when none came (no connection, timeout).
    pub status: Option<u16>,
    /// How long it took, in milliseconds.
    pub latency_ms: i32,
    /// Why it failed; `null` for a success.
    pub error: Option<String>,
    /// The delivery's state now: `pending` (tried again later), `delivered` or `expired`.
    pub delivery_state: String,
}

impl From<AttemptRow> for AttemptView {
    fn from(row: AttemptRow) -> Self {
        Self {
            attempt_id: row.id,
            event_id: row.event_id,
            event_type: row.kind,
            attempted_at: row.attempt.at,
            status: row.attempt.status,
            latency_ms: row.attempt.latency_ms,
            error: row.attempt.error,
            delivery_state: row.delivery_state,
        }
    }
}

/// A page of attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptsResponse {
    /// Newest first.
    pub attempts: Vec<AttemptView>,
    /// `before` of the next page; `null` on the last.
    pub next_before: Option<i64>,
}

/// Every attempt to deliver to one of the caller's endpoints, newest first: status, latency, error.
#[utoipa::path(get, path = "/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks", operation_id = "list_webhook_deliveries", security(("bearer" = [])),
    params(("webhook_id" = Uuid, Path, description = "The endpoint's id"), AttemptsQuery),
    responses((status = 200, body = AttemptsResponse), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<AttemptsQuery>,
) -> ApiResult<Json<AttemptsResponse>> {
    let account = caller.account()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit: must be between 1 and 500"));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "before: must be an attempt id (1 or more)"));
    }
    let rows = webhooks::attempts(&state, account, id, q.before, i64::from(limit) + 1).await?;
    let more = rows.len() > limit as usize;
    let attempts: Vec<AttemptView> = rows.into_iter().take(limit as usize).map(Into::into).collect();
    let next_before = more.then(|| attempts.last().map(|a| a.attempt_id)).flatten();
    Ok(Json(AttemptsResponse { attempts, next_before }))
}
