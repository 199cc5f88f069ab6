//! Quotes and contracts: pricing a schedule against the book, buying it, reading its slots.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use pcx_capacity_reservation::allocation::{
    allocate_within, AllocationError, Assignment, Block, CollateralTerms, ContractRequest, OfferSnapshot, ReservationRole,
};
use pcx_capacity_reservation::capacity::{floor_hour, SlotRun};
use pcx_capacity_reservation::offer::backing_required;
use pcx_capacity_reservation::pricing::TieredPrice;
use pcx_capacity_reservation::quote::price_allocation;
use pcx_domain::{AccountId, AccountKind, EntryKind, JournalEntry, Money, ProofClass, Schedule, ScheduleError};
use pcx_prover_pool::circuit::{Circuit, InputError, PostedInput, StoredCircomInput};
use pcx_prover_pool::field::{field_to_decimal, parse_field_element};
use pcx_prover_pool::{encoding, snarkjs, solidity};
use pcx_settlement::reputation::{score, NO_HISTORY};
use pcx_settlement::state::{ContractReason, ContractStatus, Replacement, SlotReason, SlotState};

use crate::config::Settings;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::service::funds::post_error;
use crate::service::offers::checked_class;
use crate::store::{self, contracts::BlockRow, contracts::ContractRow};
use crate::validate;

/// Most proofs in one slot.
pub const MAX_PROOFS_PER_SLOT: u32 = 100;
/// Most backups per slot.
pub const MAX_REDUNDANCY: u8 = 3;

/// A request for a quote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// What to prove.
    pub proof_class: ProofClass,
    /// When slots open: `start + n * every_secs` before `end`.
    pub schedule: Schedule,
    /// Proofs per slot (default 1).
    #[schema(minimum = 1, maximum = 100)]
    pub proofs_per_slot: Option<u32>,
    /// Backups per slot (default 1).
    #[schema(maximum = 3)]
    pub redundancy: Option<u8>,
    /// Leave out asks above this price per proof (decimal string).
    #[schema(value_type = Option<crate::validate::PositiveAmount>)]
    pub max_price_per_proof: Option<String>,
    /// Leave out provers below this reputation (0 to 1; a prover with no history has 0.5).
    #[schema(value_type = Option<String>, example = "0.5")]
    pub min_reputation: Option<String>,
}

/// A prover's part in a run of slots, with the locked price.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AllocationBlock {
    /// First slot (inclusive).
    pub first_slot: u64,
    /// End slot (exclusive).
    pub end_slot: u64,
    /// Start of the clock hours reserved.
    pub starts_at: DateTime<Utc>,
    /// End of the clock hours reserved (exclusive).
    pub ends_at: DateTime<Utc>,
    /// The primary prover and its offer.
    pub primary: Assignment,
    /// The backups, distinct provers.
    pub backups: Vec<Assignment>,
    /// Locked price per proof of these slots.
    pub price_per_proof: Money,
}

/// A firm quote.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuoteView {
    /// Accept it with `POST /v1/contracts {"quote_id": ...}` before `valid_until`.
    pub quote_id: Uuid,
    /// What to prove.
    pub proof_class: ProofClass,
    /// The schedule.
    pub schedule: Schedule,
    /// Proofs per slot.
    pub proofs_per_slot: u32,
    /// Backups per slot.
    pub redundancy: u8,
    /// Slots in the term.
    pub slot_count: u64,
    /// Proofs in the term.
    pub proof_count: u64,
    /// The most proofs the contract has in one clock hour: what each of its provers' offers must
    /// at least sell per hour.
    pub units_per_hour: u32,
    /// Average price per proof after discounts (`total / proof_count`, rounded).
    pub price_per_proof: Money,
    /// Published volume/term discount applied, in basis points.
    pub discount_bps: u32,
    /// Cost at the provers' asks (with their tiers), before the discount.
    pub list_total: Money,
    /// What the term costs.
    pub total: Money,
    /// The exchange's fee, out of the total (deducted from provers' payments).
    pub fee: Money,
    /// Escrow locked on acceptance: the slots of the first escrow window.
    pub escrow_required: Money,
    /// Firm until.
    pub valid_until: DateTime<Utc>,
    /// Every slot's provers, as runs of slots.
    pub allocation: Vec<AllocationBlock>,
}

fn schedule_error(err: ScheduleError) -> ApiError {
    let code = match err {
        ScheduleError::EndBeforeStart | ScheduleError::OutOfRange => ErrorCode::InvalidSchedule,
        ScheduleError::CadenceTooShort { .. } => ErrorCode::CadenceTooShort,
        ScheduleError::TermTooLong => ErrorCode::TermTooLong,
        ScheduleError::StartInPast => ErrorCode::StartInPast,
    };
    ApiError::new(code, format!("schedule: {err}"))
}

/// The answer to an allocation that failed.
fn allocation_error(err: AllocationError, budget: std::time::Duration) -> ApiError {
    match err {
        AllocationError::NoSlots => ApiError::new(ErrorCode::InvalidSchedule, "schedule: it has no slot"),
        AllocationError::InsufficientCapacity { .. } => ApiError::new(
            ErrorCode::InsufficientCapacity,
            format!("the book cannot serve this schedule: {err}"),
        )
        .with_hint(
            "see GET /v1/offers for free capacity; try a later start, a shorter term, fewer backups, \
             a higher max_price_per_proof or a lower min_reputation",
        ),
        AllocationError::BudgetExceeded { .. } => ApiError::new(
            ErrorCode::QuoteTooComplex,
            format!(
                "allocating this schedule over the book took longer than the {} ms a quote may take ({err})",
                budget.as_millis()
            ),
        )
        .with_hint(
            "narrow the request: a shorter term (buy it as several contracts), a lower max_price_per_proof \
             or a higher min_reputation (fewer candidate offers), or fewer backups",
        ),
    }
}

/// Checks a quote request into the allocator's terms.
pub async fn checked_request(
    conn: &mut PgConnection,
    req: &QuoteRequest,
    settings: &Settings,
    now: DateTime<Utc>,
) -> ApiResult<ContractRequest> {
    let class = checked_class(conn, &req.proof_class).await?;
    // A start a few seconds old is a clock skew, not a mistake.
    req.schedule.validate(settings.min_cadence_secs, now - Duration::seconds(30)).map_err(schedule_error)?;
    let proofs_per_slot = req.proofs_per_slot.unwrap_or(1);
    if !(1..=MAX_PROOFS_PER_SLOT).contains(&proofs_per_slot) {
        return Err(ApiError::new(
            ErrorCode::InvalidInput,
            format!("proofs_per_slot: must be between 1 and {MAX_PROOFS_PER_SLOT}"),
        ));
    }
    let redundancy = req.redundancy.unwrap_or(1);
    if redundancy > MAX_REDUNDANCY {
        return Err(ApiError::new(ErrorCode::InvalidInput, format!("redundancy: at most {MAX_REDUNDANCY} backups per slot")));
    }
    let max_price_per_proof =
        req.max_price_per_proof.as_deref().map(|p| validate::positive_amount("max_price_per_proof", p)).transpose()?;
    let min_reputation = req
        .min_reputation
        .as_deref()
        .map(|r| {
            r.parse::<Decimal>().ok().filter(|d| *d >= Decimal::ZERO && *d <= Decimal::ONE).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidInput, "min_reputation: must be a decimal string between 0 and 1")
            })
        })
        .transpose()?;
    Ok(ContractRequest {
        class,
        schedule: req.schedule,
        proofs_per_slot,
        redundancy,
        max_price_per_proof,
        min_reputation,
    })
}

/// Prices `req` against the book and stores a firm quote.
pub async fn quote(
    conn: &mut PgConnection,
    buyer: AccountId,
    req: &QuoteRequest,
    settings: &Settings,
    now: DateTime<Utc>,
) -> ApiResult<QuoteView> {
    let request = checked_request(conn, req, settings, now).await?;
    let market = &settings.market;
    let schedule = &request.schedule;
    let last = schedule.last_opens_at().ok_or_else(|| ApiError::new(ErrorCode::InvalidSchedule, "schedule: it has no slot"))?;
    let span = (floor_hour(schedule.start), floor_hour(last) + Duration::hours(1));

    // The contract's peak proofs per clock hour (the allocator's `units`): offers selling fewer
    // serve none of it, so they are left out before the cap counts them.
    let units = SlotRun::of(schedule, 0..schedule.slot_count(), request.proofs_per_slot)
        .map_or(u32::MAX, |whole| u32::try_from(whole.peak_hourly()).unwrap_or(u32::MAX));
    let rows = store::offers::candidates(
        conn,
        &store::offers::CandidateFilter {
            class: &request.class,
            from: span.0,
            to: span.1,
            min_proofs_per_hour: units,
            max_price: request.max_price_per_proof,
            limit: market.max_quote_candidates,
        },
    )
    .await?;
    let ids: Vec<i64> = rows.iter().map(|o| o.id).collect();
    let mut held: HashMap<i64, Vec<_>> = HashMap::new();
    for (offer, h) in store::offers::held(conn, &ids, span.0, span.1).await? {
        held.entry(offer).or_default().push(h);
    }
    let provers: Vec<Uuid> = rows.iter().map(|o| o.prover_id.0).collect::<BTreeSet<_>>().into_iter().collect();
    let reputations: HashMap<AccountId, Decimal> = store::reputation::counts(conn, &provers, &request.class)
        .await?
        .into_iter()
        .map(|(p, delivered, missed)| (p, score(delivered, missed)))
        .collect();
    let bonded: HashMap<Uuid, Decimal> = store::ledger::bonded_of(conn, &provers).await?.into_iter().collect();
    let required: HashMap<Uuid, Decimal> = store::contracts::collateral_required(
        conn,
        &provers,
        ReservationRole::Primary,
        now,
        now + market.collateral_window,
        market.slash_multiplier,
    )
    .await?
    .into_iter()
    .collect();
    // A prover whose bond no longer backs its offers (it was slashed) sells nothing until it stakes again.
    let mut backed: BTreeSet<Uuid> = BTreeSet::new();
    for (prover, exposure) in store::offers::hourly_exposures(conn, &provers, now).await? {
        let needed = backing_required(market.slash_multiplier, market.collateral_window, exposure);
        if bonded.get(&prover).copied().unwrap_or_default() >= needed {
            backed.insert(prover);
        }
    }

    let offers: Vec<OfferSnapshot> = rows
        .into_iter()
        .filter(|o| backed.contains(&o.prover_id.0))
        .filter_map(|o| {
            let price = TieredPrice::new(o.price_per_proof, o.tiers).ok()?;
            Some(OfferSnapshot {
                offer_id: o.id,
                prover_id: o.prover_id,
                class: o.class,
                window_start: o.window_start,
                window_end: o.window_end,
                proofs_per_hour: o.proofs_per_hour,
                price,
                reputation: reputations.get(&o.prover_id).copied().unwrap_or(NO_HISTORY),
                held: held.remove(&o.id).unwrap_or_default(),
            })
        })
        .collect();
    let mut collateral = CollateralTerms {
        now,
        window: market.collateral_window,
        slash_multiplier: market.slash_multiplier,
        headroom: provers
            .iter()
            .map(|p| {
                let free = bonded.get(p).copied().unwrap_or_default() - required.get(p).copied().unwrap_or_default();
                (AccountId(*p), free)
            })
            .collect(),
    };
    // The allocation is CPU work that grows with candidates x segments of the term: it runs on the
    // blocking pool, so it never stalls the async workers serving other requests, and under a
    // deadline, so one quote cannot hold a thread (and this transaction's connection) for long.
    let budget = market.quote_budget;
    let (discounts, fee_bps, escrow_window) = (market.discounts.clone(), market.fee_bps, market.escrow_window);
    let allocating = request.clone();
    let (allocation, terms) = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + budget;
        let allocation =
            allocate_within(&allocating, &offers, &mut collateral, &mut rand::thread_rng(), Some(deadline))?;
        let terms = price_allocation(&allocating, &allocation, &offers, &discounts, fee_bps, escrow_window);
        Ok((allocation, terms))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|err| allocation_error(err, budget))?;
    let terms = terms.map_err(ApiError::internal)?;

    let blocks: Vec<AllocationBlock> = allocation
        .blocks
        .iter()
        .map(|b: &Block| AllocationBlock {
            first_slot: b.first_slot,
            end_slot: b.end_slot,
            starts_at: b.starts_at,
            ends_at: b.ends_at,
            primary: b.primary,
            backups: b.backups.clone(),
            price_per_proof: terms.locked_prices[&b.primary.offer_id],
        })
        .collect();
    let view = QuoteView {
        quote_id: Uuid::new_v4(),
        proof_class: request.class.clone(),
        schedule: request.schedule,
        proofs_per_slot: request.proofs_per_slot,
        redundancy: request.redundancy,
        slot_count: terms.slot_count,
        proof_count: terms.proof_count,
        units_per_hour: allocation.units_per_hour,
        price_per_proof: terms.price_per_proof,
        discount_bps: terms.discount_bps,
        list_total: terms.list_total,
        total: terms.total,
        fee: terms.fee,
        escrow_required: terms.escrow_required,
        valid_until: now + market.quote_ttl,
        allocation: blocks,
    };
    let body = serde_json::to_value(&view).map_err(ApiError::internal)?;
    store::contracts::insert_quote(
        conn,
        &store::contracts::QuoteRow {
            id: view.quote_id,
            buyer_id: buyer,
            request: serde_json::to_value(req).map_err(ApiError::internal)?,
            body: body.clone(),
            allocation: serde_json::to_value(&view.allocation).map_err(ApiError::internal)?,
            valid_until: view.valid_until,
        },
    )
    .await?;
    Ok(view)
}

/// A contract.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContractView {
    /// Contract id.
    pub contract_id: Uuid,
    /// The quote it was bought from.
    pub quote_id: Uuid,
    /// The buyer.
    pub buyer_id: AccountId,
    /// Running, suspended (see `status_reason`), completed.
    pub status: ContractStatus,
    /// Why, when suspended (machine-readable).
    pub status_reason: Option<ContractReason>,
    /// What is proved.
    pub proof_class: ProofClass,
    /// When slots open.
    pub schedule: Schedule,
    /// Proofs per slot.
    pub proofs_per_slot: u32,
    /// Backups per slot.
    pub redundancy: u8,
    /// Slots in the term.
    pub slot_count: u64,
    /// Average locked price per proof.
    pub price_per_proof: Money,
    /// Discount applied, in basis points.
    pub discount_bps: u32,
    /// What the term costs.
    pub total: Money,
    /// The exchange's fee out of the total.
    pub fee: Money,
    /// Escrow locked at purchase.
    pub escrow_locked: Money,
    /// When it was bought.
    pub created_at: DateTime<Utc>,
    /// Every slot's provers, as runs of slots.
    pub allocation: Vec<AllocationBlock>,
}

fn money(value: Decimal) -> ApiResult<Money> {
    Money::from_decimal(value).map_err(ApiError::internal)
}

fn contract_view(row: ContractRow, blocks: &[BlockRow]) -> ApiResult<ContractView> {
    let proof_class = store::offers::proof_class_from_columns(&row.system, row.circuit, row.size_log2, row.deadline_secs)?;
    let allocation = blocks
        .iter()
        .map(|b| {
            Ok(AllocationBlock {
                first_slot: u64::try_from(b.first_slot).map_err(ApiError::internal)?,
                end_slot: u64::try_from(b.end_slot).map_err(ApiError::internal)?,
                starts_at: b.starts_at,
                ends_at: b.ends_at,
                primary: Assignment { offer_id: b.primary_offer_id, prover_id: AccountId(b.primary_prover_id) },
                backups: b
                    .backup_offer_ids
                    .iter()
                    .zip(&b.backup_prover_ids)
                    .map(|(o, p)| Assignment { offer_id: *o, prover_id: AccountId(*p) })
                    .collect(),
                price_per_proof: money(b.price_per_proof)?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ContractView {
        contract_id: row.id,
        quote_id: row.quote_id,
        buyer_id: AccountId(row.buyer_id),
        status: row.status,
        status_reason: row.status_reason,
        proof_class,
        schedule: Schedule {
            start: row.starts_at,
            end: row.ends_at,
            every_secs: u32::try_from(row.every_secs).map_err(ApiError::internal)?,
        },
        proofs_per_slot: u32::try_from(row.proofs_per_slot).map_err(ApiError::internal)?,
        redundancy: u8::try_from(row.redundancy).map_err(ApiError::internal)?,
        slot_count: u64::try_from(row.slot_count).map_err(ApiError::internal)?,
        price_per_proof: money(row.price_per_proof)?,
        discount_bps: u32::try_from(row.discount_bps).map_err(ApiError::internal)?,
        total: money(row.total)?,
        fee: money(row.fee)?,
        escrow_locked: money(row.escrow_locked)?,
        created_at: row.created_at,
        allocation,
    })
}

/// Accepts a quote: reserves the capacity of every slot, checks the primaries' collateral, and
/// locks the first escrow window, all in the caller's transaction; or fails whole.
pub async fn accept(
    conn: &mut PgConnection,
    buyer: AccountId,
    quote_id: Uuid,
    settings: &Settings,
    now: DateTime<Utc>,
) -> ApiResult<ContractView> {
    let market = &settings.market;
    let quote = store::contracts::lock_quote(conn, quote_id)
        .await?
        .filter(|q| q.buyer_id == buyer)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("quote_id: no quote {quote_id} of yours")))?;
    if let Some(contract) = store::contracts::contract_of_quote(conn, quote_id).await? {
        return Err(ApiError::new(ErrorCode::QuoteAlreadyAccepted, "this quote was already accepted")
            .with_hint(format!("see GET /v1/contracts/{contract}")));
    }
    if quote.valid_until < now {
        return Err(ApiError::new(
            ErrorCode::QuoteExpired,
            format!("the quote expired at {}", quote.valid_until.to_rfc3339()),
        )
        .with_hint("request a new quote with POST /v1/quotes"));
    }
    let view: QuoteView = serde_json::from_value(quote.body).map_err(ApiError::internal)?;
    let contract_id = Uuid::new_v4();
    let row = ContractRow {
        id: contract_id,
        buyer_id: buyer.0,
        quote_id,
        system: store::offers::system_name(view.proof_class.system),
        circuit: view.proof_class.circuit.clone(),
        size_log2: i16::from(view.proof_class.size_log2),
        deadline_secs: i32::try_from(view.proof_class.deadline_secs).map_err(ApiError::internal)?,
        starts_at: view.schedule.start,
        ends_at: view.schedule.end,
        every_secs: i32::try_from(view.schedule.every_secs).map_err(ApiError::internal)?,
        proofs_per_slot: i32::try_from(view.proofs_per_slot).map_err(ApiError::internal)?,
        redundancy: i16::from(view.redundancy),
        slot_count: i64::try_from(view.slot_count).map_err(ApiError::internal)?,
        price_per_proof: view.price_per_proof.as_decimal(),
        discount_bps: i32::try_from(view.discount_bps).map_err(ApiError::internal)?,
        total: view.total.as_decimal(),
        fee: view.fee.as_decimal(),
        escrow_locked: view.escrow_required.as_decimal(),
        status: ContractStatus::Active,
        status_reason: None,
        created_at: now,
    };
    let blocks: Vec<BlockRow> = view
        .allocation
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let run = SlotRun::of(&view.schedule, b.first_slot..b.end_slot, view.proofs_per_slot)
                .ok_or_else(|| ApiError::internal("a quoted block has no slots"))?;
            Ok(BlockRow {
                run,
                block_no: i32::try_from(i).map_err(ApiError::internal)?,
                first_slot: i64::try_from(b.first_slot).map_err(ApiError::internal)?,
                end_slot: i64::try_from(b.end_slot).map_err(ApiError::internal)?,
                starts_at: b.starts_at,
                ends_at: b.ends_at,
                primary_offer_id: b.primary.offer_id,
                primary_prover_id: b.primary.prover_id.0,
                backup_offer_ids: b.backups.iter().map(|a| a.offer_id).collect(),
                backup_prover_ids: b.backups.iter().map(|a| a.prover_id.0).collect(),
                price_per_proof: b.price_per_proof.as_decimal(),
            })
        })
        .collect::<ApiResult<_>>()?;
    let capacity_gone = |why: &str| {
        ApiError::new(ErrorCode::CapacityGone, format!("the quoted capacity is no longer available: {why}"))
            .with_hint("request a new quote with POST /v1/quotes")
    };
    let units = i32::try_from(view.units_per_hour).map_err(ApiError::internal)?;
    store::contracts::insert_contract(conn, &row, &blocks, units).await.map_err(|err| match err {
        store::contracts::InsertError::CapacityGone(why) => capacity_gone(why),
        store::contracts::InsertError::Db(err) => err.into(),
    })?;
    store::contracts::mark_quote_accepted(conn, quote_id, now).await?;

    // The primaries' stake must still cover their slots in the collateral window, these included.
    let primaries: Vec<Uuid> =
        blocks.iter().map(|b| b.primary_prover_id).collect::<BTreeSet<_>>().into_iter().collect();
    let bonded: HashMap<Uuid, Decimal> = store::contracts::lock_bonded(conn, &primaries).await?.into_iter().collect();
    let required = store::contracts::collateral_required(
        conn,
        &primaries,
        ReservationRole::Primary,
        now,
        now + market.collateral_window,
        market.slash_multiplier,
    )
    .await?;
    if required.iter().any(|(p, r)| *r > bonded.get(p).copied().unwrap_or_default()) {
        return Err(capacity_gone("a quoted prover's stake no longer covers its slots"));
    }

    if view.escrow_required.is_positive() {
        let entry = JournalEntry::internal(
            EntryKind::EscrowLock,
            buyer,
            AccountKind::Available,
            AccountKind::Escrow,
            view.escrow_required,
            pcx_settlement::reference::escrow_at_purchase(contract_id),
        )
        .map_err(ApiError::internal)?;
        store::ledger::post(conn, &entry).await.map_err(|e| {
            let err = post_error(e, "escrow");
            if err.code == ErrorCode::InsufficientFunds {
                err.with_hint(format!(
                    "the first {} h of slots need {} in escrow; deposit funds, then accept again",
                    market.escrow_window.num_hours(),
                    view.escrow_required
                ))
            } else {
                err
            }
        })?;
    }
    // Settlement starts from here: nothing materialised yet, the first escrow window locked.
    let escrow_until = view.schedule.first_slot_at_or_after(view.schedule.start + market.escrow_window);
    store::progress::start(conn, contract_id, &view.schedule, escrow_until, view.escrow_required).await?;
    warn_if_escrow_low(conn, buyer, contract_id, &view, escrow_until, now).await?;
    tracing::info!(contract = %contract_id, buyer = %buyer, slots = view.slot_count, "contract bought");
    contract_view(row, &blocks)
}

/// `escrow.low` for a buyer whose available balance, once the first window is locked, does not
/// pay for the next slot that will need escrow (the webhook event warns before the contract is
/// suspended for it).
async fn warn_if_escrow_low(
    conn: &mut PgConnection,
    buyer: AccountId,
    contract: Uuid,
    view: &QuoteView,
    escrow_until: u64,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    // The first slot past the locked window, if the term has one.
    let Some(next_top_up_at) = (escrow_until < view.slot_count).then(|| view.schedule.slot_opens_at(escrow_until)).flatten() else {
        return Ok(());
    };
    let next_slot = Money::round_stored(view.price_per_proof.as_decimal() * rust_decimal::Decimal::from(view.proofs_per_slot))?;
    let available = store::ledger::balances(conn, buyer).await?.available;
    if available < next_slot {
        let data = serde_json::json!({"available": available, "next_top_up": next_slot, "next_top_up_at": next_top_up_at});
        let event = crate::webhooks::settlement::contract(buyer, crate::webhooks::EventType::EscrowLow, contract, now, data);
        crate::service::webhooks::emit(conn, &event).await?;
    }
    Ok(())
}

/// Who is reading a contract.
#[derive(Debug, Clone, Copy)]
pub enum Reader {
    /// A buyer account.
    Buyer(AccountId),
    /// A prover account.
    Prover(AccountId),
    /// The operator.
    Admin,
}

/// One contract, if `reader` may see it (its buyer, a prover serving it, the operator).
pub async fn get(conn: &mut PgConnection, reader: Reader, id: Uuid) -> ApiResult<ContractView> {
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("no contract {id} visible to you"));
    let row = store::contracts::get_contract(conn, id).await?.ok_or_else(not_found)?;
    let visible = match reader {
        Reader::Buyer(b) => row.buyer_id == b.0,
        Reader::Prover(p) => store::contracts::serves(conn, id, p.0).await?,
        Reader::Admin => true,
    };
    if !visible {
        return Err(not_found());
    }
    let blocks = store::contracts::blocks(conn, id).await?;
    contract_view(row, &blocks)
}

/// Contracts visible to `reader`, newest first.
pub async fn list(conn: &mut PgConnection, reader: Reader, limit: i64) -> ApiResult<Vec<ContractView>> {
    let viewer = match reader {
        Reader::Buyer(b) => store::contracts::Viewer::Buyer(b.0),
        Reader::Prover(p) => store::contracts::Viewer::Prover(p.0),
        Reader::Admin => store::contracts::Viewer::Admin,
    };
    let mut out = Vec::new();
    for row in store::contracts::list(conn, viewer, limit).await? {
        let blocks = store::contracts::blocks(conn, row.id).await?;
        out.push(contract_view(row, &blocks)?);
    }
    Ok(out)
}

/// One slot of a contract.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SlotView {
    /// Slot number, from 0.
    pub n: u64,
    /// When it opens: `start + n * every_secs`.
    pub opens_at: DateTime<Utc>,
    /// The proof must be verified by then.
    pub deadline: DateTime<Utc>,
    /// Its state.
    pub state: SlotState,
    /// The primary prover (after any replacement).
    pub primary: AccountId,
    /// The backup provers, in order.
    pub backups: Vec<AccountId>,
    /// Set when the primary chosen at purchase was replaced before the slot opened.
    pub primary_replaced: Option<PrimaryReplaced>,
    /// Who delivered the proof, once delivered.
    pub delivered_by: Option<AccountId>,
    /// Machine-readable reason of the final state.
    pub reason: Option<SlotReason>,
    /// True once the buyer posted the slot's input.
    pub input_posted: bool,
    /// Jobs that failed on this slot by their prover's fault (each one slashed it when it could).
    pub failed_attempts: u32,
    /// Locked price per proof.
    pub price_per_proof: Money,
}

/// A primary replaced before its slot opened.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PrimaryReplaced {
    /// The primary chosen at purchase.
    pub previous_primary: AccountId,
    /// Why it was replaced.
    pub reason: Replacement,
}

/// Slots `from..from + limit` of a contract: computed from its schedule and allocation blocks, with
/// the state of those settlement has materialised.
pub async fn slots(conn: &mut PgConnection, contract: &ContractView, from: u64, limit: u64) -> ApiResult<Vec<SlotView>> {
    if from >= contract.slot_count {
        return Ok(Vec::new());
    }
    let end = from.saturating_add(limit).min(contract.slot_count);
    let records = store::slots::records(conn, contract.contract_id, from, end).await?;
    let deadline = Duration::seconds(i64::from(contract.proof_class.deadline_secs));
    Ok((from..end)
        .filter_map(|n| {
            let block = contract.allocation.iter().find(|b| b.first_slot <= n && n < b.end_slot)?;
            let opens_at = contract.schedule.slot_opens_at(n)?;
            let record = records.iter().find(|r| r.n == n);
            Some(SlotView {
                n,
                opens_at,
                deadline: opens_at + deadline,
                state: record.map_or(SlotState::Scheduled, |r| r.state),
                primary: record.map_or(block.primary.prover_id, |r| r.primary),
                backups: record.map_or_else(|| block.backups.iter().map(|a| a.prover_id).collect(), |r| r.backups.clone()),
                primary_replaced: record
                    .and_then(|r| r.replaced)
                    .map(|(previous_primary, reason)| PrimaryReplaced { previous_primary, reason }),
                delivered_by: record.and_then(|r| r.delivered_by),
                reason: record.and_then(|r| r.reason),
                input_posted: record.is_some_and(|r| r.input.is_some()),
                failed_attempts: record.map_or(0, |r| r.failed_attempts),
                price_per_proof: block.price_per_proof,
            })
        })
        .collect())
}

/// A slot's input as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SlotInputView {
    /// Contract.
    pub contract_id: Uuid,
    /// Slot number.
    pub n: u64,
    /// hash-chain: the seed, canonical decimal form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_input: Option<String>,
    /// A registered circuit: the input signals as posted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
    /// The public signals the proof will be verified against (outputs, then public inputs).
    pub public_signals: Vec<String>,
    /// When the slot opens; the input can change until then.
    pub opens_at: DateTime<Utc>,
}

/// Posts (or replaces) a slot's input before the slot opens. The contract's circuit checks it
/// first: a registered circuit computes the witness and checks every constraint, so an input
/// no prover could prove is refused here (422 `input_unprovable`) and never becomes a job.
pub async fn put_input(
    conn: &mut PgConnection,
    state: &crate::AppState,
    buyer: AccountId,
    contract_id: Uuid,
    n: u64,
    posted: PostedInput,
    now: DateTime<Utc>,
) -> ApiResult<SlotInputView> {
    let contract = get(conn, Reader::Buyer(buyer), contract_id).await?;
    if n >= contract.slot_count {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("slot {n} does not exist; the contract has slots 0 to {}", contract.slot_count - 1),
        ));
    }
    let opens_at = contract.schedule.slot_opens_at(n).ok_or_else(|| ApiError::internal("slot beyond schedule"))?;
    let slot_too_late = || {
        ApiError::new(ErrorCode::SlotAlreadyOpen, format!("slot {n} opened at {}; inputs must come before a slot opens", opens_at.to_rfc3339()))
    };
    if opens_at <= now {
        return Err(slot_too_late());
    }
    let circuit = state.circuit(&contract.proof_class).await?;
    let checking = circuit.clone();
    let canonical = tokio::task::spawn_blocking(move || checking.parse_input(&posted))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            InputError::Unprovable(_) => ApiError::new(ErrorCode::InputUnprovable, e.to_string()),
            InputError::Stored => ApiError::internal(e),
            InputError::Field(_) | InputError::WrongKind(_) => ApiError::new(ErrorCode::InvalidInput, e.to_string()),
        })?;
    let public_signals =
        circuit.public_inputs(&canonical).map_err(ApiError::internal)?.iter().map(field_to_decimal).collect();
    // Materialise this one slot early if the scheduler has not reached it yet.
    let deadline = opens_at + Duration::seconds(i64::from(contract.proof_class.deadline_secs));
    store::slots::insert(conn, contract_id, &[(n, opens_at, deadline)]).await?;
    if !store::slots::set_input(conn, contract_id, n, &canonical).await? {
        return Err(slot_too_late());
    }
    let (public_input, input) = match StoredCircomInput::parse(&canonical) {
        Some(stored) => (None, Some(stored.input)),
        None => (Some(canonical), None),
    };
    Ok(SlotInputView { contract_id, n, public_input, input, public_signals, opens_at })
}

/// A delivered slot's proof.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProofView {
    /// Contract.
    pub contract_id: Uuid,
    /// Slot number.
    pub n: u64,
    /// What was proved.
    pub proof_class: ProofClass,
    /// Public inputs in circuit order (hash-chain: `[seed, out]`), decimal field elements.
    pub public_inputs: Vec<String>,
    /// `groth16-bn254-arkworks-compressed`: `proof` is `0x` + the 128-byte compressed encoding of
    /// (A ∈ G1, B ∈ G2, C ∈ G1) by ark-serialize.
    pub encoding: String,
    /// The proof, encoded as `encoding` says.
    pub proof: String,
    /// The same proof as affine coordinates (decimal strings), for other verifiers.
    #[schema(value_type = Object)]
    pub points: serde_json::Value,
    /// The proof as snarkjs writes it: `proof` is proof.json, `publicSignals` public.json, so
    /// `snarkjs groth16 verify vk.json public.json proof.json` checks it (vk.json: the circuit's
    /// `GET /v1/circuits/{id}/verification_key`).
    #[schema(value_type = Object)]
    pub snarkjs: serde_json::Value,
    /// The arguments of the circuit's Solidity verifier's `verifyProof(a, b, c, publicSignals)`
    /// (`GET /v1/circuits/{id}/verifier.sol`), 32-byte hex words.
    #[schema(value_type = Object)]
    pub calldata: serde_json::Value,
    /// Who delivered it.
    pub delivered_by: AccountId,
    /// When it was verified.
    pub delivered_at: DateTime<Utc>,
}

/// The proof of a delivered slot.
pub async fn proof(conn: &mut PgConnection, reader: Reader, contract_id: Uuid, n: u64) -> ApiResult<ProofView> {
    let contract = get(conn, reader, contract_id).await?;
    if n >= contract.slot_count {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("slot {n} does not exist; the contract has slots 0 to {}", contract.slot_count.saturating_sub(1)),
        ));
    }
    let record = store::slots::records(conn, contract_id, n, n.saturating_add(1)).await?.pop();
    let state = record.as_ref().map_or(SlotState::Scheduled, |r| r.state);
    let not_delivered = || ApiError::new(ErrorCode::SlotNotDelivered, format!("slot {n} is {state}: it has no proof"));
    let record = record.ok_or_else(not_delivered)?;
    let (Some(proof), Some(by), Some(at), Some(public_inputs)) = (record.proof, record.delivered_by, record.delivered_at, record.public_signals)
    else {
        return Err(not_delivered());
    };
    let decoded = encoding::decode_proof(&proof).map_err(ApiError::internal)?;
    let (encoding, points) = Circuit::describe_proof(&decoded);
    let signals = public_inputs.iter().map(|s| parse_field_element(s)).collect::<Result<Vec<_>, _>>().map_err(ApiError::internal)?;
    Ok(ProofView {
        snarkjs: serde_json::json!({
            "proof": snarkjs::proof_to_json(&decoded),
            "publicSignals": snarkjs::public_signals_to_json(&signals),
        }),
        calldata: solidity::calldata(&decoded, &signals),
        contract_id,
        n,
        proof_class: contract.proof_class,
        public_inputs,
        encoding: encoding.into(),
        proof,
        points: serde_json::to_value(points).map_err(ApiError::internal)?,
        delivered_by: by,
        delivered_at: at,
    })
}
