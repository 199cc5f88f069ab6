//! The settings every decision reads: fees, slashing, and the timing rule.

use rust_decimal::Decimal;

use crate::timing::Timing;

/// The market's settlement rules, resolved from the exchange's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Exchange fee, basis points of each payment to a prover (`PCX_FEE_BPS`).
    pub fee_bps: u32,
    /// A failed job slashes this multiple of the slot's price (`PCX_SLASH_MULTIPLIER`).
    pub slash_multiplier: Decimal,
    /// An invalid proof slashes this many times more (`PCX_INVALID_SLASH_FACTOR`).
    pub invalid_slash_factor: Decimal,
    /// Ack windows and leases.
    pub timing: Timing,
}
