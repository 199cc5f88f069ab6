//! Deposits and withdrawals: each is one journal entry, posted in the caller's transaction;
//! withdrawals that arrive together are written by one transaction ([`Withdrawals`]).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use pcx_domain::{AccountId, JournalEntry, Money};

use crate::auth::Principal;
use crate::batch::{all_answered, Abandoned, Batcher, Unwritten};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::idempotency::{self, JsonReply, Keyed};
use crate::store::{self, ledger::{Covered, CoveredOutcome, PostError}};

/// A completed movement.
#[derive(Debug, Clone)]
pub struct Movement {
    /// Id of the movement (what the journal entry references).
    pub id: Uuid,
    /// Journal entry id.
    pub entry_id: i64,
    /// The reference stored with the entry.
    pub reference: String,
    /// The account's balances afterwards.
    pub balances: store::ledger::Balances,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// The API error for a failed posting of a `what` (deposit, stake, ...).
pub(crate) fn post_error(err: PostError, what: &str) -> ApiError {
    match err {
        PostError::InsufficientFunds => ApiError::new(
            ErrorCode::InsufficientFunds,
            format!("the balance does not cover this {what}; check GET /v1/accounts/me/balances"),
        ),
        PostError::UnknownAccount => ApiError::new(ErrorCode::NotFound, "no such account"),
        PostError::Db(err) => err.into(),
    }
}

/// Credits `amount` from outside to `account`'s available balance (operator only).
pub async fn deposit(
    conn: &mut PgConnection,
    account: AccountId,
    amount: Money,
    external_reference: Option<&str>,
) -> ApiResult<Movement> {
    if store::accounts::by_id(conn, account).await?.is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, format!("account_id: no account {account}")));
    }
    let id = Uuid::new_v4();
    let reference = match external_reference {
        Some(external) => format!("deposit:{id}:{external}"),
        None => format!("deposit:{id}"),
    };
    let entry = JournalEntry::deposit(account, amount, reference.clone())
        .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()))?;
    let posted = store::ledger::post(conn, &entry).await.map_err(|e| post_error(e, "deposit"))?;
    // A buyer who pays in gets its suspended contracts' escrow retried at the next tick.
    store::progress::retry_escrow_now(conn, account).await?;
    let balances = store::ledger::balances(conn, account).await?;
    Ok(Movement { id, entry_id: posted.entry_id, reference, balances, created_at: posted.created_at })
}

/// Pays `amount` out of `account`'s available balance. Refused whole (409) if it does not cover it.
pub async fn withdraw(conn: &mut PgConnection, account: AccountId, amount: Money) -> ApiResult<Movement> {
    let id = Uuid::new_v4();
    let reference = format!("withdrawal:{id}");
    let entry = JournalEntry::withdrawal(account, amount, reference.clone())
        .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()))?;
    let posted = store::ledger::post(conn, &entry).await.map_err(|e| post_error(e, "withdrawal"))?;
    let balances = store::ledger::balances(conn, account).await?;
    Ok(Movement { id, entry_id: posted.entry_id, reference, balances, created_at: posted.created_at })
}

/// A withdrawal as a request asks for it, for [`Withdrawals`].
#[derive(Debug, Clone)]
pub struct WithdrawalRequest {
    /// Who asks (the idempotency key's scope).
    pub principal: Principal,
    /// The account paid out of.
    pub account: AccountId,
    /// How much.
    pub amount: Money,
    /// The API key the caller's token was minted from, if any: the withdrawal checks that it is
    /// still live (the route takes [`crate::extract::CallerKeyCheckedByEffect`]).
    pub key_id: Option<Uuid>,
    /// The request's `Idempotency-Key`.
    pub key: Option<String>,
    /// [`idempotency::request_hash`] of the request.
    pub request_hash: Vec<u8>,
    /// Set when the request stopped waiting: then it is not withdrawn.
    pub abandoned: Abandoned,
}

impl WithdrawalRequest {
    fn keyed(&self) -> Keyed<'_> {
        Keyed { principal: self.principal, key: self.key.as_deref(), request_hash: &self.request_hash }
    }
}

/// The answer to a completed withdrawal (what the route returns and an `Idempotency-Key` stores).
pub type WithdrawalReply = fn(&Movement, Money) -> ApiResult<JsonReply>;

/// Withdrawals by group commit (see [`crate::batch`]): the withdrawals that arrive together are
/// written by one transaction and each request is answered after that commit. Without
/// `Idempotency-Key`s that transaction is one statement, sent alone (its own transaction, one
/// round trip): the callers' API keys checked live, their balances locked and checked, their
/// entries and postings written ([`store::ledger::post_covered`]). With keys it is a transaction
/// of four: the API keys checked, the stored answers replayed, that same statement, the answers
/// stored. The guarantees are those of one withdrawal per transaction: a refused
/// withdrawal (409 `insufficient_funds`) writes nothing and does not hold the others back, an
/// account moves at most once per transaction (a second withdrawal of it waits for the next), and
/// a transaction that fails before its commit is run again withdrawal by withdrawal, which answers
/// each exactly as alone (unless the database is down: then each is answered 503). A request that
/// stopped waiting before its group held a connection (answered 503 during an outage, timed out)
/// moves nothing, as when its own transaction was dropped with it.
pub type Withdrawals = Batcher<WithdrawalRequest, ApiResult<JsonReply>>;

/// Withdrawals per group commit at most.
const WITHDRAWALS_PER_COMMIT: usize = 256;

/// The [`Withdrawals`] of `db`, answering with `reply`. Two transactions may be in flight, so
/// one gathers its batch while the other waits for its commit to be flushed.
pub fn withdrawals(db: PgPool, reply: WithdrawalReply) -> Withdrawals {
    Batcher::new(
        WITHDRAWALS_PER_COMMIT,
        2,
        Arc::new(move |requests| {
            let db = db.clone();
            Box::pin(async move { withdraw_together(&db, reply, requests).await })
        }),
    )
}

/// One batch: transactions of distinct accounts, one after the other.
async fn withdraw_together(db: &PgPool, reply: WithdrawalReply, requests: Vec<WithdrawalRequest>) -> Vec<ApiResult<JsonReply>> {
    tracing::debug!(withdrawals = requests.len(), "group commit");
    let mut answers: Vec<Option<ApiResult<JsonReply>>> = vec![None; requests.len()];
    let mut pending: Vec<usize> = (0..requests.len()).collect();
    while !pending.is_empty() {
        let mut accounts = HashSet::new();
        let (round, later): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&i| accounts.insert(requests[i].account));
        let batch: Vec<&WithdrawalRequest> = round.iter().map(|&i| &requests[i]).collect();
        match withdraw_in_one_transaction(db, reply, &batch).await {
            Ok(done) => {
                for (i, answer) in round.iter().zip(done) {
                    answers[*i] = Some(answer);
                }
            }
            Err(unwritten) => match unwritten.unavailable() {
                // The database is down: one by one would only wait out each connection attempt.
                Some(err) => {
                    for &i in &round {
                        answers[i] = Some(Err(err.clone()));
                    }
                }
                None => {
                    tracing::debug!(error = %unwritten, withdrawals = round.len(), "group commit failed before its commit; one by one");
                    for &i in &round {
                        answers[i] = Some(withdraw_alone(db, reply, &requests[i]).await);
                    }
                }
            },
        }
        pending = later;
    }
    all_answered(answers)
}

/// What a request that stopped waiting is answered (nobody reads it): it moved nothing.
fn abandoned() -> ApiResult<JsonReply> {
    Err(ApiError::database_unavailable())
}

/// One withdrawal in a transaction of its own (the route's path before group commit).
async fn withdraw_alone(db: &PgPool, reply: WithdrawalReply, request: &WithdrawalRequest) -> ApiResult<JsonReply> {
    if request.abandoned.is_set() {
        return abandoned();
    }
    if let Some(key) = request.key_id {
        if store::api_keys::live_among(&mut *db.acquire().await?, &[(key, request.account)]).await?.is_empty() {
            return Err(crate::extract::revoked_key());
        }
    }
    let (account, amount) = (request.account, request.amount);
    idempotency::run_on(db, request.principal, request.key.clone(), request.request_hash.clone(), move |conn| {
        Box::pin(async move { reply(&withdraw(conn, account, amount).await?, amount) })
    })
    .await
}

/// The withdrawals of `batch` (of distinct accounts) in one transaction. `Ok` holds every
/// request's answer, also the refused ones; an error means nothing was written.
async fn withdraw_in_one_transaction(
    db: &PgPool,
    reply: WithdrawalReply,
    batch: &[&WithdrawalRequest],
) -> Result<Vec<ApiResult<JsonReply>>, Unwritten> {
    if batch.iter().all(|r| r.key.is_none()) {
        return withdraw_in_one_statement(db, reply, batch).await;
    }
    // The group's statements are the same every time: a generic plan spares planning them anew
    // for each batch (PostgreSQL would keep choosing custom plans for their array parameters).
    let mut tx = db.begin_with("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan").await?;
    let mut answers = unanswered_unless_abandoned(batch);
    // A revoked key's token is refused before anything, its stored answers included.
    let api_keys: Vec<(Uuid, AccountId)> = batch.iter().filter_map(|r| Some((r.key_id?, r.account))).collect();
    let live = store::api_keys::live_among(&mut tx, &api_keys).await?;
    for (answer, request) in answers.iter_mut().zip(batch) {
        if answer.is_none() && request.key_id.is_some_and(|key| !live.contains(&key)) {
            *answer = Some(Err(crate::extract::revoked_key()));
        }
    }
    // Replays next: a key already answered gets its stored response and moves nothing.
    let keyed: Vec<Keyed<'_>> = batch.iter().map(|r| r.keyed()).collect();
    for (answer, replayed) in answers.iter_mut().zip(idempotency::replays(&mut tx, &keyed).await?) {
        if answer.is_none() {
            *answer = replayed;
        }
    }
    // Then the movements, each checked against its account's balance as locked now (the keys
    // were checked above, in this transaction).
    let moving = movements(batch, &mut answers);
    let outcomes = store::ledger::post_covered(&mut tx, &payments(batch, &moving, KeyCheck::Done)).await?;
    answer_movements(reply, batch, &moving, outcomes, &mut answers);
    let answered: Vec<(Keyed<'_>, &ApiResult<JsonReply>)> =
        moving.iter().filter_map(|(i, _, _)| Some((keyed[*i], answers[*i].as_ref()?))).collect();
    idempotency::store_answers(&mut tx, &answered).await?;
    // A failed commit may still have committed (the answer was lost): it is answered as an
    // error, never run again, as a withdrawal alone would be.
    if let Err(err) = tx.commit().await {
        let err = ApiError::from(err);
        return Ok(vec![Err(err); batch.len()]);
    }
    Ok(all_answered(answers))
}

/// The withdrawals of `batch` (of distinct accounts, none with an `Idempotency-Key`: there is no
/// answer to store) as one statement outside a transaction: the statement is the transaction.
/// `Err` only when the database refused it (nothing written); a failure that may follow its
/// commit (the connection lost meanwhile, say) is every request's answer, never run again.
async fn withdraw_in_one_statement(
    db: &PgPool,
    reply: WithdrawalReply,
    batch: &[&WithdrawalRequest],
) -> Result<Vec<ApiResult<JsonReply>>, Unwritten> {
    let mut conn = db.acquire().await?;
    let mut answers = unanswered_unless_abandoned(batch);
    let moving = movements(batch, &mut answers);
    let outcomes = match store::ledger::post_covered(&mut conn, &payments(batch, &moving, KeyCheck::InStatement)).await {
        Ok(outcomes) => outcomes,
        // Refused by the database (a constraint, a deadlock): rolled back, run one by one. An
        // outage's error may come after the commit, so it is not taken for a refusal.
        Err(PostError::Db(err)) if matches!(err, sqlx::Error::Database(_)) && !crate::error::database_unavailable(&err) => {
            return Err(Unwritten::Db(err))
        }
        Err(PostError::InsufficientFunds) => return Err(PostError::InsufficientFunds.into()),
        Err(PostError::Db(err)) => return Ok(vec![Err(ApiError::from(err)); batch.len()]),
        Err(err @ PostError::UnknownAccount) => return Ok(vec![Err(ApiError::internal(err)); batch.len()]),
    };
    answer_movements(reply, batch, &moving, outcomes, &mut answers);
    Ok(all_answered(answers))
}

/// No answer yet for each of `batch`'s requests, except those answered meanwhile (say 503 while
/// this waited for a connection): they move nothing.
fn unanswered_unless_abandoned(batch: &[&WithdrawalRequest]) -> Vec<Option<ApiResult<JsonReply>>> {
    batch.iter().map(|request| request.abandoned.is_set().then(abandoned)).collect()
}

/// Where the callers' API keys are checked live.
#[derive(Clone, Copy)]
enum KeyCheck {
    /// Already, earlier in the transaction.
    Done,
    /// By the movements' statement.
    InStatement,
}

/// The payments of `moving` (see [`movements`]).
fn payments<'a>(batch: &[&WithdrawalRequest], moving: &'a [(usize, Uuid, JournalEntry)], keys: KeyCheck) -> Vec<Covered<'a>> {
    moving
        .iter()
        .map(|(i, _, entry)| {
            let request = batch[*i];
            let key = match keys {
                KeyCheck::Done => None,
                KeyCheck::InStatement => request.key_id,
            };
            Covered { entry, payer: request.account, amount: request.amount, key }
        })
        .collect()
}

/// The journal entries of `batch`'s requests not answered yet (index, withdrawal id, entry); an
/// amount no entry can hold is answered here.
fn movements(batch: &[&WithdrawalRequest], answers: &mut [Option<ApiResult<JsonReply>>]) -> Vec<(usize, Uuid, JournalEntry)> {
    let mut moving = Vec::new();
    for (i, request) in batch.iter().enumerate() {
        if answers[i].is_some() {
            continue;
        }
        let id = Uuid::new_v4();
        match JournalEntry::withdrawal(request.account, request.amount, format!("withdrawal:{id}")) {
            Ok(entry) => moving.push((i, id, entry)),
            Err(e) => answers[i] = Some(Err(ApiError::new(ErrorCode::InvalidAmount, e.to_string()))),
        }
    }
    moving
}

/// Each movement's answer from its outcome in [`store::ledger::post_covered`].
fn answer_movements(
    reply: WithdrawalReply,
    batch: &[&WithdrawalRequest],
    moving: &[(usize, Uuid, JournalEntry)],
    outcomes: Vec<CoveredOutcome>,
    answers: &mut [Option<ApiResult<JsonReply>>],
) {
    for ((i, id, entry), outcome) in moving.iter().zip(outcomes) {
        let request = batch[*i];
        let answer = match outcome {
            CoveredOutcome::Posted(posted, balances) => {
                let movement = Movement {
                    id: *id,
                    entry_id: posted.entry_id,
                    reference: entry.reference().to_owned(),
                    balances,
                    created_at: posted.created_at,
                };
                reply(&movement, request.amount)
            }
            CoveredOutcome::NotCovered => Err(post_error(PostError::InsufficientFunds, "withdrawal")),
            CoveredOutcome::NoAccount => Err(post_error(PostError::UnknownAccount, "withdrawal")),
            CoveredOutcome::KeyRevoked => Err(crate::extract::revoked_key()),
        };
        answers[*i] = Some(answer);
    }
}
