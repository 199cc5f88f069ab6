//! Capacity reservation: prover offers (asks), the published volume discounts, firm quotes, and the
//! allocation of every slot of a forward contract to a primary prover and its backups without
//! overbooking. Pure logic: no HTTP, no SQL, no clock reads (callers pass `now`).
//!
//! # Layout
//! - [`discounts`]: the published schedule and the discount of a contract.
//! - [`offer`]: an offer's status.
//! - [`pricing`]: tiered asks and the rounding rules of discounts and fees.
//! - [`capacity`]: capacity counted where the slots are: proofs per clock hour, exactly.
//! - [`allocation`]: which prover serves which slots, as primary or backup, never overbooked.
//! - [`quote`]: a quote's money terms: locked prices, total, fee, first escrow.
pub mod allocation;
pub mod capacity;
pub mod discounts;
pub mod offer;
pub mod pricing;
pub mod quote;
