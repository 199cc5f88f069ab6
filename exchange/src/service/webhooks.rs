//! Webhooks: endpoints an account registers, the outbox its transitions write, and the delivery
//! loop that sends what the outbox holds.
//!
//! - **Registration** checks the URL ([`crate::webhooks::check_url`]) and the event types (known,
//!   the caller's role's), makes a signing secret (shown once, sealed at rest) and stores the
//!   endpoint; an account holds at most [`MAX_WEBHOOKS`].
//! - **The outbox**: a transition calls [`emit`] on its own transaction, so its events commit
//!   with it or not at all (migration 0012). Nothing here runs on a request's path but that insert.
//! - **Delivery** ([`run_deliveries`]) runs with the other background work, on the worker-lease
//!   holder only; each attempt is recorded in a fenced transaction. Due deliveries are the
//!   earliest pending event of each subject (a slot, a contract) at each endpoint, so the events
//!   of one slot arrive in the order they happened; at most `PCX_WEBHOOK_CONCURRENCY` per
//!   endpoint are in flight. An attempt is one POST with the Standard Webhooks headers, bounded by
//!   `PCX_WEBHOOK_TIMEOUT_SECS`, no redirects followed, to an address checked again after
//!   resolution; a 2xx delivers, anything else is tried again after
//!   [`crate::webhooks::retry_delay`], until `PCX_WEBHOOK_RETRY_HORIZON_SECS` after the event.
//!   An endpoint none of whose deliveries succeeded for a whole horizon is disabled with a reason
//!   its owner sees. Delivery is at least once: a replica that dies between a receiver's 2xx and
//!   the commit sends it again, and receivers deduplicate by `webhook-id`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::{AccountId, Role};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::{self, webhooks::{Attempt, AttemptRow, DueDelivery, WebhookRow}};
use crate::webhooks::{self, signing::SigningSecret, Event, EventType};
use crate::AppState;

/// Most endpoints one account may register.
pub const MAX_WEBHOOKS: i64 = 20;
/// The longest endpoint URL (as the table bounds it).
const MAX_URL_LEN: usize = 2048;
/// Most due deliveries one pass of the loop takes.
const BATCH: i64 = 200;

/// Writes `event` to the outbox on the transition's transaction (see the module docs).
pub async fn emit(conn: &mut PgConnection, event: &Event) -> ApiResult<()> {
    let (id, deliveries) = store::webhooks::emit(conn, event).await?;
    if deliveries > 0 {
        tracing::debug!(event = %id, kind = event.kind.as_str(), deliveries, "event written to the outbox");
    }
    Ok(())
}

/// Writes each of `events` (see [`emit`]).
pub async fn emit_all(conn: &mut PgConnection, events: impl IntoIterator<Item = Event>) -> ApiResult<()> {
    for event in events {
        emit(conn, &event).await?;
    }
    Ok(())
}

/// An endpoint just registered (or with a new secret): the secret is in this value only.
#[derive(Debug)]
pub struct WithSecret {
    /// What is stored.
    pub webhook: WebhookRow,
    /// The signing secret, to be shown once.
    pub secret: SigningSecret,
}

fn check_events(role: Role, names: &[String]) -> ApiResult<Vec<EventType>> {
    let refuse = |message: String| {
        ApiError::new(ErrorCode::InvalidWebhookEvents, message).with_hint(format!(
            "a {} receives: {}",
            match role {
                Role::Prover => "prover",
                _ => "buyer",
            },
            EventType::ALL.iter().filter(|e| e.role() == role).map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
        ))
    };
    if names.is_empty() {
        return Err(refuse("name at least one event type".into()));
    }
    let mut events = Vec::new();
    for name in names {
        let Some(kind) = EventType::parse(name) else { return Err(refuse(format!("unknown event type `{name}`"))) };
        if kind.role() != role {
            return Err(refuse(format!("`{name}` is not an event of your account")));
        }
        if events.contains(&kind) {
            return Err(refuse(format!("`{name}` is listed twice")));
        }
        events.push(kind);
    }
    Ok(events)
}

/// Registers an endpoint for `account` (in `role`).
pub async fn register(state: &AppState, account: AccountId, role: Role, url: &str, events: &[String]) -> ApiResult<WithSecret> {
    let too_long = || ApiError::new(ErrorCode::InvalidWebhookUrl, format!("the URL is longer than {MAX_URL_LEN} bytes"));
    if url.len() > MAX_URL_LEN {
        return Err(too_long());
    }
    let url = webhooks::check_url(url.trim(), &state.settings.webhooks.rules)
        .map_err(|refusal| ApiError::new(ErrorCode::InvalidWebhookUrl, refusal.to_string()))?;
    // As stored: normalised (percent-encoded), which may be longer.
    if url.as_str().len() > MAX_URL_LEN {
        return Err(too_long());
    }
    let events = check_events(role, events)?;
    let secret = SigningSecret::generate();
    let id = Uuid::new_v4();
    let webhook = WebhookRow {
        id,
        account_id: account,
        url: url.to_string(),
        events,
        secret_sealed: state.webhook_sealer.seal(id, secret.as_bytes()),
        created_at: Utc::now(),
        disabled: None,
    };
    let mut tx = state.db.begin().await?;
    store::accounts::lock(&mut tx, account)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the token's account no longer exists"))?;
    if store::webhooks::count(&mut tx, account).await? >= MAX_WEBHOOKS {
        return Err(ApiError::new(ErrorCode::TooManyWebhooks, format!("an account may register at most {MAX_WEBHOOKS} endpoints"))
            .with_hint("delete one you no longer use (DELETE /v1/webhooks/{webhook_id})"));
    }
    store::webhooks::insert(&mut tx, &webhook).await?;
    tx.commit().await?;
    tracing::info!(account = %account, webhook = %id, "webhook endpoint registered");
    Ok(WithSecret { webhook, secret })
}

fn no_such_webhook(id: Uuid) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("your account has no webhook {id}; GET /v1/webhooks lists yours"))
}

/// `account`'s endpoints.
pub async fn list(state: &AppState, account: AccountId) -> ApiResult<Vec<WebhookRow>> {
    Ok(store::webhooks::list(&mut *state.db.acquire().await?, account).await?)
}

/// `account`'s endpoint `id`.
pub async fn get(state: &AppState, account: AccountId, id: Uuid) -> ApiResult<WebhookRow> {
    store::webhooks::of_account(&mut *state.db.acquire().await?, account, id).await?.ok_or_else(|| no_such_webhook(id))
}

/// Deletes `account`'s endpoint `id` (its pending deliveries are dropped).
pub async fn delete(state: &AppState, account: AccountId, id: Uuid) -> ApiResult<()> {
    let mut tx = state.db.begin().await?;
    store::webhooks::lock(&mut tx, account, id).await?.ok_or_else(|| no_such_webhook(id))?;
    store::webhooks::delete(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}

/// A new signing secret for `account`'s endpoint `id`; the old one signs nothing from now on.
pub async fn rotate_secret(state: &AppState, account: AccountId, id: Uuid) -> ApiResult<WithSecret> {
    let mut tx = state.db.begin().await?;
    let mut webhook = store::webhooks::lock(&mut tx, account, id).await?.ok_or_else(|| no_such_webhook(id))?;
    let secret = SigningSecret::generate();
    webhook.secret_sealed = state.webhook_sealer.seal(id, secret.as_bytes());
    store::webhooks::set_secret(&mut tx, id, &webhook.secret_sealed).await?;
    tx.commit().await?;
    Ok(WithSecret { webhook, secret })
}

/// The attempts of `account`'s endpoint `id`, newest first.
pub async fn attempts(state: &AppState, account: AccountId, id: Uuid, before: Option<i64>, limit: i64) -> ApiResult<Vec<AttemptRow>> {
    let mut conn = state.db.acquire().await?;
    store::webhooks::of_account(&mut conn, account, id).await?.ok_or_else(|| no_such_webhook(id))?;
    Ok(store::webhooks::attempts(&mut conn, id, before, limit).await?)
}

/// Sends the deliveries due now (see the module docs); returns how many were attempted.
pub async fn deliver_due(state: &AppState, http: &reqwest::Client) -> ApiResult<usize> {
    let now = Utc::now();
    let due = store::webhooks::due(&mut *state.db.acquire().await?, now, BATCH).await?;
    let mut per_endpoint: HashMap<Uuid, usize> = HashMap::new();
    let batch: Vec<DueDelivery> = due
        .into_iter()
        .filter(|d| {
            let n = per_endpoint.entry(d.webhook_id).or_default();
            *n += 1;
            *n <= state.settings.webhooks.concurrency
        })
        .collect();
    let attempted = batch.len();
    let sends = batch.into_iter().map(|delivery| async move {
        let attempt = send(state, http, &delivery).await;
        if let Err(err) = record(state, &delivery, &attempt).await {
            tracing::warn!(error = %err, webhook = %delivery.webhook_id, "recording a delivery attempt failed; it is tried again");
        }
    });
    futures_util::future::join_all(sends).await;
    Ok(attempted)
}

/// One POST of `delivery`, never failing: what happened is in the attempt.
async fn send(state: &AppState, http: &reqwest::Client, delivery: &DueDelivery) -> Attempt {
    let at = Utc::now();
    let started = Instant::now();
    let outcome = post(state, http, delivery, at).await;
    let latency_ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    match outcome {
        Ok(status) if (200..300).contains(&status) => Attempt { at, status: Some(status), latency_ms, error: None },
        Ok(status) => Attempt { at, status: Some(status), latency_ms, error: Some(format!("the endpoint answered {status}")) },
        Err(error) => Attempt { at, status: None, latency_ms, error: Some(error) },
    }
}

async fn post(state: &AppState, http: &reqwest::Client, delivery: &DueDelivery, at: DateTime<Utc>) -> Result<u16, String> {
    let secret = state.webhook_sealer.open(delivery.webhook_id, &delivery.secret_sealed).map_err(|e| e.to_string())?;
    let secret = SigningSecret::from_bytes(secret);
    let url = reqwest::Url::parse(&delivery.url).map_err(|e| format!("the stored URL does not parse: {e}"))?;
    // The name is resolved now and every address checked, then the request goes to one of those
    // addresses (so a name cannot point elsewhere between the check and the connection).
    let port = url.port_or_known_default().unwrap_or(80);
    let (host, literal) = match url.host().ok_or("the URL has no host")? {
        url::Host::Domain(name) => (name.to_owned(), None),
        url::Host::Ipv4(v4) => (v4.to_string(), Some(std::net::IpAddr::V4(v4))),
        url::Host::Ipv6(v6) => (v6.to_string(), Some(std::net::IpAddr::V6(v6))),
    };
    let addresses: Vec<std::net::SocketAddr> = match literal {
        Some(address) => vec![std::net::SocketAddr::new(address, port)],
        None => tokio::time::timeout(Duration::from_secs(5), tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| format!("resolving {host} took over 5 s"))?
            .map_err(|e| format!("resolving {host}: {e}"))?
            .collect(),
    };
    let first = *addresses.first().ok_or_else(|| format!("{host} resolves to no address"))?;
    for address in &addresses {
        webhooks::check_address(address.ip(), port, &state.settings.webhooks.rules).map_err(|e| e.to_string())?;
    }
    let kind = EventType::parse(&delivery.kind).ok_or_else(|| format!("unknown event type {}", delivery.kind))?;
    let body = webhooks::body(kind, delivery.occurred_at, &delivery.data);
    let message_id = format!("msg_{}", delivery.event_id.simple());
    let timestamp = at.timestamp();
    let signature = secret.sign(&message_id, timestamp, &body);
    let request = match literal {
        // An address already: nothing to pin.
        Some(_) => http.clone(),
        None => reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(state.settings.webhooks.timeout)
            .resolve(&host, first)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?,
    };
    let response = request
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("pcx-webhooks/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", &message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(describe)?;
    Ok(response.status().as_u16())
}

/// A transport error in words, without the URL (it is on the endpoint already).
fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        "no answer within the timeout".into()
    } else if err.is_connect() {
        "could not connect".into()
    } else {
        format!("the request failed: {}", err.without_url())
    }
}

/// Records `attempt` in a fenced transaction, and disables the endpoint when the delivery gave
/// up without any delivery of the endpoint succeeding within the horizon.
async fn record(state: &AppState, delivery: &DueDelivery, attempt: &Attempt) -> ApiResult<()> {
    let settings = &state.settings.webhooks;
    let unit: f64 = rand::random();
    let retry_at = attempt.at
        + chrono::Duration::from_std(webhooks::retry_delay(u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX), unit))
            .unwrap_or(chrono::Duration::hours(1));
    let give_up_at = delivery.created_at + settings.retry_horizon;
    let mut tx = state.begin().await?;
    let state_now =
        store::webhooks::record_attempt(&mut tx, delivery.webhook_id, delivery.event_id, attempt, retry_at, give_up_at).await?;
    if state_now.as_deref() == Some("expired")
        && !store::webhooks::delivered_since(&mut tx, delivery.webhook_id, attempt.at - settings.retry_horizon).await?
    {
        let reason = format!(
            "no event was delivered for {} h; the last attempt: {}",
            settings.retry_horizon.num_hours(),
            attempt.error.as_deref().unwrap_or("-")
        );
        if store::webhooks::disable(&mut tx, delivery.webhook_id, &reason, attempt.at).await? {
            tracing::warn!(webhook = %delivery.webhook_id, %reason, "webhook endpoint disabled");
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The client deliveries use: no redirects (a redirect could lead past the address checks).
pub fn client(state: &AppState) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(state.settings.webhooks.timeout)
        .build()
        .unwrap_or_default()
}

/// Runs delivery every `PCX_WEBHOOK_TICK_MS` until `shutdown`, while this replica holds the
/// worker lease (see the module docs).
pub async fn run_deliveries(state: AppState, shutdown: tokio::sync::watch::Receiver<bool>) {
    let http = client(&state);
    let period = state.settings.webhooks.tick;
    crate::periodic::supervised("webhook delivery", period, shutdown, move || {
        let (state, http) = (state.clone(), http.clone());
        async move {
            if !state.runs_background() {
                return;
            }
            if let Err(err) = deliver_due(&state, &http).await {
                tracing::warn!(error = %err, "webhook delivery failed; retrying next tick");
            }
        }
    })
    .await;
}
