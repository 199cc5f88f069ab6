//! An account's API keys: listing, creation (capped), revocation and rotation by their owner.
//!
//! Every change locks the account row first (`store::accounts::lock`), so concurrent requests of
//! one account serialise: the cap of [`MAX_LIVE_KEYS`] and the last-key rule hold under any race.
//!
//! Revocation takes effect at once: a revoked key mints no token (`POST /v1/auth/token` answers
//! 401 `invalid_api_key`, as for a key that never existed), and the tokens it already minted are
//! refused from the next request on, because each names its key (`key_id`) and the `Caller`
//! extractor checks that the key is live (a primary-key lookup in the database every replica
//! shares, so there is no cache to invalidate). The checks of concurrent requests are made by one
//! statement ([`LiveKeys`]); each still reads the database after its request arrived.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use pcx_domain::AccountId;

use crate::auth;
use crate::batch::{self, Batcher};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::{self, accounts::AccountRow, api_keys::ApiKeyRow};
use crate::AppState;

/// Whether an API key (id, account) is live, for the `Caller` extractor: the checks that arrive
/// together are one statement ([`crate::batch`]).
pub type LiveKeys = Batcher<(Uuid, AccountId), ApiResult<bool>>;

/// Key checks per statement at most.
const KEY_CHECKS_PER_STATEMENT: usize = 256;

/// The [`LiveKeys`] of `db`, two statements in flight at most.
pub fn live_keys(db: PgPool) -> LiveKeys {
    Batcher::new(
        KEY_CHECKS_PER_STATEMENT,
        2,
        Arc::new(move |keys: Vec<(Uuid, AccountId)>| {
            let db = db.clone();
            Box::pin(async move {
                let live = async { store::api_keys::live_among(&mut *db.acquire().await?, &keys).await }.await;
                batch::answers_of_read(live, keys.len(), |live| keys.iter().map(|(id, _)| live.contains(id)).collect())
            })
        }),
    )
}

/// Most live (unrevoked) keys an account may hold.
pub const MAX_LIVE_KEYS: u64 = 20;

/// A key just made: the key itself is in this value only, never stored.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// What is stored of it.
    pub row: ApiKeyRow,
    /// The key, to be shown once.
    pub api_key: String,
}

/// Makes a key for `account` and stores its hash and prefix (the caller holds the account lock
/// or has just created the account, in the same transaction).
pub(crate) async fn make(conn: &mut PgConnection, account: AccountId, now: DateTime<Utc>) -> ApiResult<NewApiKey> {
    let api_key = auth::generate_api_key();
    let row =
        store::api_keys::insert(conn, account, &auth::api_key_prefix(&api_key), &auth::hash_api_key(&api_key), now)
            .await?;
    Ok(NewApiKey { row, api_key })
}

/// Every key of `account` (live and revoked), oldest first.
pub async fn list(state: &AppState, account: AccountId) -> ApiResult<Vec<ApiKeyRow>> {
    let mut conn = state.db.acquire().await?;
    Ok(store::api_keys::list(&mut conn, account).await?)
}

async fn lock_account(conn: &mut PgConnection, account: AccountId) -> ApiResult<AccountRow> {
    store::accounts::lock(conn, account)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the token's account no longer exists"))
}

fn no_such_key(key_id: Uuid) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("your account has no API key {key_id}; GET /v1/accounts/me/api_keys lists your keys"),
    )
}

/// A new key for `account`; 409 `too_many_api_keys` when it already has [`MAX_LIVE_KEYS`] live.
pub async fn create(state: &AppState, account: AccountId) -> ApiResult<NewApiKey> {
    let mut tx = state.db.begin().await?;
    lock_account(&mut tx, account).await?;
    let live = store::api_keys::count_live(&mut tx, account).await?;
    if live >= MAX_LIVE_KEYS {
        return Err(ApiError::new(
            ErrorCode::TooManyApiKeys,
            format!("this account already has {live} live API keys, the most it may hold is {MAX_LIVE_KEYS}"),
        )
        .with_hint("revoke a key you no longer use (DELETE /v1/accounts/me/api_keys/{key_id}), or rotate one instead"));
    }
    let key = make(&mut tx, account, Utc::now()).await?;
    tx.commit().await?;
    tracing::info!(account = %account, key = %key.row.id, "API key created");
    Ok(key)
}

/// A revocation's outcome.
#[derive(Debug, Clone)]
pub struct Revoked {
    /// The key, revoked (now or earlier).
    pub key: ApiKeyRow,
    /// The account's live keys after it.
    pub live_keys_left: u64,
}

/// Revokes `account`'s key `key_id` (again: no change, the first revocation time stays).
///
/// Revoking the last live key of an account without a wallet would leave it no way to sign in
/// once its tokens expire (or at once, when the caller's token came from that key): that takes
/// `force`, else 409 `last_api_key`. A wallet account can always sign in with its wallet.
/// Another account's key is 404, like a key that does not exist.
pub async fn revoke(state: &AppState, account: AccountId, key_id: Uuid, force: bool) -> ApiResult<Revoked> {
    let mut tx = state.db.begin().await?;
    let owner = lock_account(&mut tx, account).await?;
    let key = store::api_keys::get(&mut tx, account, key_id).await?.ok_or_else(|| no_such_key(key_id))?;
    let live = store::api_keys::count_live(&mut tx, account).await?;
    if !key.is_live() {
        return Ok(Revoked { key, live_keys_left: live });
    }
    if live <= 1 && owner.wallet_address.is_none() && !force {
        return Err(ApiError::new(
            ErrorCode::LastApiKey,
            "this is the account's last live API key and it has no wallet to sign in with: once it is revoked, \
             nobody can get a token for the account",
        )
        .with_hint(
            "create another key first (POST /v1/accounts/me/api_keys), rotate this one \
             (POST /v1/accounts/me/api_keys/{key_id}/rotate), or repeat with ?force=true to lock the account out",
        ));
    }
    let key = store::api_keys::revoke(&mut tx, account, key_id, Utc::now()).await?.ok_or_else(|| no_such_key(key_id))?;
    tx.commit().await?;
    tracing::info!(account = %account, key = %key_id, forced = force && live <= 1, "API key revoked");
    Ok(Revoked { key, live_keys_left: live.saturating_sub(1) })
}

/// A rotation's outcome.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The key rotated away from, now revoked.
    pub revoked: ApiKeyRow,
    /// Its replacement.
    pub new: NewApiKey,
}

/// Revokes `account`'s live key `key_id` and makes its replacement, in one transaction (either
/// both happen or neither). A key already revoked is 409 `api_key_revoked`.
pub async fn rotate(state: &AppState, account: AccountId, key_id: Uuid) -> ApiResult<Rotated> {
    let mut tx = state.db.begin().await?;
    lock_account(&mut tx, account).await?;
    let key = store::api_keys::get(&mut tx, account, key_id).await?.ok_or_else(|| no_such_key(key_id))?;
    if !key.is_live() {
        return Err(ApiError::new(
            ErrorCode::ApiKeyRevoked,
            format!("API key {key_id} is already revoked, so there is nothing to rotate"),
        )
        .with_hint("create a new key with POST /v1/accounts/me/api_keys"));
    }
    let now = Utc::now();
    let revoked = store::api_keys::revoke(&mut tx, account, key_id, now).await?.ok_or_else(|| no_such_key(key_id))?;
    let new = make(&mut tx, account, now).await?;
    tx.commit().await?;
    tracing::info!(account = %account, old = %key_id, new = %new.row.id, "API key rotated");
    Ok(Rotated { revoked, new })
}
