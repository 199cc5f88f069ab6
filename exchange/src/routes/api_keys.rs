//! The caller's API keys: list, create, revoke, rotate. For any buyer or prover account, wallet
//! accounts included; the operator has no account, so no keys here (403).
//!
//! Revocation is immediate: a revoked key mints no more tokens (401 `invalid_api_key`) and every
//! token it minted is refused from the next request on (401 `invalid_token`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{ApiPath, ApiQuery};
use crate::service::api_keys::{self, NewApiKey, MAX_LIVE_KEYS};
use crate::store::api_keys::ApiKeyRow;
use crate::AppState;

/// One of the caller's API keys as listed: never the key, never its hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// The key's id (path parameter of revoke and rotate).
    pub key_id: Uuid,
    /// The key's first 12 characters (`pcx_` and 8 hex digits), to recognise it by; `null` for a
    /// key made before keys were listed (only its hash was ever stored).
    #[schema(example = "pcx_3f9a0c1e")]
    pub prefix: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last minted a token (`POST /v1/auth/token`); `null` if never.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; `null` while it is live.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for ApiKeyView {
    fn from(row: ApiKeyRow) -> Self {
        Self {
            key_id: row.id,
            prefix: row.prefix,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// The caller's API keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeysResponse {
    /// Every key, live and revoked, oldest first.
    pub api_keys: Vec<ApiKeyView>,
    /// How many keys are live.
    pub live: u64,
    /// The most live keys an account may hold.
    pub max_live: u64,
}

/// Lists the caller's API keys: prefix and times only.
#[utoipa::path(get, path = "/v1/accounts/me/api_keys", tag = "auth", operation_id = "list_api_keys", security(("bearer" = [])),
    responses((status = 200, body = ApiKeysResponse), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ApiKeysResponse>> {
    let account = caller.account()?;
    let keys = api_keys::list(&state, account).await?;
    let live = keys.iter().filter(|k| k.is_live()).count() as u64;
    Ok(Json(ApiKeysResponse { api_keys: keys.into_iter().map(Into::into).collect(), live, max_live: MAX_LIVE_KEYS }))
}

/// A new API key, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKeyResponse {
    /// The key's id.
    pub key_id: Uuid,
    /// The key, exchanged for tokens at `POST /v1/auth/token`. Stored hashed: it cannot be shown again.
    pub api_key: String,
    /// Its first 12 characters, as the listing shows them.
    pub prefix: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl From<NewApiKey> for NewApiKeyResponse {
    fn from(key: NewApiKey) -> Self {
        Self {
            key_id: key.row.id,
            prefix: key.row.prefix.unwrap_or_default(),
            api_key: key.api_key,
            created_at: key.row.created_at,
        }
    }
}

/// Creates an API key for the caller's account (at most 20 live per account: 409
/// `too_many_api_keys`). Not idempotent on purpose: the answer carries a secret the exchange never
/// stores, so a retry makes another key rather than replaying this one.
#[utoipa::path(post, path = "/v1/accounts/me/api_keys", tag = "auth", operation_id = "create_api_key", security(("bearer" = [])),
    responses((status = 201, body = NewApiKeyResponse), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create(State(state): State<AppState>, caller: Caller) -> ApiResult<(StatusCode, Json<NewApiKeyResponse>)> {
    let account = caller.account()?;
    let key = api_keys::create(&state, account).await?;
    Ok((StatusCode::CREATED, Json(key.into())))
}

/// Options of a revocation.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevokeQuery {
    /// Revoke even the last live key of an account without a wallet, locking it out: no token can
    /// be had for it any more (default `false`: 409 `last_api_key`).
    pub force: Option<bool>,
}

/// A revoked key.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeResponse {
    /// The key, with its revocation time.
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The account's live keys left.
    pub live_keys_left: u64,
    /// True when the token of this request was minted from this key: it is refused from now on.
    pub this_token_revoked: bool,
}

/// Revokes one of the caller's API keys, at once: it mints no more tokens, and the tokens it minted
/// are refused from the next request on. Idempotent (a revoked key keeps its first revocation time).
/// Another account's key is 404, like a key that does not exist. The last live key of an account
/// without a wallet takes `?force=true` (else 409 `last_api_key`): without a key nobody can sign in
/// to such an account again.
#[utoipa::path(delete, path = "/v1/accounts/me/api_keys/{key_id}", tag = "auth", security(("bearer" = [])),
    params(("key_id" = Uuid, Path, description = "The key's id"), RevokeQuery),
    responses((status = 200, body = RevokeResponse), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(key_id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<RevokeQuery>,
) -> ApiResult<Json<RevokeResponse>> {
    let account = caller.account()?;
    let revoked = api_keys::revoke(&state, account, key_id, q.force.unwrap_or(false)).await?;
    Ok(Json(RevokeResponse {
        key: revoked.key.into(),
        live_keys_left: revoked.live_keys_left,
        this_token_revoked: caller.key_id == Some(key_id),
    }))
}

/// A rotated key: the replacement (shown this once) and the key it replaces, now revoked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotateResponse {
    /// The new key.
    #[serde(flatten)]
    pub key: NewApiKeyResponse,
    /// The key rotated away from, revoked.
    pub revoked: ApiKeyView,
    /// True when the token of this request was minted from the revoked key: it is refused from now
    /// on; get a new one with the new key.
    pub this_token_revoked: bool,
}

/// Rotates one of the caller's live API keys: revokes it and makes its replacement in one
/// transaction (both or neither). The old key and its tokens stop working at once. A revoked key
/// is 409 `api_key_revoked`; another account's key is 404. Not idempotent, like key creation.
#[utoipa::path(post, path = "/v1/accounts/me/api_keys/{key_id}/rotate", tag = "auth", security(("bearer" = [])),
    params(("key_id" = Uuid, Path, description = "The key's id")),
    responses((status = 201, body = RotateResponse), (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(key_id): ApiPath<Uuid>,
) -> ApiResult<(StatusCode, Json<RotateResponse>)> {
    let account = caller.account()?;
    let rotated = api_keys::rotate(&state, account, key_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(RotateResponse {
            key: rotated.new.into(),
            revoked: rotated.revoked.into(),
            this_token_revoked: caller.key_id == Some(key_id),
        }),
    ))
}
