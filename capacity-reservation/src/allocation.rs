//! Allocation of a forward contract's slots to provers, without overbooking.
//!
//! # Model
//! Capacity is counted per offer and clock hour where the slots are ([`crate::capacity`]): a
//! reservation holds, in each hour, the proofs of its slots opening in that hour, and an offer
//! serves the slots opening in its window. Each offer's capacity is sold at most once as primary
//! and at most once as backup (per hour, primary proofs <= `proofs_per_hour` and backup proofs <=
//! `proofs_per_hour`): a prover is asked to step in for another at most at the rate it offered.
//!
//! # Algorithm
//! The contract's term is cut at every offer-window edge and at every hour where an existing
//! reservation's count changes, so that within a segment every offer either serves all slots or
//! none and its other reservations are steady. For each segment holding slots: the primary is the
//! cheapest eligible offer whose hours stay within capacity with the segment added (and with
//! enough collateral headroom for the segment's slots in the collateral window); among equally
//! cheap offers the previous segment's primary is kept, else one is drawn at random. Then
//! `redundancy` backups from distinct provers other than the primary's, cheapest first. What a
//! segment takes is added to the offers' load before the next one is allocated. Adjacent segments
//! with the same provers merge into one block: a year with one prover is one block.
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

use crate::capacity::{peak_with, SlotRun};
use crate::pricing::TieredPrice;

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

    /// Parses the stable name.
    pub fn parse(name: &str) -> Option<Self> {
        [ReservationRole::Primary, ReservationRole::Backup].into_iter().find(|r| r.as_str() == name)
    }
}

/// A reservation already holding an offer's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Primary or backup.
    pub role: ReservationRole,
    /// The slots it holds.
    pub run: SlotRun,
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
/// Provers missing from `headroom` have none.
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
    /// Start of the first clock hour its slots open in.
    pub starts_at: DateTime<Utc>,
    /// End of the last clock hour its slots open in (exclusive).
    pub ends_at: DateTime<Utc>,
    /// The primary.
    pub primary: Assignment,
    /// The backups, distinct provers, none the primary's.
    pub backups: Vec<Assignment>,
}

/// The allocation of a whole contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The most proofs the contract has in one clock hour (what a prover must at least offer).
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
    /// The allocation ran past its deadline before every segment was allocated.
    #[error("the allocation ran out of time after {done} of {segments} segments of the term")]
    BudgetExceeded {
        /// Segments allocated before the deadline.
        done: usize,
        /// Segments in the term (every offer-window edge and reservation change cuts one).
        segments: usize,
    },
}

impl OfferSnapshot {
    /// Whether its window holds every slot of `run`.
    fn serves(&self, run: &SlotRun) -> bool {
        self.window_start <= run.first_at() && run.last_at() < self.window_end
    }
}

/// What the allocation has taken from one eligible offer so far, per role.
#[derive(Debug, Default)]
struct Taken {
    primary: Vec<SlotRun>,
    backup: Vec<SlotRun>,
}

/// An eligible offer with what this allocation took from it.
struct Candidate<'a> {
    offer: &'a OfferSnapshot,
    taken: Taken,
}

impl Candidate<'_> {
    /// Whether `run` fits the offer's capacity for `role`, with its reservations and what this
    /// allocation already took.
    fn fits(&self, role: ReservationRole, run: &SlotRun) -> bool {
        if !self.offer.serves(run) {
            return false;
        }
        let taken = match role {
            ReservationRole::Primary => &self.taken.primary,
            ReservationRole::Backup => &self.taken.backup,
        };
        let load: Vec<&SlotRun> =
            self.offer.held.iter().filter(|h| h.role == role).map(|h| &h.run).chain(taken.iter()).collect();
        peak_with(&load, run) <= u64::from(self.offer.proofs_per_hour)
    }

    fn take(&mut self, role: ReservationRole, run: SlotRun) {
        match role {
            ReservationRole::Primary => self.taken.primary.push(run),
            ReservationRole::Backup => self.taken.backup.push(run),
        }
    }
}

/// Exposure of a primary for `run`: `multiplier x price x its proofs opening in the window`.
fn collateral_needed(terms: &CollateralTerms, price: Money, run: &SlotRun) -> Decimal {
    let proofs = run.proofs_opening_in(terms.now, terms.now + terms.window);
    terms.slash_multiplier * price.as_decimal() * Decimal::from(proofs)
}

/// Slots `[first, end)` given to one primary and its backups (indices into the candidates).
struct Segment {
    first: u64,
    end: u64,
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
    allocate_within(request, offers, collateral, rng, None)
}

/// [`allocate`], giving up with [`AllocationError::BudgetExceeded`] once `deadline` has passed.
///
/// The clock is read only between segments and every [`DEADLINE_STRIDE`] candidates inside one, so
/// an allocation that finishes in time is exactly [`allocate`]'s (same choices, same draws from
/// `rng`); one that does not returns no partial result. The work grows with segments x candidates
/// (each segment checks every candidate's capacity), which is what a deadline bounds.
pub fn allocate_within(
    request: &ContractRequest,
    offers: &[OfferSnapshot],
    collateral: &mut CollateralTerms,
    rng: &mut impl Rng,
    deadline: Option<std::time::Instant>,
) -> Result<Allocation, AllocationError> {
    let schedule = &request.schedule;
    let slot_count = schedule.slot_count();
    let whole = SlotRun::of(schedule, 0..slot_count, request.proofs_per_slot).ok_or(AllocationError::NoSlots)?;
    let units = u32::try_from(whole.peak_hourly()).unwrap_or(u32::MAX);

    let mut candidates: Vec<Candidate> = offers
        .iter()
        .filter(|o| o.class.covers(&request.class))
        .filter(|o| request.max_price_per_proof.is_none_or(|max| o.price.base() <= max))
        .filter(|o| request.min_reputation.is_none_or(|min| o.reputation >= min))
        .filter(|o| o.proofs_per_hour >= units)
        .map(|offer| Candidate { offer, taken: Taken::default() })
        .collect();

    let (start, end) = (schedule.start, schedule.end);
    let mut points = BTreeSet::from([start, end]);
    let inside = |t: DateTime<Utc>| start < t && t < end;
    for c in &candidates {
        points.extend([c.offer.window_start, c.offer.window_end].into_iter().filter(|t| inside(*t)));
        for held in &c.offer.held {
            let (first, last) = (held.run.first_hour(), held.run.end_hour());
            let hour = Duration::hours(1);
            points.extend([first, first + hour, last - hour, last].into_iter().filter(|t| inside(*t)));
        }
    }
    let points: Vec<DateTime<Utc>> = points.into_iter().collect();

    let mut chosen: Vec<Segment> = Vec::new();
    let mut previous: Option<(usize, Vec<usize>)> = None;
    let segments = points.len().saturating_sub(1);
    let out_of_time = |done: usize| AllocationError::BudgetExceeded { done, segments };
    for (done, window) in points.windows(2).enumerate() {
        if past(deadline) {
            return Err(out_of_time(done));
        }
        let range = schedule.slots_between(window[0], window[1]);
        let Some(run) = SlotRun::of(schedule, range.clone(), request.proofs_per_slot) else {
            previous = None;
            continue;
        };
        let lacking = |role| AllocationError::InsufficientCapacity {
            role,
            from: run.first_hour(),
            to: run.end_hour(),
            units,
        };
        let primary = pick_primary(&candidates, collateral, &run, previous.as_ref().map(|p| p.0), rng, deadline)
            .map_err(|()| out_of_time(done))?
            .ok_or_else(|| lacking(ReservationRole::Primary))?;
        let offer = candidates[primary].offer;
        let needed = collateral_needed(collateral, offer.price.base(), &run);
        if let Some(headroom) = collateral.headroom.get_mut(&offer.prover_id) {
            *headroom -= needed;
        }
        let previous_backups = previous.as_ref().map(|p| p.1.clone()).unwrap_or_default();
        let backups = pick_backups(&candidates, primary, request.redundancy, &run, &previous_backups, rng, deadline)
            .map_err(|()| out_of_time(done))?
            .ok_or_else(|| lacking(ReservationRole::Backup))?;
        candidates[primary].take(ReservationRole::Primary, run);
        for &b in &backups {
            candidates[b].take(ReservationRole::Backup, run);
        }
        previous = Some((primary, backups.clone()));
        match chosen.last_mut() {
            Some(last) if last.end == range.start && last.primary == primary && last.backups == backups => last.end = range.end,
            _ => chosen.push(Segment { first: range.start, end: range.end, primary, backups }),
        }
    }

    let assignment = |i: usize| Assignment { offer_id: candidates[i].offer.offer_id, prover_id: candidates[i].offer.prover_id };
    let blocks = chosen
        .into_iter()
        .filter_map(|segment| {
            let run = SlotRun::of(schedule, segment.first..segment.end, request.proofs_per_slot)?;
            Some(Block {
                first_slot: segment.first,
                end_slot: segment.end,
                starts_at: run.first_hour(),
                ends_at: run.end_hour(),
                primary: assignment(segment.primary),
                backups: segment.backups.into_iter().map(assignment).collect(),
            })
        })
        .collect();
    Ok(Allocation { units_per_hour: units, blocks })
}

/// How many candidates a segment checks between two looks at the clock: one capacity check is
/// microseconds, so the deadline is overshot by at most milliseconds, and the clock costs nothing.
pub const DEADLINE_STRIDE: usize = 256;

fn past(deadline: Option<std::time::Instant>) -> bool {
    deadline.is_some_and(|d| std::time::Instant::now() >= d)
}

/// Called once per candidate checked: true once `deadline` has passed (looked at every
/// [`DEADLINE_STRIDE`] candidates); the filtering itself is untouched.
fn late_by(deadline: Option<std::time::Instant>) -> impl FnMut() -> bool {
    let mut seen = 0usize;
    move || {
        seen += 1;
        seen.is_multiple_of(DEADLINE_STRIDE) && past(deadline)
    }
}

fn pick_primary(
    candidates: &[Candidate],
    collateral: &CollateralTerms,
    run: &SlotRun,
    previous: Option<usize>,
    rng: &mut impl Rng,
    deadline: Option<std::time::Instant>,
) -> Result<Option<usize>, ()> {
    let mut clock = late_by(deadline);
    let mut late = false;
    let fits: Vec<usize> = (0..candidates.len())
        .take_while(|_| {
            late = clock();
            !late
        })
        .filter(|&i| candidates[i].fits(ReservationRole::Primary, run))
        .filter(|&i| {
            let offer = candidates[i].offer;
            let needed = collateral_needed(collateral, offer.price.base(), run);
            needed.is_zero() || collateral.headroom.get(&offer.prover_id).is_some_and(|h| *h >= needed)
        })
        .collect();
    if late {
        return Err(());
    }
    let Some(cheapest) = fits.iter().map(|&i| candidates[i].offer.price.base()).min() else {
        return Ok(None);
    };
    let ties: Vec<usize> = fits.into_iter().filter(|&i| candidates[i].offer.price.base() == cheapest).collect();
    if let Some(p) = previous.filter(|p| ties.contains(p)) {
        return Ok(Some(p));
    }
    Ok(Some(ties[rng.gen_range(0..ties.len())]))
}

fn pick_backups(
    candidates: &[Candidate],
    primary: usize,
    redundancy: u8,
    run: &SlotRun,
    previous: &[usize],
    rng: &mut impl Rng,
    deadline: Option<std::time::Instant>,
) -> Result<Option<Vec<usize>>, ()> {
    let primary_prover = candidates[primary].offer.prover_id;
    let mut clock = late_by(deadline);
    let mut late = false;
    let mut ranked: Vec<(Money, bool, u64, usize)> = (0..candidates.len())
        .take_while(|_| {
            late = clock();
            !late
        })
        .filter(|&i| candidates[i].offer.prover_id != primary_prover)
        .filter(|&i| candidates[i].fits(ReservationRole::Backup, run))
        .map(|i| (candidates[i].offer.price.base(), !previous.contains(&i), rng.gen::<u64>(), i))
        .collect();
    if late {
        return Err(());
    }
    ranked.sort();
    let mut picked: Vec<usize> = Vec::new();
    for (_, _, _, i) in ranked {
        if picked.len() == usize::from(redundancy) {
            break;
        }
        if picked.iter().all(|&p| candidates[p].offer.prover_id != candidates[i].offer.prover_id) {
            picked.push(i);
        }
    }
    Ok((picked.len() == usize::from(redundancy)).then_some(picked))
}
