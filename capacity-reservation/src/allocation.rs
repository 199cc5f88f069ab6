//! Allocation of a forward contract's slots to provers, without overbooking.
//!
//! # Model
//! Capacity is counted per offer in *units*: proofs per clock hour. A contract of cadence
//! `every_secs` with `proofs_per_slot` proofs needs `units = ceil(3600 / every_secs) x proofs_per_slot`
//! units (at least `proofs_per_slot`) in every clock hour in which it has slots; a reservation holds
//! them over a range of whole hours, so two reservations that share a clock hour are both counted
//! in it. A cadence longer than an hour still holds its units for every hour of its range: the
//! exchange sells capacity per hour, and that is the bound it can keep.
//!
//! Each offer's capacity is sold at most once as primary (`primary units <= proofs_per_hour` at
//! every hour) and at most once as backup (`backup units <= proofs_per_hour`): a prover is asked to
//! step in for another at most at the rate it offered.
//!
//! # Algorithm
//! The contract's span (whole hours around its slots) is cut at every offer-window edge and every
//! edge of an existing reservation, so that within a segment every offer's free capacity is
//! constant. For each segment holding slots: the primary is the cheapest eligible offer with free
//! primary units (and enough collateral headroom if the segment falls in the collateral window);
//! among equally cheap offers the previous segment's primary is kept, else one is drawn at random.
//! Then `redundancy` backups from distinct provers other than the primary's, cheapest first.
//! Adjacent segments with the same provers merge into one block: a year with one prover is one block.
//!
//! # Invariants (property-tested)
//! - the blocks' slot ranges partition `0..slot_count` in order: no slot without a primary;
//! - every block has exactly `redundancy` backups from distinct provers, none of them the primary's;
//! - adding the blocks to the existing reservations keeps every offer within its capacity.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use pcx_domain::{AccountId, Money, ProofClass, Schedule};

use crate::pricing::TieredPrice;

const HOUR_SECS: i64 = 3600;

/// Whether a reservation is for the primary prover or a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationRole {
    /// Proves the slot.
    Primary,
    /// Steps in when the primary fails.
    Backup,
}

impl ReservationRole {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationRole::Primary => "primary",
            ReservationRole::Backup => "backup",
        }
    }
}

/// A reservation already holding an offer's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Primary or backup.
    pub role: ReservationRole,
    /// Whole-hour range start.
    pub starts_at: DateTime<Utc>,
    /// Whole-hour range end (exclusive).
    pub ends_at: DateTime<Utc>,
    /// Units held per hour.
    pub units_per_hour: u32,
}

/// An active offer as the allocator sees it.
#[derive(Debug, Clone)]
pub struct OfferSnapshot {
    /// Offer id.
    pub offer_id: i64,
    /// The prover.
    pub prover_id: AccountId,
    /// What it proves.
    pub class: ProofClass,
    /// Window start.
    pub window_start: DateTime<Utc>,
    /// Window end (exclusive).
    pub window_end: DateTime<Utc>,
    /// Capacity in proofs per hour.
    pub proofs_per_hour: u32,
    /// The ask.
    pub price: TieredPrice,
    /// The prover's reputation for the class, 0..=1.
    pub reputation: Decimal,
    /// Reservations on this offer overlapping the contract's span.
    pub held: Vec<Held>,
}

/// What a buyer asks for.
#[derive(Debug, Clone)]
pub struct ContractRequest {
    /// The proof class.
    pub class: ProofClass,
    /// When slots open.
    pub schedule: Schedule,
    /// Proofs per slot.
    pub proofs_per_slot: u32,
    /// Backups per slot.
    pub redundancy: u8,
    /// Offers above this base price are not used.
    pub max_price_per_proof: Option<Money>,
    /// Provers below this reputation are not used.
    pub min_reputation: Option<Decimal>,
}

/// The collateral rule as the allocator applies it: a primary's stake must cover
/// `slash_multiplier x price` for each of its proofs opening within `[now, now + window)`.
#[derive(Debug, Clone)]
pub struct CollateralTerms {
    /// Now.
    pub now: DateTime<Utc>,
    /// The collateral window.
    pub window: Duration,
    /// Slash multiplier.
    pub slash_multiplier: Decimal,
    /// Per prover: bonded stake minus what its existing primary slots in the window require.
    pub headroom: HashMap<AccountId, Decimal>,
}

/// A prover's part in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    /// The offer whose capacity is used.
    pub offer_id: i64,
    /// Its prover.
    pub prover_id: AccountId,
}

/// A run of consecutive slots with the same provers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// First slot (inclusive).
    pub first_slot: u64,
    /// End slot (exclusive).
    pub end_slot: u64,
    /// Start of the whole-hour range its reservations hold.
    pub starts_at: DateTime<Utc>,
    /// End of that range (exclusive).
    pub ends_at: DateTime<Utc>,
    /// The primary.
    pub primary: Assignment,
    /// The backups, distinct provers, none the primary's.
    pub backups: Vec<Assignment>,
}

/// The allocation of a whole contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Units each reservation holds per hour.
    pub units_per_hour: u32,
    /// Blocks in slot order.
    pub blocks: Vec<Block>,
}

/// Why a contract cannot be allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The schedule has no slot.
    #[error("the schedule has no slot")]
    NoSlots,
    /// Not enough free capacity somewhere in the term.
    #[error("no {} capacity for {units} proofs/hour between {from} and {to}", role.as_str())]
    InsufficientCapacity {
        /// Which role could not be filled.
        role: ReservationRole,
        /// Start of the hours lacking capacity.
        from: DateTime<Utc>,
        /// End of those hours.
        to: DateTime<Utc>,
        /// Units needed per hour.
        units: u32,
    },
}

/// Units per hour that a cadence needs.
pub fn units_per_hour(every_secs: u32, proofs_per_slot: u32) -> u32 {
    let every = every_secs.max(1);
    (HOUR_SECS as u32).div_ceil(every).max(1).saturating_mul(proofs_per_slot.max(1))
}

/// The start of the clock hour holding `t`.
pub fn floor_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp().div_euclid(HOUR_SECS) * HOUR_SECS, 0).unwrap_or(t)
}

/// The first whole hour at or after `t`.
pub fn ceil_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = floor_hour(t);
    if floor == t {
        t
    } else {
        floor + Duration::seconds(HOUR_SECS)
    }
}

/// Slots of `schedule` opening in `[from, to)`, as a range of slot numbers.
pub fn slots_between(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> (u64, u64) {
    let count = schedule.slot_count();
    let every = i64::from(schedule.every_secs.max(1));
    let index_at = |t: DateTime<Utc>| -> u64 {
        let offset = (t - schedule.start).num_seconds();
        if offset <= 0 {
            0
        } else {
            u64::try_from((offset + every - 1) / every).unwrap_or(u64::MAX).min(count)
        }
    };
    (index_at(from), index_at(to))
}

impl OfferSnapshot {
    fn load_at(&self, role: ReservationRole, t: DateTime<Utc>) -> u32 {
        self.held
            .iter()
            .filter(|h| h.role == role && h.starts_at <= t && t < h.ends_at)
            .map(|h| h.units_per_hour)
            .sum()
    }

    fn free_over(&self, role: ReservationRole, from: DateTime<Utc>, to: DateTime<Utc>) -> u32 {
        if ceil_hour(self.window_start) > from || floor_hour(self.window_end) < to {
            return 0;
        }
        self.proofs_per_hour.saturating_sub(self.load_at(role, from))
    }
}

/// Exposure of a primary over `[from, to)`: `multiplier x price x units x hours in the window`.
fn collateral_needed(
    terms: &CollateralTerms,
    price: Money,
    units: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Decimal {
    let window_end = terms.now + terms.window;
    let start = from.max(terms.now);
    let end = to.min(window_end);
    if end <= start {
        return Decimal::ZERO;
    }
    let hours = Decimal::from((end - start).num_seconds()) / Decimal::from(HOUR_SECS);
    terms.slash_multiplier * price.as_decimal() * Decimal::from(units) * hours
}

/// Hours `[from, to)` given to one primary and its backups (indices into the eligible offers).
struct Segment {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    primary: usize,
    backups: Vec<usize>,
}

/// Allocates every slot of `request` over `offers` (see the module docs).
pub fn allocate(
    request: &ContractRequest,
    offers: &[OfferSnapshot],
    collateral: &mut CollateralTerms,
    rng: &mut impl Rng,
) -> Result<Allocation, AllocationError> {
    let schedule = &request.schedule;
    let slot_count = schedule.slot_count();
    let last_open = slot_count.checked_sub(1).and_then(|n| schedule.slot_opens_at(n)).ok_or(AllocationError::NoSlots)?;
    let units = units_per_hour(schedule.every_secs, request.proofs_per_slot);
    let span = (floor_hour(schedule.start), floor_hour(last_open) + Duration::seconds(HOUR_SECS));

    let eligible: Vec<&OfferSnapshot> = offers
        .iter()
        .filter(|o| o.class.covers(&request.class))
        .filter(|o| request.max_price_per_proof.is_none_or(|max| o.price.base() <= max))
        .filter(|o| request.min_reputation.is_none_or(|min| o.reputation >= min))
        .filter(|o| o.proofs_per_hour >= units)
        .collect();

    let mut points = BTreeSet::from([span.0, span.1]);
    let inside = |t: DateTime<Utc>| span.0 < t && t < span.1;
    for offer in &eligible {
        for t in [ceil_hour(offer.window_start), floor_hour(offer.window_end)] {
            if inside(t) {
                points.insert(t);
            }
        }
        for held in &offer.held {
            for t in [held.starts_at, held.ends_at] {
                if inside(t) {
                    points.insert(t);
                }
            }
        }
    }
    let points: Vec<DateTime<Utc>> = points.into_iter().collect();

    let mut chosen: Vec<Segment> = Vec::new();
    let mut previous: Option<(usize, Vec<usize>)> = None;
    for window in points.windows(2) {
        let (from, to) = (window[0], window[1]);
        let (first, end) = slots_between(schedule, from, to);
        if first >= end {
            previous = None;
            continue;
        }
        let primary = pick_primary(&eligible, collateral, units, from, to, previous.as_ref().map(|p| p.0), rng)
            .ok_or(AllocationError::InsufficientCapacity { role: ReservationRole::Primary, from, to, units })?;
        let offer = eligible[primary];
        let needed = collateral_needed(collateral, offer.price.base(), units, from, to);
        if let Some(headroom) = collateral.headroom.get_mut(&offer.prover_id) {
            *headroom -= needed;
        }
        let previous_backups = previous.as_ref().map(|p| p.1.clone()).unwrap_or_default();
        let backups = pick_backups(&eligible, primary, request.redundancy, units, from, to, &previous_backups, rng)
            .ok_or(AllocationError::InsufficientCapacity { role: ReservationRole::Backup, from, to, units })?;
        previous = Some((primary, backups.clone()));
        match chosen.last_mut() {
            Some(last) if last.to == from && last.primary == primary && last.backups == backups => last.to = to,
            _ => chosen.push(Segment { from, to, primary, backups }),
        }
    }

    let assignment = |i: usize| Assignment { offer_id: eligible[i].offer_id, prover_id: eligible[i].prover_id };
    let blocks = chosen
        .into_iter()
        .map(|segment| {
            let (first_slot, end_slot) = slots_between(schedule, segment.from, segment.to);
            Block {
                first_slot,
                end_slot,
                starts_at: segment.from,
                ends_at: segment.to,
                primary: assignment(segment.primary),
                backups: segment.backups.into_iter().map(assignment).collect(),
            }
        })
        .collect();
    Ok(Allocation { units_per_hour: units, blocks })
}

fn pick_primary(
    eligible: &[&OfferSnapshot],
    collateral: &CollateralTerms,
    units: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    previous: Option<usize>,
    rng: &mut impl Rng,
) -> Option<usize> {
    let fits: Vec<usize> = (0..eligible.len())
        .filter(|&i| eligible[i].free_over(ReservationRole::Primary, from, to) >= units)
        .filter(|&i| {
            let offer = eligible[i];
            let needed = collateral_needed(collateral, offer.price.base(), units, from, to);
            needed.is_zero() || collateral.headroom.get(&offer.prover_id).is_some_and(|h| *h >= needed)
        })
        .collect();
    let cheapest = fits.iter().map(|&i| eligible[i].price.base()).min()?;
    let ties: Vec<usize> = fits.into_iter().filter(|&i| eligible[i].price.base() == cheapest).collect();
    if let Some(p) = previous.filter(|p| ties.contains(p)) {
        return Some(p);
    }
    Some(ties[rng.gen_range(0..ties.len())])
}

#[allow(clippy::too_many_arguments)]
fn pick_backups(
    eligible: &[&OfferSnapshot],
    primary: usize,
    redundancy: u8,
    units: u32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    previous: &[usize],
    rng: &mut impl Rng,
) -> Option<Vec<usize>> {
    let primary_prover = eligible[primary].prover_id;
    let mut candidates: Vec<(Money, bool, u64, usize)> = (0..eligible.len())
        .filter(|&i| eligible[i].prover_id != primary_prover)
        .filter(|&i| eligible[i].free_over(ReservationRole::Backup, from, to) >= units)
        .map(|i| (eligible[i].price.base(), !previous.contains(&i), rng.gen::<u64>(), i))
        .collect();
    candidates.sort();
    let mut picked: Vec<usize> = Vec::new();
    for (_, _, _, i) in candidates {
        if picked.len() == usize::from(redundancy) {
            break;
        }
        if picked.iter().all(|&p| eligible[p].prover_id != eligible[i].prover_id) {
            picked.push(i);
        }
    }
    (picked.len() == usize::from(redundancy)).then_some(picked)
}
