//! Accounts and authentication: registration, API-key tokens, wallet login.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use pcx_domain::{AccountId, AccountRole, Role};

use crate::auth::Principal;
use crate::error::{ApiResult, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery};
use crate::service::accounts::{self, IssuedToken};
use crate::validate;
use crate::AppState;

/// Registration of a buyer or prover.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Display name, 1 to 100 printable characters (trimmed).
    #[schema(example = "rollup-a", max_length = 100, pattern = "^[^\\x00-\\x20\\x7f-\\x9f]([^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x20\\x7f-\\x9f])?$")]
    pub name: String,
    /// `buyer` or `prover`.
    pub role: AccountRole,
}

/// A new account and its first API key. The key is shown only here; keep it. More keys, their
/// listing, revocation and rotation: `/v1/accounts/me/api_keys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    /// The account id.
    pub account_id: AccountId,
    /// Display name.
    pub name: String,
    /// Its role.
    pub role: AccountRole,
    /// The API key, exchanged for tokens at `POST /v1/auth/token`. Stored hashed: it cannot be shown again.
    pub api_key: String,
    /// The key's id, as `GET /v1/accounts/me/api_keys` lists it.
    pub key_id: Uuid,
}

/// Registers an account. Not idempotent on purpose: the response carries a secret that the
/// exchange never stores, so a retry creates a new account rather than replaying the key.
#[utoipa::path(post, path = "/v1/accounts", tag = "auth", operation_id = "register_account", request_body = RegisterRequest,
    responses((status = 201, body = RegisterResponse), (status = 422, body = ErrorEnvelope)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<RegisterResponse>)> {
    let name = validate::display_name(&req.name)?;
    let (account, key) = accounts::register(&state, &name, req.role).await?;
    Ok((
        StatusCode::CREATED,
        Json(RegisterResponse {
            account_id: account.id,
            name: account.name,
            role: account.role,
            api_key: key.api_key,
            key_id: key.row.id,
        }),
    ))
}

/// Token request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A live API key of an account, or the operator's (`PCX_ADMIN_API_KEY`).
    pub api_key: String,
}

/// An access token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT (HS256) with `sub`, `role`, `exp` and, when minted from an account's API key, `key_id`
    /// (revoking that key ends the token at once); send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Expiry (RFC 3339).
    pub expires_at: DateTime<Utc>,
    /// The role granted.
    pub role: Role,
    /// The account, absent for the operator.
    pub account_id: Option<AccountId>,
}

impl From<IssuedToken> for TokenResponse {
    fn from(issued: IssuedToken) -> Self {
        Self {
            token: issued.token,
            token_type: "Bearer".into(),
            expires_at: issued.expires_at,
            role: issued.caller.role,
            account_id: match issued.caller.principal {
                Principal::Account(id) => Some(id),
                Principal::Admin => None,
            },
        }
    }
}

/// Exchanges an API key for an access token, and records the key's `last_used_at`. An unknown and
/// a revoked key both get 401 `invalid_api_key`. A token minted from an account's key stops working
/// as soon as that key is revoked (it names the key; every request checks it is live); other tokens
/// (wallet logins, the operator's) last until they expire (`PCX_TOKEN_TTL_SECS`).
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = ErrorEnvelope)))]
pub async fn token(State(state): State<AppState>, ApiJson(req): ApiJson<TokenRequest>) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(accounts::token_for_api_key(&state, &req.api_key).await?.into()))
}

/// Wallet-login challenge request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NonceQuery {
    /// The wallet's address, `0x` and 40 hex digits.
    #[param(pattern = "^0x[0-9a-fA-F]{40}$", example = "0x52908400098527886E0F7030069857D2E4169EE7")]
    pub address: String,
    /// Role of the account created on the wallet's first login (default `buyer`).
    pub role: Option<AccountRole>,
}

/// A wallet-login challenge.
#[derive(Debug, Serialize, ToSchema)]
pub struct NonceResponse {
    /// Single-use nonce.
    pub nonce: String,
    /// The exact EIP-4361 text to sign with `personal_sign`.
    pub message: String,
    /// The nonce is refused after this time.
    pub expires_at: DateTime<Utc>,
}

/// Issues a single-use nonce and the EIP-4361 message to sign.
#[utoipa::path(get, path = "/v1/auth/nonce", tag = "auth", params(NonceQuery),
    responses((status = 200, body = NonceResponse), (status = 422, body = ErrorEnvelope)))]
pub async fn nonce(State(state): State<AppState>, ApiQuery(q): ApiQuery<NonceQuery>) -> ApiResult<Json<NonceResponse>> {
    let challenge = accounts::wallet_challenge(&state, &q.address, q.role.unwrap_or(AccountRole::Buyer)).await?;
    Ok(Json(NonceResponse { nonce: challenge.nonce, message: challenge.message, expires_at: challenge.expires_at }))
}

/// Wallet login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WalletLoginRequest {
    /// The message from `GET /v1/auth/nonce`, unchanged.
    pub message: String,
    /// `personal_sign` signature of the message, 65 bytes as 0x hex.
    pub signature: String,
}

/// Token for a wallet login.
#[derive(Debug, Serialize, ToSchema)]
pub struct WalletLoginResponse {
    /// The access token and its details.
    #[serde(flatten)]
    pub token: TokenResponse,
    /// The wallet address (lowercase).
    pub address: String,
}

/// Logs in with an Ethereum wallet: verifies the signature of the issued message and consumes its nonce.
#[utoipa::path(post, path = "/v1/auth/wallet", tag = "auth", request_body = WalletLoginRequest,
    responses((status = 200, body = WalletLoginResponse), (status = 401, body = ErrorEnvelope)))]
pub async fn wallet(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<WalletLoginRequest>,
) -> ApiResult<Json<WalletLoginResponse>> {
    let (token, address) = accounts::wallet_login(&state, &req.message, &req.signature).await?;
    Ok(Json(WalletLoginResponse { token: token.into(), address }))
}
