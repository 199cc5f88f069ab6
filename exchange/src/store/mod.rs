//! SQL, and only SQL: each function runs queries on a connection or transaction it is given, so a
//! caller can put several of them in one transaction. No HTTP types and no business rules here
//! beyond what the schema itself enforces (see `migrations/`).

pub mod accounts;
pub mod contracts;
pub mod idempotency;
pub mod ledger;
pub mod nonces;
pub mod offers;
pub mod secrets;

/// True when `err` is a violation of the named database constraint.
pub fn is_constraint_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => db.constraint() == Some(constraint),
        _ => false,
    }
}
pub mod settlement;
pub mod oracle;
