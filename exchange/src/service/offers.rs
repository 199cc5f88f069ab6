//! Offers: posting an ask, the public book, cancelling.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;

use pcx_capacity_reservation::offer::{backing_required, OfferStatus};
use pcx_capacity_reservation::pricing::{PriceTier, TieredPrice};
use pcx_domain::{schedule::MAX_TERM_SECS, AccountId, Money, ProofClass};

use crate::config::{MarketSettings, OfferCapacityCheck};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::{self, offers::OfferRow};
use crate::validate;

/// Most proofs per hour one offer may sell.
pub const MAX_PROOFS_PER_HOUR: u32 = 100_000;

/// A volume tier as posted: proofs past `from_proofs` cost `price_per_proof`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierInput {
    /// Threshold: the proofs after this many in a contract get the tier price.
    pub from_proofs: u64,
    /// Price per proof past the threshold (decimal string).
    #[schema(value_type = crate::validate::PositiveAmount)]
    pub price_per_proof: String,
}

/// A new offer (ask).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferInput {
    /// What the prover proves (it also serves smaller sizes and looser deadlines).
    pub proof_class: ProofClass,
    /// Window start (RFC 3339).
    pub window_start: DateTime<Utc>,
    /// Window end (RFC 3339, exclusive).
    pub window_end: DateTime<Utc>,
    /// Capacity sold, in proofs per clock hour. With `PCX_OFFER_CAPACITY_CHECK=measured` (the
    /// default) at most what your agents seen in the last minute measured for this circuit and size
    /// (bench x workers), less your other active offers of it overlapping the window.
    #[schema(minimum = 1, maximum = 100000)]
    pub proofs_per_hour: u32,
    /// Base price per proof (decimal string, at most 6 decimals).
    #[schema(value_type = crate::validate::PositiveAmount)]
    pub price_per_proof: String,
    /// Optional volume tiers: lower prices past a number of proofs in one contract.
    pub tiers: Option<Vec<TierInput>>,
}

/// An offer in the book.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfferView {
    /// Offer id.
    pub offer_id: i64,
    /// The prover.
    pub prover_id: AccountId,
    /// What it proves.
    pub proof_class: ProofClass,
    /// Window start.
    pub window_start: DateTime<Utc>,
    /// Window end (exclusive).
    pub window_end: DateTime<Utc>,
    /// Capacity in proofs per clock hour.
    pub proofs_per_hour: u32,
    /// Base price per proof.
    pub price_per_proof: Money,
    /// Volume tiers.
    pub tiers: Vec<PriceTier>,
    /// Whether it sells.
    pub status: OfferStatus,
    /// When it was posted.
    pub created_at: DateTime<Utc>,
}

impl From<OfferRow> for OfferView {
    fn from(o: OfferRow) -> Self {
        Self {
            offer_id: o.id,
            prover_id: o.prover_id,
            proof_class: o.class,
            window_start: o.window_start,
            window_end: o.window_end,
            proofs_per_hour: o.proofs_per_hour,
            price_per_proof: o.price_per_proof,
            tiers: o.tiers,
            status: o.status,
            created_at: o.created_at,
        }
    }
}

/// A proof class the exchange trades (a built-in circuit and size, or a registered circuit with
/// its own size, filled in when omitted), or a 422 saying what exists. Returns the class to use.
pub async fn checked_class(conn: &mut PgConnection, class: &ProofClass) -> ApiResult<ProofClass> {
    class
        .validate_shape()
        .map_err(|e| ApiError::new(ErrorCode::InvalidProofClass, format!("proof_class: {e}")))?;
    if crate::service::circuits::is_circuit_id(&class.circuit) {
        return crate::service::circuits::checked_registered_class(conn, class).await;
    }
    pcx_prover_pool::registry::lookup(class)
        .map_err(|e| ApiError::new(ErrorCode::InvalidProofClass, format!("proof_class: {e}")))?;
    Ok(class.clone())
}

fn checked_price(input: &OfferInput) -> ApiResult<TieredPrice> {
    let base = validate::positive_amount("price_per_proof", &input.price_per_proof)?;
    let mut tiers = Vec::new();
    for (i, tier) in input.tiers.iter().flatten().enumerate() {
        let price = validate::positive_amount(&format!("tiers[{i}].price_per_proof"), &tier.price_per_proof)?;
        tiers.push(PriceTier { from_proofs: tier.from_proofs, price_per_proof: price });
    }
    TieredPrice::new(base, tiers).map_err(|e| ApiError::new(ErrorCode::InvalidTiers, format!("tiers: {e}")))
}

/// 422 `exceeds_measured_capacity` unless the prover's live agents measured enough for `class`
/// to add `input`'s rate to its other active offers of that circuit and size overlapping the window.
async fn check_measured_capacity(
    conn: &mut PgConnection,
    prover: AccountId,
    class: &ProofClass,
    input: &OfferInput,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    use crate::service::settlement::AGENT_LIVE;
    let measured =
        store::agents::measured_capacity(conn, prover, &class.circuit, class.size_log2, now - AGENT_LIVE).await?;
    // Only the part of the window still to come can be sold, so offers that ended count for nothing.
    let from = input.window_start.max(now);
    let offered =
        store::offers::offered_per_hour(conn, prover, &class.circuit, class.size_log2, from, input.window_end).await?;
    if offered.saturating_add(i64::from(input.proofs_per_hour)) <= measured {
        return Ok(());
    }
    let left = measured.saturating_sub(offered).max(0);
    Err(ApiError::new(
        ErrorCode::ExceedsMeasuredCapacity,
        format!(
            "your agents measured {measured} proofs/hour for {} 2^{} (bench x workers, agents seen in the last {} s); \
             with your other active offers overlapping this window ({offered} proofs/hour) you can offer at most \
             {left}: run more agents or workers, or offer fewer proofs per hour",
            class.circuit,
            class.size_log2,
            AGENT_LIVE.num_seconds()
        ),
    ))
}

/// Posts an offer. Its rate must fit in what the prover's agents measured for the class (unless
/// `PCX_OFFER_CAPACITY_CHECK=off`), and its capacity must be backed by bonded stake:
/// `slash_multiplier x price x proofs_per_hour x collateral window (h)` summed over the prover's
/// active offers overlapping it.
pub async fn create(
    conn: &mut PgConnection,
    prover: AccountId,
    input: &OfferInput,
    market: &MarketSettings,
    now: DateTime<Utc>,
) -> ApiResult<OfferView> {
    let class = checked_class(conn, &input.proof_class).await?;
    let accepted = pcx_domain::schedule::accepted_times();
    if !accepted.contains(&input.window_start) || !accepted.contains(&input.window_end) {
        return Err(ApiError::new(
            ErrorCode::InvalidWindow,
            "window_start and window_end must be between 2000-01-01 and 2200-01-01 (UTC)",
        ));
    }
    if input.window_end <= input.window_start {
        return Err(ApiError::new(ErrorCode::InvalidWindow, "window_end must be after window_start"));
    }
    if (input.window_end - input.window_start).num_seconds() > MAX_TERM_SECS {
        return Err(ApiError::new(ErrorCode::InvalidWindow, "the window is longer than 5 years; post several offers"));
    }
    if input.window_end <= now {
        return Err(ApiError::new(ErrorCode::WindowInPast, "window_end is in the past; offer capacity still to come"));
    }
    if !(1..=MAX_PROOFS_PER_HOUR).contains(&input.proofs_per_hour) {
        return Err(ApiError::new(
            ErrorCode::InvalidInput,
            format!("proofs_per_hour: must be between 1 and {MAX_PROOFS_PER_HOUR}"),
        ));
    }
    let price = checked_price(input)?;

    // Both bounds below sum the prover's other offers: locking its bonded row first makes two of
    // its posts (or a post and an unstake) take turns, so neither decides on a stale sum.
    store::contracts::lock_bonded(conn, &[prover.0]).await?;
    // Every quote reads the book and each offer adds segments to its allocation: one prover must
    // not be able to make every quote slow by posting thousands of them.
    let live = store::offers::live_count(conn, prover, now).await?;
    if live >= market.max_offers_per_prover {
        return Err(ApiError::new(
            ErrorCode::TooManyOffers,
            format!(
                "you already have {live} active offers whose window has not ended; at most {} are allowed",
                market.max_offers_per_prover
            ),
        )
        .with_hint("cancel offers you no longer need (DELETE /v1/offers/{id}), or post fewer with longer windows"));
    }
    if market.offer_capacity_check == OfferCapacityCheck::Measured {
        check_measured_capacity(conn, prover, &class, input, now).await?;
    }
    let bonded = store::ledger::balances(conn, prover).await?.bonded.as_decimal();
    let existing = store::offers::hourly_exposure(conn, prover, input.window_start, input.window_end).await?;
    let hours = Decimal::from(market.collateral_window.num_seconds()) / Decimal::from(3600);
    let exposure = existing + price.base().as_decimal() * Decimal::from(input.proofs_per_hour);
    let required = backing_required(market.slash_multiplier, market.collateral_window, exposure);
    if required > bonded {
        let required = Money::round_stored(required).unwrap_or(Money::ZERO);
        return Err(ApiError::new(
            ErrorCode::InsufficientStake,
            format!(
                "bonded stake must be at least {required} to back this offer with your other active offers \
                 (slash multiplier {} x price x proofs_per_hour x {} h collateral window); stake more with \
                 POST /v1/provers/stake or offer fewer proofs per hour",
                market.slash_multiplier.normalize(),
                hours.normalize()
            ),
        ));
    }
    let row = store::offers::insert(
        conn,
        &store::offers::NewOffer {
            prover_id: prover,
            class: &class,
            window_start: input.window_start,
            window_end: input.window_end,
            proofs_per_hour: input.proofs_per_hour,
            price_per_proof: price.base(),
            tiers: price.tiers(),
        },
    )
    .await?;
    tracing::info!(offer = row.id, prover = %prover, "offer posted");
    Ok(row.into())
}

/// Cancels one of the prover's offers. Reservations already made stay obligations.
pub async fn cancel(conn: &mut PgConnection, prover: AccountId, offer_id: i64, now: DateTime<Utc>) -> ApiResult<OfferView> {
    let offer = store::offers::get(conn, offer_id, true)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no offer {offer_id}")))?;
    if offer.prover_id != prover {
        return Err(ApiError::new(ErrorCode::Forbidden, "this offer belongs to another prover"));
    }
    store::offers::cancel(conn, offer_id, now).await?;
    let offer = store::offers::get(conn, offer_id, false)
        .await?
        .ok_or_else(|| ApiError::internal("offer vanished while cancelling"))?;
    Ok(offer.into())
}
