//! Slots, jobs and agents: the SQL of settlement. Every function runs on the caller's connection,
//! so one transition is one transaction.
//!
//! Row locks are `FOR NO KEY UPDATE`: they serialise transitions of a row without conflicting with
//! the `KEY SHARE` locks that foreign keys take (a buyer posting an input, a job row referencing its
//! slot), which `FOR UPDATE` would turn into deadlocks.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// What the scheduler needs of a contract.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ContractProgress {
    /// Id.
    pub id: Uuid,
    /// The buyer.
    pub buyer_id: Uuid,
    /// `active`, `suspended`, ...
    pub status: String,
    /// Schedule start.
    pub starts_at: DateTime<Utc>,
    /// Cadence.
    pub every_secs: i32,
    /// Slots.
    pub slot_count: i64,
    /// Proofs per slot.
    pub proofs_per_slot: i32,
    /// Next slot to materialise.
    pub materialised_until: i64,
    /// Slots below this have their payment in escrow.
    pub escrow_until: i64,
    /// What the escrow holds for this contract.
    pub escrow_held: Decimal,
}

const PROGRESS: &str = "id, buyer_id, status, starts_at, every_secs, slot_count, proofs_per_slot, \
                        materialised_until, escrow_until, escrow_held";

/// Contracts whose next slot to materialise opens by `until` (locked, skipping locked ones).
pub async fn contracts_to_materialise(
    conn: &mut PgConnection,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ContractProgress>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PROGRESS} FROM contracts WHERE materialise_at <= $1 ORDER BY materialise_at LIMIT $2
         FOR NO KEY UPDATE SKIP LOCKED"
    ))
    .bind(until)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Contracts whose escrow window has moved past what is locked (locked, skipping locked ones).
pub async fn contracts_to_escrow(
    conn: &mut PgConnection,
    until: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<ContractProgress>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PROGRESS} FROM contracts WHERE escrow_next_at <= $1 AND status IN ('active', 'suspended')
          ORDER BY escrow_next_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
    ))
    .bind(until)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One contract's progress, locked.
pub async fn lock_contract(conn: &mut PgConnection, id: Uuid) -> Result<Option<ContractProgress>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {PROGRESS} FROM contracts WHERE id = $1 FOR NO KEY UPDATE"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Inserts slots `[from, to)` of a contract from its blocks (existing ones are kept).
pub async fn insert_slots(conn: &mut PgConnection, contract: Uuid, from: i64, to: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO slots (contract_id, n, opens_at, deadline, block_no, primary_prover_id, backup_prover_ids, price)
         SELECT c.id, g.n,
                c.starts_at + g.n * c.every_secs * interval '1 second',
                c.starts_at + g.n * c.every_secs * interval '1 second' + c.deadline_secs * interval '1 second',
                b.block_no, b.primary_prover_id, b.backup_prover_ids, b.price_per_proof * c.proofs_per_slot
           FROM contracts c
           CROSS JOIN generate_series($2::bigint, $3::bigint - 1) AS g (n)
           JOIN contract_blocks b ON b.contract_id = c.id AND g.n >= b.first_slot AND g.n < b.end_slot
          WHERE c.id = $1
         ON CONFLICT (contract_id, n) DO NOTHING",
    )
    .bind(contract)
    .bind(from)
    .bind(to)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Records how far a contract is materialised.
pub async fn set_materialised(
    conn: &mut PgConnection,
    contract: Uuid,
    until: i64,
    next_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE contracts SET materialised_until = $2, materialise_at = $3 WHERE id = $1")
        .bind(contract)
        .bind(until)
        .bind(next_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records how far a contract's escrow reaches and what it holds.
pub async fn set_escrow(
    conn: &mut PgConnection,
    contract: Uuid,
    until: i64,
    next_at: Option<DateTime<Utc>>,
    held: Decimal,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE contracts SET escrow_until = $2, escrow_next_at = $3, escrow_held = $4 WHERE id = $1")
        .bind(contract)
        .bind(until)
        .bind(next_at)
        .bind(held)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds `delta` (may be negative) to what a contract's escrow holds.
pub async fn add_escrow_held(conn: &mut PgConnection, contract: Uuid, delta: Decimal) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE contracts SET escrow_held = escrow_held + $2 WHERE id = $1")
        .bind(contract)
        .bind(delta)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets a contract's status and reason.
pub async fn set_status(conn: &mut PgConnection, contract: Uuid, status: &str, reason: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE contracts SET status = $2, status_reason = $3 WHERE id = $1")
        .bind(contract)
        .bind(status)
        .bind(reason)
        .execute(conn)
        .await?;
    Ok(())
}

/// The price of slots `[from, to)` of a contract, from its blocks.
pub async fn price_of_slots(conn: &mut PgConnection, contract: Uuid, from: i64, to: i64) -> Result<Decimal, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(b.price_per_proof * c.proofs_per_slot
                             * GREATEST(0, LEAST(b.end_slot, $3) - GREATEST(b.first_slot, $2))), 0)
           FROM contract_blocks b JOIN contracts c ON c.id = b.contract_id
          WHERE b.contract_id = $1",
    )
    .bind(contract)
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await
}

/// A slot with what settlement needs to know about it and its contract.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SlotRow {
    /// Contract.
    pub contract_id: Uuid,
    /// Slot number.
    pub n: i64,
    /// Opening time.
    pub opens_at: DateTime<Utc>,
    /// Deadline.
    pub deadline: DateTime<Utc>,
    /// Primary prover.
    pub primary_prover_id: Uuid,
    /// Backups in order.
    pub backup_prover_ids: Vec<Uuid>,
    /// Price of the slot.
    pub price: Decimal,
    /// Posted input.
    pub public_input: Option<String>,
    /// State.
    pub state: String,
    /// Failed jobs so far.
    pub failed_attempts: i32,
    /// Set aside for whoever steps in.
    pub step_in_bonus: Decimal,
    /// The buyer.
    pub buyer_id: Uuid,
    /// Slots below this are funded.
    pub escrow_until: i64,
    /// Circuit size.
    pub size_log2: i16,
}

const SLOT: &str = "s.contract_id, s.n, s.opens_at, s.deadline, s.primary_prover_id, s.backup_prover_ids, s.price, \
                    s.public_input, s.state, s.failed_attempts, s.step_in_bonus, c.buyer_id, c.escrow_until, c.size_log2";

/// Slots due to open by `now` (locked, skipping locked ones).
pub async fn slots_to_open(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<SlotRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SLOT} FROM slots s JOIN contracts c ON c.id = s.contract_id
          WHERE s.state = 'scheduled' AND s.opens_at <= $1 ORDER BY s.opens_at LIMIT $2 FOR NO KEY UPDATE OF s SKIP LOCKED"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Proving slots past their deadline (locked, skipping locked ones).
pub async fn slots_past_deadline(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<SlotRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SLOT} FROM slots s JOIN contracts c ON c.id = s.contract_id
          WHERE s.state = 'proving' AND s.deadline <= $1 ORDER BY s.deadline LIMIT $2 FOR NO KEY UPDATE OF s SKIP LOCKED"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One slot, locked.
pub async fn lock_slot(conn: &mut PgConnection, contract: Uuid, n: i64) -> Result<Option<SlotRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {SLOT} FROM slots s JOIN contracts c ON c.id = s.contract_id
          WHERE s.contract_id = $1 AND s.n = $2 FOR NO KEY UPDATE OF s"
    ))
    .bind(contract)
    .bind(n)
    .fetch_optional(conn)
    .await
}

/// Moves a slot to a final state (guarded: only from `scheduled` or `proving`).
pub async fn finish_slot(
    conn: &mut PgConnection,
    contract: Uuid,
    n: i64,
    state: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE slots SET state = $3, reason = $4, settled_at = $5
          WHERE contract_id = $1 AND n = $2 AND state IN ('scheduled', 'proving')",
    )
    .bind(contract)
    .bind(n)
    .bind(state)
    .bind(reason)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks a slot delivered with its proof (guarded: only from `proving`).
#[allow(clippy::too_many_arguments)]
pub async fn deliver_slot(
    conn: &mut PgConnection,
    contract: Uuid,
    n: i64,
    reason: &str,
    prover: Uuid,
    proof: &str,
    output: &str,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE slots SET state = 'delivered', reason = $3, delivered_by = $4, delivered_at = $7, proof = $5,
                          public_output = $6, settled_at = $7
          WHERE contract_id = $1 AND n = $2 AND state = 'proving'",
    )
    .bind(contract)
    .bind(n)
    .bind(reason)
    .bind(prover)
    .bind(proof)
    .bind(output)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a slot from `scheduled` to `proving`.
pub async fn start_proving(conn: &mut PgConnection, contract: Uuid, n: i64) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE slots SET state = 'proving' WHERE contract_id = $1 AND n = $2 AND state = 'scheduled'")
        .bind(contract)
        .bind(n)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a failed job on a slot and adds to its step-in bonus.
pub async fn count_failure(conn: &mut PgConnection, contract: Uuid, n: i64, bonus: Decimal) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE slots SET failed_attempts = failed_attempts + 1, step_in_bonus = step_in_bonus + $3
          WHERE contract_id = $1 AND n = $2",
    )
    .bind(contract)
    .bind(n)
    .bind(bonus)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets a slot's input (only while `scheduled`); false if it is already open.
pub async fn set_input(conn: &mut PgConnection, contract: Uuid, n: i64, input: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE slots SET public_input = $3 WHERE contract_id = $1 AND n = $2 AND state = 'scheduled'")
        .bind(contract)
        .bind(n)
        .bind(input)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A slot as the buyer reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SlotRecord {
    /// Slot number.
    pub n: i64,
    /// State.
    pub state: String,
    /// Final reason.
    pub reason: Option<String>,
    /// Who delivered.
    pub delivered_by: Option<Uuid>,
    /// When.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Posted input.
    pub public_input: Option<String>,
    /// Second public input (the chain's output).
    pub public_output: Option<String>,
    /// The proof.
    pub proof: Option<String>,
    /// Failed jobs.
    pub failed_attempts: i32,
}

/// Materialised slots `[from, to)` of a contract.
pub async fn slot_records(conn: &mut PgConnection, contract: Uuid, from: i64, to: i64) -> Result<Vec<SlotRecord>, sqlx::Error> {
    sqlx::query_as(
        "SELECT n, state, reason, delivered_by, delivered_at, public_input, public_output, proof, failed_attempts
           FROM slots WHERE contract_id = $1 AND n >= $2 AND n < $3 ORDER BY n",
    )
    .bind(contract)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await
}

/// A job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    /// Id.
    pub id: Uuid,
    /// Contract.
    pub contract_id: Uuid,
    /// Slot.
    pub n: i64,
    /// Attempt number.
    pub attempt: i32,
    /// `primary`, `backup`, `open`.
    pub role: String,
    /// Holder.
    pub prover_id: Option<Uuid>,
    /// `offered`, `claimed`, `delivered`, `failed`.
    pub state: String,
    /// Lease end.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Ack deadline.
    pub ack_deadline: DateTime<Utc>,
}

const JOB: &str = "id, contract_id, n, attempt, role, prover_id, state, lease_expires_at, ack_deadline";

/// Offers a new job for a slot.
#[allow(clippy::too_many_arguments)]
pub async fn insert_job(
    conn: &mut PgConnection,
    contract: Uuid,
    n: i64,
    attempt: i32,
    role: &str,
    prover: Option<Uuid>,
    now: DateTime<Utc>,
    ack_deadline: DateTime<Utc>,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO jobs (id, contract_id, n, attempt, role, prover_id, offered_at, ack_deadline)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(contract)
    .bind(n)
    .bind(attempt)
    .bind(role)
    .bind(prover)
    .bind(now)
    .bind(ack_deadline)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Jobs whose ack deadline or lease has passed (not locked: the caller locks slot, then job).
pub async fn expired_jobs(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {JOB} FROM jobs
          WHERE (state = 'offered' AND ack_deadline <= $1) OR (state = 'claimed' AND lease_expires_at <= $1)
          ORDER BY offered_at LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One job, locked.
pub async fn lock_job(conn: &mut PgConnection, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!("SELECT {JOB} FROM jobs WHERE id = $1 FOR NO KEY UPDATE"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The live job of a slot, locked.
pub async fn live_job(conn: &mut PgConnection, contract: Uuid, n: i64) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {JOB} FROM jobs WHERE contract_id = $1 AND n = $2 AND state IN ('offered', 'claimed') FOR NO KEY UPDATE"
    ))
    .bind(contract)
    .bind(n)
    .fetch_optional(conn)
    .await
}

/// Ends a job (guarded: only a live one).
pub async fn finish_job(
    conn: &mut PgConnection,
    id: Uuid,
    state: &str,
    failure: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET state = $2, failure = $3, finished_at = $4 WHERE id = $1 AND state IN ('offered', 'claimed')",
    )
    .bind(id)
    .bind(state)
    .bind(failure)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Claims one offered job for `prover`: its own first (as primary or backup), then the open market
/// for slots it has not failed and whose slash its bonded stake covers.
#[allow(clippy::too_many_arguments)]
pub async fn claim_job(
    conn: &mut PgConnection,
    prover: Uuid,
    agent: Uuid,
    sizes: &[i16],
    slash_multiplier: Decimal,
    lease: chrono::Duration,
    now: DateTime<Utc>,
) -> Result<Option<Uuid>, sqlx::Error> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT j.id FROM jobs j
           JOIN contracts c ON c.id = j.contract_id
           JOIN slots s ON s.contract_id = j.contract_id AND s.n = j.n
          WHERE j.state = 'offered' AND j.ack_deadline > $4 AND s.deadline > $4 AND c.size_log2 = ANY($3)
            AND (j.prover_id = $1
                 OR (j.role = 'open'
                     AND NOT EXISTS (SELECT 1 FROM jobs f WHERE f.contract_id = j.contract_id AND f.n = j.n
                                        AND f.prover_id = $1 AND f.state = 'failed')
                     AND (SELECT balance FROM ledger_accounts WHERE owner_id = $1 AND kind = 'bonded')
                         >= s.price * $5))
          ORDER BY (j.prover_id IS NOT NULL) DESC, j.offered_at
          LIMIT 1 FOR NO KEY UPDATE OF j SKIP LOCKED",
    )
    .bind(prover)
    .bind(agent)
    .bind(sizes)
    .bind(now)
    .bind(slash_multiplier)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = id else { return Ok(None) };
    sqlx::query(
        "UPDATE jobs SET state = 'claimed', prover_id = $2, agent_id = $3, claimed_at = $4,
                lease_expires_at = LEAST($4 + $5 * interval '1 second',
                                         (SELECT deadline FROM slots s WHERE s.contract_id = jobs.contract_id AND s.n = jobs.n))
          WHERE id = $1",
    )
    .bind(id)
    .bind(prover)
    .bind(agent)
    .bind(now)
    .bind(lease.num_seconds() as f64)
    .execute(conn)
    .await?;
    Ok(Some(id))
}

/// A claimed job with what the agent needs to prove it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobTicket {
    /// Job id.
    pub id: Uuid,
    /// Contract.
    pub contract_id: Uuid,
    /// Slot.
    pub n: i64,
    /// Role.
    pub role: String,
    /// Holder.
    pub prover_id: Option<Uuid>,
    /// State.
    pub state: String,
    /// Lease end.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Slot input.
    pub public_input: Option<String>,
    /// Slot opening.
    pub opens_at: DateTime<Utc>,
    /// Slot deadline.
    pub deadline: DateTime<Utc>,
    /// Proof system.
    pub system: String,
    /// Circuit.
    pub circuit: String,
    /// Size.
    pub size_log2: i16,
    /// Deadline of the class.
    pub deadline_secs: i32,
}

/// A job with its slot and class.
pub async fn ticket(conn: &mut PgConnection, id: Uuid) -> Result<Option<JobTicket>, sqlx::Error> {
    sqlx::query_as(
        "SELECT j.id, j.contract_id, j.n, j.role, j.prover_id, j.state, j.lease_expires_at, s.public_input, s.opens_at,
                s.deadline, c.system, c.circuit, c.size_log2, c.deadline_secs
           FROM jobs j JOIN slots s ON s.contract_id = j.contract_id AND s.n = j.n JOIN contracts c ON c.id = j.contract_id
          WHERE j.id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Records an agent's heartbeat.
pub async fn heartbeat(
    conn: &mut PgConnection,
    agent: Uuid,
    prover: Uuid,
    workers: i32,
    backend: &str,
    capabilities: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO agents (id, prover_id, workers, backend, capabilities, started_at, last_seen)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (id) DO UPDATE SET workers = $3, backend = $4, capabilities = $5, last_seen = $6
          WHERE agents.prover_id = $2",
    )
    .bind(agent)
    .bind(prover)
    .bind(workers)
    .bind(backend)
    .bind(capabilities)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Adds an outcome to a prover's reputation for a class.
pub async fn record_outcome(
    conn: &mut PgConnection,
    prover: Uuid,
    contract: Uuid,
    delivered: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO prover_reputation (prover_id, system, circuit, delivered, missed)
         SELECT $1, system, circuit, CASE WHEN $3 THEN 1 ELSE 0 END, CASE WHEN $3 THEN 0 ELSE 1 END
           FROM contracts WHERE id = $2
         ON CONFLICT (prover_id, system, circuit) DO UPDATE
            SET delivered = prover_reputation.delivered + EXCLUDED.delivered,
                missed = prover_reputation.missed + EXCLUDED.missed",
    )
    .bind(prover)
    .bind(contract)
    .bind(delivered)
    .execute(conn)
    .await?;
    Ok(())
}

/// Contracts with every slot materialised and settled (locked, skipping locked ones).
pub async fn contracts_to_complete(conn: &mut PgConnection, limit: i64) -> Result<Vec<ContractProgress>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PROGRESS} FROM contracts c
          WHERE c.status IN ('active', 'suspended') AND c.materialise_at IS NULL
            AND NOT EXISTS (SELECT 1 FROM slots s WHERE s.contract_id = c.id AND s.state IN ('scheduled', 'proving'))
          LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED"
    ))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Marks a contract completed.
pub async fn complete(conn: &mut PgConnection, contract: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE contracts SET status = 'completed', status_reason = NULL, completed_at = $2, escrow_held = 0 WHERE id = $1")
        .bind(contract)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// A prover's reputation per circuit with delivery latency percentiles (seconds from opening).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ReputationRow {
    /// Proof system.
    pub system: String,
    /// Circuit.
    pub circuit: String,
    /// Delivered jobs.
    pub delivered: i64,
    /// Failed jobs.
    pub missed: i64,
    /// Median latency.
    pub latency_p50_secs: Option<f64>,
    /// 95th percentile latency.
    pub latency_p95_secs: Option<f64>,
}

/// Reputation rows of a prover.
pub async fn reputation(conn: &mut PgConnection, prover: Uuid) -> Result<Vec<ReputationRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT r.system, r.circuit, r.delivered, r.missed,
                (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM j.finished_at - s.opens_at))
                   FROM jobs j JOIN slots s ON s.contract_id = j.contract_id AND s.n = j.n
                   JOIN contracts c ON c.id = j.contract_id
                  WHERE j.prover_id = r.prover_id AND j.state = 'delivered' AND c.system = r.system AND c.circuit = r.circuit)
                    AS latency_p50_secs,
                (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM j.finished_at - s.opens_at))
                   FROM jobs j JOIN slots s ON s.contract_id = j.contract_id AND s.n = j.n
                   JOIN contracts c ON c.id = j.contract_id
                  WHERE j.prover_id = r.prover_id AND j.state = 'delivered' AND c.system = r.system AND c.circuit = r.circuit)
                    AS latency_p95_secs
           FROM prover_reputation r WHERE r.prover_id = $1 ORDER BY r.system, r.circuit",
    )
    .bind(prover)
    .fetch_all(conn)
    .await
}
