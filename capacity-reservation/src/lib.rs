//! Capacity reservation: prover offers (asks), the published volume discounts, firm quotes, and the
//! allocation of every slot of a forward contract to a primary prover and its backups without
//! overbooking. Pure logic: no HTTP, no SQL, no clock reads (callers pass `now`).
//!
//! # Layout
//! - [`discounts`]: the published schedule and the discount of a contract.
pub mod discounts;
