//! The market: prover stake, offers (the book), discounts, quotes, contracts and their slots, and
//! the public record of recent deliveries and misses.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use pcx_capacity_reservation::discounts::DiscountSchedule;
use pcx_domain::{AccountId, ProofClass, ProofSystem, Role};
use pcx_prover_pool::circuit::PostedInput;
use pcx_settlement::state::{SlotReason, SlotState};

use crate::auth::{Caller, Principal};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{ApiJson, ApiPath, ApiQuery, IdempotencyKey};
use crate::idempotency::{self, reply, respond};
use crate::routes::funds::BalancesResponse;
use crate::service::contracts::{self, ContractView, ProofView, QuoteRequest, QuoteView, Reader, SlotInputView, SlotView};
use crate::service::offers::{self, OfferInput, OfferView};
use crate::service::provers;
use crate::store;
use crate::{validate, AppState};


/// A stake movement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StakeRequest {
    /// Amount (a positive decimal string, at most 6 decimals).
    #[schema(value_type = crate::validate::PositiveAmount)]
    pub amount: String,
}

/// The prover's balances after a stake movement.
#[derive(Debug, Serialize, ToSchema)]
pub struct StakeResponse {
    /// Journal entry id.
    pub entry_id: i64,
    /// Balances afterwards.
    pub balances: BalancesResponse,
}

/// Which way stake moves.
#[derive(Debug, Clone, Copy)]
enum StakeMove {
    Bond,
    Release,
}

async fn move_stake(state: AppState, caller: Caller, key: Option<String>, req: StakeRequest, how: StakeMove) -> ApiResult<Response> {
    let prover = caller.account_with_role(Role::Prover)?;
    let amount = validate::positive_amount("amount", &req.amount)?;
    let route = match how {
        StakeMove::Bond => "POST /v1/provers/stake",
        StakeMove::Release => "POST /v1/provers/unstake",
    };
    let hash = idempotency::request_hash(route, &amount.to_string());
    let app = state.clone();
    let now = state.now();
    let done = idempotency::run(&state, caller.principal, key, hash, move |conn| {
        Box::pin(async move {
            let (entry_id, balances) = match how {
                StakeMove::Bond => provers::stake(conn, prover, amount).await?,
                StakeMove::Release => provers::unstake(conn, &app, prover, amount, now).await?,
            };
            reply(StatusCode::CREATED, &StakeResponse { entry_id, balances: balances.into() })
        })
    })
    .await?;
    Ok(respond(done))
}

/// Bonds stake: `available -> bonded`. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/provers/stake", tag = "provers", security(("bearer" = [])), request_body = StakeRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = StakeResponse), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub async fn stake(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<StakeRequest>,
) -> ApiResult<Response> {
    move_stake(state, caller, key, req, StakeMove::Bond).await
}

/// Releases stake: `bonded -> available`, only what secures nothing: not the slots the prover is
/// primary or backup on in the collateral window, not the jobs it holds, not its active offers'
/// backing. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/provers/unstake", tag = "provers", security(("bearer" = [])), request_body = StakeRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = StakeResponse), (status = 409, body = ErrorEnvelope, description = "stake_locked"),
              (status = 422, body = ErrorEnvelope)))]
pub async fn unstake(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<StakeRequest>,
) -> ApiResult<Response> {
    move_stake(state, caller, key, req, StakeMove::Release).await
}

/// Posts an offer (ask). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/offers", tag = "offers", security(("bearer" = [])), request_body = OfferInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = OfferView), (status = 403, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope,
              description = "insufficient_stake, too_many_offers"), (status = 422, body = ErrorEnvelope)))]
pub async fn create_offer(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<OfferInput>,
) -> ApiResult<Response> {
    let prover = caller.account_with_role(Role::Prover)?;
    let hash = idempotency::request_hash("POST /v1/offers", &req);
    let settings = state.settings.clone();
    let now = state.now();
    let done = idempotency::run(&state, caller.principal, key, hash, move |conn| {
        Box::pin(async move {
            let offer = offers::create(conn, prover, &req, &settings.market, now).await?;
            reply(StatusCode::CREATED, &offer)
        })
    })
    .await?;
    Ok(respond(done))
}

/// Filter of the book.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BookQuery {
    /// Proof system, e.g. `groth16-bn254`.
    pub system: Option<ProofSystem>,
    /// Circuit, e.g. `hash-chain`.
    pub circuit: Option<String>,
    /// Size (log2 of constraints).
    pub size_log2: Option<u8>,
    /// Deadline in seconds.
    pub deadline_secs: Option<u32>,
    /// Only this prover's offers.
    pub prover_id: Option<AccountId>,
    /// At most this many (1..=1000, default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The public book.
#[derive(Debug, Serialize, ToSchema)]
pub struct BookResponse {
    /// Active offers whose window has not ended, cheapest first.
    pub offers: Vec<OfferView>,
}

/// The public book of active offers, cheapest first; no account needed.
#[utoipa::path(get, path = "/v1/offers", tag = "offers", params(BookQuery),
    responses((status = 200, body = BookResponse), (status = 422, body = ErrorEnvelope)))]
pub async fn list_offers(State(state): State<AppState>, ApiQuery(q): ApiQuery<BookQuery>) -> ApiResult<Json<BookResponse>> {
    let limit = q.limit.unwrap_or(200);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit: must be between 1 and 1000"));
    }
    let filter = store::offers::BookFilter {
        system: q.system,
        circuit: q.circuit,
        size_log2: q.size_log2,
        deadline_secs: q.deadline_secs,
        prover_id: q.prover_id,
    };
    // A public read: from the read replica when one is set (DATABASE_READ_URL).
    let mut conn = state.read_db.acquire().await?;
    let rows = store::offers::book(&mut conn, &filter, state.now(), i64::from(limit)).await?;
    Ok(Json(BookResponse { offers: rows.into_iter().map(Into::into).collect() }))
}

/// Cancels one of the caller's offers; slots already reserved on it stay obligations.
#[utoipa::path(delete, path = "/v1/offers/{id}", tag = "offers", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Offer id")),
    responses((status = 200, body = OfferView), (status = 403, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn cancel_offer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<OfferView>> {
    let prover = caller.account_with_role(Role::Prover)?;
    let mut tx = state.db.begin().await?;
    let offer = offers::cancel(&mut tx, prover, id, state.now()).await?;
    tx.commit().await?;
    Ok(Json(offer))
}

/// The published volume-discount schedule; no account needed.
#[utoipa::path(get, path = "/v1/discounts", tag = "market",
    responses((status = 200, body = DiscountSchedule)))]
pub async fn discounts(State(state): State<AppState>) -> Json<DiscountSchedule> {
    Json(state.settings.market.discounts.clone())
}

/// A firm, short-lived quote for a schedule, allocated over the book. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/quotes", tag = "market", security(("bearer" = [])), request_body = QuoteRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = QuoteView), (status = 403, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope, description = "insufficient_capacity"),
              (status = 422, body = ErrorEnvelope, description = "invalid input, or quote_too_complex")))]
pub async fn create_quote(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<QuoteRequest>,
) -> ApiResult<Response> {
    let buyer = caller.account_with_role(Role::Buyer)?;
    let hash = idempotency::request_hash("POST /v1/quotes", &req);
    let settings = state.settings.clone();
    let now = state.now();
    let done = idempotency::run(&state, caller.principal, key, hash, move |conn| {
        Box::pin(async move {
            let quote = contracts::quote(conn, buyer, &req, &settings, now).await?;
            reply(StatusCode::CREATED, &quote)
        })
    })
    .await?;
    Ok(respond(done))
}

/// Accepting a quote.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractRequest {
    /// The quote to accept.
    pub quote_id: Uuid,
}

/// Buys a quote: reserves every slot's capacity and locks the first escrow window, or fails whole
/// (409 `capacity_gone`, `quote_expired`, `quote_already_accepted`, `insufficient_funds`, with a
/// hint). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/contracts", tag = "market", security(("bearer" = [])), request_body = ContractRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, body = ContractView), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope)))]
pub async fn create_contract(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<ContractRequest>,
) -> ApiResult<Response> {
    let buyer = caller.account_with_role(Role::Buyer)?;
    let hash = idempotency::request_hash("POST /v1/contracts", &req);
    let settings = state.settings.clone();
    let now = state.now();
    let done = idempotency::run(&state, caller.principal, key, hash, move |conn| {
        Box::pin(async move {
            let contract = contracts::accept(conn, buyer, req.quote_id, &settings, now).await?;
            reply(StatusCode::CREATED, &contract)
        })
    })
    .await?;
    Ok(respond(done))
}

fn reader(caller: &Caller) -> Reader {
    match (caller.principal, caller.role) {
        (Principal::Admin, _) => Reader::Admin,
        (Principal::Account(id), Role::Prover) => Reader::Prover(id),
        (Principal::Account(id), _) => Reader::Buyer(id),
    }
}

/// Contracts of the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContractsResponse {
    /// A buyer's purchases, the contracts a prover serves, or (operator) all; newest first.
    pub contracts: Vec<ContractView>,
}

/// Paging of the contract list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ContractsQuery {
    /// At most this many (1..=200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// The caller's contracts: a buyer's purchases, the contracts a prover serves, or all for the operator.
#[utoipa::path(get, path = "/v1/contracts", tag = "market", security(("bearer" = [])), params(ContractsQuery),
    responses((status = 200, body = ContractsResponse), (status = 401, body = ErrorEnvelope)))]
pub async fn list_contracts(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ContractsQuery>,
) -> ApiResult<Json<ContractsResponse>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit: must be between 1 and 200"));
    }
    let mut conn = state.db.acquire().await?;
    let list = contracts::list(&mut conn, reader(&caller), i64::from(limit)).await?;
    Ok(Json(ContractsResponse { contracts: list }))
}

/// One contract (its buyer, a prover serving it, or the operator).
#[utoipa::path(get, path = "/v1/contracts/{id}", tag = "market", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Contract id")),
    responses((status = 200, body = ContractView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_contract(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<ContractView>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(contracts::get(&mut conn, reader(&caller), id).await?))
}

/// A page of slots.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SlotsQuery {
    /// First slot number (default 0).
    pub from: Option<u64>,
    /// At most this many (1..=1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// Slots of a contract.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlotsResponse {
    /// Slots in order.
    pub slots: Vec<SlotView>,
    /// Pass as `from` for the next page; absent after the last slot.
    pub next_from: Option<u64>,
}

/// Slots of a contract, computed from its schedule and allocation.
#[utoipa::path(get, path = "/v1/contracts/{id}/slots", tag = "market", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Contract id"), SlotsQuery),
    responses((status = 200, body = SlotsResponse), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn list_slots(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<SlotsQuery>,
) -> ApiResult<Json<SlotsResponse>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit: must be between 1 and 1000"));
    }
    let from = q.from.unwrap_or(0);
    let mut conn = state.db.acquire().await?;
    let contract = contracts::get(&mut conn, reader(&caller), id).await?;
    let slots = contracts::slots(&mut conn, &contract, from, limit).await?;
    let next = from.saturating_add(limit);
    Ok(Json(SlotsResponse { slots, next_from: (next < contract.slot_count).then_some(next) }))
}

/// A slot's input: `public_input` for hash-chain, `input` for a registered circuit (exactly one).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(min_properties = 1, max_properties = 1)]
#[serde(deny_unknown_fields)]
pub struct SlotInputRequest {
    /// hash-chain: the seed, one BN254 scalar field element as a decimal string.
    #[schema(example = "12345678901234567890", pattern = "^[0-9]{1,76}$")]
    #[serde(default)]
    pub public_input: Option<String>,
    /// A registered circuit: its input signals, as snarkjs' input.json.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
}

/// Posts or replaces the input of a slot before it opens (buyer only). A registered circuit's
/// input is checked by computing its witness against every constraint: an input no prover could
/// prove is refused with 422 `input_unprovable`, saying which assert or constraint fails. The
/// stored input fixes the public signals the proof is verified against.
#[utoipa::path(put, path = "/v1/contracts/{id}/slots/{n}/input", tag = "market", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Contract id"), ("n" = u64, Path, description = "Slot number")),
    request_body = SlotInputRequest,
    responses((status = 200, body = SlotInputView), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope, description = "slot_already_open"),
              (status = 422, body = ErrorEnvelope, description = "invalid_input, input_unprovable")))]
pub async fn put_slot_input(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, n)): ApiPath<(Uuid, u64)>,
    ApiJson(req): ApiJson<SlotInputRequest>,
) -> ApiResult<Json<SlotInputView>> {
    let buyer = caller.account_with_role(Role::Buyer)?;
    let posted = match (req.public_input, req.input) {
        (Some(text), None) => PostedInput::PublicInput(text),
        (None, Some(signals)) => PostedInput::Signals(signals),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidBody,
                "send exactly one of `public_input` (hash-chain's seed) and `input` (a registered circuit's signals)",
            ))
        }
    };
    let mut tx = state.db.begin().await?;
    let view = contracts::put_input(&mut tx, &state, buyer, id, n, posted, state.now()).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// The verified proof of a delivered slot, with its public inputs.
#[utoipa::path(get, path = "/v1/contracts/{id}/slots/{n}/proof", tag = "market", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Contract id"), ("n" = u64, Path, description = "Slot number")),
    responses((status = 200, body = ProofView), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope, description = "slot_not_delivered")))]
pub async fn get_slot_proof(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, n)): ApiPath<(Uuid, u64)>,
) -> ApiResult<Json<ProofView>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(contracts::proof(&mut conn, reader(&caller), id, n).await?))
}

/// Which recent settlements.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RecentSlotsQuery {
    /// At most this many (1..=200, default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// A delivered or missed slot in the public record: no buyer, contract or input.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettledSlotView {
    /// What was proved.
    pub proof_class: ProofClass,
    /// `delivered` or `missed`.
    pub state: SlotState,
    /// Why: `delivered_by_primary`, `delivered_by_backup` (failed over), `delivered_by_open_market`,
    /// `no_valid_proof_by_deadline`, or a miss that was the exchange's fault (`exchange_late`,
    /// `exchange_down`: refunded, nobody slashed).
    pub reason: Option<SlotReason>,
    /// When the slot opened.
    pub opens_at: DateTime<Utc>,
    /// Its deadline.
    pub deadline: DateTime<Utc>,
    /// When it was settled.
    pub settled_at: DateTime<Utc>,
    /// Its primary prover.
    pub primary: AccountId,
    /// Who delivered, once delivered.
    pub delivered_by: Option<AccountId>,
    /// Seconds from opening to the verified proof, once delivered.
    #[schema(value_type = Option<String>)]
    pub latency_secs: Option<rust_decimal::Decimal>,
}

impl From<store::slots::SettledSlot> for SettledSlotView {
    fn from(s: store::slots::SettledSlot) -> Self {
        let latency_secs = s
            .delivered_at
            .map(|at| rust_decimal::Decimal::new((at - s.opens_at).num_milliseconds(), 3).normalize());
        SettledSlotView {
            proof_class: s.class,
            state: s.state,
            reason: s.reason,
            opens_at: s.opens_at,
            deadline: s.deadline,
            settled_at: s.settled_at,
            primary: s.primary,
            delivered_by: s.delivered_by,
            latency_secs,
        }
    }
}

/// The market's latest settlements.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecentSlotsResponse {
    /// Most recently settled first.
    pub slots: Vec<SettledSlotView>,
}

/// The latest deliveries and misses across the market, most recent first; no account needed.
#[utoipa::path(get, path = "/v1/slots/recent", tag = "market", operation_id = "recent_slots", params(RecentSlotsQuery),
    responses((status = 200, body = RecentSlotsResponse), (status = 422, body = ErrorEnvelope)))]
pub async fn recent_slots(State(state): State<AppState>, ApiQuery(q): ApiQuery<RecentSlotsQuery>) -> ApiResult<Json<RecentSlotsResponse>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "limit: must be between 1 and 200"));
    }
    // A public read: from the read replica when one is set (DATABASE_READ_URL).
    let mut conn = state.read_db.acquire().await?;
    let slots = store::slots::recent_settled(&mut conn, i64::from(limit)).await?;
    Ok(Json(RecentSlotsResponse { slots: slots.into_iter().map(Into::into).collect() }))
}

/// A prover's track record for one circuit.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReputationView {
    /// Proof system.
    pub system: String,
    /// Circuit.
    pub circuit: String,
    /// Jobs delivered.
    pub delivered: u64,
    /// Jobs failed and charged to it (missed, released, invalid).
    pub missed: u64,
    /// delivered / (delivered + missed), as a decimal string; absent without history.
    pub on_time_ratio: Option<String>,
    /// The score matching uses: (delivered + 1) / (delivered + missed + 2).
    pub score: String,
    /// Median seconds from slot opening to verified proof.
    pub latency_p50_secs: Option<f64>,
    /// 95th percentile of the same.
    pub latency_p95_secs: Option<f64>,
}

/// A prover's reputation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReputationResponse {
    /// The prover.
    pub prover_id: AccountId,
    /// Per circuit.
    pub classes: Vec<ReputationView>,
}

/// A prover's public track record: deliveries, misses, score and latency per circuit.
#[utoipa::path(get, path = "/v1/provers/{id}/reputation", tag = "provers",
    params(("id" = Uuid, Path, description = "Prover account id")),
    responses((status = 200, body = ReputationResponse)))]
pub async fn reputation(State(state): State<AppState>, ApiPath(id): ApiPath<Uuid>) -> ApiResult<Json<ReputationResponse>> {
    use pcx_settlement::reputation::{on_time_ratio, score};
    let mut conn = state.db.acquire().await?;
    let shown = |d: rust_decimal::Decimal| d.round_dp(4).normalize().to_string();
    let classes = store::reputation::of_prover(&mut conn, AccountId(id))
        .await?
        .into_iter()
        .map(|r| ReputationView {
            on_time_ratio: on_time_ratio(r.delivered, r.missed).map(shown),
            score: shown(score(r.delivered, r.missed)),
            system: r.system,
            circuit: r.circuit,
            delivered: r.delivered,
            missed: r.missed,
            latency_p50_secs: r.latency_p50_secs,
            latency_p95_secs: r.latency_p95_secs,
        })
        .collect();
    Ok(Json(ReputationResponse { prover_id: AccountId(id), classes }))
}
