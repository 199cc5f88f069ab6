//! Settlement inside `pcx serve`: the scheduler's tick and every slot transition.
//!
//! Each transition is one database transaction that re-reads the rows it changes under a lock and
//! changes them only from the state it expects; every payment, refund, bonus and slash carries a
//! reference that a unique index lets the journal hold once. So a transition either happens whole
//! or not at all, and a crash (even `kill -9`) followed by a restart on the same database redoes
//! only what did not commit: no slot is paid twice and money is conserved.
//!
//! The tick: materialise slots a horizon ahead; keep each contract's escrow window funded (or
//! suspend it, with a reason); open due slots (to the primary, or `unused`, or `cancelled`); fail
//! jobs past their ack deadline or lease (slash, then the next backup or the open market); settle
//! slots past their deadline as `missed` (refund); complete finished contracts.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, AccountKind, EntryKind, JournalEntry, LedgerAccount, Money};
use pcx_settlement::lifecycle::{next_role, JobFailure, JobRole, SlotReason, SlotState};
use pcx_settlement::money::{payment, slash};

use crate::config::Settings;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::{self, ledger::PostError, settlement::JobRow, settlement::SlotRow};
use crate::AppState;

/// Slots handled per transaction batch.
const BATCH: i64 = 200;
/// Most batches of slot openings per tick (each its own transaction).
const OPEN_BATCHES_PER_TICK: usize = 25;
/// Most slots materialised per contract per tick.
const MATERIALISE_CHUNK: i64 = 5_000;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Slots materialised.
    pub materialised: u64,
    /// Contracts whose escrow was topped up.
    pub escrowed: u64,
    /// Contracts suspended for want of escrow.
    pub suspended: u64,
    /// Slots opened (or settled at opening).
    pub opened: u64,
    /// Jobs failed for ack timeout or lease expiry.
    pub expired: u64,
    /// Slots settled as missed.
    pub missed: u64,
    /// Contracts completed.
    pub completed: u64,
}

fn money(value: Decimal) -> Result<Money, ApiError> {
    Money::round_stored(value).map_err(ApiError::internal)
}

fn user(id: Uuid, kind: AccountKind) -> LedgerAccount {
    LedgerAccount::user(AccountId(id), kind)
}

async fn post(conn: &mut PgConnection, entry: JournalEntry) -> ApiResult<()> {
    store::ledger::post(conn, &entry).await.map(|_| ()).map_err(|err| match err {
        PostError::InsufficientFunds => ApiError::internal(format!("settlement posting {} would overdraw", entry.reference())),
        PostError::UnknownAccount => ApiError::internal(format!("settlement posting {} names no account", entry.reference())),
        PostError::Db(err) => err.into(),
    })
}

fn opens_at(progress: &store::settlement::ContractProgress, n: i64) -> DateTime<Utc> {
    progress.starts_at + chrono::Duration::seconds(n * i64::from(progress.every_secs))
}

/// The first slot number opening at or after `t` (bounded by the slot count).
fn first_slot_at_or_after(progress: &store::settlement::ContractProgress, t: DateTime<Utc>) -> i64 {
    let every = i64::from(progress.every_secs.max(1));
    let offset = (t - progress.starts_at).num_seconds();
    let n = if offset <= 0 { 0 } else { (offset + every - 1) / every };
    n.min(progress.slot_count)
}

/// Runs one scheduler tick at `now`.
pub async fn tick(state: &AppState, now: DateTime<Utc>) -> ApiResult<TickReport> {
    let s = &state.settings;
    let mut report = TickReport::default();

    // 1. Materialise slots a horizon ahead.
    let mut tx = state.db.begin().await?;
    for progress in store::settlement::contracts_to_materialise(&mut tx, now + s.settlement.horizon, BATCH).await? {
        let from = progress.materialised_until;
        let to = first_slot_at_or_after(&progress, now + s.settlement.horizon + chrono::Duration::seconds(1))
            .max(from + 1)
            .min(from + MATERIALISE_CHUNK)
            .min(progress.slot_count);
        report.materialised += store::settlement::insert_slots(&mut tx, progress.id, from, to).await?;
        let next = (to < progress.slot_count).then(|| opens_at(&progress, to));
        store::settlement::set_materialised(&mut tx, progress.id, to, next).await?;
    }
    tx.commit().await?;

    // 2. Keep each contract's escrow window funded; one transaction per contract, since a buyer
    //    who cannot pay fails only its own top-up.
    let mut tx = state.db.begin().await?;
    let due = store::settlement::contracts_to_escrow(&mut tx, now + s.market.escrow_window, BATCH).await?;
    tx.commit().await?;
    for progress in due {
        match top_up_escrow(state, progress.id, now).await? {
            Some(true) => report.escrowed += 1,
            Some(false) => report.suspended += 1,
            None => {}
        }
    }

    // 3. Open due slots, batch after batch: a whole hour's openings should not wait for later ticks.
    for _ in 0..OPEN_BATCHES_PER_TICK {
        let mut tx = state.db.begin().await?;
        let due = store::settlement::slots_to_open(&mut tx, now, BATCH).await?;
        for slot in &due {
            open_slot(&mut tx, s, slot, now).await?;
        }
        tx.commit().await?;
        report.opened += due.len() as u64;
        if (due.len() as i64) < BATCH {
            break;
        }
    }

    // 4. Fail jobs past their ack deadline or lease. Locks are taken slot first, then job, as
    //    everywhere else, so the scheduler and proof submissions cannot deadlock.
    let mut tx = state.db.begin().await?;
    for candidate in store::settlement::expired_jobs(&mut tx, now, BATCH).await? {
        let Some(slot) = store::settlement::lock_slot(&mut tx, candidate.contract_id, candidate.n).await? else { continue };
        let Some(job) = store::settlement::lock_job(&mut tx, candidate.id).await? else { continue };
        let failure = match job.state.as_str() {
            "offered" if job.ack_deadline <= now => JobFailure::AckTimeout,
            "claimed" if job.lease_expires_at.is_some_and(|l| l <= now) => JobFailure::LeaseExpired,
            _ => continue,
        };
        fail_job(&mut tx, s, &job, &slot, failure, now, true).await?;
        report.expired += 1;
    }
    tx.commit().await?;

    // 5. Settle slots past their deadline.
    let mut tx = state.db.begin().await?;
    for slot in store::settlement::slots_past_deadline(&mut tx, now, BATCH).await? {
        settle_missed(&mut tx, s, &slot, now).await?;
        report.missed += 1;
    }
    tx.commit().await?;

    // 6. Complete finished contracts, releasing any escrow left.
    let mut tx = state.db.begin().await?;
    for progress in store::settlement::contracts_to_complete(&mut tx, BATCH).await? {
        let held = money(progress.escrow_held)?;
        if held.is_positive() {
            let entry = JournalEntry::internal(
                EntryKind::EscrowRelease,
                AccountId(progress.buyer_id),
                AccountKind::Escrow,
                AccountKind::Available,
                held,
                format!("release:{}", progress.id),
            )
            .map_err(ApiError::internal)?;
            post(&mut tx, entry).await?;
        }
        store::settlement::complete(&mut tx, progress.id, now).await?;
        report.completed += 1;
    }
    tx.commit().await?;
    Ok(report)
}

/// Locks the payments of the slots entering the escrow window. `Some(true)`: topped up,
/// `Some(false)`: the buyer cannot pay and the contract is suspended, `None`: nothing to do.
async fn top_up_escrow(state: &AppState, contract: Uuid, now: DateTime<Utc>) -> ApiResult<Option<bool>> {
    let window = state.settings.market.escrow_window;
    let mut tx = state.db.begin().await?;
    let Some(progress) = store::settlement::lock_contract(&mut tx, contract).await? else { return Ok(None) };
    let from = progress.escrow_until;
    let to = first_slot_at_or_after(&progress, now + window).max(from + 1).min(progress.slot_count);
    if from >= progress.slot_count || to <= from {
        return Ok(None);
    }
    let amount = money(store::settlement::price_of_slots(&mut tx, contract, from, to).await?)?;
    let next = (to < progress.slot_count).then(|| opens_at(&progress, to));
    if amount.is_positive() {
        let entry = JournalEntry::internal(
            EntryKind::EscrowLock,
            AccountId(progress.buyer_id),
            AccountKind::Available,
            AccountKind::Escrow,
            amount,
            format!("contract:{contract}:slots:{from}-{to}"),
        )
        .map_err(ApiError::internal)?;
        match store::ledger::post(&mut tx, &entry).await {
            Ok(_) => {}
            Err(PostError::InsufficientFunds) => {
                drop(tx);
                let mut tx = state.db.begin().await?;
                if progress.status == "active" {
                    store::settlement::set_status(&mut tx, contract, "suspended", Some("escrow_underfunded")).await?;
                    tracing::warn!(%contract, %amount, "contract suspended: the buyer cannot fund the escrow window");
                }
                tx.commit().await?;
                return Ok(Some(false));
            }
            Err(err) => return Err(ApiError::internal(err)),
        }
    }
    let held = progress.escrow_held + amount.as_decimal();
    store::settlement::set_escrow(&mut tx, contract, to, next, held).await?;
    if progress.status == "suspended" {
        store::settlement::set_status(&mut tx, contract, "active", None).await?;
        tracing::info!(%contract, "contract resumed: escrow funded again");
    }
    tx.commit().await?;
    Ok(Some(true))
}

/// Opens a slot: cancelled if unfunded, unused (and paid) without input, else a job to the primary.
async fn open_slot(conn: &mut PgConnection, s: &Settings, slot: &SlotRow, now: DateTime<Utc>) -> ApiResult<()> {
    if slot.n >= slot.escrow_until {
        store::settlement::finish_slot(conn, slot.contract_id, slot.n, SlotState::Cancelled.as_str(), SlotReason::ContractSuspended.as_str(), now)
            .await?;
        return Ok(());
    }
    if slot.public_input.is_none() {
        if store::settlement::finish_slot(conn, slot.contract_id, slot.n, SlotState::Unused.as_str(), SlotReason::NoInput.as_str(), now).await? {
            pay(conn, s, slot, slot.primary_prover_id, JobRole::Primary).await?;
        }
        return Ok(());
    }
    if store::settlement::start_proving(conn, slot.contract_id, slot.n).await? {
        offer_job(conn, s, slot, 0, now).await?;
    }
    Ok(())
}

/// Offers the slot's next job: attempt `attempt` goes to the primary, the backups in order, then
/// the open market.
async fn offer_job(conn: &mut PgConnection, s: &Settings, slot: &SlotRow, attempt: i32, now: DateTime<Utc>) -> ApiResult<Uuid> {
    let (role, backup) = next_role(usize::try_from(attempt).unwrap_or(usize::MAX), slot.backup_prover_ids.len());
    let prover = match role {
        JobRole::Primary => Some(slot.primary_prover_id),
        JobRole::Backup => backup.and_then(|i| slot.backup_prover_ids.get(i).copied()),
        JobRole::Open => None,
    };
    // Anyone may take an open-market job until the deadline; a named prover must ack in time.
    let ack = match role {
        JobRole::Open => slot.deadline,
        _ => (now + s.settlement.ack_timeout).min(slot.deadline),
    };
    let id = store::settlement::insert_job(conn, slot.contract_id, slot.n, attempt, role.as_str(), prover, now, ack).await?;
    tracing::debug!(contract = %slot.contract_id, slot = slot.n, attempt, role = role.as_str(), "job offered");
    Ok(id)
}

/// Pays a settled slot's price from the buyer's escrow to `prover` (less the fee), plus the step-in
/// bonus when a backup or the open market delivered.
async fn pay(conn: &mut PgConnection, s: &Settings, slot: &SlotRow, prover: Uuid, role: JobRole) -> ApiResult<()> {
    let gross = money(slot.price)?;
    let split = payment(gross, s.market.fee_bps).map_err(ApiError::internal)?;
    let entry = JournalEntry::from_nonzero(
        EntryKind::SlotPayment,
        format!("slot:{}/{}", slot.contract_id, slot.n),
        [
            (user(slot.buyer_id, AccountKind::Escrow), gross.negated()),
            (user(prover, AccountKind::Available), split.to_prover),
            (LedgerAccount::exchange(AccountKind::Fees), split.fee),
        ],
    )
    .map_err(ApiError::internal)?;
    post(conn, entry).await?;
    store::settlement::add_escrow_held(conn, slot.contract_id, -gross.as_decimal()).await?;
    let bonus = money(slot.step_in_bonus)?;
    if role != JobRole::Primary && bonus.is_positive() {
        let entry = JournalEntry::from_nonzero(
            EntryKind::StepInBonus,
            format!("bonus:{}/{}", slot.contract_id, slot.n),
            [(LedgerAccount::exchange(AccountKind::Insurance), bonus.negated()), (user(prover, AccountKind::Available), bonus)],
        )
        .map_err(ApiError::internal)?;
        post(conn, entry).await?;
    }
    Ok(())
}

/// Fails a live job: slashes its prover, counts the failure, and (if `offer_next` and the deadline
/// has not passed) offers the next job at once.
async fn fail_job(
    conn: &mut PgConnection,
    s: &Settings,
    job: &JobRow,
    slot: &SlotRow,
    failure: JobFailure,
    now: DateTime<Utc>,
    offer_next: bool,
) -> ApiResult<()> {
    if !store::settlement::finish_job(conn, job.id, "failed", Some(failure.as_str()), now).await? {
        return Ok(());
    }
    let mut bonus = Decimal::ZERO;
    if let Some(prover) = job.prover_id {
        let bonded = store::contracts::lock_bonded(conn, &[prover]).await?;
        let bonded = money(bonded.first().map_or(Decimal::ZERO, |(_, b)| *b))?;
        let factor = (failure == JobFailure::InvalidProof).then_some(s.settlement.invalid_slash_factor);
        let split = slash(money(slot.price)?, s.market.slash_multiplier, factor, bonded).map_err(ApiError::internal)?;
        if split.total.is_positive() {
            let to_insurance = split.step_in_bonus.checked_add(split.to_insurance).map_err(ApiError::internal)?;
            let entry = JournalEntry::from_nonzero(
                EntryKind::Slash,
                format!("slash:{}", job.id),
                [
                    (user(prover, AccountKind::Bonded), split.total.negated()),
                    (user(slot.buyer_id, AccountKind::Available), split.to_buyer),
                    (LedgerAccount::exchange(AccountKind::Insurance), to_insurance),
                ],
            )
            .map_err(ApiError::internal)?;
            post(conn, entry).await?;
            bonus = split.step_in_bonus.as_decimal();
        }
        store::settlement::record_outcome(conn, prover, slot.contract_id, false).await?;
        tracing::info!(contract = %slot.contract_id, slot = slot.n, %prover, failure = failure.as_str(),
                       slashed = %split.total, "job failed; prover slashed");
    }
    store::settlement::count_failure(conn, slot.contract_id, slot.n, bonus).await?;
    if offer_next && now < slot.deadline {
        let mut updated = slot.clone();
        updated.step_in_bonus += bonus;
        offer_job(conn, s, &updated, job.attempt + 1, now).await?;
    }
    Ok(())
}

/// Settles a slot past its deadline: fails its live job, marks it missed, refunds the buyer.
async fn settle_missed(conn: &mut PgConnection, s: &Settings, slot: &SlotRow, now: DateTime<Utc>) -> ApiResult<()> {
    if let Some(job) = store::settlement::live_job(conn, slot.contract_id, slot.n).await? {
        fail_job(conn, s, &job, slot, JobFailure::DeadlinePassed, now, false).await?;
    }
    if store::settlement::finish_slot(conn, slot.contract_id, slot.n, SlotState::Missed.as_str(), SlotReason::NoValidProofByDeadline.as_str(), now)
        .await?
    {
        let price = money(slot.price)?;
        let entry = JournalEntry::internal(
            EntryKind::Refund,
            AccountId(slot.buyer_id),
            AccountKind::Escrow,
            AccountKind::Available,
            price,
            format!("refund:{}/{}", slot.contract_id, slot.n),
        )
        .map_err(ApiError::internal)?;
        post(conn, entry).await?;
        store::settlement::add_escrow_held(conn, slot.contract_id, -price.as_decimal()).await?;
        tracing::warn!(contract = %slot.contract_id, slot = slot.n, "slot missed: buyer refunded");
    }
    Ok(())
}

/// The outcome of a proof submission.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SubmitOutcome {
    /// The job.
    pub job_id: Uuid,
    /// True when the proof verified and the slot is delivered.
    pub accepted: bool,
    /// The slot's state afterwards.
    pub slot_state: String,
    /// Why (`delivered_by_primary`, ..., or `invalid_proof`).
    pub reason: String,
}

fn lease_lost(why: &str) -> ApiError {
    ApiError::new(ErrorCode::LeaseLost, format!("this job is no longer yours to prove: {why}"))
        .with_hint("drop the job and claim another")
}

/// Verifies and settles a proof for a job `prover` holds.
pub async fn submit_proof(
    conn: &mut PgConnection,
    state: &AppState,
    prover: AccountId,
    job_id: Uuid,
    proof_hex: &str,
    now: DateTime<Utc>,
) -> ApiResult<SubmitOutcome> {
    let s = &state.settings;
    let ticket = store::settlement::ticket(conn, job_id)
        .await?
        .filter(|t| t.prover_id == Some(prover.0))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no job {job_id} of yours")))?;
    if ticket.state != "claimed" {
        return Err(lease_lost(&format!("the job is {}", ticket.state)));
    }
    if ticket.lease_expires_at.is_some_and(|l| l <= now) || ticket.deadline <= now {
        return Err(lease_lost("its lease has expired"));
    }
    let input = ticket.public_input.clone().ok_or_else(|| ApiError::internal("a proving slot has no input"))?;
    let seed = pcx_prover_pool::field::parse_field_element(&input).map_err(ApiError::internal)?;
    let size = u8::try_from(ticket.size_log2).map_err(ApiError::internal)?;
    let keys = state.keys.clone();
    let proof_text = proof_hex.to_owned();
    // Verification is CPU work (and the first one of a size loads or generates its key).
    let valid = tokio::task::spawn_blocking(move || match pcx_prover_pool::encoding::decode_proof(&proof_text) {
        Ok(proof) => pcx_prover_pool::groth16::verify_hash_chain(&keys, size, seed, &proof).map_err(|e| e.to_string()),
        Err(_) => Ok(false),
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;

    let slot = store::settlement::lock_slot(conn, ticket.contract_id, ticket.n)
        .await?
        .ok_or_else(|| ApiError::internal("slot vanished"))?;
    let job = store::settlement::lock_job(conn, job_id).await?.ok_or_else(|| ApiError::internal("job vanished"))?;
    if job.state != "claimed" || job.prover_id != Some(prover.0) {
        return Err(lease_lost(&format!("the job is {}", job.state)));
    }
    if slot.state != SlotState::Proving.as_str() {
        return Err(lease_lost(&format!("the slot is {}", slot.state)));
    }
    let role = JobRole::parse(&job.role).ok_or_else(|| ApiError::internal("unknown job role"))?;
    if valid {
        let output = pcx_prover_pool::field::field_to_decimal(&pcx_prover_pool::hash_chain::hash_chain_output(seed, size));
        store::settlement::finish_job(conn, job_id, "delivered", None, now).await?;
        let reason = role.delivery_reason();
        store::settlement::deliver_slot(conn, slot.contract_id, slot.n, reason.as_str(), prover.0, proof_hex, &output, now).await?;
        pay(conn, s, &slot, prover.0, role).await?;
        store::settlement::record_outcome(conn, prover.0, slot.contract_id, true).await?;
        tracing::info!(contract = %slot.contract_id, slot = slot.n, prover = %prover, role = role.as_str(), "slot delivered");
        Ok(SubmitOutcome { job_id, accepted: true, slot_state: SlotState::Delivered.as_str().into(), reason: reason.as_str().into() })
    } else {
        fail_job(conn, s, &job, &slot, JobFailure::InvalidProof, now, true).await?;
        Ok(SubmitOutcome {
            job_id,
            accepted: false,
            slot_state: SlotState::Proving.as_str().into(),
            reason: JobFailure::InvalidProof.as_str().into(),
        })
    }
}

/// Gives a claimed job back: it fails as `released` (slashed like a miss) and the next prover gets
/// the slot at once.
pub async fn release(conn: &mut PgConnection, s: &Settings, prover: AccountId, job_id: Uuid, now: DateTime<Utc>) -> ApiResult<()> {
    let ticket = store::settlement::ticket(conn, job_id)
        .await?
        .filter(|t| t.prover_id == Some(prover.0))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no job {job_id} of yours")))?;
    let slot = store::settlement::lock_slot(conn, ticket.contract_id, ticket.n)
        .await?
        .ok_or_else(|| ApiError::internal("slot vanished"))?;
    let job = store::settlement::lock_job(conn, job_id).await?.ok_or_else(|| ApiError::internal("job vanished"))?;
    if job.state != "claimed" || job.prover_id != Some(prover.0) {
        return Err(lease_lost(&format!("the job is {}", job.state)));
    }
    fail_job(conn, s, &job, &slot, JobFailure::Released, now, true).await
}

/// Runs the scheduler until `shutdown` turns true.
pub async fn run_scheduler(state: AppState, shutdown: tokio::sync::watch::Receiver<bool>) {
    crate::periodic::every(state.settings.settlement.tick, shutdown, || async {
        match tick(&state, Utc::now()).await {
            Ok(report) if report != TickReport::default() => tracing::debug!(?report, "settlement tick"),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "settlement tick failed; retrying next tick"),
        }
    })
    .await;
    tracing::info!("settlement scheduler stopped");
}
