//! Shared domain vocabulary of pcx: the words every other crate speaks.
//!
//! This crate does no I/O (no HTTP, no SQL, no files, no clock reads beyond what a caller passes in),
//! so every rule in it can be tested in isolation and reused by the exchange, the capacity reservation
//! engine, settlement and the oracle alike. Dependencies point one way: towards this crate.
//!
//! # Layout
//! - [`money`]: [`Money`], the settlement asset (a USD stablecoin with 6 decimals) as an exact decimal.
//! - [`ids`]: typed identifiers ([`AccountId`], ...).
//! - [`role`]: who may do what ([`Role`], [`AccountRole`]).
//! - [`ledger`]: the double-entry vocabulary ([`LedgerAccount`], [`JournalEntry`]): every entry's
//!   postings sum to zero, checked when the entry is built.
//! - [`proof_class`]: what is traded ([`ProofClass`]).
//! - [`schedule`]: when slots open ([`Schedule`]).
//!
//! # Invariants
//! - Money is never a float. Every stored amount has at most 6 decimal places; arithmetic is checked.
//! - A [`JournalEntry`] cannot be constructed unless its postings sum to exactly zero.

#![deny(clippy::float_arithmetic)]

pub mod ids;
pub mod ledger;
pub mod money;
pub mod proof_class;
pub mod role;
pub mod schedule;

pub use ids::AccountId;
pub use ledger::{AccountKind, EntryKind, JournalEntry, LedgerAccount, LedgerError, Owner, Posting};
pub use money::{Money, MoneyError};
pub use proof_class::{ProofClass, ProofClassError, ProofSystem};
pub use role::{AccountRole, Role};
pub use schedule::{Schedule, ScheduleError};
