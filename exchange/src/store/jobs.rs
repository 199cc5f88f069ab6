//! Jobs: the attempts to get a slot proved. At most one live job per slot (a partial unique index);
//! every update is guarded by the state it expects.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, AccountKind, Money, ProofClass};
use pcx_settlement::slot::{Job, NewJob, Slot};
use pcx_settlement::state::{JobFailure, JobRole, JobState};

use super::{db_count, money, named, names, small, unsigned};

/// A job with the slot it belongs to.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// The job.
    pub job: Job,
    /// Its contract.
    pub contract_id: Uuid,
    /// Its slot.
    pub n: u64,
}

#[derive(sqlx::FromRow)]
struct RawJob {
    id: Uuid,
    contract_id: Uuid,
    n: i64,
    attempt: i32,
    role: String,
    prover_id: Option<Uuid>,
    state: String,
    offered_at: DateTime<Utc>,
    ack_deadline: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    lease_expires_at: Option<DateTime<Utc>>,
    slashable: bool,
    late: bool,
}

impl TryFrom<RawJob> for JobRow {
    type Error = sqlx::Error;
    fn try_from(raw: RawJob) -> Result<Self, Self::Error> {
        Ok(JobRow {
            job: Job {
                id: raw.id,
                attempt: small(raw.attempt, "attempt")?,
                role: named(JobRole::parse, &raw.role, "job role")?,
                prover: raw.prover_id.map(AccountId),
                state: named(JobState::parse, &raw.state, "job state")?,
                offered_at: raw.offered_at,
                ack_deadline: raw.ack_deadline,
                lease_until: raw.lease_until,
                lease_expires_at: raw.lease_expires_at,
                slashable: raw.slashable,
                late: raw.late,
            },
            contract_id: raw.contract_id,
            n: unsigned(raw.n, "slot number")?,
        })
    }
}

const JOB: &str = "j.id, j.contract_id, j.n, j.attempt, j.role, j.prover_id, j.state, j.offered_at, j.ack_deadline, \
                   j.lease_until, j.lease_expires_at, j.slashable, j.late";

fn live() -> String {
    names(JobState::LIVE, JobState::as_str)
}

/// Offers a new job for a slot.
pub async fn insert(conn: &mut PgConnection, slot: &Slot, job: &NewJob) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO jobs (id, contract_id, n, attempt, role, prover_id, state, offered_at, ack_deadline, lease_until, slashable, late)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(id)
    .bind(slot.contract_id)
    .bind(db_count(slot.n))
    .bind(i32::try_from(job.attempt).unwrap_or(i32::MAX))
    .bind(job.role.as_str())
    .bind(job.prover.map(|p| p.0))
    .bind(JobState::Offered.as_str())
    .bind(job.offered_at)
    .bind(job.windows.ack_deadline)
    .bind(job.windows.lease_until)
    .bind(job.windows.slashable)
    .bind(job.windows.late)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Live jobs whose ack deadline or lease has passed at `now` (not locked: the caller locks the
/// slot, then the job): `(job, contract, slot)`.
pub async fn expired(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<(Uuid, Uuid, u64)>, sqlx::Error> {
    let rows: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(&format!(
        "SELECT id, contract_id, n FROM jobs
          WHERE (state = '{offered}' AND ack_deadline <= $1) OR (state = '{claimed}' AND lease_expires_at <= $1)
          ORDER BY offered_at LIMIT $2",
        offered = JobState::Offered.as_str(),
        claimed = JobState::Claimed.as_str(),
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(|(j, c, n)| Ok((j, c, unsigned(n, "slot number")?))).collect()
}

/// One job, locked.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    let raw: Option<RawJob> = sqlx::query_as(&format!("SELECT {JOB} FROM jobs j WHERE j.id = $1 FOR NO KEY UPDATE"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    raw.map(TryInto::try_into).transpose()
}

/// Several jobs, locked in id order (see [`super::slots::lock_many`]), by id.
pub async fn lock_many(conn: &mut PgConnection, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, JobRow>, sqlx::Error> {
    let raws: Vec<RawJob> = sqlx::query_as(&format!("SELECT {JOB} FROM jobs j WHERE j.id = ANY ($1) ORDER BY j.id FOR NO KEY UPDATE"))
        .bind(ids)
        .fetch_all(conn)
        .await?;
    raws.into_iter().map(|raw| JobRow::try_from(raw).map(|row| (row.job.id, row))).collect()
}

/// The live job of a slot, locked.
pub async fn live_of(conn: &mut PgConnection, contract: Uuid, n: u64) -> Result<Option<JobRow>, sqlx::Error> {
    let raw: Option<RawJob> = sqlx::query_as(&format!(
        "SELECT {JOB} FROM jobs j WHERE j.contract_id = $1 AND j.n = $2 AND j.state IN ({}) FOR NO KEY UPDATE",
        live()
    ))
    .bind(contract)
    .bind(db_count(n))
    .fetch_optional(conn)
    .await?;
    raw.map(TryInto::try_into).transpose()
}

/// Ends a live job as delivered or failed (guarded: only a live one).
pub async fn finish(conn: &mut PgConnection, id: Uuid, outcome: Result<(), JobFailure>, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let (state, failure) = match outcome {
        Ok(()) => (JobState::Delivered, None),
        Err(failure) => (JobState::Failed, Some(failure.as_str())),
    };
    let done = sqlx::query(&format!(
        "UPDATE jobs SET state = $2, failure = $3, finished_at = $4 WHERE id = $1 AND state IN ({})",
        live()
    ))
    .bind(id)
    .bind(state.as_str())
    .bind(failure)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends several live jobs as delivered, in one statement; true if every one was live (else the
/// caller drops its transaction).
pub async fn finish_delivered(conn: &mut PgConnection, ids: &[Uuid], now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(&format!(
        "UPDATE jobs SET state = $2, failure = NULL, finished_at = $3 WHERE id = ANY ($1) AND state IN ({})",
        live()
    ))
    .bind(ids)
    .bind(JobState::Delivered.as_str())
    .bind(now)
    .execute(conn)
    .await?;
    Ok(usize::try_from(done.rows_affected()).ok() == Some(ids.len()))
}

/// A job `agent` claimed and still holds (a claim retried after a lost answer), except those in
/// `in_hand` (which the agent says it is working on).
pub async fn held_by(conn: &mut PgConnection, agent: Uuid, prover: AccountId, in_hand: &[Uuid], now: DateTime<Utc>) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT j.id FROM jobs j JOIN slots s ON s.contract_id = j.contract_id AND s.n = j.n
          WHERE j.agent_id = $1 AND j.prover_id = $2 AND j.state = '{claimed}' AND j.lease_expires_at > $4
            AND s.deadline > $4 AND NOT (j.id = ANY($3))
          ORDER BY j.claimed_at LIMIT 1",
        claimed = JobState::Claimed.as_str(),
    ))
    .bind(agent)
    .bind(prover.0)
    .bind(in_hand)
    .bind(now)
    .fetch_optional(conn)
    .await
}

/// Picks one offered job for `prover` and locks it: its own first (as primary or backup), then
/// the open market for slots it has not failed and whose slash its bond covers. Only jobs of the
/// built-in circuits at `sizes` or of the registered `circuits` (ids).
pub async fn claimable(
    conn: &mut PgConnection,
    prover: AccountId,
    sizes: &[i16],
    circuits: &[String],
    slash_multiplier: Decimal,
    now: DateTime<Utc>,
) -> Result<Option<Ticket>, sqlx::Error> {
    let raw: Option<RawTicket> = sqlx::query_as(&format!(
        "SELECT {JOB}, {TICKET_SLOT} FROM {TICKET_FROM}
          WHERE j.state = '{offered}' AND j.ack_deadline > $4 AND s.deadline > $4
            AND (c.circuit = ANY($5) OR (c.circuit !~ '^[0-9a-f]{{64}}$' AND c.size_log2 = ANY($2)))
            AND (j.prover_id = $1
                 OR (j.role = '{open}'
                     AND NOT EXISTS (SELECT 1 FROM jobs f WHERE f.contract_id = j.contract_id AND f.n = j.n
                                        AND f.prover_id = $1 AND f.state = '{failed}')
                     AND (SELECT balance FROM ledger_accounts WHERE owner_id = $1 AND kind = '{bonded}')
                         >= s.price * $3))
          ORDER BY (j.prover_id IS NOT NULL) DESC, j.offered_at
          LIMIT 1 FOR NO KEY UPDATE OF j SKIP LOCKED",
        offered = JobState::Offered.as_str(),
        open = JobRole::Open.as_str(),
        failed = JobState::Failed.as_str(),
        bonded = AccountKind::Bonded.as_str(),
    ))
    .bind(prover.0)
    .bind(sizes)
    .bind(slash_multiplier)
    .bind(now)
    .bind(circuits)
    .fetch_optional(conn)
    .await?;
    raw.map(TryInto::try_into).transpose()
}

/// Marks a locked, offered job claimed by `agent` of `prover` until `lease_expires_at`.
pub async fn mark_claimed(
    conn: &mut PgConnection,
    id: Uuid,
    prover: AccountId,
    agent: Uuid,
    now: DateTime<Utc>,
    lease_expires_at: DateTime<Utc>,
    slashable: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET state = $2, prover_id = $3, agent_id = $4, claimed_at = $5, lease_expires_at = $6, slashable = $7
          WHERE id = $1 AND state = $8",
    )
    .bind(id)
    .bind(JobState::Claimed.as_str())
    .bind(prover.0)
    .bind(agent)
    .bind(now)
    .bind(lease_expires_at)
    .bind(slashable)
    .bind(JobState::Offered.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// A job with what an agent needs to prove it.
#[derive(Debug, Clone)]
pub struct Ticket {
    /// The job.
    pub job: Job,
    /// Contract.
    pub contract_id: Uuid,
    /// Slot.
    pub n: u64,
    /// The slot's input.
    pub input: Option<String>,
    /// When the slot opened.
    pub opens_at: DateTime<Utc>,
    /// The slot's deadline.
    pub deadline: DateTime<Utc>,
    /// What it proves.
    pub class: ProofClass,
}

#[derive(sqlx::FromRow)]
struct RawTicket {
    #[sqlx(flatten)]
    job: RawJob,
    public_input: Option<String>,
    opens_at: DateTime<Utc>,
    deadline: DateTime<Utc>,
    system: String,
    circuit: String,
    size_log2: i16,
    deadline_secs: i32,
}

impl TryFrom<RawTicket> for Ticket {
    type Error = sqlx::Error;
    fn try_from(raw: RawTicket) -> Result<Self, Self::Error> {
        let row = JobRow::try_from(raw.job)?;
        Ok(Ticket {
            job: row.job,
            contract_id: row.contract_id,
            n: row.n,
            input: raw.public_input,
            opens_at: raw.opens_at,
            deadline: raw.deadline,
            class: super::offers::proof_class_from_columns(&raw.system, raw.circuit, raw.size_log2, raw.deadline_secs)?,
        })
    }
}

const TICKET_SLOT: &str = "s.public_input, s.opens_at, s.deadline, c.system, c.circuit, c.size_log2, c.deadline_secs";
const TICKET_FROM: &str = "jobs j JOIN slots s ON s.contract_id = j.contract_id AND s.n = j.n JOIN contracts c ON c.id = j.contract_id";

/// The tickets of those of `ids` that exist, by job id: one statement for a batch of submissions.
pub async fn tickets(conn: &mut PgConnection, ids: &[Uuid]) -> Result<std::collections::HashMap<Uuid, Ticket>, sqlx::Error> {
    let raws: Vec<RawTicket> = sqlx::query_as(&format!("SELECT {JOB}, {TICKET_SLOT} FROM {TICKET_FROM} WHERE j.id = ANY($1)"))
        .bind(ids)
        .fetch_all(conn)
        .await?;
    raws.into_iter().map(|raw| Ticket::try_from(raw).map(|ticket| (ticket.job.id, ticket))).collect()
}

/// A job with its slot and class.
pub async fn ticket(conn: &mut PgConnection, id: Uuid) -> Result<Option<Ticket>, sqlx::Error> {
    let raw: Option<RawTicket> = sqlx::query_as(&format!("SELECT {JOB}, {TICKET_SLOT} FROM {TICKET_FROM} WHERE j.id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    raw.map(TryInto::try_into).transpose()
}
/// The prices of the slots whose live jobs `prover` holds (offered to it or claimed by it).
pub async fn live_prices(conn: &mut PgConnection, prover: AccountId) -> Result<Vec<Money>, sqlx::Error> {
    let rows: Vec<Decimal> = sqlx::query_scalar(&format!(
        "SELECT s.price FROM jobs j JOIN slots s ON s.contract_id = j.contract_id AND s.n = j.n
          WHERE j.prover_id = $1 AND j.state IN ({})",
        live()
    ))
    .bind(prover.0)
    .fetch_all(conn)
    .await?;
    rows.into_iter().map(|p| money(p, "slot price")).collect()
}
