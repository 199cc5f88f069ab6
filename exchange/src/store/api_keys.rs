//! Accounts' API keys: only their SHA-256 and a recognisable prefix are stored (`migrations/0008`).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, AccountRole};

/// A stored API key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// Its id (named in the tokens it mints).
    pub id: Uuid,
    /// The owner.
    pub account_id: AccountId,
    /// The key's first characters; `None` for keys made before keys were listed.
    pub prefix: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last minted a token.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    /// Not revoked.
    pub fn is_live(&self) -> bool {
        self.revoked_at.is_none()
    }
}

type RawKey = (Uuid, Uuid, Option<String>, DateTime<Utc>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn from_raw((id, account_id, prefix, created_at, revoked_at, last_used_at): RawKey) -> ApiKeyRow {
    ApiKeyRow { id, account_id: AccountId(account_id), prefix, created_at, revoked_at, last_used_at }
}

const COLUMNS: &str = "id, account_id, prefix, created_at, revoked_at, last_used_at";

/// Stores a new key of `account`.
pub async fn insert(
    conn: &mut PgConnection,
    account: AccountId,
    prefix: &str,
    key_hash: &[u8],
    now: DateTime<Utc>,
) -> Result<ApiKeyRow, sqlx::Error> {
    let raw: RawKey = sqlx::query_as(&format!(
        "INSERT INTO api_keys (id, account_id, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(account.0)
    .bind(prefix)
    .bind(key_hash)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(from_raw(raw))
}

/// Whose key a token is minted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOwner {
    /// The key.
    pub key_id: Uuid,
    /// Its account.
    pub account_id: AccountId,
    /// The account's role.
    pub role: AccountRole,
}

/// The live key with this hash and its owner, its `last_used_at` set to `now`; `None` when no
/// key has this hash or it is revoked (one answer for both).
pub async fn use_live(conn: &mut PgConnection, key_hash: &[u8], now: DateTime<Utc>) -> Result<Option<KeyOwner>, sqlx::Error> {
    let raw: Option<(Uuid, Uuid, String)> = sqlx::query_as(
        "WITH used AS ( \
             UPDATE api_keys SET last_used_at = $2 \
              WHERE key_hash = $1 AND revoked_at IS NULL \
          RETURNING id, account_id) \
         SELECT used.id, a.id, a.role FROM used JOIN accounts a ON a.id = used.account_id \
          WHERE a.role <> 'exchange'",
    )
    .bind(key_hash)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    raw.map(|(key_id, account_id, role)| {
        Ok(KeyOwner {
            key_id,
            account_id: AccountId(account_id),
            role: super::named(AccountRole::parse, &role, "account role")?,
        })
    })
    .transpose()
}

/// Which of `keys` (pairs of key id and account) are live: one statement for a batch of checks.
pub async fn live_among(conn: &mut PgConnection, keys: &[(Uuid, AccountId)]) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    let (ids, accounts): (Vec<Uuid>, Vec<Uuid>) = keys.iter().map(|(id, account)| (*id, account.0)).unzip();
    let live: Vec<Uuid> = sqlx::query_scalar(
        "SELECT k.id FROM unnest($1::uuid[], $2::uuid[]) AS wanted (id, account_id)
           JOIN api_keys k ON k.id = wanted.id AND k.account_id = wanted.account_id AND k.revoked_at IS NULL",
    )
    .bind(&ids)
    .bind(&accounts)
    .fetch_all(conn)
    .await?;
    Ok(live.into_iter().collect())
}

/// Every key of `account`, oldest first.
pub async fn list(conn: &mut PgConnection, account: AccountId) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    let raws: Vec<RawKey> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id"))
            .bind(account.0)
            .fetch_all(conn)
            .await?;
    Ok(raws.into_iter().map(from_raw).collect())
}

/// The key `key_id` if it is `account`'s (another account's key is `None`, like a missing one).
pub async fn get(conn: &mut PgConnection, account: AccountId, key_id: Uuid) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let raw: Option<RawKey> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND account_id = $2"))
            .bind(key_id)
            .bind(account.0)
            .fetch_optional(conn)
            .await?;
    Ok(raw.map(from_raw))
}

/// How many of `account`'s keys are live.
pub async fn count_live(conn: &mut PgConnection, account: AccountId) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL")
        .bind(account.0)
        .fetch_one(conn)
        .await?;
    super::unsigned(n, "live key count")
}

/// Revokes `account`'s key `key_id` at `now`; an already revoked key keeps its first revocation
/// time. `None` when the account has no such key.
pub async fn revoke(
    conn: &mut PgConnection,
    account: AccountId,
    key_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let raw: Option<RawKey> = sqlx::query_as(&format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, GREATEST($3, created_at)) \
          WHERE id = $1 AND account_id = $2 RETURNING {COLUMNS}"
    ))
    .bind(key_id)
    .bind(account.0)
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(raw.map(from_raw))
}
