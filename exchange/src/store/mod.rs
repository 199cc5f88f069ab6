//! SQL, and only SQL: each function runs queries on a connection or transaction it is given, so a
//! caller can put several of them in one transaction. No HTTP types and no business rules here
//! beyond what the schema itself enforces (see `migrations/`). Rows come back typed (states as
//! enums, amounts as `Money`); a stored value that does not decode is an error, never a guess.
//!
//! # Layout
//! - [`accounts`], [`nonces`], [`idempotency`], [`ledger`]: the foundation (server secrets live in
//!   files: `crate::secrets`).
//! - [`api_keys`]: accounts' API keys (hashed), their use and revocation.
//! - [`offers`], [`contracts`]: the book, quotes, contracts, their blocks and reservations.
//! - [`progress`]: a contract's settlement progress (materialised, escrow window, status).
//! - [`slots`], [`jobs`]: materialised slots and the jobs that get them proved.
//! - [`agents`]: prover agents and what they measured; [`reputation`]: outcomes per prover.
//! - [`scheduler`]: the scheduler's clock and the outages it saw; [`leases`]: which replica runs
//!   the background work (the worker lease and its fence).
//! - [`circuits`]: registered circuits and their artifacts (chunked blobs).
//! - [`oracle`]: the oracle's inputs and rounds.

pub mod accounts;
pub mod agents;
pub mod api_keys;
pub mod circuits;
pub mod contracts;
pub mod idempotency;
pub mod jobs;
pub mod leases;
pub mod ledger;
pub mod nonces;
pub mod offers;
pub mod oracle;
pub mod progress;
pub mod replicas;
pub mod reputation;
pub mod scheduler;
pub mod slots;
pub mod webhooks;

use pcx_domain::Money;
use rust_decimal::Decimal;

/// True when `err` is a violation of the named database constraint.
pub fn is_constraint_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => db.constraint() == Some(constraint),
        _ => false,
    }
}

/// A stored value that does not decode into its type.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} is invalid").into())
}

/// A stored count or slot number (never negative).
pub(crate) fn unsigned(value: i64, what: &str) -> Result<u64, sqlx::Error> {
    u64::try_from(value).map_err(|_| corrupt(what))
}

/// A stored small count (never negative).
pub(crate) fn small(value: i32, what: &str) -> Result<u32, sqlx::Error> {
    u32::try_from(value).map_err(|_| corrupt(what))
}

/// A stored amount.
pub(crate) fn money(value: Decimal, what: &str) -> Result<Money, sqlx::Error> {
    Money::from_decimal(value).map_err(|_| corrupt(what))
}

/// A stored stable name (a state, a reason, a role).
pub(crate) fn named<T>(parse: fn(&str) -> Option<T>, value: &str, what: &str) -> Result<T, sqlx::Error> {
    parse(value).ok_or_else(|| corrupt(format_args!("{what} `{value}`")))
}

/// A slot number or count as the database stores it.
pub(crate) fn db_count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `'a', 'b'`: stable names for an SQL `IN (...)` list (they are our own constants, never input).
pub(crate) fn names<T: Copy>(values: &[T], name: fn(T) -> &'static str) -> String {
    values.iter().map(|v| format!("'{}'", name(*v))).collect::<Vec<_>>().join(", ")
}
