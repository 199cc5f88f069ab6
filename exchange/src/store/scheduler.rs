//! The scheduler's clock: when it last completed a tick, and the outages it found between ticks.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use pcx_settlement::outage::Outage;

/// The name of the settlement scheduler's clock row.
pub const SETTLEMENT: &str = "settlement";

/// When `scheduler` last completed a tick.
pub async fn last_tick(conn: &mut PgConnection, scheduler: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT last_tick_at FROM scheduler_clock WHERE scheduler = $1")
        .bind(scheduler)
        .fetch_optional(conn)
        .await
}

/// Records a completed tick at `at` (never moving the clock back).
pub async fn record_tick(conn: &mut PgConnection, scheduler: &str, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO scheduler_clock (scheduler, last_tick_at) VALUES ($1, $2)
         ON CONFLICT (scheduler) DO UPDATE SET last_tick_at = GREATEST(scheduler_clock.last_tick_at, EXCLUDED.last_tick_at)",
    )
    .bind(scheduler)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records an outage.
pub async fn record_outage(conn: &mut PgConnection, outage: &Outage) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO exchange_outages (started_at, ended_at) VALUES ($1, $2)")
        .bind(outage.from)
        .bind(outage.to)
        .execute(conn)
        .await?;
    Ok(())
}

/// Outages that ended after `since`.
pub async fn outages_since(conn: &mut PgConnection, since: DateTime<Utc>) -> Result<Vec<Outage>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT started_at, ended_at FROM exchange_outages WHERE ended_at > $1 ORDER BY started_at")
            .bind(since)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(|(from, to)| Outage { from, to }).collect())
}
