//! Webhooks' rows (migration 0012): endpoints, the outbox, deliveries and attempts.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::AccountId;

use crate::webhooks::{Event, EventType};

/// An endpoint as stored.
#[derive(Debug, Clone)]
pub struct WebhookRow {
    /// Its id.
    pub id: Uuid,
    /// Its owner.
    pub account_id: AccountId,
    /// Where events go.
    pub url: String,
    /// What it receives.
    pub events: Vec<EventType>,
    /// The signing secret, sealed.
    pub secret_sealed: Vec<u8>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When and why it was disabled (every delivery failed for the whole horizon).
    pub disabled: Option<(DateTime<Utc>, String)>,
}

type WebhookTuple = (Uuid, Uuid, String, Vec<String>, Vec<u8>, DateTime<Utc>, Option<DateTime<Utc>>, Option<String>);

fn webhook(row: WebhookTuple) -> WebhookRow {
    let (id, account, url, events, secret_sealed, created_at, disabled_at, disabled_reason) = row;
    WebhookRow {
        id,
        account_id: AccountId(account),
        url,
        // Names are checked on the way in; one a later version dropped is skipped.
        events: events.iter().filter_map(|e| EventType::parse(e)).collect(),
        secret_sealed,
        created_at,
        disabled: disabled_at.zip(disabled_reason),
    }
}

const COLUMNS: &str = "id, account_id, url, events, secret_sealed, created_at, disabled_at, disabled_reason";

/// Stores a new endpoint.
pub async fn insert(conn: &mut PgConnection, row: &WebhookRow) -> Result<(), sqlx::Error> {
    let events: Vec<&str> = row.events.iter().map(|e| e.as_str()).collect();
    sqlx::query("INSERT INTO webhooks (id, account_id, url, events, secret_sealed, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(row.id)
        .bind(row.account_id.0)
        .bind(&row.url)
        .bind(&events)
        .bind(&row.secret_sealed)
        .bind(row.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many endpoints `account` has.
pub async fn count(conn: &mut PgConnection, account: AccountId) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM webhooks WHERE account_id = $1").bind(account.0).fetch_one(conn).await
}

/// `account`'s endpoints, oldest first.
pub async fn list(conn: &mut PgConnection, account: AccountId) -> Result<Vec<WebhookRow>, sqlx::Error> {
    let rows: Vec<WebhookTuple> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE account_id = $1 ORDER BY created_at, id"))
            .bind(account.0)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().map(webhook).collect())
}

/// Endpoint `id` of `account`, locked for update.
pub async fn lock(conn: &mut PgConnection, account: AccountId, id: Uuid) -> Result<Option<WebhookRow>, sqlx::Error> {
    let row: Option<WebhookTuple> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND account_id = $2 FOR UPDATE"))
            .bind(id)
            .bind(account.0)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(webhook))
}

/// Endpoint `id` of `account`, to read.
pub async fn of_account(conn: &mut PgConnection, account: AccountId, id: Uuid) -> Result<Option<WebhookRow>, sqlx::Error> {
    let row: Option<WebhookTuple> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1 AND account_id = $2"))
        .bind(id)
        .bind(account.0)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(webhook))
}

/// Replaces an endpoint's sealed secret.
pub async fn set_secret(conn: &mut PgConnection, id: Uuid, sealed: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhooks SET secret_sealed = $2 WHERE id = $1").bind(id).bind(sealed).execute(conn).await?;
    Ok(())
}

/// Deletes an endpoint (its deliveries and attempts go with it).
pub async fn delete(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// Writes `event` to the outbox with one pending delivery per enabled endpoint of its account
/// that receives its type. Returns the event's id and how many deliveries it has.
pub async fn emit(conn: &mut PgConnection, event: &Event) -> Result<(Uuid, u64), sqlx::Error> {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO webhook_events (id, account_id, type, subject, occurred_at, data) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(id)
        .bind(event.account.0)
        .bind(event.kind.as_str())
        .bind(&event.subject)
        .bind(event.occurred_at)
        .bind(&event.data)
        .execute(&mut *conn)
        .await?;
    let fanned = sqlx::query(
        "INSERT INTO webhook_deliveries (event_id, webhook_id, state, next_attempt_at)
         SELECT $1, w.id, 'pending', now() FROM webhooks w
          WHERE w.account_id = $2 AND w.disabled_at IS NULL AND $3 = ANY (w.events)",
    )
    .bind(id)
    .bind(event.account.0)
    .bind(event.kind.as_str())
    .execute(conn)
    .await?;
    Ok((id, fanned.rows_affected()))
}

/// [`emit`] of several events in one statement, in their order (their sequence numbers follow
/// it). Returns how many deliveries they have in all.
pub async fn emit_many(conn: &mut PgConnection, events: &[Event]) -> Result<u64, sqlx::Error> {
    if events.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::new_v4()).collect();
    let accounts: Vec<Uuid> = events.iter().map(|e| e.account.0).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    let occurred: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    let data: Vec<Value> = events.iter().map(|e| e.data.clone()).collect();
    let fanned = sqlx::query(
        "WITH written AS (
             INSERT INTO webhook_events (id, account_id, type, subject, occurred_at, data)
             SELECT id, account_id, type, subject, occurred_at, data
               FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[]) WITH ORDINALITY
                    AS e (id, account_id, type, subject, occurred_at, data, n)
              ORDER BY n
             RETURNING id, account_id, type
         )
         INSERT INTO webhook_deliveries (event_id, webhook_id, state, next_attempt_at)
         SELECT written.id, w.id, 'pending', now() FROM written
           JOIN webhooks w ON w.account_id = written.account_id AND w.disabled_at IS NULL AND written.type = ANY (w.events)",
    )
    .bind(&ids)
    .bind(&accounts)
    .bind(&kinds)
    .bind(&subjects)
    .bind(&occurred)
    .bind(&data)
    .execute(conn)
    .await?;
    Ok(fanned.rows_affected())
}

/// A delivery due now: its endpoint, event and attempt count.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueDelivery {
    /// The endpoint.
    pub webhook_id: Uuid,
    /// Where it goes.
    pub url: String,
    /// The endpoint's sealed secret.
    pub secret_sealed: Vec<u8>,
    /// The event (`webhook-id` is `msg_` + its simple form).
    pub event_id: Uuid,
    /// Its type.
    pub kind: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was written to the outbox (its retry horizon starts then).
    pub created_at: DateTime<Utc>,
    /// Its data.
    pub data: Value,
    /// Attempts so far.
    pub attempts: i32,
}

/// Up to `limit` pending deliveries due at `now`, oldest event first, each the earliest pending
/// one of its subject at its endpoint (so the events of one slot arrive in order), skipping rows
/// another replica is sending.
pub async fn due(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<DueDelivery>, sqlx::Error> {
    sqlx::query_as(
        "SELECT d.webhook_id, w.url, w.secret_sealed, d.event_id, e.type AS kind, e.occurred_at, e.created_at, e.data, d.attempts
           FROM webhook_deliveries d
           JOIN webhook_events e ON e.id = d.event_id
           JOIN webhooks w ON w.id = d.webhook_id
          WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND w.disabled_at IS NULL
            AND NOT EXISTS (
                SELECT 1 FROM webhook_deliveries d2 JOIN webhook_events e2 ON e2.id = d2.event_id
                 WHERE d2.webhook_id = d.webhook_id AND d2.state = 'pending'
                   AND e2.subject = e.subject AND e2.seq < e.seq)
          ORDER BY e.seq
          LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// One attempt's outcome.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When it started.
    pub at: DateTime<Utc>,
    /// The receiver's status, if one came.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: i32,
    /// Why it failed, in words.
    pub error: Option<String>,
}

/// Records an attempt on a pending delivery and moves it on: delivered on success, else tried
/// again at `retry_at`, or expired when that is at or past `give_up_at`. `None` when it was no
/// longer pending (another replica finished it first); else the delivery's state afterwards.
pub async fn record_attempt(
    conn: &mut PgConnection,
    webhook_id: Uuid,
    event_id: Uuid,
    attempt: &Attempt,
    retry_at: DateTime<Utc>,
    give_up_at: DateTime<Utc>,
) -> Result<Option<String>, sqlx::Error> {
    let delivered = attempt.error.is_none();
    let state: Option<String> = sqlx::query_scalar(
        "UPDATE webhook_deliveries
            SET attempts = attempts + 1,
                state = CASE WHEN $3 THEN 'delivered' WHEN $4 >= $6 THEN 'expired' ELSE 'pending' END,
                next_attempt_at = $4,
                done_at = CASE WHEN $3 OR $4 >= $6 THEN $5 END
          WHERE webhook_id = $1 AND event_id = $2 AND state = 'pending'
          RETURNING state",
    )
    .bind(webhook_id)
    .bind(event_id)
    .bind(delivered)
    .bind(retry_at)
    .bind(attempt.at)
    .bind(give_up_at)
    .fetch_optional(&mut *conn)
    .await?;
    if state.is_some() {
        sqlx::query(
            "INSERT INTO webhook_attempts (webhook_id, event_id, attempted_at, status, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(webhook_id)
        .bind(event_id)
        .bind(attempt.at)
        .bind(attempt.status.map(i32::from))
        .bind(attempt.latency_ms)
        .bind(&attempt.error)
        .execute(conn)
        .await?;
    }
    Ok(state)
}

/// Whether endpoint `id` had any delivery succeed since `since`.
pub async fn delivered_since(conn: &mut PgConnection, id: Uuid, since: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE webhook_id = $1 AND state = 'delivered' AND done_at >= $2)",
    )
    .bind(id)
    .bind(since)
    .fetch_one(conn)
    .await
}

/// Disables endpoint `id` with `reason` and gives up its pending deliveries.
pub async fn disable(conn: &mut PgConnection, id: Uuid, reason: &str, now: DateTime<Utc>) -> Result<bool, sqlx::Error> {
    let disabled = sqlx::query("UPDATE webhooks SET disabled_at = $2, disabled_reason = $3 WHERE id = $1 AND disabled_at IS NULL")
        .bind(id)
        .bind(now)
        .bind(reason)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE webhook_deliveries SET state = 'expired', done_at = $2 WHERE webhook_id = $1 AND state = 'pending'")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(disabled.rows_affected() == 1)
}

/// One attempt as listed, with its event.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    /// The attempt's id (increasing).
    pub id: i64,
    /// The event.
    pub event_id: Uuid,
    /// Its type.
    pub kind: String,
    /// The attempt.
    pub attempt: Attempt,
    /// The delivery's state now.
    pub delivery_state: String,
}

/// Endpoint `id`'s attempts, newest first, before attempt `before` if given.
pub async fn attempts(conn: &mut PgConnection, id: Uuid, before: Option<i64>, limit: i64) -> Result<Vec<AttemptRow>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: i64,
        event_id: Uuid,
        kind: String,
        attempted_at: DateTime<Utc>,
        status: Option<i32>,
        latency_ms: i32,
        error: Option<String>,
        delivery_state: String,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT a.id, a.event_id, e.type AS kind, a.attempted_at, a.status, a.latency_ms, a.error, d.state AS delivery_state
           FROM webhook_attempts a
           JOIN webhook_events e ON e.id = a.event_id
           JOIN webhook_deliveries d ON d.webhook_id = a.webhook_id AND d.event_id = a.event_id
          WHERE a.webhook_id = $1 AND ($2::BIGINT IS NULL OR a.id < $2)
          ORDER BY a.id DESC LIMIT $3",
    )
    .bind(id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AttemptRow {
            id: r.id,
            event_id: r.event_id,
            kind: r.kind,
            attempt: Attempt {
                at: r.attempted_at,
                status: r.status.and_then(|s| u16::try_from(s).ok()),
                latency_ms: r.latency_ms,
                error: r.error,
            },
            delivery_state: r.delivery_state,
        })
        .collect())
}
