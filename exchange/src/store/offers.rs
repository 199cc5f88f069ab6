//! Offers (asks) and what the allocator needs to know about them.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_capacity_reservation::allocation::{Held, ReservationRole};
use pcx_capacity_reservation::capacity::SlotRun;
use pcx_capacity_reservation::offer::OfferStatus;
use pcx_capacity_reservation::pricing::PriceTier;
use pcx_domain::{AccountId, Money, ProofClass, ProofSystem, Schedule};

/// An offer as stored.
#[derive(Debug, Clone)]
pub struct OfferRow {
    /// Id.
    pub id: i64,
    /// The prover.
    pub prover_id: AccountId,
    /// What it proves.
    pub class: ProofClass,
    /// Window start.
    pub window_start: DateTime<Utc>,
    /// Window end.
    pub window_end: DateTime<Utc>,
    /// Capacity.
    pub proofs_per_hour: u32,
    /// Base price.
    pub price_per_proof: Money,
    /// Volume tiers.
    pub tiers: Vec<PriceTier>,
    /// Whether it sells.
    pub status: OfferStatus,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// A new offer.
#[derive(Debug, Clone)]
pub struct NewOffer<'a> {
    /// The prover.
    pub prover_id: AccountId,
    /// What it proves.
    pub class: &'a ProofClass,
    /// Window start.
    pub window_start: DateTime<Utc>,
    /// Window end.
    pub window_end: DateTime<Utc>,
    /// Capacity.
    pub proofs_per_hour: u32,
    /// Base price.
    pub price_per_proof: Money,
    /// Tiers.
    pub tiers: &'a [PriceTier],
}

const COLUMNS: &str = "id, prover_id, system, circuit, size_log2, deadline_secs, window_start, window_end, \
                       proofs_per_hour, price_per_proof, tiers, status, created_at";

#[derive(sqlx::FromRow)]
struct RawOffer {
    id: i64,
    prover_id: Uuid,
    system: String,
    circuit: String,
    size_log2: i16,
    deadline_secs: i32,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    proofs_per_hour: i32,
    price_per_proof: Decimal,
    tiers: serde_json::Value,
    status: String,
    created_at: DateTime<Utc>,
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored proof class has an invalid {what}").into())
}

impl TryFrom<RawOffer> for OfferRow {
    type Error = sqlx::Error;
    fn try_from(raw: RawOffer) -> Result<Self, Self::Error> {
        Ok(OfferRow {
            id: raw.id,
            prover_id: AccountId(raw.prover_id),
            class: proof_class_from_columns(&raw.system, raw.circuit, raw.size_log2, raw.deadline_secs)?,
            window_start: raw.window_start,
            window_end: raw.window_end,
            proofs_per_hour: u32::try_from(raw.proofs_per_hour).map_err(|_| decode_error("capacity"))?,
            price_per_proof: Money::from_decimal(raw.price_per_proof).map_err(|_| decode_error("price"))?,
            tiers: serde_json::from_value(raw.tiers).map_err(|_| decode_error("tiers"))?,
            status: super::named(OfferStatus::parse, &raw.status, "offer status")?,
            created_at: raw.created_at,
        })
    }
}

/// The stable name of a proof system, as stored.
pub fn system_name(system: ProofSystem) -> String {
    system.as_str().to_owned()
}

/// A proof class from its stored columns (offers, contracts, jobs all store it this way).
pub fn proof_class_from_columns(system: &str, circuit: String, size_log2: i16, deadline_secs: i32) -> Result<ProofClass, sqlx::Error> {
    Ok(ProofClass {
        system: ProofSystem::parse(system).ok_or_else(|| decode_error("system"))?,
        circuit,
        size_log2: u8::try_from(size_log2).map_err(|_| decode_error("size"))?,
        deadline_secs: u32::try_from(deadline_secs).map_err(|_| decode_error("deadline"))?,
    })
}

/// Stores a new offer.
pub async fn insert(conn: &mut PgConnection, offer: &NewOffer<'_>) -> Result<OfferRow, sqlx::Error> {
    let raw: RawOffer = sqlx::query_as(&format!(
        "INSERT INTO offers (prover_id, system, circuit, size_log2, deadline_secs, window_start, window_end,
                             proofs_per_hour, price_per_proof, tiers)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {COLUMNS}"
    ))
    .bind(offer.prover_id.0)
    .bind(system_name(offer.class.system))
    .bind(&offer.class.circuit)
    .bind(i16::from(offer.class.size_log2))
    .bind(i32::try_from(offer.class.deadline_secs).unwrap_or(i32::MAX))
    .bind(offer.window_start)
    .bind(offer.window_end)
    .bind(i32::try_from(offer.proofs_per_hour).unwrap_or(i32::MAX))
    .bind(offer.price_per_proof.as_decimal())
    .bind(serde_json::to_value(offer.tiers).unwrap_or_default())
    .fetch_one(conn)
    .await?;
    raw.try_into()
}

/// One offer, locked for update when `lock`.
pub async fn get(conn: &mut PgConnection, id: i64, lock: bool) -> Result<Option<OfferRow>, sqlx::Error> {
    let suffix = if lock { " FOR NO KEY UPDATE" } else { "" };
    let raw: Option<RawOffer> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM offers WHERE id = $1{suffix}"))
        .bind(id)
        .fetch_optional(conn)
        .await?;
    raw.map(TryInto::try_into).transpose()
}

/// Marks an offer cancelled.
pub async fn cancel(conn: &mut PgConnection, id: i64, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE offers SET status = $3, cancelled_at = $2 WHERE id = $1 AND status = $4")
        .bind(id)
        .bind(at)
        .bind(OfferStatus::Cancelled.as_str())
        .bind(OfferStatus::Active.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Filter of the public book.
#[derive(Debug, Clone, Default)]
pub struct BookFilter {
    /// Proof system.
    pub system: Option<ProofSystem>,
    /// Circuit.
    pub circuit: Option<String>,
    /// Size.
    pub size_log2: Option<u8>,
    /// Deadline.
    pub deadline_secs: Option<u32>,
    /// Prover.
    pub prover_id: Option<AccountId>,
}

/// Active offers whose window has not ended, cheapest first.
pub async fn book(
    conn: &mut PgConnection,
    filter: &BookFilter,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OfferRow>, sqlx::Error> {
    let raws: Vec<RawOffer> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM offers
          WHERE status = '{active}' AND window_end > $1
            AND ($2::text IS NULL OR system = $2)
            AND ($3::text IS NULL OR circuit = $3)
            AND ($4::smallint IS NULL OR size_log2 = $4)
            AND ($5::integer IS NULL OR deadline_secs = $5)
            AND ($6::uuid IS NULL OR prover_id = $6)
          ORDER BY price_per_proof, id
          LIMIT $7",
        active = OfferStatus::Active.as_str()
    ))
    .bind(now)
    .bind(filter.system.map(system_name))
    .bind(filter.circuit.as_deref())
    .bind(filter.size_log2.map(i16::from))
    .bind(filter.deadline_secs.map(|d| i32::try_from(d).unwrap_or(i32::MAX)))
    .bind(filter.prover_id.map(|p| p.0))
    .bind(limit)
    .fetch_all(conn)
    .await?;
    raws.into_iter().map(TryInto::try_into).collect()
}

/// What a quote asks of the offers it considers.
#[derive(Debug, Clone, Copy)]
pub struct CandidateFilter<'a> {
    /// The class to serve (same system and circuit, size at least, deadline at most).
    pub class: &'a ProofClass,
    /// The offer's window must overlap `[from, to)`.
    pub from: DateTime<Utc>,
    /// See `from`.
    pub to: DateTime<Utc>,
    /// The contract's peak proofs per clock hour: an offer selling fewer can serve none of it.
    pub min_proofs_per_hour: u32,
    /// The buyer's `max_price_per_proof`, if any.
    pub max_price: Option<Money>,
    /// At most this many offers (`PCX_MAX_QUOTE_CANDIDATES`).
    pub limit: i64,
}

/// Active offers that can serve the filter's class, rate and price over `[from, to)`: the
/// cheapest `limit` by base price, then id (the allocator picks the cheapest, so a cap that keeps
/// the cheapest keeps the offers it would use; among equal prices the oldest, first come first
/// served). The rate and price filters the allocator would apply anyway run here so that offers it
/// would drop do not take places under the cap.
pub async fn candidates(conn: &mut PgConnection, filter: &CandidateFilter<'_>) -> Result<Vec<OfferRow>, sqlx::Error> {
    let class = filter.class;
    let raws: Vec<RawOffer> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM offers
          WHERE status = '{active}' AND system = $1 AND circuit = $2 AND size_log2 >= $3 AND deadline_secs <= $4
            AND window_start < $6 AND window_end > $5
            AND proofs_per_hour >= $7 AND ($8::numeric IS NULL OR price_per_proof <= $8)
          ORDER BY price_per_proof, id
          LIMIT $9",
        active = OfferStatus::Active.as_str()
    ))
    .bind(system_name(class.system))
    .bind(&class.circuit)
    .bind(i16::from(class.size_log2))
    .bind(i32::try_from(class.deadline_secs).unwrap_or(i32::MAX))
    .bind(filter.from)
    .bind(filter.to)
    .bind(i32::try_from(filter.min_proofs_per_hour).unwrap_or(i32::MAX))
    .bind(filter.max_price.map(|m| m.as_decimal()))
    .bind(filter.limit)
    .fetch_all(conn)
    .await?;
    raws.into_iter().map(TryInto::try_into).collect()
}

/// How many active offers `prover` has whose window has not ended at `now` (the ones
/// `PCX_MAX_OFFERS_PER_PROVER` bounds: an ended offer sells nothing and no quote reads it).
pub async fn live_count(conn: &mut PgConnection, prover: AccountId, now: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM offers WHERE prover_id = $1 AND status = $2 AND window_end > $3")
        .bind(prover.0)
        .bind(OfferStatus::Active.as_str())
        .bind(now)
        .fetch_one(conn)
        .await
}

/// Reservations on `offers` overlapping `[from, to)`, per offer, with the slots each holds.
pub async fn held(
    conn: &mut PgConnection,
    offers: &[i64],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(i64, Held)>, sqlx::Error> {
    type Raw = (i64, String, DateTime<Utc>, i32, i64, i32);
    let rows: Vec<Raw> = sqlx::query_as(
        "SELECT offer_id, role, first_at, every_secs, slot_count, proofs_per_slot FROM reservations
          WHERE offer_id = ANY($1) AND ends_at > $2 AND starts_at < $3",
    )
    .bind(offers)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(offer, role, first_at, every, slots, pps)| {
            let role = super::named(ReservationRole::parse, &role, "reservation role")?;
            let every = u32::try_from(every).map_err(|_| super::corrupt("cadence"))?;
            let slots = super::unsigned(slots, "slot count")?;
            let len = i64::try_from(slots).unwrap_or(i64::MAX).saturating_mul(i64::from(every));
            let schedule = Schedule { start: first_at, end: first_at + chrono::Duration::seconds(len), every_secs: every };
            let run = SlotRun::of(&schedule, 0..slots, super::small(pps, "proofs per slot")?).ok_or_else(|| super::corrupt("reservation"))?;
            Ok((offer, Held { role, run }))
        })
        .collect()
}

/// Sum of `price x proofs_per_hour` over a prover's active offers overlapping `[from, to)`.
pub async fn hourly_exposure(
    conn: &mut PgConnection,
    prover: AccountId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Decimal, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(price_per_proof * proofs_per_hour), 0) FROM offers
          WHERE prover_id = $1 AND status = $4 AND window_start < $3 AND window_end > $2",
    )
    .bind(prover.0)
    .bind(from)
    .bind(to)
    .bind(OfferStatus::Active.as_str())
    .fetch_one(conn)
    .await
}

/// Sum of `proofs_per_hour` over a prover's active offers of `circuit` at `size_log2` (any system
/// and deadline: the same machines prove them) whose window overlaps `[from, to)`. Conservative:
/// overlapping offers are counted as if they all ran at the same time.
pub async fn offered_per_hour(
    conn: &mut PgConnection,
    prover: AccountId,
    circuit: &str,
    size_log2: u8,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(proofs_per_hour), 0)::bigint FROM offers
          WHERE prover_id = $1 AND status = $6 AND circuit = $2 AND size_log2 = $3
            AND window_start < $5 AND window_end > $4",
    )
    .bind(prover.0)
    .bind(circuit)
    .bind(i16::from(size_log2))
    .bind(from)
    .bind(to)
    .bind(OfferStatus::Active.as_str())
    .fetch_one(conn)
    .await
}

/// Per prover, the sum of `price x proofs_per_hour` over its active offers whose window has not
/// ended at `now` (what its bond must back).
pub async fn hourly_exposures(conn: &mut PgConnection, provers: &[Uuid], now: DateTime<Utc>) -> Result<Vec<(Uuid, Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, coalesce(sum(o.price_per_proof * o.proofs_per_hour), 0)
           FROM unnest($1::uuid[]) AS p (id)
           LEFT JOIN offers o ON o.prover_id = p.id AND o.status = $3 AND o.window_end > $2
          GROUP BY p.id",
    )
    .bind(provers)
    .bind(now)
    .bind(OfferStatus::Active.as_str())
    .fetch_all(conn)
    .await
}
