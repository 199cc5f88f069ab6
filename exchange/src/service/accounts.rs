//! Registration, API-key token exchange, and wallet login. An account's further keys:
//! [`super::api_keys`].

use chrono::{DateTime, Utc};
use pcx_domain::{AccountRole, Role};

use crate::auth::{self, Caller, Principal};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::service::api_keys::{self, NewApiKey};
use crate::store::{self, accounts::AccountRow};
use crate::AppState;

/// Creates an account and its first API key, in one transaction, and returns both (the key shown
/// this once, stored hashed).
pub async fn register(state: &AppState, name: &str, role: AccountRole) -> ApiResult<(AccountRow, NewApiKey)> {
    let mut tx = state.db.begin().await?;
    let account = store::accounts::create(&mut tx, name, role, None).await?;
    let key = api_keys::make(&mut tx, account.id, account.created_at).await?;
    tx.commit().await?;
    tracing::info!(account = %account.id, role = role.as_str(), key = %key.row.id, "account registered");
    Ok((account, key))
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
    /// Who it speaks for.
    pub caller: Caller,
}

fn issue(state: &AppState, caller: Caller) -> IssuedToken {
    let now = Utc::now();
    let expires_at = now + state.settings.token_ttl;
    IssuedToken { token: state.tokens.issue(caller, now, expires_at), expires_at, caller }
}

/// Exchanges an API key (an account's live one, or the admin's) for a token, and records the
/// key's use. A token minted from an account's key names the key (`key_id`), so that it stops
/// working when the key is revoked. An unknown and a revoked key get the same answer: nobody
/// learns which keys ever existed.
pub async fn token_for_api_key(state: &AppState, api_key: &str) -> ApiResult<IssuedToken> {
    let hash = auth::hash_api_key(api_key);
    if auth::constant_time_eq(&hash, &state.admin_key_hash) {
        return Ok(issue(state, Caller { principal: Principal::Admin, role: Role::Admin, key_id: None }));
    }
    let mut conn = state.db.acquire().await?;
    let owner = store::api_keys::use_live(&mut conn, &hash, Utc::now()).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidApiKey,
            "unknown or revoked API key; use a live key of your account, or register with POST /v1/accounts",
        )
    })?;
    Ok(issue(
        state,
        Caller { principal: Principal::Account(owner.account_id), role: owner.role.into(), key_id: Some(owner.key_id) },
    ))
}

/// A wallet-login challenge.
#[derive(Debug, Clone)]
pub struct WalletChallenge {
    /// Single-use nonce.
    pub nonce: String,
    /// The exact EIP-4361 text to sign with `personal_sign`.
    pub message: String,
    /// When the nonce stops being accepted.
    pub expires_at: DateTime<Utc>,
}

/// Issues a nonce and the message to sign for `address`.
pub async fn wallet_challenge(state: &AppState, address: &str, role: AccountRole) -> ApiResult<WalletChallenge> {
    let parsed = auth::parse_address(address).ok_or_else(|| {
        ApiError::new(ErrorCode::InvalidInput, "address: must be a 0x-prefixed 20-byte hex Ethereum address")
    })?;
    let now = Utc::now();
    let expires_at = now + state.settings.nonce_ttl;
    let nonce = auth::random_hex(16);
    let message = auth::siwe_message(&state.settings.public_url, &parsed, &nonce, now, expires_at);
    let mut conn = state.db.acquire().await?;
    store::nonces::purge_expired(&mut conn, now).await?;
    store::nonces::insert(&mut conn, &nonce, &auth::address_key(&parsed), role, &message, expires_at).await?;
    Ok(WalletChallenge { nonce, message, expires_at })
}

/// Verifies a signed wallet-login message, consumes its nonce, and returns a token for the
/// wallet's account (created on first login with the role asked for in the challenge).
pub async fn wallet_login(state: &AppState, message: &str, signature: &str) -> ApiResult<(IssuedToken, String)> {
    let refused = |why: &str| ApiError::new(ErrorCode::InvalidSignature, why.to_owned());
    let nonce = auth::siwe_nonce(message)
        .ok_or_else(|| refused("the message has no `Nonce:` line; sign the exact message from GET /v1/auth/nonce"))?;
    let mut tx = state.db.begin().await?;
    let stored = store::nonces::lock(&mut tx, nonce)
        .await?
        .ok_or_else(|| refused("unknown nonce; get one from GET /v1/auth/nonce"))?;
    let now = Utc::now();
    if stored.used_at.is_some() {
        return Err(refused("this nonce was already used; get a new one from GET /v1/auth/nonce"));
    }
    if stored.expires_at <= now {
        return Err(refused("this nonce has expired; get a new one from GET /v1/auth/nonce"));
    }
    if stored.message != message {
        return Err(refused("the message differs from the one issued with its nonce; sign it unchanged"));
    }
    let signer = auth::recover_personal_sign(message, signature)
        .ok_or_else(|| refused("the signature is malformed; send the 65-byte personal_sign signature as 0x hex"))?;
    if auth::address_key(&signer) != stored.address {
        return Err(refused("the signature was not made by the address in the message"));
    }
    store::nonces::mark_used(&mut tx, nonce, now).await?;
    let account = match store::accounts::by_wallet(&mut tx, &stored.address).await? {
        Some(account) => account,
        None => {
            let name = signer.to_checksum(None);
            store::accounts::create(&mut tx, &name, stored.role, Some(&stored.address)).await?
        }
    };
    tx.commit().await?;
    let token =
        issue(state, Caller { principal: Principal::Account(account.id), role: account.role.into(), key_id: None });
    Ok((token, stored.address))
}
