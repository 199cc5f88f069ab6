//! A contract's settlement progress: how far it is materialised, how far its escrow reaches, its
//! status, and the queues the scheduler takes contracts from (partial indexes keep them cheap).

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, Money, ProofClass, Schedule};
use pcx_settlement::contract::{PricedBlock, Progress, Suspension};
use pcx_settlement::state::{ContractStatus, SlotState};

use super::{corrupt, db_count, money, named, names, small, unsigned};

/// A contract's progress with what materialising its slots needs.
#[derive(Debug, Clone)]
pub struct ProgressRow {
    /// The progress.
    pub progress: Progress,
    /// What it proves (its slots' deadline is the class's).
    pub class: ProofClass,
}

impl ProgressRow {
    /// A slot's deadline from its opening.
    pub fn deadline_after(&self) -> Duration {
        Duration::seconds(i64::from(self.class.deadline_secs))
    }
}

#[derive(sqlx::FromRow)]
struct RawProgress {
    id: Uuid,
    buyer_id: Uuid,
    status: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    every_secs: i32,
    materialised_until: i64,
    escrow_until: i64,
    opened_until: i64,
    escrow_held: Decimal,
    escrow_failures: i32,
    system: String,
    circuit: String,
    size_log2: i16,
    deadline_secs: i32,
}

impl TryFrom<RawProgress> for ProgressRow {
    type Error = sqlx::Error;
    fn try_from(raw: RawProgress) -> Result<Self, Self::Error> {
        Ok(ProgressRow {
            progress: Progress {
                id: raw.id,
                buyer: AccountId(raw.buyer_id),
                status: named(ContractStatus::parse, &raw.status, "contract status")?,
                schedule: Schedule {
                    start: raw.starts_at,
                    end: raw.ends_at,
                    every_secs: u32::try_from(raw.every_secs).map_err(|_| corrupt("cadence"))?,
                },
                materialised_until: unsigned(raw.materialised_until, "materialised slots")?,
                escrow_until: unsigned(raw.escrow_until, "escrow mark")?,
                opened_until: unsigned(raw.opened_until, "opened slots")?,
                escrow_held: money(raw.escrow_held, "escrow held")?,
                escrow_failures: small(raw.escrow_failures, "escrow failures")?,
            },
            class: super::offers::proof_class_from_columns(&raw.system, raw.circuit, raw.size_log2, raw.deadline_secs)?,
        })
    }
}

/// The columns of a progress row; `opened_until` is one past the highest slot that has opened
/// (slots open in order, so every slot below it has).
fn progress_columns() -> String {
    format!(
        "c.id, c.buyer_id, c.status, c.starts_at, c.ends_at, c.every_secs, c.materialised_until, c.escrow_until,
         coalesce((SELECT max(s.n) + 1 FROM slots s WHERE s.contract_id = c.id AND s.state <> '{scheduled}'), 0) AS opened_until,
         c.escrow_held, c.escrow_failures, c.system, c.circuit, c.size_log2, c.deadline_secs",
        scheduled = SlotState::Scheduled.as_str()
    )
}

fn running() -> String {
    names(ContractStatus::RUNNING, ContractStatus::as_str)
}

/// Contracts whose next slot to materialise opens by `until` (locked, skipping locked ones).
pub async fn to_materialise(conn: &mut PgConnection, until: DateTime<Utc>, limit: i64) -> Result<Vec<ProgressRow>, sqlx::Error> {
    let raws: Vec<RawProgress> = sqlx::query_as(&format!(
        "SELECT {} FROM contracts c WHERE c.materialise_at <= $1
          ORDER BY c.materialise_at LIMIT $2 FOR NO KEY UPDATE OF c SKIP LOCKED",
        progress_columns()
    ))
    .bind(until)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    raws.into_iter().map(TryInto::try_into).collect()
}

/// Records how far a contract is materialised.
pub async fn set_materialised(conn: &mut PgConnection, contract: Uuid, until: u64, next_at: Option<DateTime<Utc>>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE contracts SET materialised_until = $2, materialise_at = $3 WHERE id = $1")
        .bind(contract)
        .bind(db_count(until))
        .bind(next_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Running contracts whose escrow window has moved past what is locked by `until`, and whose
/// retry (if suspended) is due at `now`.
pub async fn due_for_escrow(conn: &mut PgConnection, until: DateTime<Utc>, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT id FROM contracts
          WHERE escrow_next_at <= $1 AND status IN ({}) AND (escrow_retry_at IS NULL OR escrow_retry_at <= $2)
          ORDER BY escrow_next_at LIMIT $3",
        running()
    ))
    .bind(until)
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One contract's progress, locked.
pub async fn lock(conn: &mut PgConnection, contract: Uuid) -> Result<Option<ProgressRow>, sqlx::Error> {
    let raw: Option<RawProgress> =
        sqlx::query_as(&format!("SELECT {} FROM contracts c WHERE c.id = $1 FOR NO KEY UPDATE OF c", progress_columns()))
            .bind(contract)
            .fetch_optional(conn)
            .await?;
    raw.map(TryInto::try_into).transpose()
}

/// Sets where settlement starts for a contract just bought: nothing materialised, its first
/// escrow window (slots below `escrow_until`) locked.
pub async fn start(conn: &mut PgConnection, contract: Uuid, schedule: &Schedule, escrow_until: u64, held: Money) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE contracts SET materialised_until = 0, materialise_at = $2, escrow_until = $3, escrow_next_at = $4,
                              escrow_held = $5 WHERE id = $1",
    )
    .bind(contract)
    .bind(schedule.start)
    .bind(db_count(escrow_until))
    .bind(schedule.slot_opens_at(escrow_until))
    .bind(held.as_decimal())
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a funded top-up: the escrow reaches `until`, holds `added` more, and the contract is
/// active (a suspended one resumes).
pub async fn funded(conn: &mut PgConnection, contract: Uuid, until: u64, next_at: Option<DateTime<Utc>>, added: Money) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE contracts SET escrow_until = $2, escrow_next_at = $3, escrow_held = escrow_held + $4, escrow_failures = 0,
                              escrow_retry_at = NULL, status = $5, status_reason = NULL WHERE id = $1",
    )
    .bind(contract)
    .bind(db_count(until))
    .bind(next_at)
    .bind(added.as_decimal())
    .bind(ContractStatus::Active.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Suspends a contract whose buyer cannot fund its escrow window.
pub async fn suspend(conn: &mut PgConnection, contract: Uuid, suspension: &Suspension) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE contracts SET status = $2, status_reason = $3, escrow_retry_at = $4, escrow_failures = $5 WHERE id = $1")
        .bind(contract)
        .bind(ContractStatus::Suspended.as_str())
        .bind(suspension.reason.as_str())
        .bind(suspension.retry_at)
        .bind(i32::try_from(suspension.failures).unwrap_or(i32::MAX))
        .execute(conn)
        .await?;
    Ok(())
}

/// Makes the buyer's suspended contracts due for an escrow retry at once (it just paid in).
pub async fn retry_escrow_now(conn: &mut PgConnection, buyer: AccountId) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE contracts SET escrow_retry_at = NULL WHERE buyer_id = $1 AND status = $2 AND escrow_retry_at IS NOT NULL")
        .bind(buyer.0)
        .bind(ContractStatus::Suspended.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes `amount` out of what a contract's escrow holds (a slot paid or refunded).
pub async fn spend_escrow(conn: &mut PgConnection, contract: Uuid, amount: Money) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE contracts SET escrow_held = escrow_held - $2 WHERE id = $1")
        .bind(contract)
        .bind(amount.as_decimal())
        .execute(conn)
        .await?;
    Ok(())
}

/// [`spend_escrow`] for several slots at once (`(contract, amount)` each; a contract may come
/// more than once), the contracts locked in id order.
pub async fn spend_escrow_many(conn: &mut PgConnection, spent: &[(Uuid, Money)]) -> Result<(), sqlx::Error> {
    if spent.is_empty() {
        return Ok(());
    }
    let contracts: Vec<Uuid> = spent.iter().map(|s| s.0).collect();
    let amounts: Vec<Decimal> = spent.iter().map(|s| s.1.as_decimal()).collect();
    sqlx::query(
        "WITH spent AS (
             SELECT contract_id, sum(amount) AS amount FROM unnest($1::uuid[], $2::numeric[]) AS s (contract_id, amount)
              GROUP BY contract_id
         ), locked AS (
             SELECT id FROM contracts WHERE id IN (SELECT contract_id FROM spent) ORDER BY id FOR NO KEY UPDATE
         )
         UPDATE contracts c SET escrow_held = c.escrow_held - spent.amount
           FROM spent JOIN locked ON locked.id = spent.contract_id
          WHERE c.id = spent.contract_id",
    )
    .bind(&contracts)
    .bind(&amounts)
    .execute(conn)
    .await?;
    Ok(())
}

/// Running contracts with every slot materialised and settled.
pub async fn to_complete(conn: &mut PgConnection, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT c.id FROM contracts c
          WHERE c.status IN ({}) AND c.materialise_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM slots s WHERE s.contract_id = c.id AND s.state IN ({}))
          LIMIT $1",
        running(),
        names(SlotState::LIVE, SlotState::as_str),
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Marks a contract completed (its escrow released).
pub async fn complete(conn: &mut PgConnection, contract: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE contracts SET status = $2, status_reason = NULL, completed_at = $3, escrow_held = 0, escrow_retry_at = NULL
          WHERE id = $1",
    )
    .bind(contract)
    .bind(ContractStatus::Completed.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// A contract's blocks with the price of one slot each.
pub async fn priced_blocks(conn: &mut PgConnection, contract: Uuid) -> Result<Vec<PricedBlock>, sqlx::Error> {
    let rows: Vec<(i64, i64, Decimal)> = sqlx::query_as(
        "SELECT b.first_slot, b.end_slot, b.price_per_proof * c.proofs_per_slot
           FROM contract_blocks b JOIN contracts c ON c.id = b.contract_id WHERE b.contract_id = $1 ORDER BY b.first_slot",
    )
    .bind(contract)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(first, end, price)| {
            Ok(PricedBlock {
                first_slot: unsigned(first, "block start")?,
                end_slot: unsigned(end, "block end")?,
                price_per_slot: money(price, "slot price")?,
            })
        })
        .collect()
}

/// The classes of the contracts still running (whose proofs are still to come).
pub async fn running_classes(conn: &mut PgConnection) -> Result<Vec<ProofClass>, sqlx::Error> {
    let rows: Vec<(String, String, i16, i32)> = sqlx::query_as(&format!(
        "SELECT DISTINCT system, circuit, size_log2, deadline_secs FROM contracts WHERE status IN ({})",
        running()
    ))
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(system, circuit, size, deadline)| super::offers::proof_class_from_columns(&system, circuit, size, deadline))
        .collect()
}
