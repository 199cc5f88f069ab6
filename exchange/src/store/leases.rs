//! The worker lease rows (migration 0010): take, renew, check, give up.

use sqlx::PgConnection;
use uuid::Uuid;

/// Takes the lease `name` for `holder`, or renews it if `holder` has it, for `ttl_secs` from the
/// database's now. Returns the fence when `holder` holds it afterwards, `None` while another
/// holder's lease has not expired.
pub async fn take_or_renew(conn: &mut PgConnection, name: &str, holder: Uuid, ttl_secs: f64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO worker_leases (name, holder, fence, expires_at)
         VALUES ($1, $2, 1, now() + make_interval(secs => $3))
         ON CONFLICT (name) DO UPDATE
            SET holder = EXCLUDED.holder,
                fence = CASE WHEN worker_leases.holder = EXCLUDED.holder THEN worker_leases.fence
                             ELSE worker_leases.fence + 1 END,
                expires_at = EXCLUDED.expires_at
          WHERE worker_leases.holder = EXCLUDED.holder OR worker_leases.expires_at <= now()
         RETURNING fence",
    )
    .bind(name)
    .bind(holder)
    .bind(ttl_secs)
    .fetch_optional(conn)
    .await
}

/// Whether `holder` still holds `name` with `fence`, as of the transaction's start; the row is
/// locked shared until the transaction ends, so a takeover waits for it.
pub async fn holds(conn: &mut PgConnection, name: &str, holder: Uuid, fence: i64) -> Result<bool, sqlx::Error> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT fence FROM worker_leases
          WHERE name = $1 AND holder = $2 AND fence = $3 AND expires_at > now()
            FOR SHARE",
    )
    .bind(name)
    .bind(holder)
    .bind(fence)
    .fetch_optional(conn)
    .await?;
    Ok(held.is_some())
}

/// Gives the lease up (at shutdown), so that another replica takes it at its next attempt.
pub async fn release(conn: &mut PgConnection, name: &str, holder: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE worker_leases SET expires_at = now() WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(conn)
        .await?;
    Ok(())
}
