//! The pricing oracle inside `pcx serve`: gathers sources (asks, executed prices, delivery outcomes,
//! external price lists), aggregates each feed, publishes signed rounds (on deviation, heartbeat or
//! status change), keeps the latest round of every feed in memory for readers, and streams rounds,
//! status changes and heartbeats to SSE subscribers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use pcx_oracle::aggregate::{curve, estimate, Params};
use pcx_oracle::external::{self, Machine};
use pcx_oracle::feed::{all_feeds, Feed};
use pcx_oracle::round::{next_round, FeedStatus, OracleSigner, Publication, RoundValues};
use pcx_oracle::sources::{self, market_quotes, Outcomes};

use crate::config::OracleConfig;
use crate::error::{ApiError, ApiResult};
use crate::background::ORACLE;
use crate::store::{self, oracle::RoundRow};
use crate::AppState;

/// An external provider, as configured.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Name (the owner of its quotes).
    pub name: String,
    /// `http`: fetch `url`; `static`: use `machines`.
    pub kind: String,
    /// Price-list URL (http).
    pub url: Option<String>,
    /// The price list (static).
    pub machines: Option<Vec<Machine>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersFile {
    providers: Vec<ProviderConfig>,
}

/// Whether a provider's list is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderState {
    /// Fetched and well-formed: its machines price the feeds.
    Ok,
    /// Left out this round, for `reason`.
    Excluded,
}

/// A provider's state after its last fetch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderStatus {
    /// Provider.
    pub provider: String,
    /// Whether its list is used.
    pub status: ProviderState,
    /// Why excluded: `unreachable: ...`, `timeout after N ms`, `http status N`, `malformed: ...`.
    pub reason: Option<String>,
    /// When fetched.
    pub fetched_at: DateTime<Utc>,
    #[serde(skip)]
    machines: Vec<Machine>,
}

/// An event of the stream, serialised once for every subscriber.
#[derive(Debug, Clone)]
pub struct OracleEvent {
    /// The SSE `event:` field: `round`, `status` or `heartbeat`.
    pub kind: &'static str,
    /// The SSE `data:` field: the JSON of the event's payload.
    pub data: Arc<String>,
}

/// One message of `GET /v1/oracle/stream`, as the OpenAPI document describes it: the SSE
/// `event:` field is `event`, the `data:` field is the JSON of `data`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A new round, as `GET /v1/oracle/prices/latest` shows it.
    Round(RoundView),
    /// A feed's status changed with this round.
    Status(StatusChange),
    /// The oracle is alive (every 15 s).
    Heartbeat(Heartbeat),
}

/// The data of a stream's `status` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusChange {
    /// Feed.
    pub feed_id: String,
    /// Its status from this round on.
    pub status: FeedStatus,
    /// The round that changed it.
    pub round_id: i64,
}

/// The data of a stream's `heartbeat` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Heartbeat {
    /// The publishing server's clock.
    pub server_time: DateTime<Utc>,
}

impl StreamEvent {
    fn to_sse(&self) -> Result<OracleEvent, serde_json::Error> {
        let (kind, data) = match self {
            StreamEvent::Round(view) => ("round", serde_json::to_string(view)?),
            StreamEvent::Status(change) => ("status", serde_json::to_string(change)?),
            StreamEvent::Heartbeat(beat) => ("heartbeat", serde_json::to_string(beat)?),
        };
        Ok(OracleEvent { kind, data: Arc::new(data) })
    }
}

/// The latest round of a feed, ready to serve.
#[derive(Debug, Clone)]
pub struct Published {
    /// The values.
    pub values: RoundValues,
    /// The stored row (typed data, signature, sources, curve).
    pub row: RoundRow,
    /// `GET /v1/oracle/prices/latest` body while fresh, serialised once.
    pub body: axum::body::Bytes,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct OracleSettings {
    /// Recompute period (None: off).
    pub tick: Option<std::time::Duration>,
    /// Heartbeat.
    pub heartbeat: Duration,
    /// Deviation threshold as a fraction.
    pub deviation: Decimal,
    /// Provider fetch timeout.
    pub provider_timeout: std::time::Duration,
    /// Provider refresh period.
    pub provider_refresh: Duration,
}

/// The oracle's state, shared by the publisher task and the readers.
pub struct OracleRuntime {
    /// The signing key.
    pub signer: OracleSigner,
    /// Every feed: the built-in circuits' at start, a registered circuit's added when it is
    /// registered (and at start for those registered before).
    feeds: RwLock<Arc<Vec<Feed>>>,
    /// Aggregation parameters.
    pub params: Params,
    /// Settings.
    pub settings: OracleSettings,
    providers: Vec<ProviderConfig>,
    external: Mutex<Option<(DateTime<Utc>, Vec<ProviderStatus>)>>,
    latest: RwLock<HashMap<String, Arc<Published>>>,
    events: broadcast::Sender<OracleEvent>,
    last_heartbeat: Mutex<Option<DateTime<Utc>>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for OracleRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OracleRuntime").field("feeds", &self.feeds().len()).finish()
    }
}

/// The body of a latest-price answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoundView {
    /// Feed.
    pub feed_id: String,
    /// Round id (increases per feed).
    pub round_id: i64,
    /// Weighted median price per proof; absent unless `ok` (as signed).
    #[schema(value_type = Option<String>)]
    pub price: Option<Decimal>,
    /// Half the weighted inter-quartile range.
    #[schema(value_type = Option<String>)]
    pub conf: Option<Decimal>,
    /// `{"50", "80", "95", "99"}`: the price that gets a proof delivered by the deadline with that
    /// probability; null when the round has no price (as `price`).
    #[schema(value_type = Option<Object>)]
    pub quantiles: Value,
    /// `ok`, `stale` (past valid_until, nothing newer), `insufficient_sources`, `halted`.
    pub status: FeedStatus,
    /// When published.
    pub published_at: DateTime<Utc>,
    /// Do not use after this.
    pub valid_until: DateTime<Utc>,
    /// Distinct accepted sources.
    pub n_sources: i32,
    /// Methodology version (docs/ORACLE.md).
    pub methodology_version: i32,
    /// EIP-712 typed data exactly as `eth_signTypedData_v4` takes it.
    #[schema(value_type = Object)]
    pub typed_data: Value,
    /// The oracle's signature of `typed_data` (65 bytes, 0x hex).
    pub signature: String,
}

/// The view of a stored round; `status` becomes `stale` when read after `valid_until`.
pub fn round_view(row: &RoundRow, now: DateTime<Utc>) -> RoundView {
    let quantiles = match (row.q50, row.q80, row.q95, row.q99) {
        (Some(a), Some(b), Some(c), Some(d)) => json!({"50": a.normalize().to_string(), "80": b.normalize().to_string(),
                                                       "95": c.normalize().to_string(), "99": d.normalize().to_string()}),
        _ => Value::Null,
    };
    let status = if now > row.valid_until { FeedStatus::Stale } else { row.status };
    RoundView {
        feed_id: row.feed_id.clone(),
        round_id: row.round_id,
        price: row.price.map(|p| p.normalize()),
        conf: row.conf.map(|c| c.normalize()),
        quantiles,
        status,
        published_at: row.published_at,
        valid_until: row.valid_until,
        n_sources: row.n_sources,
        methodology_version: row.methodology_version,
        typed_data: row.typed_data.clone(),
        signature: row.signature.clone(),
    }
}

impl OracleRuntime {
    /// Builds the runtime: the signing key (configured, or generated once and stored), the feeds,
    /// the providers file.
    pub async fn new(
        pool: &sqlx::PgPool,
        config: &OracleConfig,
        secrets: &crate::secrets::SecretsDir,
    ) -> anyhow::Result<OracleRuntime> {
        use anyhow::Context;
        let key = match (&config.oracle_key, &config.oracle_key_file) {
            (Some(key), _) => key.clone(),
            (None, Some(path)) => crate::secrets::read_secret(path)?
                .with_context(|| format!("PCX_ORACLE_KEY_FILE {} does not exist", path.display()))?,
            (None, None) => secrets.load_or_create(crate::secrets::ORACLE_KEY, OracleSigner::generate_key_hex)?.0,
        };
        let signer = OracleSigner::from_hex(&key, config.oracle_chain_id).context("PCX_ORACLE_KEY")?;
        let providers = match &config.oracle_providers {
            Some(path) => load_providers(path)?,
            None => Vec::new(),
        };
        let params = Params { min_sources: config.oracle_min_sources.max(1), ..Params::default() };
        let (events, _) = broadcast::channel(1024);
        let runtime = OracleRuntime {
            signer,
            feeds: RwLock::new(Arc::new(
                pcx_prover_pool::registry::CIRCUITS
                    .iter()
                    .flat_map(|c| all_feeds(c.system, c.name, c.min_size_log2..=c.max_size_log2))
                    .collect(),
            )),
            params,
            settings: OracleSettings {
                tick: (config.oracle_tick_ms > 0).then(|| std::time::Duration::from_millis(config.oracle_tick_ms)),
                heartbeat: Duration::seconds(i64::from(config.oracle_heartbeat_secs.max(1))),
                deviation: Decimal::from(config.oracle_deviation_bps) / Decimal::from(10_000),
                provider_timeout: std::time::Duration::from_millis(config.oracle_provider_timeout_ms.max(1)),
                provider_refresh: Duration::seconds(i64::from(config.oracle_provider_refresh_secs)),
            },
            providers,
            external: Mutex::new(None),
            latest: RwLock::new(HashMap::new()),
            events,
            last_heartbeat: Mutex::new(None),
            // TLS (rustls, system and bundled roots) for https providers; building can fail on a
            // broken trust store, which is a start-up error, not a panic.
            http: reqwest::Client::builder().build().context("building the HTTP client for price providers")?,
        };
        let mut conn = pool.acquire().await?;
        for circuit in store::circuits::list(&mut conn).await? {
            runtime.add_circuit(&circuit.id, u8::try_from(circuit.size_log2).unwrap_or(0));
        }
        for row in store::oracle::latest_rounds(&mut conn).await? {
            if let Some(published) = runtime.published_from_row(row) {
                runtime.remember(published);
            }
        }
        tracing::info!(address = %runtime.signer.address(), feeds = runtime.feeds().len(), providers = runtime.providers.len(), "oracle ready");
        Ok(runtime)
    }

    fn published_from_row(&self, row: RoundRow) -> Option<Published> {
        let status = row.status;
        let quantiles = match (row.q50, row.q80, row.q95, row.q99) {
            (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
            _ => None,
        };
        let values = RoundValues {
            feed_id: row.feed_id.clone(),
            round_id: u64::try_from(row.round_id).ok()?,
            price: row.price,
            conf: row.conf,
            quantiles,
            status,
            published_at: row.published_at,
            valid_until: row.valid_until,
            n_sources: u16::try_from(row.n_sources).unwrap_or(u16::MAX),
            methodology_version: u16::try_from(row.methodology_version).unwrap_or(0),
        };
        let body = serde_json::to_vec(&round_view(&row, row.published_at)).ok()?.into();
        Some(Published { values, row, body })
    }

    fn remember(&self, published: Published) {
        let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
        latest.insert(published.values.feed_id.clone(), Arc::new(published));
    }

    /// Takes `row` as its feed's latest round if it is newer than the one held, and tells the
    /// stream's subscribers (a `round`, and a `status` when the status changed). Returns whether
    /// it was newer. The publisher, the announcement listener and the catch-up all come here:
    /// whichever is first adopts a round, the others see it held, so each is emitted once.
    pub fn adopt(&self, row: RoundRow) -> ApiResult<bool> {
        let Some(published) = self.published_from_row(row) else { return Ok(false) };
        let view = round_view(&published.row, published.row.published_at);
        let (status, round_id) = (published.values.status, published.values.round_id);
        let previous_status = {
            let mut latest = self.latest.write().unwrap_or_else(|p| p.into_inner());
            let previous = latest.get(&published.values.feed_id).map(|p| (p.values.round_id, p.values.status));
            if previous.is_some_and(|(held, _)| held >= round_id) {
                return Ok(false);
            }
            latest.insert(published.values.feed_id.clone(), Arc::new(published));
            previous.map(|(_, status)| status)
        };
        let feed_id = view.feed_id.clone();
        let round_id = view.round_id;
        self.emit(StreamEvent::Round(view))?;
        if previous_status.is_some_and(|previous| previous != status) {
            self.emit(StreamEvent::Status(StatusChange { feed_id, status, round_id }))?;
        }
        Ok(true)
    }

    /// The latest round of a feed.
    pub fn latest(&self, feed: &str) -> Option<Arc<Published>> {
        self.latest.read().unwrap_or_else(|p| p.into_inner()).get(feed).cloned()
    }

    /// A receiver of the event stream.
    pub fn subscribe(&self) -> broadcast::Receiver<OracleEvent> {
        self.events.subscribe()
    }

    /// Every feed, as of now.
    pub fn feeds(&self) -> Arc<Vec<Feed>> {
        Arc::clone(&self.feeds.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The feed with this id.
    pub fn feed(&self, id: &str) -> Option<Feed> {
        self.feeds().iter().find(|f| f.feed_id == id).cloned()
    }

    /// Adds the feeds of a registered circuit (its size, every deadline bucket), once.
    pub fn add_circuit(&self, circuit: &str, size_log2: u8) {
        let mut feeds = self.feeds.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if feeds.iter().any(|f| f.proof_class.circuit == circuit) {
            return;
        }
        let mut grown = Vec::clone(&feeds);
        grown.extend(all_feeds(pcx_domain::ProofSystem::Groth16Bn254, circuit, [size_log2]));
        *feeds = Arc::new(grown);
    }

    fn emit(&self, event: StreamEvent) -> ApiResult<()> {
        // No subscriber is not an error.
        let _ = self.events.send(event.to_sse().map_err(ApiError::internal)?);
        Ok(())
    }

    async fn external_statuses(&self, now: DateTime<Utc>) -> Vec<ProviderStatus> {
        let cached = self.external.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((at, statuses)) = cached {
            if now - at < self.settings.provider_refresh {
                return statuses;
            }
        }
        let mut statuses = Vec::new();
        let fetches = self.providers.iter().map(|p| fetch_provider(&self.http, p, self.settings.provider_timeout));
        for (provider, result) in self.providers.iter().zip(futures_util::future::join_all(fetches).await) {
            let (status, reason, machines) = match result {
                Ok(machines) => (ProviderState::Ok, None, machines),
                Err(reason) => {
                    tracing::warn!(provider = %provider.name, %reason, "external price provider excluded");
                    (ProviderState::Excluded, Some(reason), Vec::new())
                }
            };
            statuses.push(ProviderStatus { provider: provider.name.clone(), status, reason, fetched_at: now, machines });
        }
        *self.external.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, statuses.clone()));
        statuses
    }
}

fn load_providers(path: &Path) -> anyhow::Result<Vec<ProviderConfig>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading PCX_ORACLE_PROVIDERS {}", path.display()))?;
    let file: ProvidersFile = serde_json::from_str(&text).with_context(|| format!("{} is not a providers file", path.display()))?;
    for p in &file.providers {
        match (p.kind.as_str(), &p.url, &p.machines) {
            ("http", Some(_), None) | ("static", None, Some(_)) => {}
            _ => anyhow::bail!("provider {}: kind must be `http` with a `url` or `static` with `machines`", p.name),
        }
    }
    Ok(file.providers)
}

/// Fetches a provider's price list; `Err` says why it is excluded.
async fn fetch_provider(http: &reqwest::Client, provider: &ProviderConfig, timeout: std::time::Duration) -> Result<Vec<Machine>, String> {
    if let Some(machines) = &provider.machines {
        return external::check(machines.clone());
    }
    let url = provider.url.as_deref().unwrap_or_default();
    let response = match tokio::time::timeout(timeout, http.get(url).send()).await {
        Err(_) => return Err(format!("timeout after {} ms", timeout.as_millis())),
        Ok(Err(err)) if err.is_timeout() => return Err(format!("timeout after {} ms", timeout.as_millis())),
        Ok(Err(err)) => return Err(format!("unreachable: {err}")),
        Ok(Ok(response)) => response,
    };
    if !response.status().is_success() {
        return Err(format!("http status {}", response.status().as_u16()));
    }
    let body = match tokio::time::timeout(timeout, response.bytes()).await {
        Err(_) => return Err(format!("timeout after {} ms", timeout.as_millis())),
        Ok(Err(err)) => return Err(format!("unreachable: {err}")),
        Ok(Ok(body)) => body,
    };
    let list: external::PriceList = serde_json::from_slice(&body).map_err(|e| format!("malformed: {e}"))?;
    external::check(list.machines)
}

/// Every feed recomputed at `now`, rounds published where due (the lease holder's part of a tick).
async fn publish(state: &AppState, now: DateTime<Utc>) -> ApiResult<usize> {
    let oracle = &state.oracle;
    let mut conn = state.db.acquire().await?;
    let asks = store::oracle::open_asks(&mut conn, now).await?;
    let executed = store::oracle::executed_since(&mut conn, now - oracle.params.executed_max_age).await?;
    let outcomes: Vec<Outcomes> = store::slots::outcomes_since(&mut conn, now - Duration::days(7))
        .await?
        .into_iter()
        .map(|(class, delivered, missed)| Outcomes { class, delivered, missed })
        .collect();
    let halts: HashMap<String, String> = store::oracle::halts(&mut conn).await?.into_iter().collect();
    drop(conn);
    let providers = oracle.external_statuses(now).await;
    let discounts = &state.settings.market.discounts;
    let discount_bps = |proofs: u64, term_secs: i64| discounts.discount_bps(proofs, term_secs);
    let rule = Publication { deviation: oracle.settings.deviation, heartbeat: oracle.settings.heartbeat };

    let mut published = 0;
    for feed in oracle.feeds().iter() {
        let mut quotes = market_quotes(feed, &asks, &executed, now);
        for provider in providers.iter().filter(|p| p.status == ProviderState::Ok) {
            quotes.extend(external::quotes(feed, &provider.provider, &provider.machines, provider.fetched_at));
        }
        let deliveries = sources::deliveries(feed, &outcomes);
        let estimate = estimate(quotes.clone(), deliveries, now, &oracle.params);
        let last = oracle.latest(&feed.feed_id);
        let halted = halts.get(&feed.feed_id);
        let Some(values) = next_round(&feed.feed_id, last.as_ref().map(|l| &l.values), &estimate, halted.is_some(), now, &rule)
        else {
            continue;
        };
        let signed = oracle.signer.sign(&values).map_err(ApiError::internal)?;
        let curve = curve(&quotes, deliveries, now, &oracle.params, &discount_bps);
        let sources = json!({
            "quotes": estimate.assessed,
            "providers": providers,
            "deliveries": deliveries,
            "reliability": estimate.reliability.round_dp(4).normalize().to_string(),
            "halted": halted,
        });
        let [q50, q80, q95, q99] = values.quantiles.map_or([None; 4], |q| q.map(Some));
        let row = RoundRow {
            feed_id: feed.feed_id.clone(),
            round_id: i64::try_from(values.round_id).map_err(ApiError::internal)?,
            price: values.price,
            conf: values.conf,
            q50,
            q80,
            q95,
            q99,
            status: values.status,
            n_sources: i32::from(values.n_sources),
            published_at: now,
            valid_until: values.valid_until,
            methodology_version: i32::from(values.methodology_version),
            typed_data: signed.typed_data,
            signature: signed.signature,
            sources,
            curve: serde_json::to_value(&curve).map_err(ApiError::internal)?,
        };
        // Fenced (only the lease holder's transaction commits) and announced to every replica.
        let mut tx = state.begin().await?;
        store::oracle::insert_round(&mut tx, &row).await?;
        tx.commit().await?;
        oracle.adopt(row)?;
        published += 1;
    }
    Ok(published)
}

/// What another replica stored since this one looked: registered circuits (whose feeds this
/// replica then computes or serves) and rounds newer than the ones held (a replica that missed
/// announcements, e.g. while restarting, catches up here and never serves an old round as the
/// latest for longer than a tick).
pub async fn follow(state: &AppState) -> ApiResult<usize> {
    let oracle = &state.oracle;
    let mut conn = state.db.acquire().await?;
    for (circuit, size_log2) in store::circuits::sizes(&mut conn).await? {
        oracle.add_circuit(&circuit, u8::try_from(size_log2).unwrap_or(0));
    }
    let feeds: Vec<String> = oracle.feeds().iter().map(|f| f.feed_id.clone()).collect();
    let mut adopted = 0;
    for (feed, round_id) in store::oracle::latest_round_ids(&mut conn, &feeds).await? {
        let held = oracle.latest(&feed).map(|p| p.row.round_id);
        if held.is_none_or(|held| held < round_id) {
            if let Some(row) = store::oracle::round(&mut conn, &feed, round_id).await? {
                adopted += usize::from(oracle.adopt(row)?);
            }
        }
    }
    Ok(adopted)
}

/// One oracle tick at `now` on any replica: follow what others stored, publish the rounds due if
/// this replica runs the background work, and beat the stream's heartbeat.
pub async fn tick(state: &AppState, now: DateTime<Utc>) -> ApiResult<usize> {
    follow(state).await?;
    let published = match state.runs_background() {
        true => publish(state, now).await?,
        false => 0,
    };
    let oracle = &state.oracle;
    let mut last_heartbeat = oracle.last_heartbeat.lock().unwrap_or_else(|p| p.into_inner());
    if last_heartbeat.is_none_or(|t| now - t >= Duration::seconds(15)) {
        *last_heartbeat = Some(now);
        oracle.emit(StreamEvent::Heartbeat(Heartbeat { server_time: now }))?;
    }
    Ok(published)
}

/// Runs the oracle until `shutdown` turns true (does nothing when its tick is off). Each tick
/// runs supervised: a failing or panicking tick is logged and the next one runs. `pcx serve`
/// gives it the scheduler's background pool ([`AppState::for_background`]).
pub async fn run_oracle(state: AppState, shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(period) = state.oracle.settings.tick else { return };
    state.background.started(ORACLE);
    let ticking = state.clone();
    crate::periodic::supervised("oracle tick", period, shutdown, move || {
        let state = ticking.clone();
        async move {
            match tick(&state, Utc::now()).await {
                Ok(_) => state.background.ticked(ORACLE),
                Err(err) => tracing::warn!(error = %err, "oracle tick failed; retrying next tick"),
            }
        }
    })
    .await;
    state.background.stopped(ORACLE);
}

/// Adopts rounds as the publishing replica announces them (LISTEN on
/// [`store::oracle::ROUNDS_CHANNEL`]), so every replica's latest price and stream follow within
/// moments. Runs on every replica, on one connection of `state.direct_db` (a session of its own,
/// past any transaction-mode pooler) for as long as it runs;
/// what it misses while that connection is down, the tick's [`follow`] catches up.
pub async fn listen_for_rounds(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    use sqlx::postgres::PgListener;
    while !*shutdown.borrow() {
        let listening = async {
            let mut listener = PgListener::connect_with(&state.direct_db).await?;
            listener.listen(store::oracle::ROUNDS_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for oracle rounds; retrying (the tick catches up meanwhile)");
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) => {
                        if let Err(err) = adopt_announced(&state, notification.payload()).await {
                            tracing::debug!(error = %err, "an announced round could not be read; the tick catches up");
                        }
                    }
                    // The connection dropped; the next call reconnects (what was sent meanwhile is lost).
                    Ok(None) => tracing::debug!("the oracle round listener reconnects"),
                    Err(err) => {
                        tracing::warn!(error = %err, "listening for oracle rounds failed; reconnecting");
                        break;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
    }
}

async fn adopt_announced(state: &AppState, payload: &str) -> ApiResult<()> {
    let Some((feed, round_id)) = payload.rsplit_once(' ').and_then(|(f, r)| Some((f, r.parse::<i64>().ok()?))) else {
        return Ok(());
    };
    if state.oracle.latest(feed).is_some_and(|held| held.row.round_id >= round_id) {
        return Ok(());
    }
    if let Some(row) = store::oracle::round(&mut *state.db.acquire().await?, feed, round_id).await? {
        state.oracle.adopt(row)?;
    }
    Ok(())
}
