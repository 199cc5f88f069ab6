//! Accounts and their three ledger accounts.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, AccountRole};

/// A stored account.
#[derive(Debug, Clone)]
pub struct AccountRow {
    /// Its id.
    pub id: AccountId,
    /// Display name.
    pub name: String,
    /// Buyer or prover.
    pub role: AccountRole,
    /// Lowercase wallet address, for wallet accounts.
    pub wallet_address: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

type RawAccount = (Uuid, String, String, Option<String>, DateTime<Utc>);

fn from_raw((id, name, role, wallet_address, created_at): RawAccount) -> Result<AccountRow, sqlx::Error> {
    let role = AccountRole::parse(&role)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown account role {role}").into()))?;
    Ok(AccountRow { id: AccountId(id), name, role, wallet_address, created_at })
}

const COLUMNS: &str = "id, name, role, wallet_address, created_at";

/// Creates an account with its `available`, `escrow` and `bonded` ledger accounts. Its API keys
/// are rows of `api_keys` (`store::api_keys::insert`).
pub async fn create(
    conn: &mut PgConnection,
    name: &str,
    role: AccountRole,
    wallet_address: Option<&str>,
) -> Result<AccountRow, sqlx::Error> {
    let id = AccountId::new_random();
    let raw: RawAccount = sqlx::query_as(&format!(
        "INSERT INTO accounts (id, name, role, wallet_address) VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(id.0)
    .bind(name)
    .bind(role.as_str())
    .bind(wallet_address)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_accounts (owner_id, kind) \
         SELECT $1, k FROM unnest(ARRAY['available', 'escrow', 'bonded']) AS k",
    )
    .bind(id.0)
    .execute(&mut *conn)
    .await?;
    from_raw(raw)
}

/// The account with this id (never the exchange's own).
pub async fn by_id(conn: &mut PgConnection, id: AccountId) -> Result<Option<AccountRow>, sqlx::Error> {
    let raw: Option<RawAccount> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM accounts WHERE id = $1 AND role <> 'exchange'"))
            .bind(id.0)
            .fetch_optional(conn)
            .await?;
    raw.map(from_raw).transpose()
}

/// The account with this id (never the exchange's own), locked `FOR NO KEY UPDATE` until the
/// transaction ends: changes to its API keys serialise here, so the live-key cap and the last-key
/// rule hold however many requests race.
pub async fn lock(conn: &mut PgConnection, id: AccountId) -> Result<Option<AccountRow>, sqlx::Error> {
    let raw: Option<RawAccount> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM accounts WHERE id = $1 AND role <> 'exchange' FOR NO KEY UPDATE"
    ))
    .bind(id.0)
    .fetch_optional(conn)
    .await?;
    raw.map(from_raw).transpose()
}

/// The account of a wallet address (lowercase `0x` form).
pub async fn by_wallet(conn: &mut PgConnection, address: &str) -> Result<Option<AccountRow>, sqlx::Error> {
    let raw: Option<RawAccount> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM accounts WHERE wallet_address = $1"))
            .bind(address)
            .fetch_optional(conn)
            .await?;
    raw.map(from_raw).transpose()
}
