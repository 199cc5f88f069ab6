//! Settlement rules: the life cycle of a slot, who is asked to prove it next, and how money moves
//! when it is delivered, missed or unused. Pure logic: the exchange runs it in database
//! transactions (see `exchange/src/service/settlement.rs`).
//!
//! # Layout
//! - [`lifecycle`]: slot and job states, failure reasons (machine-readable codes), failover order.
//! - [`money`]: the payment of a delivered slot and the split of a slash.
//!
//! # Invariants
//! - A slot ends in exactly one final state (`delivered`, `missed`, `unused`, `cancelled`).
//! - Every movement computed here is balanced and never takes more than is there: a slash is capped
//!   by the prover's bonded stake, shares add up to the slashed amount exactly.
#![deny(clippy::float_arithmetic)]

pub mod lifecycle;
pub mod money;
