//! The one error type of the HTTP API and its table of stable codes.
//!
//! Every failure a client sees is `{"error": {"code": "snake_case", "message": "..."}}`. The code
//! is stable (clients branch on it); the message says what to fix. Internal failures are logged
//! with an incident id and answered with that id only: no SQL, paths or stack traces leak.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// Stable error codes. The table: code, HTTP status, meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the body is not JSON at all.
    MalformedJson,
    /// 415: a JSON body without `Content-Type: application/json`.
    UnsupportedMediaType,
    /// 413: body too large.
    PayloadTooLarge,
    /// 408: the request took longer than its route's bound (a slow client or body).
    RequestTimeout,
    /// 429: too many requests from this address or account to this route; see `Retry-After`.
    RateLimited,
    /// 422: the JSON has wrong types, unknown or missing fields, unknown enum values.
    InvalidBody,
    /// 422: a query string parameter is invalid.
    InvalidQuery,
    /// 422: a path parameter is invalid.
    InvalidPath,
    /// 422: an amount is not a positive decimal string with at most 6 decimals.
    InvalidAmount,
    /// 422: a field has a value the exchange does not accept.
    InvalidInput,
    /// 422: an `Idempotency-Key` was reused with a different request.
    IdempotencyKeyReused,
    /// 422: an `Idempotency-Key` header that is empty or too long.
    InvalidIdempotencyKey,
    /// 401: no bearer token.
    Unauthenticated,
    /// 401: the bearer token is forged, malformed or expired, or the API key it was minted from is revoked.
    InvalidToken,
    /// 401: the API key is unknown or revoked (one answer for both).
    InvalidApiKey,
    /// 401: the wallet signature does not verify, or the nonce is unknown, used or expired.
    InvalidSignature,
    /// 403: the token's role may not use this route, or the resource is someone else's.
    Forbidden,
    /// 404: no such resource.
    NotFound,
    /// 404: no such route.
    RouteNotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the balance does not cover the movement.
    InsufficientFunds,
    /// 409: a conflicting concurrent change; retry.
    Conflict,
    /// 409: the account already holds the most live API keys it may (20).
    TooManyApiKeys,
    /// 409: revoking the last live API key of an account without a wallet needs `?force=true`.
    LastApiKey,
    /// 409: the API key is already revoked (it cannot be rotated).
    ApiKeyRevoked,
    /// 409: the prover already has the most active offers it may (`PCX_MAX_OFFERS_PER_PROVER`).
    TooManyOffers,
    /// 409: the account already has the most webhook endpoints it may (20).
    TooManyWebhooks,
    /// 422: a webhook URL that may not receive events (scheme, credentials, the exchange itself,
    /// a private network).
    InvalidWebhookUrl,
    /// 422: webhook event types that are unknown, repeated, or not the account's role's.
    InvalidWebhookEvents,
    /// 422: the quote's allocation ran past `PCX_QUOTE_BUDGET_MS`; a narrower request may succeed.
    QuoteTooComplex,
    /// 422: the proof class is not in the circuit registry or is malformed.
    InvalidProofClass,
    /// 422: an offer window is empty or longer than 5 years.
    InvalidWindow,
    /// 422: an offer window has already ended.
    WindowInPast,
    /// 422: a schedule ends before it starts.
    InvalidSchedule,
    /// 422: a cadence below `PCX_MIN_CADENCE_SECS`.
    CadenceTooShort,
    /// 422: a term longer than 5 years.
    TermTooLong,
    /// 422: a schedule starting in the past.
    StartInPast,
    /// 422: volume tiers out of order.
    InvalidTiers,
    /// 422: an offer sells more than the prover's live agents measured for its class.
    ExceedsMeasuredCapacity,
    /// 409: the bonded stake does not back the offer.
    InsufficientStake,
    /// 409: the stake secures slots in the collateral window.
    StakeLocked,
    /// 409: the book has not enough capacity for the schedule.
    InsufficientCapacity,
    /// 409: capacity quoted is no longer free.
    CapacityGone,
    /// 409: the quote is past `valid_until`.
    QuoteExpired,
    /// 409: the quote was already accepted.
    QuoteAlreadyAccepted,
    /// 409: the job is no longer the caller's (lease expired, slot settled).
    LeaseLost,
    /// 409: the slot is already open; inputs must come before it opens.
    SlotAlreadyOpen,
    /// 409: the slot has no proof (not delivered).
    SlotNotDelivered,
    /// 422: a circuit's artifacts are broken or do not belong together (`artifact` names which).
    CircuitInvalid,
    /// 422: the circuit cannot prove this slot input (a failing constraint or assert).
    InputUnprovable,
    /// 503: the database does not answer.
    Unavailable,
    /// 503: concurrent changes kept getting in each other's way (a deadlock or serialisation
    /// failure, retried by the exchange and still there); nothing was written, retry shortly.
    Contention,
    /// 503: the oracle stream serves `PCX_MAX_SSE_SUBSCRIBERS` subscribers already; retry after
    /// `Retry-After`.
    TooManySubscribers,
    /// 503: `PCX_MAX_CLAIM_WAITERS` claims are waiting for jobs already; retry after `Retry-After`.
    TooManyWaitingClaims,
    /// 500: an internal failure, logged with an incident id.
    Internal,
}

impl ErrorCode {
    /// Every code, for the documentation table and its test.
    pub const ALL: [ErrorCode; 55] = [
        ErrorCode::MalformedJson,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::RateLimited,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidAmount,
        ErrorCode::InvalidInput,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::Unauthenticated,
        ErrorCode::InvalidToken,
        ErrorCode::InvalidApiKey,
        ErrorCode::InvalidSignature,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::InsufficientFunds,
        ErrorCode::Conflict,
        ErrorCode::TooManyApiKeys,
        ErrorCode::LastApiKey,
        ErrorCode::ApiKeyRevoked,
        ErrorCode::TooManyOffers,
        ErrorCode::TooManyWebhooks,
        ErrorCode::InvalidWebhookUrl,
        ErrorCode::InvalidWebhookEvents,
        ErrorCode::QuoteTooComplex,
        ErrorCode::InvalidProofClass,
        ErrorCode::InvalidWindow,
        ErrorCode::WindowInPast,
        ErrorCode::InvalidSchedule,
        ErrorCode::CadenceTooShort,
        ErrorCode::TermTooLong,
        ErrorCode::StartInPast,
        ErrorCode::InvalidTiers,
        ErrorCode::ExceedsMeasuredCapacity,
        ErrorCode::InsufficientStake,
        ErrorCode::StakeLocked,
        ErrorCode::InsufficientCapacity,
        ErrorCode::CapacityGone,
        ErrorCode::QuoteExpired,
        ErrorCode::QuoteAlreadyAccepted,
        ErrorCode::LeaseLost,
        ErrorCode::SlotAlreadyOpen,
        ErrorCode::SlotNotDelivered,
        ErrorCode::CircuitInvalid,
        ErrorCode::InputUnprovable,
        ErrorCode::Unavailable,
        ErrorCode::Contention,
        ErrorCode::TooManySubscribers,
        ErrorCode::TooManyWaitingClaims,
        ErrorCode::Internal,
    ];

    /// The stable snake_case code and its HTTP status.
    pub fn parts(self) -> (&'static str, StatusCode) {
        use ErrorCode::*;
        match self {
            MalformedJson => ("malformed_json", StatusCode::BAD_REQUEST),
            UnsupportedMediaType => ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
            PayloadTooLarge => ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            RequestTimeout => ("request_timeout", StatusCode::REQUEST_TIMEOUT),
            RateLimited => ("rate_limited", StatusCode::TOO_MANY_REQUESTS),
            InvalidBody => ("invalid_body", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidQuery => ("invalid_query", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidPath => ("invalid_path", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidAmount => ("invalid_amount", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidInput => ("invalid_input", StatusCode::UNPROCESSABLE_ENTITY),
            IdempotencyKeyReused => ("idempotency_key_reused", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidIdempotencyKey => ("invalid_idempotency_key", StatusCode::UNPROCESSABLE_ENTITY),
            Unauthenticated => ("unauthenticated", StatusCode::UNAUTHORIZED),
            InvalidToken => ("invalid_token", StatusCode::UNAUTHORIZED),
            InvalidApiKey => ("invalid_api_key", StatusCode::UNAUTHORIZED),
            InvalidSignature => ("invalid_signature", StatusCode::UNAUTHORIZED),
            Forbidden => ("forbidden", StatusCode::FORBIDDEN),
            NotFound => ("not_found", StatusCode::NOT_FOUND),
            RouteNotFound => ("route_not_found", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
            InsufficientFunds => ("insufficient_funds", StatusCode::CONFLICT),
            Conflict => ("conflict", StatusCode::CONFLICT),
            TooManyApiKeys => ("too_many_api_keys", StatusCode::CONFLICT),
            LastApiKey => ("last_api_key", StatusCode::CONFLICT),
            ApiKeyRevoked => ("api_key_revoked", StatusCode::CONFLICT),
            TooManyOffers => ("too_many_offers", StatusCode::CONFLICT),
            TooManyWebhooks => ("too_many_webhooks", StatusCode::CONFLICT),
            InvalidWebhookUrl => ("invalid_webhook_url", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidWebhookEvents => ("invalid_webhook_events", StatusCode::UNPROCESSABLE_ENTITY),
            QuoteTooComplex => ("quote_too_complex", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidProofClass => ("invalid_proof_class", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidWindow => ("invalid_window", StatusCode::UNPROCESSABLE_ENTITY),
            WindowInPast => ("window_in_past", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidSchedule => ("invalid_schedule", StatusCode::UNPROCESSABLE_ENTITY),
            CadenceTooShort => ("cadence_too_short", StatusCode::UNPROCESSABLE_ENTITY),
            TermTooLong => ("term_too_long", StatusCode::UNPROCESSABLE_ENTITY),
            StartInPast => ("start_in_past", StatusCode::UNPROCESSABLE_ENTITY),
            InvalidTiers => ("invalid_tiers", StatusCode::UNPROCESSABLE_ENTITY),
            ExceedsMeasuredCapacity => ("exceeds_measured_capacity", StatusCode::UNPROCESSABLE_ENTITY),
            InsufficientStake => ("insufficient_stake", StatusCode::CONFLICT),
            StakeLocked => ("stake_locked", StatusCode::CONFLICT),
            InsufficientCapacity => ("insufficient_capacity", StatusCode::CONFLICT),
            CapacityGone => ("capacity_gone", StatusCode::CONFLICT),
            QuoteExpired => ("quote_expired", StatusCode::CONFLICT),
            QuoteAlreadyAccepted => ("quote_already_accepted", StatusCode::CONFLICT),
            LeaseLost => ("lease_lost", StatusCode::CONFLICT),
            SlotAlreadyOpen => ("slot_already_open", StatusCode::CONFLICT),
            SlotNotDelivered => ("slot_not_delivered", StatusCode::CONFLICT),
            CircuitInvalid => ("circuit_invalid", StatusCode::UNPROCESSABLE_ENTITY),
            InputUnprovable => ("input_unprovable", StatusCode::UNPROCESSABLE_ENTITY),
            Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
            Contention => ("contention", StatusCode::SERVICE_UNAVAILABLE),
            TooManySubscribers => ("too_many_subscribers", StatusCode::SERVICE_UNAVAILABLE),
            TooManyWaitingClaims => ("too_many_waiting_claims", StatusCode::SERVICE_UNAVAILABLE),
            Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// The stable code.
    pub fn as_str(self) -> &'static str {
        self.parts().0
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        self.parts().1
    }
}

/// An API failure: a code from the table and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Stable code.
    pub code: ErrorCode,
    /// What went wrong and what to fix.
    pub message: String,
    /// What to do next, for conflicts that a retry of the same request cannot fix.
    pub hint: Option<String>,
    /// Which uploaded file is at fault (`circuit_invalid`).
    pub artifact: Option<&'static str>,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after_secs: Option<u32>,
}

/// The error envelope as it is serialised.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// In the API description, an error code is one of the table's names (so clients generated from
/// the spec get an enum, and a schema checker refuses a code that is not in the table).
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("Stable snake_case error code (the table in exchange/src/error.rs)."))
            .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

/// Body of the error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code from the code table, e.g. `insufficient_funds`.
    #[schema(value_type = ErrorCode, example = "insufficient_funds")]
    pub code: String,
    /// Human-readable explanation saying what to fix.
    pub message: String,
    /// What to do next (present on some conflicts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// `circuit_invalid`: which file (`r1cs`, `wasm`, `zkey`, `sample_input`, or `name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

impl ApiError {
    /// An error with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), hint: None, artifact: None, retry_after_secs: None }
    }

    /// Says when to retry (`Retry-After`).
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Names the uploaded file at fault.
    pub fn with_artifact(mut self, artifact: &'static str) -> Self {
        self.artifact = Some(artifact);
        self
    }

    /// Adds a hint: what to do next.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// An internal failure: logs the cause with an incident id and hides it from the caller.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let incident = uuid::Uuid::new_v4();
        tracing::error!(%incident, %cause, "internal error");
        Self::new(
            ErrorCode::Internal,
            format!("internal error; the operator can find it in the logs as incident {incident}"),
        )
    }

    /// 503 + `Retry-After` while the database does not answer.
    pub fn database_unavailable() -> Self {
        Self::new(ErrorCode::Unavailable, "the database is unavailable; retry shortly")
            .with_retry_after(crate::availability::RETRY_AFTER_SECS)
    }

    /// 403 for a token whose role may not use a route.
    pub fn wrong_role(route_is_for: &str, role: pcx_domain::Role) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("this route is for {route_is_for}; your token's role is {role}"),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.code.as_str().to_owned(),
                message: self.message,
                hint: self.hint,
                artifact: self.artifact.map(str::to_owned),
            },
        };
        let mut response = (self.code.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}

/// Whether `err` says the database is restarting, failing over or unreachable (SQLSTATE
/// 57P01..57P03, class 08, or no connection to be had): not a fault of the request.
pub fn database_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
            db.code().as_deref().is_some_and(|c| matches!(c, "57P01" | "57P02" | "57P03") || c.starts_with("08"))
        }
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            // Deadlock or serialisation failure: nothing was written; the same request may be retried.
            sqlx::Error::Database(ref db) if matches!(db.code().as_deref(), Some("40P01" | "40001")) => {
                tracing::debug!(error = %err, "transaction aborted by a concurrent one");
                ApiError::new(ErrorCode::Contention, "a concurrent change got in the way; retry the request")
            }
            // numeric_value_out_of_range: an amount or a balance beyond NUMERIC(20, 6).
            sqlx::Error::Database(ref db) if db.code().as_deref() == Some("22003") => ApiError::new(
                ErrorCode::InvalidAmount,
                "the amount, or the balance it would make, exceeds the largest the ledger holds (99999999999999.999999)",
            ),
            // A restart, a failover or no connection: not a fault of the request.
            ref down if database_unavailable(down) => {
                tracing::warn!(error = %err, "the database is unavailable (restarting, failing over or unreachable)");
                ApiError::database_unavailable()
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<pcx_domain::MoneyError> for ApiError {
    fn from(err: pcx_domain::MoneyError) -> Self {
        ApiError::new(ErrorCode::InvalidAmount, err.to_string())
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case_and_client_errors_are_4xx() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let (name, status) = code.parts();
            assert!(seen.insert(name), "duplicate code {name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            let server_side = matches!(
                code,
                ErrorCode::Internal
                    | ErrorCode::Unavailable
                    | ErrorCode::Contention
                    | ErrorCode::TooManySubscribers
                    | ErrorCode::TooManyWaitingClaims
            );
            if !server_side {
                assert!(status.is_client_error(), "{name} is {status}");
            }
        }
    }
}
