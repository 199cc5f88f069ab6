//! The prover pool: the built-in circuit registry, and (with the settlement and GPU issues) the
//! Groth16 prover with its MSM backends and the `pcx prover` agent.
//!
//! # Layout
//! - [`registry`]: the circuits and sizes the exchange trades; used by offers, quotes and settlement.

pub mod registry;
