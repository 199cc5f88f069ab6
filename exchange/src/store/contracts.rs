//! Quotes, contracts, allocation blocks, reservations, and the collateral they require.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_capacity_reservation::allocation::ReservationRole;
use pcx_capacity_reservation::capacity::SlotRun;
use pcx_domain::{AccountId, AccountKind};
use pcx_settlement::state::{ContractReason, ContractStatus};

use super::{db_count, is_constraint_violation, named};

/// A stored quote.
#[derive(Debug, Clone)]
pub struct QuoteRow {
    /// Id.
    pub id: Uuid,
    /// The buyer who asked.
    pub buyer_id: AccountId,
    /// The request as validated.
    pub request: serde_json::Value,
    /// The response the buyer saw.
    pub body: serde_json::Value,
    /// The blocks to reserve on acceptance.
    pub allocation: serde_json::Value,
    /// Firm until.
    pub valid_until: DateTime<Utc>,
}

/// Stores a quote.
pub async fn insert_quote(conn: &mut PgConnection, quote: &QuoteRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO quotes (id, buyer_id, request, body, allocation, valid_until) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(quote.id)
    .bind(quote.buyer_id.0)
    .bind(&quote.request)
    .bind(&quote.body)
    .bind(&quote.allocation)
    .bind(quote.valid_until)
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks and returns a quote.
pub async fn lock_quote(conn: &mut PgConnection, id: Uuid) -> Result<Option<QuoteRow>, sqlx::Error> {
    let row: Option<(Uuid, Uuid, serde_json::Value, serde_json::Value, serde_json::Value, DateTime<Utc>)> =
        sqlx::query_as(
            "SELECT id, buyer_id, request, body, allocation, valid_until FROM quotes WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(id, buyer, request, body, allocation, valid_until)| QuoteRow {
        id,
        buyer_id: AccountId(buyer),
        request,
        body,
        allocation,
        valid_until,
    }))
}

/// Records that a quote became a contract (in the accept's transaction, on the row it locked),
/// which takes it out of the purge's index.
pub async fn mark_quote_accepted(conn: &mut PgConnection, quote: Uuid, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE quotes SET accepted_at = $2 WHERE id = $1").bind(quote).bind(at).execute(conn).await?;
    Ok(())
}

/// Deletes up to `limit` quotes that expired before `before` and were never accepted, oldest
/// first; returns how many. Nothing else references a quote but `contracts.quote_id` (the
/// idempotency table keeps the response JSON, not a key), so those are excluded: by
/// `accepted_at` (the partial index `quotes_to_purge` holds only unaccepted quotes), and by the
/// contracts themselves for quotes an older binary accepted without setting it. A quote that an
/// accept holds locked is skipped (`SKIP LOCKED`) rather than waited for, and the foreign key stays
/// the last line should one still be accepted meanwhile.
pub async fn purge_expired_quotes(conn: &mut PgConnection, before: DateTime<Utc>, limit: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        // `= ANY (ARRAY(...))`, not `IN (...)`: the batch is collected first and deleted by primary
        // key, where `IN` let the planner hash-join it against a scan of every quote.
        "DELETE FROM quotes WHERE id = ANY (ARRAY(
             SELECT q.id FROM quotes q
              WHERE q.accepted_at IS NULL AND q.valid_until < $1
                AND NOT EXISTS (SELECT 1 FROM contracts c WHERE c.quote_id = q.id)
              ORDER BY q.valid_until LIMIT $2 FOR UPDATE SKIP LOCKED))",
    )
    .bind(before)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// The contract made from a quote, if any.
pub async fn contract_of_quote(conn: &mut PgConnection, quote: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM contracts WHERE quote_id = $1").bind(quote).fetch_optional(conn).await
}

/// A contract as stored.
#[derive(Debug, Clone)]
pub struct ContractRow {
    /// Id.
    pub id: Uuid,
    /// The buyer.
    pub buyer_id: Uuid,
    /// The quote it came from.
    pub quote_id: Uuid,
    /// Proof system.
    pub system: String,
    /// Circuit.
    pub circuit: String,
    /// Size.
    pub size_log2: i16,
    /// Deadline.
    pub deadline_secs: i32,
    /// Schedule start.
    pub starts_at: DateTime<Utc>,
    /// Schedule end.
    pub ends_at: DateTime<Utc>,
    /// Cadence.
    pub every_secs: i32,
    /// Proofs per slot.
    pub proofs_per_slot: i32,
    /// Backups per slot.
    pub redundancy: i16,
    /// Slots.
    pub slot_count: i64,
    /// Average locked price.
    pub price_per_proof: Decimal,
    /// Discount applied.
    pub discount_bps: i32,
    /// Total.
    pub total: Decimal,
    /// Exchange fee out of the total.
    pub fee: Decimal,
    /// Escrow locked at purchase.
    pub escrow_locked: Decimal,
    /// Status.
    pub status: ContractStatus,
    /// Why, when suspended.
    pub status_reason: Option<ContractReason>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RawContract {
    id: Uuid,
    buyer_id: Uuid,
    quote_id: Uuid,
    system: String,
    circuit: String,
    size_log2: i16,
    deadline_secs: i32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    every_secs: i32,
    proofs_per_slot: i32,
    redundancy: i16,
    slot_count: i64,
    price_per_proof: Decimal,
    discount_bps: i32,
    total: Decimal,
    fee: Decimal,
    escrow_locked: Decimal,
    status: String,
    status_reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<RawContract> for ContractRow {
    type Error = sqlx::Error;
    fn try_from(r: RawContract) -> Result<Self, Self::Error> {
        Ok(ContractRow {
            status: named(ContractStatus::parse, &r.status, "contract status")?,
            status_reason: r.status_reason.as_deref().map(|why| named(ContractReason::parse, why, "contract reason")).transpose()?,
            id: r.id,
            buyer_id: r.buyer_id,
            quote_id: r.quote_id,
            system: r.system,
            circuit: r.circuit,
            size_log2: r.size_log2,
            deadline_secs: r.deadline_secs,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            every_secs: r.every_secs,
            proofs_per_slot: r.proofs_per_slot,
            redundancy: r.redundancy,
            slot_count: r.slot_count,
            price_per_proof: r.price_per_proof,
            discount_bps: r.discount_bps,
            total: r.total,
            fee: r.fee,
            escrow_locked: r.escrow_locked,
            created_at: r.created_at,
        })
    }
}

const CONTRACT_COLUMNS: &str = "id, buyer_id, quote_id, system, circuit, size_log2, deadline_secs, starts_at, ends_at, \
    every_secs, proofs_per_slot, redundancy, slot_count, price_per_proof, discount_bps, total, fee, escrow_locked, \
    status, status_reason, created_at";

/// A block as stored.
#[derive(Debug, Clone)]
pub struct BlockRow {
    /// Block number within the contract.
    pub block_no: i32,
    /// First slot.
    pub first_slot: i64,
    /// End slot (exclusive).
    pub end_slot: i64,
    /// Start of the first clock hour its slots open in.
    pub starts_at: DateTime<Utc>,
    /// End of the last clock hour its slots open in.
    pub ends_at: DateTime<Utc>,
    /// Primary offer.
    pub primary_offer_id: i64,
    /// Primary prover.
    pub primary_prover_id: Uuid,
    /// Backup offers.
    pub backup_offer_ids: Vec<i64>,
    /// Backup provers.
    pub backup_prover_ids: Vec<Uuid>,
    /// Locked price per proof.
    pub price_per_proof: Decimal,
    /// The slots it holds, as the capacity rule counts them.
    pub run: SlotRun,
}

/// Why a contract could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// A reservation would overbook an offer, or its offer was cancelled.
    #[error("capacity gone: {0}")]
    CapacityGone(&'static str),
    /// Anything else.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Stores a contract, its blocks and their reservations (each holding its block's run of slots;
/// `units_per_hour` records the contract's peak per hour). The reservation trigger refuses any
/// that would overbook; reservations are inserted in offer order so that concurrent purchases
/// lock offers in the same order.
pub async fn insert_contract(
    conn: &mut PgConnection,
    contract: &ContractRow,
    blocks: &[BlockRow],
    units_per_hour: i32,
) -> Result<(), InsertError> {
    sqlx::query(&format!(
        "INSERT INTO contracts ({CONTRACT_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
    ))
    .bind(contract.id)
    .bind(contract.buyer_id)
    .bind(contract.quote_id)
    .bind(&contract.system)
    .bind(&contract.circuit)
    .bind(contract.size_log2)
    .bind(contract.deadline_secs)
    .bind(contract.starts_at)
    .bind(contract.ends_at)
    .bind(contract.every_secs)
    .bind(contract.proofs_per_slot)
    .bind(contract.redundancy)
    .bind(contract.slot_count)
    .bind(contract.price_per_proof)
    .bind(contract.discount_bps)
    .bind(contract.total)
    .bind(contract.fee)
    .bind(contract.escrow_locked)
    .bind(contract.status.as_str())
    .bind(contract.status_reason.map(|r| r.as_str()))
    .bind(contract.created_at)
    .execute(&mut *conn)
    .await?;

    for b in blocks {
        sqlx::query(
            "INSERT INTO contract_blocks (contract_id, block_no, first_slot, end_slot, starts_at, ends_at,
                 primary_offer_id, primary_prover_id, backup_offer_ids, backup_prover_ids, price_per_proof)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(contract.id)
        .bind(b.block_no)
        .bind(b.first_slot)
        .bind(b.end_slot)
        .bind(b.starts_at)
        .bind(b.ends_at)
        .bind(b.primary_offer_id)
        .bind(b.primary_prover_id)
        .bind(&b.backup_offer_ids)
        .bind(&b.backup_prover_ids)
        .bind(b.price_per_proof)
        .execute(&mut *conn)
        .await?;
    }

    struct Reservation<'a> {
        offer: i64,
        block: &'a BlockRow,
        prover: Uuid,
        role: ReservationRole,
    }
    let mut rows: Vec<Reservation> = Vec::new();
    for b in blocks {
        rows.push(Reservation { offer: b.primary_offer_id, block: b, prover: b.primary_prover_id, role: ReservationRole::Primary });
        for (offer, prover) in b.backup_offer_ids.iter().zip(&b.backup_prover_ids) {
            rows.push(Reservation { offer: *offer, block: b, prover: *prover, role: ReservationRole::Backup });
        }
    }
    rows.sort_by_key(|r| (r.offer, r.block.starts_at));
    let result = sqlx::query(
        "INSERT INTO reservations (contract_id, offer_id, block_no, prover_id, role, starts_at, ends_at,
                                   units_per_hour, price_per_proof, first_at, every_secs, slot_count, proofs_per_slot)
         SELECT $1, r.offer_id, r.block_no, r.prover_id, r.role, r.starts_at, r.ends_at, $9, r.price, r.first_at, $10,
                r.slot_count, $11
           FROM unnest($2::bigint[], $3::int[], $4::uuid[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::numeric[],
                       $12::timestamptz[], $13::bigint[])
                WITH ORDINALITY AS r (offer_id, block_no, prover_id, role, starts_at, ends_at, price, first_at, slot_count, ord)
          ORDER BY r.ord",
    )
    .bind(contract.id)
    .bind(rows.iter().map(|r| r.offer).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.block.block_no).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.prover).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.role.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.block.starts_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.block.ends_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.block.price_per_proof).collect::<Vec<_>>())
    .bind(units_per_hour)
    .bind(contract.every_secs)
    .bind(contract.proofs_per_slot)
    .bind(rows.iter().map(|r| r.block.run.first_at()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| db_count(r.block.run.slot_count())).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(err) if is_constraint_violation(&err, "reservations_within_capacity") => {
            Err(InsertError::CapacityGone("another contract took the quoted capacity"))
        }
        Err(err) if is_constraint_violation(&err, "reservations_offer_active") => {
            Err(InsertError::CapacityGone("a quoted offer was cancelled"))
        }
        Err(err) if is_constraint_violation(&err, "reservations_within_window") => {
            Err(InsertError::CapacityGone("a quoted offer no longer covers the schedule"))
        }
        Err(err) => Err(InsertError::Db(err)),
    }
}

/// One contract.
pub async fn get_contract(conn: &mut PgConnection, id: Uuid) -> Result<Option<ContractRow>, sqlx::Error> {
    let raw: Option<RawContract> = sqlx::query_as(&format!("SELECT {CONTRACT_COLUMNS} FROM contracts WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    raw.map(TryInto::try_into).transpose()
}

/// Blocks of a contract, in slot order, each with its run of slots.
pub async fn blocks(conn: &mut PgConnection, contract: Uuid) -> Result<Vec<BlockRow>, sqlx::Error> {
    type Raw = (i32, i64, i64, DateTime<Utc>, DateTime<Utc>, i64, Uuid, Vec<i64>, Vec<Uuid>, Decimal, DateTime<Utc>, DateTime<Utc>, i32, i32);
    let rows: Vec<Raw> = sqlx::query_as(
        "SELECT b.block_no, b.first_slot, b.end_slot, b.starts_at, b.ends_at, b.primary_offer_id, b.primary_prover_id,
                b.backup_offer_ids, b.backup_prover_ids, b.price_per_proof, c.starts_at, c.ends_at, c.every_secs, c.proofs_per_slot
           FROM contract_blocks b JOIN contracts c ON c.id = b.contract_id WHERE b.contract_id = $1 ORDER BY b.first_slot",
    )
    .bind(contract)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(block_no, first_slot, end_slot, starts_at, ends_at, primary_offer_id, primary_prover_id, backup_offer_ids,
               backup_prover_ids, price_per_proof, start, end, every, pps)| {
            let schedule = pcx_domain::Schedule { start, end, every_secs: u32::try_from(every).map_err(|_| super::corrupt("cadence"))? };
            let range = super::unsigned(first_slot, "block start")?..super::unsigned(end_slot, "block end")?;
            let run = SlotRun::of(&schedule, range, super::small(pps, "proofs per slot")?).ok_or_else(|| super::corrupt("block range"))?;
            Ok(BlockRow {
                block_no,
                first_slot,
                end_slot,
                starts_at,
                ends_at,
                primary_offer_id,
                primary_prover_id,
                backup_offer_ids,
                backup_prover_ids,
                price_per_proof,
                run,
            })
        })
        .collect()
}

/// Whose contracts to list.
#[derive(Debug, Clone, Copy)]
pub enum Viewer {
    /// A buyer: the contracts it bought.
    Buyer(Uuid),
    /// A prover: the contracts it serves as primary or backup.
    Prover(Uuid),
    /// The operator: all.
    Admin,
}

/// Contracts visible to `viewer`, newest first.
pub async fn list(conn: &mut PgConnection, viewer: Viewer, limit: i64) -> Result<Vec<ContractRow>, sqlx::Error> {
    let (clause, who) = match viewer {
        Viewer::Buyer(id) => ("buyer_id = $1", Some(id)),
        Viewer::Prover(id) => ("id IN (SELECT contract_id FROM reservations WHERE prover_id = $1)", Some(id)),
        Viewer::Admin => ("$1::uuid IS NULL", None),
    };
    let raws: Vec<RawContract> = sqlx::query_as(&format!(
        "SELECT {CONTRACT_COLUMNS} FROM contracts WHERE {clause} ORDER BY created_at DESC, id LIMIT $2"
    ))
    .bind(who)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    raws.into_iter().map(TryInto::try_into).collect()
}

/// True when `prover` holds a reservation in `contract`.
pub async fn serves(conn: &mut PgConnection, contract: Uuid, prover: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM reservations WHERE contract_id = $1 AND prover_id = $2)")
        .bind(contract)
        .bind(prover)
        .fetch_one(conn)
        .await
}

/// Locks the bonded balances of `provers` (in id order, so concurrent callers cannot deadlock) and
/// returns them.
pub async fn lock_bonded(conn: &mut PgConnection, provers: &[Uuid]) -> Result<Vec<(Uuid, Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT owner_id, balance FROM ledger_accounts
          WHERE owner_id = ANY($1) AND kind = $2 ORDER BY owner_id FOR NO KEY UPDATE",
    )
    .bind(provers)
    .bind(AccountKind::Bonded.as_str())
    .fetch_all(conn)
    .await
}

/// Per prover, `multiplier x price x proofs` of its reservations in `role` whose slots open in
/// `[from, to)` (the slots counted exactly, as the capacity rule counts them).
pub async fn collateral_required(
    conn: &mut PgConnection,
    provers: &[Uuid],
    role: ReservationRole,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    multiplier: Decimal,
) -> Result<Vec<(Uuid, Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT prover_id, $4 * sum(price_per_proof * proofs_per_slot * run_slots_between(first_at, every_secs, slot_count, $2, $3))
           FROM reservations
          WHERE prover_id = ANY($1) AND role = $5 AND ends_at > $2 AND starts_at < $3
          GROUP BY prover_id",
    )
    .bind(provers)
    .bind(from)
    .bind(to)
    .bind(multiplier)
    .bind(role.as_str())
    .fetch_all(conn)
    .await
}

/// Rows stored for a contract: itself, its blocks, its reservations.
pub async fn rows_stored(conn: &mut PgConnection, contract: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT 1 + (SELECT count(*) FROM contract_blocks WHERE contract_id = $1)
                  + (SELECT count(*) FROM reservations WHERE contract_id = $1)",
    )
    .bind(contract)
    .fetch_one(conn)
    .await
}
