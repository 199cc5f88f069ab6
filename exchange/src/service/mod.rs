//! Use cases of the exchange: each one validates with the domain rules, runs the store functions it
//! needs in one transaction, and returns plain values. Handlers translate HTTP to these calls and
//! back; nothing here knows about HTTP.

pub mod accounts;
pub mod api_keys;
pub mod circuits;
pub mod contracts;
pub mod funds;
pub mod offers;
pub mod oracle;
pub mod provers;
pub mod settlement;
pub mod setups;
pub mod webhooks;
