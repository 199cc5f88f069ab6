//! The arithmetic of a quote: locked prices per prover, discount, total, fee and first escrow.
//!
//! Each primary offer's proofs in the contract are priced with its tiers, averaged, discounted by
//! the published schedule, and rounded once: that is the locked price paid per proof to that
//! prover's slots. The total is exactly the sum of locked price x proofs; the contract's
//! `price_per_proof` is the total over the proofs, rounded (informational when several provers serve).

use std::collections::BTreeMap;

use chrono::Duration;
use rust_decimal::Decimal;

use pcx_domain::{Money, MoneyError};

use crate::allocation::{Allocation, ContractRequest, OfferSnapshot};
use crate::discounts::DiscountSchedule;
use crate::pricing::{apply_discount, basis_points_of, times, PriceError};

/// Money terms of a quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteTerms {
    /// Slots in the contract.
    pub slot_count: u64,
    /// Proofs in the contract.
    pub proof_count: u64,
    /// Published discount applied.
    pub discount_bps: u32,
    /// Cost at the provers' asks (tiers included), before the discount.
    pub list_total: Money,
    /// What the buyer pays for the whole term.
    pub total: Money,
    /// `total / proof_count`, rounded.
    pub price_per_proof: Money,
    /// The exchange's fee out of `total` (deducted from provers' payments).
    pub fee: Money,
    /// Escrow locked at purchase: the slots of the first escrow window.
    pub escrow_required: Money,
    /// Locked price per proof for each primary offer.
    pub locked_prices: BTreeMap<i64, Money>,
}

/// Prices `allocation` (see the module docs).
pub fn price_allocation(
    request: &ContractRequest,
    allocation: &Allocation,
    offers: &[OfferSnapshot],
    discounts: &DiscountSchedule,
    fee_bps: u32,
    escrow_window: Duration,
) -> Result<QuoteTerms, PriceError> {
    let per_slot = u64::from(request.proofs_per_slot.max(1));
    let slot_count = request.schedule.slot_count();
    let proof_count = slot_count.checked_mul(per_slot).ok_or(PriceError::Money(MoneyError::Overflow))?;
    let term_secs = (request.schedule.end - request.schedule.start).num_seconds();
    let discount_bps = discounts.discount_bps(proof_count, term_secs);

    let mut proofs_per_offer: BTreeMap<i64, u64> = BTreeMap::new();
    for block in &allocation.blocks {
        *proofs_per_offer.entry(block.primary.offer_id).or_default() += (block.end_slot - block.first_slot) * per_slot;
    }
    let mut locked_prices = BTreeMap::new();
    let mut list_total = Decimal::ZERO;
    let mut total = Money::ZERO;
    for (&offer_id, &proofs) in &proofs_per_offer {
        let offer = offers
            .iter()
            .find(|o| o.offer_id == offer_id)
            .ok_or(PriceError::Money(MoneyError::Overflow))?;
        let cost = offer.price.cost(proofs)?;
        list_total += cost;
        let average = cost / Decimal::from(proofs);
        let locked = apply_discount(average, discount_bps)?;
        total = total.checked_add(times(locked, proofs)?)?;
        locked_prices.insert(offer_id, locked);
    }

    let escrow_end = request.schedule.first_slot_at_or_after(request.schedule.start + escrow_window);
    let mut escrow_required = Money::ZERO;
    for block in &allocation.blocks {
        let end = block.end_slot.min(escrow_end);
        if end > block.first_slot {
            let price = locked_prices[&block.primary.offer_id];
            escrow_required = escrow_required.checked_add(times(price, (end - block.first_slot) * per_slot)?)?;
        }
    }
    Ok(QuoteTerms {
        slot_count,
        proof_count,
        discount_bps,
        list_total: Money::round_stored(list_total)?,
        total,
        price_per_proof: Money::round_stored(total.as_decimal() / Decimal::from(proof_count.max(1)))?,
        fee: basis_points_of(total, fee_bps)?,
        escrow_required,
        locked_prices,
    })
}
