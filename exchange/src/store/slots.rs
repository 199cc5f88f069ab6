//! Materialised slots: inserting them from a contract's blocks, loading them (typed, locked) for a
//! transition, and applying what settlement decided, each update guarded by the state it expects.
//!
//! Row locks are `FOR NO KEY UPDATE`: they serialise transitions of a row without conflicting with
//! the `KEY SHARE` locks that foreign keys take (a job row referencing its slot), which `FOR
//! UPDATE` would turn into deadlocks. Locks are taken slot first, then job, then ledger rows.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, Money, ProofClass};
use pcx_settlement::collateral::{PrimarySlot, Reassignment};
use pcx_settlement::slot::{Settlement, Slot};
use pcx_settlement::state::{Replacement, SlotReason, SlotState};

use super::{db_count, money, named, names, small, unsigned};

/// A slot as settlement loads it, with its contract's class and the stored input.
#[derive(Debug, Clone)]
pub struct SlotRow {
    /// The slot.
    pub slot: Slot,
    /// What is proved.
    pub class: ProofClass,
    /// The input the buyer posted (canonical text).
    pub input: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RawSlot {
    contract_id: Uuid,
    n: i64,
    opens_at: DateTime<Utc>,
    deadline: DateTime<Utc>,
    primary_prover_id: Uuid,
    backup_prover_ids: Vec<Uuid>,
    price: Decimal,
    public_input: Option<String>,
    state: String,
    failed_attempts: i32,
    step_in_bonus: Decimal,
    buyer_id: Uuid,
    escrow_until: i64,
    system: String,
    circuit: String,
    size_log2: i16,
    deadline_secs: i32,
}

impl TryFrom<RawSlot> for SlotRow {
    type Error = sqlx::Error;
    fn try_from(raw: RawSlot) -> Result<Self, Self::Error> {
        Ok(SlotRow {
            slot: Slot {
                contract_id: raw.contract_id,
                n: unsigned(raw.n, "slot number")?,
                opens_at: raw.opens_at,
                deadline: raw.deadline,
                price: money(raw.price, "slot price")?,
                buyer: AccountId(raw.buyer_id),
                primary: AccountId(raw.primary_prover_id),
                backups: raw.backup_prover_ids.into_iter().map(AccountId).collect(),
                state: named(SlotState::parse, &raw.state, "slot state")?,
                input_posted: raw.public_input.is_some(),
                funded: raw.n < raw.escrow_until,
                prover_failures: small(raw.failed_attempts, "failure count")?,
                step_in_bonus: money(raw.step_in_bonus, "step-in bonus")?,
            },
            class: super::offers::proof_class_from_columns(&raw.system, raw.circuit, raw.size_log2, raw.deadline_secs)?,
            input: raw.public_input,
        })
    }
}

const SLOT: &str = "s.contract_id, s.n, s.opens_at, s.deadline, s.primary_prover_id, s.backup_prover_ids, s.price, \
                    s.public_input, s.state, s.failed_attempts, s.step_in_bonus, c.buyer_id, c.escrow_until, \
                    c.system, c.circuit, c.size_log2, c.deadline_secs";

/// Inserts slots of a contract from its blocks: `(n, opens_at, deadline)` each, computed by the
/// caller from the schedule. Existing ones are kept. Returns how many were inserted.
pub async fn insert(conn: &mut PgConnection, contract: Uuid, slots: &[(u64, DateTime<Utc>, DateTime<Utc>)]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO slots (contract_id, n, opens_at, deadline, block_no, primary_prover_id, backup_prover_ids, price)
         SELECT c.id, s.n, s.opens_at, s.deadline, b.block_no, b.primary_prover_id, b.backup_prover_ids,
                b.price_per_proof * c.proofs_per_slot
           FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[]) AS s (n, opens_at, deadline)
           JOIN contracts c ON c.id = $1
           JOIN contract_blocks b ON b.contract_id = c.id AND s.n >= b.first_slot AND s.n < b.end_slot
         ON CONFLICT (contract_id, n) DO NOTHING",
    )
    .bind(contract)
    .bind(slots.iter().map(|s| db_count(s.0)).collect::<Vec<_>>())
    .bind(slots.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(slots.iter().map(|s| s.2).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

async fn keys(conn: &mut PgConnection, sql: &str, now: DateTime<Utc>, limit: i64) -> Result<Vec<(Uuid, u64)>, sqlx::Error> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(sql).bind(now).bind(limit).fetch_all(conn).await?;
    rows.into_iter().map(|(c, n)| Ok((c, unsigned(n, "slot number")?))).collect()
}

/// Scheduled slots due to open by `now`, earliest first.
pub async fn due_to_open(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<(Uuid, u64)>, sqlx::Error> {
    let sql = format!(
        "SELECT contract_id, n FROM slots WHERE state = '{}' AND opens_at <= $1 ORDER BY opens_at LIMIT $2",
        SlotState::Scheduled.as_str()
    );
    keys(conn, &sql, now, limit).await
}

/// Proving slots past their deadline at `now`, earliest first.
pub async fn past_deadline(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<(Uuid, u64)>, sqlx::Error> {
    let sql = format!(
        "SELECT contract_id, n FROM slots WHERE state = '{}' AND deadline <= $1 ORDER BY deadline LIMIT $2",
        SlotState::Proving.as_str()
    );
    keys(conn, &sql, now, limit).await
}

/// One slot, locked.
pub async fn lock(conn: &mut PgConnection, contract: Uuid, n: u64) -> Result<Option<SlotRow>, sqlx::Error> {
    let raw: Option<RawSlot> = sqlx::query_as(&format!(
        "SELECT {SLOT} FROM slots s JOIN contracts c ON c.id = s.contract_id
          WHERE s.contract_id = $1 AND s.n = $2 FOR NO KEY UPDATE OF s"
    ))
    .bind(contract)
    .bind(db_count(n))
    .fetch_optional(conn)
    .await?;
    raw.map(TryInto::try_into).transpose()
}

/// Several slots, locked in key order (so that concurrent lockers of overlapping sets cannot
/// deadlock), by key; a key with no slot is absent.
pub async fn lock_many(conn: &mut PgConnection, keys: &[(Uuid, u64)]) -> Result<std::collections::HashMap<(Uuid, u64), SlotRow>, sqlx::Error> {
    let contracts: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let numbers: Vec<i64> = keys.iter().map(|k| db_count(k.1)).collect();
    let raws: Vec<RawSlot> = sqlx::query_as(&format!(
        "SELECT {SLOT} FROM slots s JOIN contracts c ON c.id = s.contract_id
          WHERE (s.contract_id, s.n) IN (SELECT * FROM unnest($1::uuid[], $2::bigint[]))
          ORDER BY s.contract_id, s.n
            FOR NO KEY UPDATE OF s"
    ))
    .bind(&contracts)
    .bind(&numbers)
    .fetch_all(conn)
    .await?;
    raws.into_iter().map(|raw| SlotRow::try_from(raw).map(|row| ((row.slot.contract_id, row.slot.n), row))).collect()
}

/// A delivery for [`deliver_many`]: what [`deliver`] takes for one slot.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The slot.
    pub slot: &'a Slot,
    /// The delivery's reason.
    pub reason: SlotReason,
    /// Who delivered.
    pub prover: AccountId,
    /// The proof.
    pub proof: &'a str,
    /// Its public signals.
    pub public_signals: &'a [String],
}

/// [`deliver`] for several distinct slots in one statement; true if every one of them was
/// `proving` (else the caller drops its transaction: some were delivered, some not).
pub async fn deliver_many(conn: &mut PgConnection, deliveries: &[Delivery<'_>], now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(true);
    }
    let contracts: Vec<Uuid> = deliveries.iter().map(|d| d.slot.contract_id).collect();
    let numbers: Vec<i64> = deliveries.iter().map(|d| db_count(d.slot.n)).collect();
    let reasons: Vec<&str> = deliveries.iter().map(|d| d.reason.as_str()).collect();
    let provers: Vec<Uuid> = deliveries.iter().map(|d| d.prover.0).collect();
    let proofs: Vec<&str> = deliveries.iter().map(|d| d.proof).collect();
    // A slot's signals are a list of their own: arrays of arrays must be rectangular, so each
    // list travels as a JSON array and is unpacked per row.
    let signals: Vec<serde_json::Value> = deliveries.iter().map(|d| serde_json::json!(d.public_signals)).collect();
    let done = sqlx::query(
        "UPDATE slots s
            SET state = $7, reason = d.reason, delivered_by = d.prover, delivered_at = $8, proof = d.proof,
                public_signals = ARRAY(SELECT e FROM jsonb_array_elements_text(d.signals) WITH ORDINALITY AS x (e, i) ORDER BY i),
                settled_at = $8
           FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::uuid[], $5::text[], $6::jsonb[])
                AS d (contract_id, n, reason, prover, proof, signals)
          WHERE s.contract_id = d.contract_id AND s.n = d.n AND s.state = $9",
    )
    .bind(&contracts)
    .bind(&numbers)
    .bind(&reasons)
    .bind(&provers)
    .bind(&proofs)
    .bind(&signals)
    .bind(SlotState::Delivered.as_str())
    .bind(now)
    .bind(SlotState::Proving.as_str())
    .execute(conn)
    .await?;
    Ok(usize::try_from(done.rows_affected()).ok() == Some(deliveries.len()))
}

/// Moves a slot from `from` to its settlement's final state (false if it was not in `from`).
pub async fn settle(
    conn: &mut PgConnection,
    slot: &Slot,
    from: SlotState,
    settlement: &Settlement,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE slots SET state = $3, reason = $4, settled_at = $5 WHERE contract_id = $1 AND n = $2 AND state = $6")
        .bind(slot.contract_id)
        .bind(db_count(slot.n))
        .bind(settlement.state.as_str())
        .bind(settlement.reason.as_str())
        .bind(now)
        .bind(from.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a delivery: the proof and its public signals (guarded: only from `proving`).
#[allow(clippy::too_many_arguments)]
pub async fn deliver(
    conn: &mut PgConnection,
    slot: &Slot,
    reason: SlotReason,
    prover: AccountId,
    proof: &str,
    public_signals: &[String],
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE slots SET state = $3, reason = $4, delivered_by = $5, delivered_at = $8, proof = $6, public_signals = $7,
                          settled_at = $8
          WHERE contract_id = $1 AND n = $2 AND state = $9",
    )
    .bind(slot.contract_id)
    .bind(db_count(slot.n))
    .bind(SlotState::Delivered.as_str())
    .bind(reason.as_str())
    .bind(prover.0)
    .bind(proof)
    .bind(public_signals)
    .bind(now)
    .bind(SlotState::Proving.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a slot from `scheduled` to `proving`.
pub async fn start_proving(conn: &mut PgConnection, slot: &Slot) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE slots SET state = $3 WHERE contract_id = $1 AND n = $2 AND state = $4")
        .bind(slot.contract_id)
        .bind(db_count(slot.n))
        .bind(SlotState::Proving.as_str())
        .bind(SlotState::Scheduled.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a failure charged to a prover (the slot moves on) and adds to its step-in bonus.
pub async fn count_failure(conn: &mut PgConnection, slot: &Slot, advances: bool, bonus: Money) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE slots SET failed_attempts = failed_attempts + $3, step_in_bonus = step_in_bonus + $4
          WHERE contract_id = $1 AND n = $2",
    )
    .bind(slot.contract_id)
    .bind(db_count(slot.n))
    .bind(i32::from(advances))
    .bind(bonus.as_decimal())
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets a slot's input (only while `scheduled`); false if it is already open.
pub async fn set_input(conn: &mut PgConnection, contract: Uuid, n: u64, input: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE slots SET public_input = $3 WHERE contract_id = $1 AND n = $2 AND state = $4")
        .bind(contract)
        .bind(db_count(n))
        .bind(input)
        .bind(SlotState::Scheduled.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A slot as its buyer reads it.
#[derive(Debug, Clone)]
pub struct SlotRecord {
    /// Slot number.
    pub n: u64,
    /// State.
    pub state: SlotState,
    /// Final reason.
    pub reason: Option<SlotReason>,
    /// Its primary (after any replacement).
    pub primary: AccountId,
    /// Its backups.
    pub backups: Vec<AccountId>,
    /// The primary it had before a replacement, and why it was replaced.
    pub replaced: Option<(AccountId, Replacement)>,
    /// Who delivered.
    pub delivered_by: Option<AccountId>,
    /// When.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Posted input.
    pub input: Option<String>,
    /// Public signals of the delivered proof.
    pub public_signals: Option<Vec<String>>,
    /// The proof.
    pub proof: Option<String>,
    /// Failures charged to provers.
    pub failed_attempts: u32,
}

#[derive(sqlx::FromRow)]
struct RawRecord {
    n: i64,
    state: String,
    reason: Option<String>,
    primary_prover_id: Uuid,
    backup_prover_ids: Vec<Uuid>,
    replaced_primary_id: Option<Uuid>,
    replacement_reason: Option<String>,
    delivered_by: Option<Uuid>,
    delivered_at: Option<DateTime<Utc>>,
    public_input: Option<String>,
    public_signals: Option<Vec<String>>,
    proof: Option<String>,
    failed_attempts: i32,
}

/// Materialised slots `[from, to)` of a contract.
pub async fn records(conn: &mut PgConnection, contract: Uuid, from: u64, to: u64) -> Result<Vec<SlotRecord>, sqlx::Error> {
    let raws: Vec<RawRecord> = sqlx::query_as(
        "SELECT n, state, reason, primary_prover_id, backup_prover_ids, replaced_primary_id, replacement_reason, delivered_by,
                delivered_at, public_input, public_signals, proof, failed_attempts
           FROM slots WHERE contract_id = $1 AND n >= $2 AND n < $3 ORDER BY n",
    )
    .bind(contract)
    .bind(db_count(from))
    .bind(db_count(to))
    .fetch_all(conn)
    .await?;
    raws.into_iter()
        .map(|r| {
            let replaced = match (r.replaced_primary_id, r.replacement_reason) {
                (Some(p), Some(why)) => Some((AccountId(p), named(Replacement::parse, &why, "replacement reason")?)),
                _ => None,
            };
            Ok(SlotRecord {
                n: unsigned(r.n, "slot number")?,
                state: named(SlotState::parse, &r.state, "slot state")?,
                reason: r.reason.as_deref().map(|why| named(SlotReason::parse, why, "slot reason")).transpose()?,
                primary: AccountId(r.primary_prover_id),
                backups: r.backup_prover_ids.into_iter().map(AccountId).collect(),
                replaced,
                delivered_by: r.delivered_by.map(AccountId),
                delivered_at: r.delivered_at,
                input: r.public_input,
                public_signals: r.public_signals,
                proof: r.proof,
                failed_attempts: small(r.failed_attempts, "failure count")?,
            })
        })
        .collect()
}

/// What the scheduled primary slots opening in `[from, to)` cost each primary, by prover.
pub async fn primary_prices(conn: &mut PgConnection, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<(AccountId, Money)>, sqlx::Error> {
    let rows: Vec<(Uuid, Decimal)> = sqlx::query_as(&format!(
        "SELECT primary_prover_id, sum(price) FROM slots
          WHERE state = '{}' AND opens_at >= $1 AND opens_at < $2 GROUP BY primary_prover_id",
        SlotState::Scheduled.as_str()
    ))
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(|(p, sum)| Ok((AccountId(p), money(sum, "slot prices")?))).collect()
}

/// A prover's scheduled primary slots opening in `[from, to)`.
pub async fn primary_slots(
    conn: &mut PgConnection,
    prover: AccountId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<PrimarySlot>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Raw {
        contract_id: Uuid,
        n: i64,
        opens_at: DateTime<Utc>,
        price: Decimal,
        backup_prover_ids: Vec<Uuid>,
    }
    let rows: Vec<Raw> = sqlx::query_as(&format!(
        "SELECT contract_id, n, opens_at, price, backup_prover_ids FROM slots
          WHERE primary_prover_id = $1 AND state = '{}' AND opens_at >= $2 AND opens_at < $3 ORDER BY opens_at",
        SlotState::Scheduled.as_str()
    ))
    .bind(prover.0)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(PrimarySlot {
                contract_id: r.contract_id,
                n: unsigned(r.n, "slot number")?,
                opens_at: r.opens_at,
                price: money(r.price, "slot price")?,
                backups: r.backup_prover_ids.into_iter().map(AccountId).collect(),
            })
        })
        .collect()
}

/// Hands a scheduled slot to a new primary (guarded: still scheduled, still the old primary's).
pub async fn reassign(conn: &mut PgConnection, r: &Reassignment) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE slots SET primary_prover_id = $3, backup_prover_ids = $4,
                          replaced_primary_id = coalesce(replaced_primary_id, $5), replacement_reason = $6
          WHERE contract_id = $1 AND n = $2 AND state = $7 AND primary_prover_id = $5",
    )
    .bind(r.contract_id)
    .bind(db_count(r.n))
    .bind(r.primary.0)
    .bind(r.backups.iter().map(|b| b.0).collect::<Vec<_>>())
    .bind(r.previous.0)
    .bind(r.reason.as_str())
    .bind(SlotState::Scheduled.as_str())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Delivered and missed slots settled since `since` per class, leaving out the misses that were
/// the exchange's fault (`exchange_late`, `exchange_down`): the oracle's delivery record.
pub async fn outcomes_since(conn: &mut PgConnection, since: DateTime<Utc>) -> Result<Vec<(ProofClass, u64, u64)>, sqlx::Error> {
    let rows: Vec<(String, String, i16, i32, i64, i64)> = sqlx::query_as(&format!(
        "SELECT c.system, c.circuit, c.size_log2, c.deadline_secs,
                count(*) FILTER (WHERE s.state = '{delivered}'), count(*) FILTER (WHERE s.state = '{missed}')
           FROM slots s JOIN contracts c ON c.id = s.contract_id
          WHERE s.settled_at >= $1 AND s.state IN ('{delivered}', '{missed}')
            AND s.reason NOT IN ({exchange_faults})
          GROUP BY c.system, c.circuit, c.size_log2, c.deadline_secs",
        delivered = SlotState::Delivered.as_str(),
        missed = SlotState::Missed.as_str(),
        exchange_faults = names(&[SlotReason::ExchangeLate, SlotReason::ExchangeDown], SlotReason::as_str),
    ))
    .bind(since)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(system, circuit, size, deadline, delivered, missed)| {
            Ok((
                super::offers::proof_class_from_columns(&system, circuit, size, deadline)?,
                unsigned(delivered, "count")?,
                unsigned(missed, "count")?,
            ))
        })
        .collect()
}

/// A delivered or missed slot as the public market record shows it: what was proved, by whom, and
/// how it ended; no buyer, contract or input.
#[derive(Debug, Clone)]
pub struct SettledSlot {
    /// What was proved.
    pub class: ProofClass,
    /// `delivered` or `missed`.
    pub state: SlotState,
    /// Why it ended so.
    pub reason: Option<SlotReason>,
    /// When it opened.
    pub opens_at: DateTime<Utc>,
    /// Its deadline.
    pub deadline: DateTime<Utc>,
    /// When it was settled.
    pub settled_at: DateTime<Utc>,
    /// Its primary prover (after any replacement).
    pub primary: AccountId,
    /// Who delivered it.
    pub delivered_by: Option<AccountId>,
    /// When the proof was verified.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The latest `limit` delivered or missed slots, market-wide, most recently settled first (the
/// `slots_outcomes_by_settled` index of 0009, read backwards).
pub async fn recent_settled(conn: &mut PgConnection, limit: i64) -> Result<Vec<SettledSlot>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Raw {
        system: String,
        circuit: String,
        size_log2: i16,
        deadline_secs: i32,
        state: String,
        reason: Option<String>,
        opens_at: DateTime<Utc>,
        deadline: DateTime<Utc>,
        settled_at: DateTime<Utc>,
        primary_prover_id: Uuid,
        delivered_by: Option<Uuid>,
        delivered_at: Option<DateTime<Utc>>,
    }
    let rows: Vec<Raw> = sqlx::query_as(&format!(
        "SELECT c.system, c.circuit, c.size_log2, c.deadline_secs, s.state, s.reason, s.opens_at, s.deadline,
                s.settled_at, s.primary_prover_id, s.delivered_by, s.delivered_at
           FROM slots s JOIN contracts c ON c.id = s.contract_id
          WHERE s.settled_at IS NOT NULL AND s.state IN ({settled})
          ORDER BY s.settled_at DESC LIMIT $1",
        settled = names(&[SlotState::Delivered, SlotState::Missed], SlotState::as_str),
    ))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(SettledSlot {
                class: super::offers::proof_class_from_columns(&r.system, r.circuit, r.size_log2, r.deadline_secs)?,
                state: named(SlotState::parse, &r.state, "slot state")?,
                reason: r.reason.as_deref().map(|why| named(SlotReason::parse, why, "slot reason")).transpose()?,
                opens_at: r.opens_at,
                deadline: r.deadline,
                settled_at: r.settled_at,
                primary: AccountId(r.primary_prover_id),
                delivered_by: r.delivered_by.map(AccountId),
                delivered_at: r.delivered_at,
            })
        })
        .collect()
}
