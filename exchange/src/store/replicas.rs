//! The replicas' rows (migration 0011): register under a lock, renew, leave.

use sqlx::PgConnection;
use uuid::Uuid;

/// What a replica records of itself: the fingerprints of the secrets replicas must share.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReplicaRow {
    /// The replica's id (its worker-lease holder id).
    pub id: Uuid,
    /// The machine it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: i32,
    /// [`crate::auth::secret_fingerprint`] of the JWT secret it signs with.
    pub jwt_fingerprint: String,
    /// The same of the previous secret it still accepts after a rotation.
    pub previous_jwt_fingerprint: Option<String>,
    /// The oracle's signing address.
    pub oracle_signer: String,
    /// The fingerprint of the key sealing webhook secrets (`None` in rows of older versions).
    pub webhook_key_fingerprint: Option<String>,
}

/// Serialises registrations: replicas starting together are checked one after another. Held
/// until the transaction ends (a transaction lock, so it works through a transaction pooler).
pub async fn lock_registrations(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('pcx replicas', 0))").execute(conn).await?;
    Ok(())
}

/// Deletes the rows not renewed for `stale_secs` (replicas that died), then returns the others
/// (with the time each was last seen, in seconds ago).
pub async fn live(conn: &mut PgConnection, stale_secs: f64) -> Result<Vec<(ReplicaRow, f64)>, sqlx::Error> {
    sqlx::query("DELETE FROM replicas WHERE seen_at < now() - make_interval(secs => $1)")
        .bind(stale_secs)
        .execute(&mut *conn)
        .await?;
    #[derive(sqlx::FromRow)]
    struct Live {
        #[sqlx(flatten)]
        row: ReplicaRow,
        seen_ago: f64,
    }
    let rows: Vec<Live> = sqlx::query_as(
        "SELECT id, host, pid, jwt_fingerprint, previous_jwt_fingerprint, oracle_signer, webhook_key_fingerprint,
                extract(epoch FROM now() - seen_at)::float8 AS seen_ago
           FROM replicas ORDER BY started_at",
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|live| (live.row, live.seen_ago)).collect())
}

/// Records `row` as running now (again, if it was deleted as stale meanwhile).
pub async fn upsert(conn: &mut PgConnection, row: &ReplicaRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO replicas (id, host, pid, jwt_fingerprint, previous_jwt_fingerprint, oracle_signer, webhook_key_fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET seen_at = now()",
    )
    .bind(row.id)
    .bind(&row.host)
    .bind(row.pid)
    .bind(&row.jwt_fingerprint)
    .bind(&row.previous_jwt_fingerprint)
    .bind(&row.oracle_signer)
    .bind(&row.webhook_key_fingerprint)
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes replica `id` (it is stopping).
pub async fn remove(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM replicas WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}
