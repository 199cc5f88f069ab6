//! Settlement inside `pcx serve`: the shell around `pcx_settlement`. Every transition loads the
//! rows it changes under lock, asks the settlement crate what happens, and applies the decision in
//! one transaction, guarded by the state it loaded; every payment, refund, bonus and slash carries
//! a reference the journal holds once. So a transition happens whole or not at all, and a crash
//! (even `kill -9`) followed by a restart redoes only what did not commit.
//!
//! # A slot, from opening to payment
//! ```text
//! tick ─ slots::open_due      store::slots::lock ─▶ pcx_settlement::slot::open ─▶ apply::settle | apply::offer
//! agent ─ agents::claim       store::jobs::claimable ─▶ pcx_settlement::slot::claim ─▶ store::jobs::mark_claimed
//! agent ─ agents::submit      deliveries::Submissions (batched): proof_checks (no connection held)
//!                             ─▶ deliver_together: store::slots::lock_many, store::jobs::lock_many
//!                             ─▶ pcx_settlement::slot::deliver ─▶ one statement per table for the batch
//!                             (else alone: store::slots::lock, store::jobs::lock ─▶ deliver ─▶ apply::delivery)
//! tick ─ slots::expire_due    ─▶ pcx_settlement::slot::fail ─▶ apply::failure (slash, next job to the backup)
//! tick ─ slots::miss_due      ─▶ pcx_settlement::slot::miss ─▶ apply::settle (refund)
//! ```
//!
//! # The tick
//! [`tick`] at `now`: notice an outage since the last tick (a gap longer than
//! `PCX_OUTAGE_AFTER_SECS`, or any gap before this process's first tick; nothing it took is
//! charged to a prover); materialise slots a horizon ahead; fund escrow windows (or suspend, with backoff);
//! re-check collateral; open due slots; fail expired jobs; settle slots past their deadline;
//! complete finished contracts; delete expired quotes nobody accepted (a bounded batch); record the tick. [`run_scheduler`] runs it every
//! `PCX_SETTLEMENT_TICK_MS`, each tick in a task of its own: a tick that fails or panics is logged
//! and the loop goes on; `/health` reports the age of the last completed one.

mod agents;
mod apply;
mod collateral;
mod context;
mod contracts;
mod deliveries;
mod proof_checks;
mod slots;

use chrono::{DateTime, Utc};

pub use agents::{claim, release, submit, tickets, SubmitOutcome, Tickets, Wanted};
pub use collateral::live_exposure;
pub use context::AGENT_LIVE;
pub use deliveries::{deliver_together, submissions, Checked, Delivery, Submission, Submissions};
pub use proof_checks::ProofToCheck;

use crate::background::SCHEDULER;
use crate::error::ApiResult;
use crate::store;
use crate::AppState;

/// The name of the collateral re-check in [`crate::background::Background`].
const COLLATERAL_CHECK: &str = "collateral_check";

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// The tick found the exchange had been down (or the scheduler stalled) since the last one.
    pub outage: bool,
    /// Slots materialised.
    pub materialised: u64,
    /// Contracts whose escrow was topped up.
    pub escrowed: u64,
    /// Contracts suspended for want of escrow.
    pub suspended: u64,
    /// Slots handed from an undercollateralised primary to its backup.
    pub reassigned: u64,
    /// Slots opened (or settled at opening).
    pub opened: u64,
    /// Jobs failed for ack timeout or lease expiry.
    pub expired: u64,
    /// Slots settled as missed.
    pub missed: u64,
    /// Contracts completed.
    pub completed: u64,
    /// Expired quotes nobody accepted, deleted.
    pub purged_quotes: u64,
}

/// A quote is purged this long after `valid_until`, so that an accept that read the clock just
/// before expiry has long committed (it also holds the quote locked, which the purge skips).
const QUOTE_PURGE_GRACE: chrono::Duration = chrono::Duration::minutes(1);

/// Runs one scheduler tick at `now`.
pub async fn tick(state: &AppState, now: DateTime<Utc>) -> ApiResult<TickReport> {
    let settings = &state.settings.settlement;
    let mut phases = Phases::default();
    let mut report = TickReport { outage: notice_outage(state, now).await?, ..TickReport::default() };
    let ctx = context::Context::load(&mut *state.db.acquire().await?, now).await?;
    phases.lap("clock");
    report.materialised = contracts::materialise_due(state, now).await?;
    phases.lap("materialise");
    (report.escrowed, report.suspended) = contracts::fund_due(state, now).await?;
    phases.lap("escrow");
    if state.background.due(COLLATERAL_CHECK, now, settings.collateral_check) {
        report.reassigned = collateral::check(state, now).await?;
        phases.lap("collateral");
    }
    report.opened = slots::open_due(state, &ctx, now).await?;
    phases.lap("open");
    report.expired = slots::expire_due(state, &ctx, now).await?;
    phases.lap("expire");
    report.missed = slots::miss_due(state, &ctx, now).await?;
    phases.lap("deadline");
    report.completed = contracts::complete_due(state, now).await?;
    phases.lap("complete");
    // Quotes nobody accepted would otherwise pile up forever (each holds its whole allocation);
    // one bounded batch a tick keeps up with any quote rate below batch / tick.
    report.purged_quotes =
        store::contracts::purge_expired_quotes(&mut *state.db.acquire().await?, now - QUOTE_PURGE_GRACE, settings.batch).await?;
    phases.lap("purge quotes");
    store::scheduler::record_tick(&mut *state.db.acquire().await?, store::scheduler::SETTLEMENT, now).await?;
    tracing::trace!(phases = ?phases.0, "settlement tick phases (ms)");
    Ok(report)
}

/// Milliseconds each phase of a tick took (for `PCX_LOG=pcx_exchange=trace`).
struct Phases(Vec<(&'static str, u128)>, std::time::Instant);

impl Default for Phases {
    fn default() -> Self {
        Phases(Vec::new(), std::time::Instant::now())
    }
}

impl Phases {
    fn lap(&mut self, name: &'static str) {
        self.0.push((name, self.1.elapsed().as_millis()));
        self.1 = std::time::Instant::now();
    }
}

/// Records an outage when the last completed tick is further back than `PCX_OUTAGE_AFTER_SECS`,
/// or, on the first tick of this process, at all (the exchange was not running since).
async fn notice_outage(state: &AppState, now: DateTime<Utc>) -> ApiResult<bool> {
    let threshold = match state.background.first_tick_of_process() {
        true => chrono::Duration::zero(),
        false => state.settings.settlement.outage_after,
    };
    let mut conn = state.db.acquire().await?;
    let last = store::scheduler::last_tick(&mut conn, store::scheduler::SETTLEMENT).await?;
    let Some(outage) = pcx_settlement::outage::Outage::detect(last, now, threshold) else {
        return Ok(false);
    };
    store::scheduler::record_outage(&mut conn, &outage).await?;
    tracing::warn!(from = %outage.from, to = %outage.to, "settlement was not running: nothing that expired meanwhile is charged to a prover");
    Ok(true)
}

/// Runs the scheduler until `shutdown` turns true (see the module docs). `pcx serve` gives it a
/// state on the background pool ([`AppState::for_background`]), so that every query of a tick
/// goes through connections no request can hold.
pub async fn run_scheduler(state: AppState, shutdown: tokio::sync::watch::Receiver<bool>) {
    state.background.started(SCHEDULER);
    let ticking = state.clone();
    crate::periodic::supervised("settlement tick", state.settings.settlement.tick, shutdown, move || {
        let state = ticking.clone();
        async move {
            // Another replica holds the worker lease: this loop stands by (and is healthy).
            if !state.runs_background() {
                state.background.ticked(SCHEDULER);
                return;
            }
            match tick(&state, state.now()).await {
                Ok(report) => {
                    state.background.ticked(SCHEDULER);
                    if report != TickReport::default() {
                        tracing::debug!(?report, "settlement tick");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "settlement tick failed; retrying next tick"),
            }
        }
    })
    .await;
    state.background.stopped(SCHEDULER);
    tracing::info!("settlement scheduler stopped");
}
