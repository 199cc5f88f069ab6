//! Outcomes per prover and circuit: what reputation is computed from.

use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, ProofClass};
use pcx_settlement::state::JobState;

use super::{offers::system_name, unsigned};

/// Adds an outcome to a prover's record for the circuit of `contract`.
pub async fn record(conn: &mut PgConnection, prover: AccountId, contract: Uuid, delivered: bool) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO prover_reputation (prover_id, system, circuit, delivered, missed)
         SELECT $1, system, circuit, CASE WHEN $3 THEN 1 ELSE 0 END, CASE WHEN $3 THEN 0 ELSE 1 END
           FROM contracts WHERE id = $2
         ON CONFLICT (prover_id, system, circuit) DO UPDATE
            SET delivered = prover_reputation.delivered + EXCLUDED.delivered,
                missed = prover_reputation.missed + EXCLUDED.missed",
    )
    .bind(prover.0)
    .bind(contract)
    .bind(delivered)
    .execute(conn)
    .await?;
    Ok(())
}

/// [`record`] of several deliveries at once (`(prover, contract)` each), added up per prover and
/// circuit and upserted in key order.
pub async fn record_deliveries(conn: &mut PgConnection, deliveries: &[(AccountId, Uuid)]) -> Result<(), sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let provers: Vec<Uuid> = deliveries.iter().map(|d| d.0 .0).collect();
    let contracts: Vec<Uuid> = deliveries.iter().map(|d| d.1).collect();
    sqlx::query(
        "INSERT INTO prover_reputation (prover_id, system, circuit, delivered, missed)
         SELECT d.prover_id, c.system, c.circuit, count(*), 0
           FROM unnest($1::uuid[], $2::uuid[]) AS d (prover_id, contract_id)
           JOIN contracts c ON c.id = d.contract_id
          GROUP BY d.prover_id, c.system, c.circuit
          ORDER BY d.prover_id, c.system, c.circuit
         ON CONFLICT (prover_id, system, circuit) DO UPDATE
            SET delivered = prover_reputation.delivered + EXCLUDED.delivered",
    )
    .bind(&provers)
    .bind(&contracts)
    .execute(conn)
    .await?;
    Ok(())
}

/// `(prover, delivered, missed)` of `provers` for a class's system and circuit (0, 0 without history).
pub async fn counts(conn: &mut PgConnection, provers: &[Uuid], class: &ProofClass) -> Result<Vec<(AccountId, u64, u64)>, sqlx::Error> {
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT p.id, coalesce(r.delivered, 0), coalesce(r.missed, 0)
           FROM unnest($1::uuid[]) AS p (id)
           LEFT JOIN prover_reputation r ON r.prover_id = p.id AND r.system = $2 AND r.circuit = $3",
    )
    .bind(provers)
    .bind(system_name(class.system))
    .bind(&class.circuit)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(p, d, m)| Ok((AccountId(p), unsigned(d, "delivered count")?, unsigned(m, "missed count")?)))
        .collect()
}

/// A prover's record for one circuit, with delivery latency percentiles (seconds from opening).
#[derive(Debug, Clone)]
pub struct Record {
    /// Proof system.
    pub system: String,
    /// Circuit.
    pub circuit: String,
    /// Delivered jobs.
    pub delivered: u64,
    /// Failed jobs charged to it.
    pub missed: u64,
    /// Median latency.
    pub latency_p50_secs: Option<f64>,
    /// 95th percentile latency.
    pub latency_p95_secs: Option<f64>,
}

/// A prover's records.
pub async fn of_prover(conn: &mut PgConnection, prover: AccountId) -> Result<Vec<Record>, sqlx::Error> {
    let latency = |q: &str| {
        format!(
            "(SELECT percentile_cont({q}) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM j.finished_at - s.opens_at))
                FROM jobs j JOIN slots s ON s.contract_id = j.contract_id AND s.n = j.n
                JOIN contracts c ON c.id = j.contract_id
               WHERE j.prover_id = r.prover_id AND j.state = '{delivered}' AND c.system = r.system AND c.circuit = r.circuit)",
            delivered = JobState::Delivered.as_str()
        )
    };
    #[derive(sqlx::FromRow)]
    struct Raw {
        system: String,
        circuit: String,
        delivered: i64,
        missed: i64,
        p50: Option<f64>,
        p95: Option<f64>,
    }
    let rows: Vec<Raw> = sqlx::query_as(&format!(
        "SELECT r.system, r.circuit, r.delivered, r.missed, {p50}::float8 AS p50, {p95}::float8 AS p95
           FROM prover_reputation r WHERE r.prover_id = $1 ORDER BY r.system, r.circuit",
        p50 = latency("0.5"),
        p95 = latency("0.95"),
    ))
    .bind(prover.0)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(Record {
                delivered: unsigned(r.delivered, "delivered count")?,
                missed: unsigned(r.missed, "missed count")?,
                system: r.system,
                circuit: r.circuit,
                latency_p50_secs: r.p50,
                latency_p95_secs: r.p95,
            })
        })
        .collect()
}
