//! The caller's account, balances and ledger; withdrawals; the operator's deposits and ledger summary.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use pcx_domain::{AccountId, AccountKind, AccountRole, Money};

use crate::auth::{Caller, Principal};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{ApiJson, ApiQuery, CallerKeyCheckedByEffect, IdempotencyKey};
use crate::idempotency::{self, reply, respond};
use crate::service::funds;
use crate::store::{self, ledger::Balances};
use crate::{validate, AppState};

/// The caller's account.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    /// Account id.
    pub account_id: AccountId,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: AccountRole,
    /// Wallet address, for wallet accounts.
    pub wallet_address: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// The caller's account.
#[utoipa::path(get, path = "/v1/accounts/me", tag = "funds", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<MeResponse>> {
    let id = caller.account()?;
    let mut conn = state.db.acquire().await?;
    let account = store::accounts::by_id(&mut conn, id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the token's account no longer exists"))?;
    Ok(Json(MeResponse {
        account_id: account.id,
        name: account.name,
        role: account.role,
        wallet_address: account.wallet_address,
        created_at: account.created_at,
    }))
}

/// Balances of an account.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct BalancesResponse {
    /// Freely usable funds.
    pub available: Money,
    /// Locked for upcoming slots.
    pub escrow: Money,
    /// Bonded prover stake.
    pub bonded: Money,
}

impl From<Balances> for BalancesResponse {
    fn from(b: Balances) -> Self {
        Self { available: b.available, escrow: b.escrow, bonded: b.bonded }
    }
}

/// The caller's balances.
#[utoipa::path(get, path = "/v1/accounts/me/balances", tag = "funds", security(("bearer" = [])),
    responses((status = 200, body = BalancesResponse), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn balances(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<BalancesResponse>> {
    let id = caller.account()?;
    let mut conn = state.db.acquire().await?;
    Ok(Json(store::ledger::balances(&mut conn, id).await?.into()))
}

/// Paging of the ledger listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// At most this many lines (1..=500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Only entries with an id below this (for the next page, pass the previous `next_before`).
    pub before: Option<i64>,
}

/// One ledger line: a change of one of the caller's balances.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerLineView {
    /// Journal entry id.
    pub id: i64,
    /// Entry kind: `deposit`, `withdrawal`, ...
    pub kind: String,
    /// Which balance changed: `available`, `escrow` or `bonded`.
    pub account: String,
    /// Signed change of that balance.
    pub amount: Money,
    /// What the entry settles (withdrawal, slot, contract, offer).
    pub reference: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A page of ledger lines, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerResponse {
    /// The lines.
    pub entries: Vec<LedgerLineView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// The caller's ledger, newest first.
#[utoipa::path(get, path = "/v1/accounts/me/ledger", tag = "funds", security(("bearer" = [])), params(LedgerQuery),
    responses((status = 200, body = LedgerResponse), (status = 401, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn ledger(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> ApiResult<Json<LedgerResponse>> {
    let id = caller.account()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit: must be between 1 and 500"));
    }
    let mut conn = state.db.acquire().await?;
    // One more than asked tells whether a next page exists.
    let mut lines = store::ledger::lines(&mut conn, id, q.before, i64::from(limit) + 1).await?;
    let more = lines.len() > limit as usize;
    lines.truncate(limit as usize);
    let mut next_before = None;
    if more {
        // A page must not split an entry: leave the last entry's lines for the next page
        // (unless it is the only entry on the page).
        let last = lines.last().map(|l| l.entry_id);
        if lines.first().map(|l| l.entry_id) != last {
            lines.retain(|l| Some(l.entry_id) != last);
        }
        next_before = lines.last().map(|l| l.entry_id);
    }
    let entries = lines
        .into_iter()
        .map(|l| LedgerLineView {
            id: l.entry_id,
            kind: l.kind,
            account: l.account,
            amount: l.amount,
            reference: l.reference,
            created_at: l.created_at,
        })
        .collect();
    Ok(Json(LedgerResponse { entries, next_before }))
}

/// A withdrawal.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    /// Amount to withdraw from `available`, a positive decimal string with at most 6 decimals.
    #[schema(value_type = crate::validate::PositiveAmount)]
    pub amount: String,
}

/// A completed withdrawal.
#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalResponse {
    /// Withdrawal id (the ledger entry references `withdrawal:<id>`).
    pub withdrawal_id: uuid::Uuid,
    /// Journal entry id.
    pub entry_id: i64,
    /// Amount withdrawn.
    pub amount: Money,
    /// Balances afterwards.
    pub balances: BalancesResponse,
    /// When.
    pub created_at: DateTime<Utc>,
}


/// Withdraws from the caller's available balance. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/withdrawals", tag = "funds", security(("bearer" = [])),
    request_body = WithdrawalRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key and body replay the stored response")),
    responses((status = 201, body = WithdrawalResponse), (status = 409, body = ErrorEnvelope, description = "insufficient_funds"),
              (status = 422, body = ErrorEnvelope)))]
pub async fn withdraw(
    State(state): State<AppState>,
    CallerKeyCheckedByEffect(caller): CallerKeyCheckedByEffect,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<WithdrawalRequest>,
) -> ApiResult<Response> {
    let account = caller.account()?;
    let amount = validate::positive_amount("amount", &req.amount)?;
    let request_hash = idempotency::request_hash("POST /v1/withdrawals", &amount.to_string());
    let request = |abandoned| funds::WithdrawalRequest { principal: caller.principal, account, amount, key_id: caller.key_id, key, request_hash, abandoned };
    let replied = state.withdrawals.call_abandonable(request).await.map_err(ApiError::internal)??;
    Ok(respond(replied))
}

/// The answer to a completed withdrawal (stored with its `Idempotency-Key`).
pub fn withdrawal_reply(done: &funds::Movement, amount: Money) -> ApiResult<idempotency::JsonReply> {
    reply(
        StatusCode::CREATED,
        &WithdrawalResponse {
            withdrawal_id: done.id,
            entry_id: done.entry_id,
            amount,
            balances: done.balances.into(),
            created_at: done.created_at,
        },
    )
}

/// An operator's deposit.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// The account credited.
    pub account_id: AccountId,
    /// Amount credited to `available`, a positive decimal string with at most 6 decimals.
    #[schema(value_type = crate::validate::PositiveAmount)]
    pub amount: String,
    /// Optional outside reference (e.g. a transaction hash), up to 200 characters.
    pub reference: Option<String>,
}

/// A completed deposit.
#[derive(Debug, Serialize, ToSchema)]
pub struct DepositResponse {
    /// Deposit id.
    pub deposit_id: uuid::Uuid,
    /// Journal entry id.
    pub entry_id: i64,
    /// The account credited.
    pub account_id: AccountId,
    /// Amount credited.
    pub amount: Money,
    /// The reference stored with the entry.
    pub reference: String,
    /// The account's balances afterwards.
    pub balances: BalancesResponse,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Credits a deposit to an account (operator only). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/admin/deposits", tag = "admin", security(("bearer" = [])),
    request_body = DepositRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: same key and body replay the stored response")),
    responses((status = 201, body = DepositResponse), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<DepositRequest>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let amount = validate::positive_amount("amount", &req.amount)?;
    let external = req.reference.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
    if external.as_ref().is_some_and(|r| r.chars().count() > 200 || r.chars().any(char::is_control)) {
        return Err(ApiError::new(ErrorCode::InvalidInput, "reference: must be at most 200 printable characters"));
    }
    let account = req.account_id;
    let hash = idempotency::request_hash(
        "POST /v1/admin/deposits",
        &(account, amount.to_string(), external.clone()),
    );
    let replied = idempotency::run(&state, Principal::Admin, key, hash, move |conn| {
        Box::pin(async move {
            let done = funds::deposit(conn, account, amount, external.as_deref()).await?;
            reply(
                StatusCode::CREATED,
                &DepositResponse {
                    deposit_id: done.id,
                    entry_id: done.entry_id,
                    account_id: account,
                    amount,
                    reference: done.reference,
                    balances: done.balances.into(),
                    created_at: done.created_at,
                },
            )
        })
    })
    .await?;
    Ok(respond(replied))
}

/// Totals per account kind.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindTotals {
    /// Sum of all users' available balances.
    pub available: Money,
    /// Sum of all escrow balances.
    pub escrow: Money,
    /// Sum of all bonded stake.
    pub bonded: Money,
    /// The exchange's fee income.
    pub fees: Money,
    /// The insurance fund.
    pub insurance: Money,
    /// The outside world: minus the net deposits.
    pub external: Money,
}

/// The ledger's totals and consistency.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerSummaryResponse {
    /// Totals per account kind (they sum to zero when balanced).
    pub totals: KindTotals,
    /// Number of journal entries.
    pub entry_count: i64,
    /// Entries whose postings do not sum to zero (0 when balanced).
    pub unbalanced_entries: i64,
    /// User balances that differ from the sum of their postings (0 when balanced).
    pub drifted_balances: i64,
    /// True when the totals sum to zero, every entry is balanced and every balance matches its postings.
    pub balanced: bool,
}

/// The whole ledger's totals per account kind and whether it balances (operator only).
#[utoipa::path(get, path = "/v1/admin/ledger/summary", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = LedgerSummaryResponse), (status = 403, body = ErrorEnvelope)))]
pub async fn summary(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<LedgerSummaryResponse>> {
    caller.require_admin()?;
    let mut tx = state.db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let summary = store::ledger::summary(&mut tx).await?;
    tx.commit().await?;
    let total = |kind: AccountKind| {
        summary.totals.iter().find(|(k, _)| *k == kind).map_or(Money::ZERO, |(_, m)| *m)
    };
    Ok(Json(LedgerSummaryResponse {
        totals: KindTotals {
            available: total(AccountKind::Available),
            escrow: total(AccountKind::Escrow),
            bonded: total(AccountKind::Bonded),
            fees: total(AccountKind::Fees),
            insurance: total(AccountKind::Insurance),
            external: total(AccountKind::External),
        },
        entry_count: summary.entry_count,
        unbalanced_entries: summary.unbalanced_entries,
        drifted_balances: summary.drifted_balances,
        balanced: summary.balanced(),
    }))
}
