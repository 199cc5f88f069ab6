//! `Idempotency-Key` for POSTs that create or move things.
//!
//! The effect of a request and its stored response commit in one transaction, so:
//! - the same key and body again returns the stored response (same status, same body), and the
//!   effect happens once, also when the two requests race;
//! - the same key with another body is a 422 (`idempotency_key_reused`);
//! - a request that failed stored nothing, so it can be retried with the same key.
//!
//! Keys are scoped to the caller (account or admin): two callers may use the same key.

use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::{self, idempotency::StoredResponse};
use crate::AppState;

/// A JSON response with its status, as stored and replayed.
pub type JsonReply = (StatusCode, serde_json::Value);

/// A [`JsonReply`] from a serialisable body.
pub fn reply(status: StatusCode, body: &impl Serialize) -> ApiResult<JsonReply> {
    Ok((status, serde_json::to_value(body).map_err(ApiError::internal)?))
}

/// The HTTP response of a [`JsonReply`].
pub fn respond((status, body): JsonReply) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(body)).into_response()
}

/// SHA-256 over the route and the request body as parsed (so formatting does not matter).
pub fn request_hash(route: &str, body: &impl Serialize) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(body).unwrap_or_default());
    hasher.finalize().to_vec()
}

/// Runs `effect` in a transaction, honouring `key` as described in the module docs.
pub async fn run<F>(
    state: &AppState,
    principal: Principal,
    key: Option<String>,
    request_hash: Vec<u8>,
    effect: F,
) -> ApiResult<JsonReply>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, ApiResult<JsonReply>>,
{
    run_on(&state.db, principal, key, request_hash, effect).await
}

/// [`run`] on the pool `db`.
pub async fn run_on<F>(
    db: &sqlx::PgPool,
    principal: Principal,
    key: Option<String>,
    request_hash: Vec<u8>,
    effect: F,
) -> ApiResult<JsonReply>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, ApiResult<JsonReply>>,
{
    let mut tx = db.begin().await?;
    let Some(key) = key else {
        let reply = effect(&mut tx).await?;
        tx.commit().await?;
        return Ok(reply);
    };
    let scope = principal.subject();
    if let Some(stored) = store::idempotency::find(&mut tx, &scope, &key).await? {
        return replay(stored, &request_hash);
    }
    let (status, body) = effect(&mut tx).await?;
    let response = StoredResponse { request_hash: request_hash.clone(), status_code: status.as_u16(), body };
    match store::idempotency::store(&mut tx, &scope, &key, &response).await {
        Ok(()) => {
            tx.commit().await?;
            Ok((status, response.body))
        }
        Err(err) if store::is_constraint_violation(&err, "idempotency_keys_pkey") => {
            // A concurrent request with this key won; undo ours and answer with its response.
            drop(tx);
            let mut conn = db.acquire().await?;
            let stored = store::idempotency::find(&mut conn, &scope, &key)
                .await?
                .ok_or_else(|| ApiError::internal("idempotency key vanished after a conflict"))?;
            replay(stored, &request_hash)
        }
        Err(err) => Err(err.into()),
    }
}

/// A request of a batch, as its idempotency key sees it (see [`replays`], [`store_answers`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keyed<'a> {
    /// Who asks (the key's scope).
    pub principal: Principal,
    /// Its `Idempotency-Key`, if it has one.
    pub key: Option<&'a str>,
    /// [`request_hash`] of the request.
    pub request_hash: &'a [u8],
}

/// For each of a batch's `requests`, in order, the answer its key already stored (replayed as
/// [`run`] replays it), in one statement; `None` for a request to carry out.
pub(crate) async fn replays(conn: &mut PgConnection, requests: &[Keyed<'_>]) -> Result<Vec<Option<ApiResult<JsonReply>>>, sqlx::Error> {
    let scoped: Vec<(String, String)> =
        requests.iter().filter_map(|r| r.key.map(|key| (r.principal.subject(), key.to_owned()))).collect();
    let stored = store::idempotency::find_many(conn, &scoped).await?;
    Ok(requests
        .iter()
        .map(|r| {
            let found = stored.get(&(r.principal.subject(), r.key?.to_owned()))?;
            Some(replay(found.clone(), r.request_hash))
        })
        .collect())
}

/// Stores the successful answers of a batch's requests that have a key, in one statement, on
/// the transaction of their effects; fails like [`store::idempotency::store_many`].
pub(crate) async fn store_answers(conn: &mut PgConnection, answered: &[(Keyed<'_>, &ApiResult<JsonReply>)]) -> Result<(), sqlx::Error> {
    let mut to_store: Vec<(String, &str, StoredResponse)> = Vec::new();
    for (request, answer) in answered {
        if let (Some(key), Ok((status, body))) = (request.key, answer) {
            let response = StoredResponse { request_hash: request.request_hash.to_vec(), status_code: status.as_u16(), body: body.clone() };
            to_store.push((request.principal.subject(), key, response));
        }
    }
    let stores: Vec<(&str, &str, &StoredResponse)> = to_store.iter().map(|(p, k, r)| (p.as_str(), *k, r)).collect();
    store::idempotency::store_many(conn, &stores).await
}

/// The stored response of a key, if `request_hash` is the request it answered.
pub(crate) fn replay(stored: StoredResponse, request_hash: &[u8]) -> ApiResult<JsonReply> {
    if stored.request_hash != request_hash {
        return Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was already used with a different request; use a new key for a new request",
        ));
    }
    let status = StatusCode::from_u16(stored.status_code).unwrap_or(StatusCode::OK);
    Ok((status, stored.body))
}
