//! Request extractors that answer every rejection with the error envelope (never axum's plain
//! text), and the bearer-token extractor that every private route uses.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::header::AUTHORIZATION;
use serde::de::DeserializeOwned;

use crate::auth::{Caller, Principal, TokenError};
use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// A JSON body. Malformed JSON is a 400, wrong types/unknown or missing fields a 422, a missing
/// content type a 415, each with the envelope and serde's explanation of what is wrong.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::new(ErrorCode::InvalidBody, detail),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {detail}"),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as JSON with the header `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(_) if rejection.status().as_u16() == 413 => {
            ApiError::new(ErrorCode::PayloadTooLarge, "the body is too large")
        }
        _ => ApiError::new(ErrorCode::MalformedJson, detail),
    }
}

/// Query parameters; a bad one is a 422 envelope naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r: QueryRejection| ApiError::new(ErrorCode::InvalidQuery, r.body_text()))
    }
}

/// Path parameters; a bad one is a 422 envelope naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r: PathRejection| ApiError::new(ErrorCode::InvalidPath, r.body_text()))
    }
}

/// The bearer token, verified: signature, expiry, and, for a token minted from an API key, that
/// the key is still live. A revoked key's tokens are refused from the moment it is revoked, on
/// every replica: the check is one primary-key lookup in the shared database (no cache that
/// another replica's revocation would have to invalidate; concurrent requests' lookups are one
/// statement, [`crate::service::api_keys::LiveKeys`]). Tokens without a key (wallet logins,
/// the operator's) are bounded by their lifetime only.
impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = verified_token(parts, state)?;
        if let (Some(key_id), Principal::Account(account)) = (caller.key_id, caller.principal) {
            if !state.live_keys.call((key_id, account)).await.map_err(ApiError::internal)?? {
                return Err(revoked_key());
            }
        }
        Ok(caller)
    }
}

/// The bearer token verified like [`Caller`]'s (signature, expiry), except that its API key's
/// liveness is left to the route's own statement, which checks it where it writes (a
/// withdrawal's, [`crate::service::funds::Withdrawals`]): one round trip fewer on a hot path.
/// A route taking this must pass `key_id` to an effect that refuses a revoked key with
/// [`revoked_key`] before it replays or moves anything.
#[derive(Debug, Clone, Copy)]
pub struct CallerKeyCheckedByEffect(pub Caller);

impl FromRequestParts<AppState> for CallerKeyCheckedByEffect {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        verified_token(parts, state).map(CallerKeyCheckedByEffect)
    }
}

/// The answer to a token whose API key has been revoked.
pub fn revoked_key() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidToken,
        "the API key this token was minted from has been revoked, and its tokens with it; get a new \
         token from POST /v1/auth/token with a live key",
    )
}

/// The caller named by the bearer token, its signature and expiry checked.
fn verified_token(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "this route needs `Authorization: Bearer <token>`; get a token from POST /v1/auth/token",
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "the Authorization header must be `Bearer <token>`"))?;
    state.tokens.verify(token).map_err(|err| match err {
        TokenError::Expired => ApiError::new(ErrorCode::InvalidToken, err.to_string()),
        TokenError::Invalid(_) => ApiError::new(
            ErrorCode::InvalidToken,
            "the token is not valid (bad signature, malformed or tampered); get a new one from POST /v1/auth/token",
        ),
    })
}

/// The optional `Idempotency-Key` header.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

/// Name of the header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else {
            return Ok(IdempotencyKey(None));
        };
        match value.to_str() {
            Ok(key) if !key.trim().is_empty() && key.len() <= 255 => Ok(IdempotencyKey(Some(key.to_owned()))),
            _ => Err(ApiError::new(
                ErrorCode::InvalidIdempotencyKey,
                "Idempotency-Key must be 1 to 255 visible ASCII characters, e.g. a UUID",
            )),
        }
    }
}
