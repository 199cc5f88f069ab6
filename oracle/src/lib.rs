//! The pricing oracle: what a proof of a class costs, as signed rounds that wallets and contracts
//! can read and verify. Pure logic; the exchange gathers the sources, runs the rounds, stores and
//! serves them (`exchange/src/service/oracle.rs`). The methodology is `docs/ORACLE.md`; its version
//! is [`METHODOLOGY_VERSION`] and every round carries it.
//!
//! # Layout
//! - [`feed`]: feeds (a proof class and a deadline bucket) and their ids.
//! - [`sources`]: which asks, executed prices and delivery outcomes price a feed, as quotes.
//! - [`external`]: external providers' price lists (machines, hourly rates) and their quotes.
//! - [`aggregate`]: from quotes to a price: staleness and sanity filters, MAD outlier fence,
//!   per-source weight cap, weighted median, confidence, delivery-probability quantiles, curve.
//! - [`round`]: the status of a feed, when it publishes and how rounds are numbered, and rounds
//!   as EIP-712 typed data, signed.
//!
//! # Invariants
//! - No floats near money: prices are `Decimal`, 6 decimals on output.
//! - A feed with fewer accepted sources than required publishes `insufficient_sources` and no
//!   price; it never repeats an old price as new.
//! - Round ids of a feed only increase.
#![deny(clippy::float_arithmetic)]

pub mod aggregate;
pub mod external;
pub mod feed;
pub mod round;
pub mod sources;

/// Version of the methodology in `docs/ORACLE.md`; carried by every round.
pub const METHODOLOGY_VERSION: u16 = 2;
