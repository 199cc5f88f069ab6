//! The journal and balances. Postings go in through [`post`] only; the schema applies them to
//! balances, refuses negative user balances, and checks each entry sums to zero at commit.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, AccountKind, JournalEntry, Money, Owner};

use super::is_constraint_violation;

/// The exchange's own account id (owner of `fees`, `insurance`, `external`).
pub const EXCHANGE_OWNER: Uuid = Uuid::nil();

/// A posted entry.
#[derive(Debug, Clone, Copy)]
pub struct Posted {
    /// Journal entry id.
    pub entry_id: i64,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// Why posting failed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    /// A user balance would go below zero.
    #[error("insufficient funds")]
    InsufficientFunds,
    /// A posting names a ledger account that does not exist.
    #[error("unknown ledger account")]
    UnknownAccount,
    /// Anything else.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn owner_uuid(owner: Owner) -> Uuid {
    match owner {
        Owner::User(id) => id.0,
        Owner::Exchange => EXCHANGE_OWNER,
    }
}

/// Records `entry` and applies it to balances. The caller's transaction must be rolled back if
/// this fails (the database has already aborted it).
pub async fn post(conn: &mut PgConnection, entry: &JournalEntry) -> Result<Posted, PostError> {
    let postings = entry.postings();
    let owners: Vec<Uuid> = postings.iter().map(|p| owner_uuid(p.account.owner)).collect();
    let kinds: Vec<&str> = postings.iter().map(|p| p.account.kind.as_str()).collect();
    let amounts: Vec<Decimal> = postings.iter().map(|p| p.amount.as_decimal()).collect();
    // Postings are inserted in ledger-account order so that concurrent entries lock balances in
    // the same order and cannot deadlock.
    let result: Result<(i64, DateTime<Utc>, i64), sqlx::Error> = sqlx::query_as(
        "WITH entry AS (
             INSERT INTO journal_entries (kind, reference) VALUES ($1, $2) RETURNING id, created_at
         ), posted AS (
             INSERT INTO postings (entry_id, ledger_account_id, amount)
             SELECT entry.id, la.id, p.amount
               FROM entry,
                    unnest($3::uuid[], $4::text[], $5::numeric[]) AS p (owner_id, kind, amount)
                    JOIN ledger_accounts la ON la.owner_id = p.owner_id AND la.kind = p.kind
              ORDER BY la.id
             RETURNING entry_id
         )
         SELECT entry.id, entry.created_at, (SELECT count(*) FROM posted) FROM entry",
    )
    .bind(entry.kind().as_str())
    .bind(entry.reference())
    .bind(&owners)
    .bind(&kinds)
    .bind(&amounts)
    .fetch_one(conn)
    .await;
    match result {
        Ok((entry_id, created_at, count)) if usize::try_from(count).ok() == Some(postings.len()) => {
            Ok(Posted { entry_id, created_at })
        }
        Ok(_) => Err(PostError::UnknownAccount),
        Err(err) if is_constraint_violation(&err, "ledger_accounts_balance_non_negative") => {
            Err(PostError::InsufficientFunds)
        }
        Err(err) => Err(PostError::Db(err)),
    }
}

/// The postings of `entries` as the columns the multi-entry statements unnest: each posting's
/// entry reference, owner, ledger account kind and amount.
fn posting_columns<'a>(entries: impl Iterator<Item = &'a JournalEntry>) -> (Vec<&'a str>, Vec<Uuid>, Vec<&'a str>, Vec<Decimal>) {
    let (mut of_entry, mut owners, mut accounts, mut amounts) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for entry in entries {
        for p in entry.postings() {
            of_entry.push(entry.reference());
            owners.push(owner_uuid(p.account.owner));
            accounts.push(p.account.kind.as_str());
            amounts.push(p.amount.as_decimal());
        }
    }
    (of_entry, owners, accounts, amounts)
}

/// Records several entries and applies them to balances, in one statement (the ledger's
/// statement triggers run once for all of them). References must be distinct: postings find
/// their entry by reference, so entries sharing one would be unbalanced and refused. Fails like
/// [`post`], for all of them (the caller's transaction must then be rolled back).
pub async fn post_many(conn: &mut PgConnection, entries: &[&JournalEntry]) -> Result<(), PostError> {
    if entries.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind().as_str()).collect();
    let references: Vec<&str> = entries.iter().map(|e| e.reference()).collect();
    let (of_entry, owners, accounts, amounts) = posting_columns(entries.iter().copied());
    // Postings in ledger-account order, as in [`post`].
    let result: Result<(i64, i64), sqlx::Error> = sqlx::query_as(
        "WITH entries AS (
             INSERT INTO journal_entries (kind, reference)
             SELECT kind, reference FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS w (kind, reference, n)
              ORDER BY n
             RETURNING id, reference
         ), posted AS (
             INSERT INTO postings (entry_id, ledger_account_id, amount)
             SELECT entries.id, la.id, p.amount
               FROM unnest($3::text[], $4::uuid[], $5::text[], $6::numeric[]) AS p (reference, owner_id, kind, amount)
                    JOIN entries ON entries.reference = p.reference
                    JOIN ledger_accounts la ON la.owner_id = p.owner_id AND la.kind = p.kind
              ORDER BY la.id
             RETURNING entry_id
         )
         SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM posted)",
    )
    .bind(&kinds)
    .bind(&references)
    .bind(&of_entry)
    .bind(&owners)
    .bind(&accounts)
    .bind(&amounts)
    .fetch_one(conn)
    .await;
    match result {
        Ok((written, posted)) if usize::try_from(written).ok() == Some(entries.len()) && usize::try_from(posted).ok() == Some(of_entry.len()) => Ok(()),
        Ok(_) => Err(PostError::UnknownAccount),
        Err(err) if is_constraint_violation(&err, "ledger_accounts_balance_non_negative") => Err(PostError::InsufficientFunds),
        Err(err) => Err(PostError::Db(err)),
    }
}

/// A payment out of a user's available balance, for [`post_covered`]: its entry, who pays and
/// how much.
#[derive(Debug, Clone)]
pub struct Covered<'a> {
    /// The entry (its postings take `amount` from `payer`'s available balance).
    pub entry: &'a JournalEntry,
    /// Whose available balance pays.
    pub payer: AccountId,
    /// What it takes from that balance.
    pub amount: Money,
    /// The payer's API key the request came with, if it must still be live (not revoked) for
    /// the payment to be made: checked by the same statement, so a request can leave the check
    /// to it ([`crate::extract::CallerKeyCheckedByEffect`]).
    pub key: Option<Uuid>,
}

/// What [`post_covered`] did with one payment.
#[derive(Debug, Clone, Copy)]
pub enum CoveredOutcome {
    /// Posted; the payer's balances afterwards.
    Posted(Posted, Balances),
    /// The payer's available balance does not cover it: nothing written.
    NotCovered,
    /// The payer has no available balance (no such account): nothing written.
    NoAccount,
    /// The payment's [`Covered::key`] is not a live key of the payer's: nothing written.
    KeyRevoked,
}

/// Posts the payments whose payer's available balance covers them, in one statement (the
/// function `ledger_pay_covered` of migration 0014, which holds the SQL): the payers' available balances are locked in ledger-account order and read, the covered entries and their
/// postings inserted (the ledger's statement triggers run once for all), and each payment's
/// outcome returned with the payer's balances afterwards. Payers must be distinct (a payer's
/// second payment would be checked against the balance before its first). The balance check in
/// the schema still stands behind the one made here.
///
/// Outside a transaction the statement is its own: then an `Err` that is
/// [`PostError::InsufficientFunds`] or a database's refusal (`sqlx::Error::Database`) wrote
/// nothing, and any other may follow its commit.
pub async fn post_covered(conn: &mut PgConnection, payments: &[Covered<'_>]) -> Result<Vec<CoveredOutcome>, PostError> {
    if payments.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<&str> = payments.iter().map(|p| p.entry.kind().as_str()).collect();
    let references: Vec<&str> = payments.iter().map(|p| p.entry.reference()).collect();
    let payers: Vec<Uuid> = payments.iter().map(|p| p.payer.0).collect();
    let amounts: Vec<Decimal> = payments.iter().map(|p| p.amount.as_decimal()).collect();
    let keys: Vec<Option<Uuid>> = payments.iter().map(|p| p.key).collect();
    let (of_entry, owners, accounts, posted_amounts) = posting_columns(payments.iter().map(|p| p.entry));
    type Row = (String, Option<i64>, Option<DateTime<Utc>>, Option<Decimal>, Option<Decimal>, Option<Decimal>, i64, bool);
    // The statement (see migration 0014) is a function's: planned once per session, generically.
    let result: Result<Vec<Row>, sqlx::Error> =
        sqlx::query_as("SELECT * FROM ledger_pay_covered($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&kinds)
            .bind(&references)
            .bind(&payers)
            .bind(&amounts)
            .bind(&keys)
            .bind(&of_entry)
            .bind(&owners)
            .bind(&accounts)
            .bind(&posted_amounts)
            .fetch_all(conn)
            .await;
    let rows = match result {
        Ok(rows) => rows,
        Err(err) if is_constraint_violation(&err, "ledger_accounts_balance_non_negative") => {
            return Err(PostError::InsufficientFunds)
        }
        Err(err) => return Err(PostError::Db(err)),
    };
    if rows.len() != payments.len() {
        return Err(PostError::UnknownAccount);
    }
    let money = |d: Option<Decimal>| Money::from_decimal(d.unwrap_or_default()).map_err(|e| PostError::Db(sqlx::Error::Decode(Box::new(e))));
    let mut postings_expected = 0usize;
    let mut outcomes = Vec::with_capacity(rows.len());
    for ((_, entry_id, created_at, available, escrow, bonded, _, authorised), payment) in rows.iter().zip(payments) {
        let outcome = match (entry_id, created_at, available) {
            _ if !authorised => CoveredOutcome::KeyRevoked,
            (Some(entry_id), Some(created_at), Some(before)) => {
                postings_expected += payment.entry.postings().len();
                // Written already (see the docs): a failure here is not a refusal.
                let after = before
                    .checked_sub(payment.amount.as_decimal())
                    .ok_or_else(|| PostError::Db(sqlx::Error::Protocol("a payment's balance overflowed".into())))?;
                let balances = Balances { available: money(Some(after))?, escrow: money(*escrow)?, bonded: money(*bonded)? };
                CoveredOutcome::Posted(Posted { entry_id: *entry_id, created_at: *created_at }, balances)
            }
            (_, _, Some(_)) => CoveredOutcome::NotCovered,
            (_, _, None) => CoveredOutcome::NoAccount,
        };
        outcomes.push(outcome);
    }
    if usize::try_from(rows[0].6).ok() != Some(postings_expected) {
        return Err(PostError::UnknownAccount);
    }
    Ok(outcomes)
}

/// The balances of several accounts, by account.
pub async fn balances_of(conn: &mut PgConnection, accounts: &[Uuid]) -> Result<std::collections::HashMap<Uuid, Balances>, sqlx::Error> {
    let rows: Vec<(Uuid, String, Decimal)> =
        sqlx::query_as("SELECT owner_id, kind, balance FROM ledger_accounts WHERE owner_id = ANY($1)")
            .bind(accounts)
            .fetch_all(conn)
            .await?;
    let mut out: std::collections::HashMap<Uuid, Balances> = std::collections::HashMap::new();
    for (owner, kind, balance) in rows {
        let money = Money::from_decimal(balance).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let balances = out.entry(owner).or_default();
        match AccountKind::parse(&kind) {
            Some(AccountKind::Available) => balances.available = money,
            Some(AccountKind::Escrow) => balances.escrow = money,
            Some(AccountKind::Bonded) => balances.bonded = money,
            _ => {}
        }
    }
    Ok(out)
}

/// A user's balances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balances {
    /// Freely usable.
    pub available: Money,
    /// Locked for upcoming slots.
    pub escrow: Money,
    /// Bonded stake.
    pub bonded: Money,
}

/// The balances of an account.
pub async fn balances(conn: &mut PgConnection, account: AccountId) -> Result<Balances, sqlx::Error> {
    Ok(balances_of(conn, &[account.0]).await?.remove(&account.0).unwrap_or_default())
}

/// Bonded balances of `provers`, unlocked (a read for quoting).
pub async fn bonded_of(conn: &mut PgConnection, provers: &[Uuid]) -> Result<Vec<(Uuid, Decimal)>, sqlx::Error> {
    sqlx::query_as("SELECT owner_id, balance FROM ledger_accounts WHERE owner_id = ANY($1) AND kind = 'bonded'")
        .bind(provers)
        .fetch_all(conn)
        .await
}

/// One posting on a user's account, as listed.
#[derive(Debug, Clone)]
pub struct LedgerLine {
    /// Journal entry id.
    pub entry_id: i64,
    /// Entry kind (`deposit`, `withdrawal`, ...).
    pub kind: String,
    /// Which of the user's accounts changed.
    pub account: String,
    /// Signed change of that balance.
    pub amount: Money,
    /// What the entry settles.
    pub reference: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// The newest postings on `account`'s ledger accounts, entries older than `before` if given.
pub async fn lines(
    conn: &mut PgConnection,
    account: AccountId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<LedgerLine>, sqlx::Error> {
    let rows: Vec<(i64, String, String, Decimal, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT je.id, je.kind, la.kind, p.amount, je.reference, je.created_at
           FROM ledger_accounts la
           JOIN postings p ON p.ledger_account_id = la.id
           JOIN journal_entries je ON je.id = p.entry_id
          WHERE la.owner_id = $1 AND ($2::bigint IS NULL OR je.id < $2)
          ORDER BY je.id DESC, p.id
          LIMIT $3",
    )
    .bind(account.0)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(entry_id, kind, account, amount, reference, created_at)| {
            Ok(LedgerLine {
                entry_id,
                kind,
                account,
                amount: Money::from_decimal(amount).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
                reference,
                created_at,
            })
        })
        .collect()
}

/// Totals of the whole ledger and the result of its consistency checks.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Sum of balances per account kind, in [`AccountKind::ALL`] order.
    pub totals: Vec<(AccountKind, Money)>,
    /// Number of journal entries.
    pub entry_count: i64,
    /// Entries whose postings do not sum to zero (must be 0).
    pub unbalanced_entries: i64,
    /// User accounts whose stored balance differs from the sum of their postings (must be 0).
    pub drifted_balances: i64,
}

impl Summary {
    /// True when every check holds and all balances sum to zero.
    pub fn balanced(&self) -> bool {
        let total = self
            .totals
            .iter()
            .try_fold(Money::ZERO, |acc, (_, m)| acc.checked_add(*m));
        total == Ok(Money::ZERO) && self.unbalanced_entries == 0 && self.drifted_balances == 0
    }
}

/// Reads the summary; run it in a REPEATABLE READ transaction for one consistent snapshot.
pub async fn summary(conn: &mut PgConnection) -> Result<Summary, sqlx::Error> {
    let per_kind: Vec<(String, Decimal)> = sqlx::query_as(
        "SELECT la.kind, COALESCE(sum(p.amount), 0)
           FROM ledger_accounts la LEFT JOIN postings p ON p.ledger_account_id = la.id
          GROUP BY la.kind",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut totals: Vec<(AccountKind, Money)> = AccountKind::ALL.iter().map(|k| (*k, Money::ZERO)).collect();
    for (kind, sum) in per_kind {
        let money = Money::from_decimal(sum).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        if let Some(slot) = totals.iter_mut().find(|(k, _)| k.as_str() == kind) {
            slot.1 = money;
        }
    }
    let (entry_count, unbalanced_entries, drifted_balances): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM journal_entries),
                (SELECT count(*) FROM (SELECT entry_id FROM postings GROUP BY entry_id
                                        HAVING sum(amount) <> 0) unbalanced),
                (SELECT count(*) FROM ledger_accounts la
                  WHERE la.kind IN ('available', 'escrow', 'bonded')
                    AND la.balance <> COALESCE((SELECT sum(amount) FROM postings p
                                                 WHERE p.ledger_account_id = la.id), 0))",
    )
    .fetch_one(conn)
    .await?;
    Ok(Summary { totals, entry_count, unbalanced_entries, drifted_balances })
}
