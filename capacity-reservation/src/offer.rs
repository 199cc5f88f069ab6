//! The status of an offer.

use chrono::Duration;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether an offer sells. A cancelled offer keeps the reservations already made on it (those are
/// obligations) but takes no new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferStatus {
    /// In the book.
    Active,
    /// Withdrawn by its prover.
    Cancelled,
}

impl OfferStatus {
    /// Stable name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            OfferStatus::Active => "active",
            OfferStatus::Cancelled => "cancelled",
        }
    }

    /// Parses the stable name.
    pub fn parse(name: &str) -> Option<Self> {
        [OfferStatus::Active, OfferStatus::Cancelled].into_iter().find(|s| s.as_str() == name)
    }
}

/// The bonded stake a prover's offers need: `slash_multiplier x collateral window (hours) x` the
/// sum of `price x proofs_per_hour` over its active offers (`hourly_exposure`). An offer is posted
/// only when it is covered, and sells only while it stays covered.
pub fn backing_required(slash_multiplier: Decimal, collateral_window: Duration, hourly_exposure: Decimal) -> Decimal {
    let hours = Decimal::from(collateral_window.num_seconds()) / Decimal::from(3600);
    slash_multiplier * hours * hourly_exposure
}
