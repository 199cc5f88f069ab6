//! Settlement rules: the life of a slot from opening to payment, who is asked to prove it next and
//! for how long, how money moves when it is delivered, missed or unused, the rolling escrow and
//! collateral windows, and reputation. Pure logic: every function takes typed state and `now` and
//! returns the new state and the balanced journal entries (with their references); the exchange
//! loads the rows, calls the decision and applies it in one transaction
//! (`exchange/src/service/settlement/`).
//!
//! # Layout
//! - [`state`]: slot, job and contract states and reason codes, with their stable names.
//! - [`slot`]: the decisions of one slot: open, offer a job, fail it, deliver, miss.
//! - [`timing`]: ack windows and leases sized so the next prover can still make the deadline.
//! - [`outage`]: times the exchange was down; nothing they took is charged to a prover.
//! - [`contract`]: materialisation, the rolling escrow window, suspension with backoff, release.
//! - [`collateral`]: what stake secures; slots a primary hands to its backup when uncovered.
//! - [`money`]: payments and slash splits, and the entries that post them.
//! - [`reference`]: the journal references of settlement entries, defined once.
//! - [`reputation`]: the score matching uses.
//! - [`rules`]: the settings every decision reads.
//!
//! # Invariants
//! - A slot ends in exactly one final state (`delivered`, `missed`, `unused`, `cancelled`), each
//!   with a reason code.
//! - Every entry built here is balanced and never takes more than is there: a slash is capped by
//!   the prover's bond, its shares add up to it exactly.
//! - Nobody is slashed for the exchange's own faults: a slot opened too late is refunded
//!   (`exchange_late`), a job whose window overlapped an outage fails unslashed.
//! - Each settlement movement has a reference naming what it settles, so the journal can hold it
//!   once.
#![deny(clippy::float_arithmetic)]

pub mod collateral;
pub mod contract;
pub mod error;
pub mod money;
pub mod outage;
pub mod reference;
pub mod reputation;
pub mod rules;
pub mod slot;
pub mod state;
pub mod timing;

pub use error::SettlementError;
pub use rules::Rules;
