//! The pcx exchange: the HTTP API, authentication, the ledger, the embedded database, and the
//! `pcx` binary's commands.
//!
//! # Layout
//! - [`config`]: typed settings (flags and environment), parsed once.
//! - [`db`]: the connection pool, migrations, and the embedded default database.
//! - [`auth`]: API keys, access tokens, wallet login (no HTTP, no SQL).
//! - [`service`]: the use cases; each runs in one database transaction.
//! - [`store`]: SQL only.
//! - [`routes`]: thin HTTP handlers and the OpenAPI document.
//! - [`extract`], [`error`], [`idempotency`], [`metrics`], [`validate`]: HTTP plumbing.
//! - [`clock`]: "now" for the market and settlement; [`retry`]: transactions that lost a race run
//!   again; [`periodic`], [`background`]: the supervised background loops, their health, and
//!   verifying keys made ready ahead of the first proof.
//! - [`lease`]: which replica runs the background work (the worker lease and its fence);
//!   [`availability`]: a database outage answered with 503 at once, and recovered from by itself.
//! - [`bench`]: the `pcx bench` programs; [`demo`]: `pcx demo`; [`inprocess`]: the exchange run
//!   inside those programs.
//!
//! # Entry points
//! [`app`] builds the router for a state; [`run`] serves it on a listener until a shutdown signal,
//! so tests serve on port 0 with a fresh database each.

pub mod auth;
pub mod availability;
pub mod background;
pub mod batch;
pub mod bench;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod inprocess;
pub mod lease;
pub mod limits;
pub mod metrics;
pub mod periodic;
pub mod ratelimit;
pub mod replicas;
pub mod retry;
pub mod routes;
pub mod secrets;
pub mod service;
pub mod store;
pub mod validate;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::response::IntoResponse;
use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::TokenKeys;
use crate::config::{ServeConfig, Settings};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The database pool: the requests' one, or in the background loops' state their own
    /// (`PCX_BACKGROUND_DB_CONNECTIONS`, see [`AppState::for_background`]).
    pub db: PgPool,
    /// The pool for public reads that may lag a moment (the book, oracle history): a read
    /// replica's when `DATABASE_READ_URL` is set, else the same as `db`.
    pub read_db: PgPool,
    /// Sessions of their own (`LISTEN`), past a transaction-mode pooler: `DATABASE_DIRECT_URL`'s
    /// pool when it is set, else the same as `db`.
    pub direct_db: PgPool,
    /// Signs and verifies access tokens.
    pub tokens: Arc<TokenKeys>,
    /// SHA-256 of the operator's API key.
    pub admin_key_hash: Arc<Vec<u8>>,
    /// Runtime settings.
    pub settings: Arc<Settings>,
    /// Request metrics.
    pub metrics: Arc<Metrics>,
    /// Groth16 keys, for verifying delivered proofs.
    pub keys: Arc<pcx_prover_pool::keys::KeyStore>,
    /// Makes verifying keys ready before the first proof of a circuit.
    pub keys_warmer: Arc<background::KeyWarmer>,
    /// Resolves proof classes to circuits (registered ones loaded once from the database).
    pub circuits: Arc<service::circuits::Catalog>,
    /// The built-in circuit's setups (made once per exchange, kept in the database).
    pub setups: Arc<service::setups::Setups>,
    /// Rate limiters of this process.
    pub rate_limits: Arc<ratelimit::RateLimits>,
    /// The background loops' health and periodic checks.
    pub background: Arc<background::Background>,
    /// The pricing oracle.
    pub oracle: Arc<service::oracle::OracleRuntime>,
    /// "Now" for the market and settlement (the system clock, or a test's).
    pub clock: Arc<dyn clock::Clock>,
    /// The caps on SSE subscribers and waiting claims.
    pub caps: Arc<limits::Caps>,
    /// In the background loops' state of `pcx serve`: the worker lease, checked at the start of
    /// every transaction they begin ([`AppState::begin`]). `None` in the requests' state, and in
    /// tests that drive a tick themselves.
    pub lease: Option<Arc<lease::Lease>>,
    /// Whether the database answers (probed by `pcx serve`; see [`availability`]).
    pub availability: Arc<availability::Availability>,
    /// Seals and opens webhook endpoints' signing secrets.
    pub webhook_sealer: Arc<webhooks::sealing::Sealer>,
    /// Withdrawals by group commit.
    pub withdrawals: service::funds::Withdrawals,
    /// Whether API keys are live, checked in batches.
    pub live_keys: service::api_keys::LiveKeys,
    /// Submitted proofs, verified and settled in batches.
    pub submissions: service::settlement::Submissions,
    /// Submissions' jobs, read in batches.
    pub tickets: service::settlement::Tickets,
}

/// The generated admin key's hash: made (and shown once) on the first start without
/// `PCX_ADMIN_API_KEY`, then read back; the key itself is never logged.
async fn admin_key_hash(db: &sqlx::PgPool, secrets: &secrets::SecretsDir) -> anyhow::Result<Vec<u8>> {
    let path = secrets.path(secrets::ADMIN_API_KEY);
    if let Some(hash) = secrets::admin_key_hash(db).await? {
        tracing::info!(path = %path.display(), "PCX_ADMIN_API_KEY is not set; the operator's generated key is in this file (mode 0600)");
        return Ok(hash);
    }
    let (key, made) = secrets.load_or_create(secrets::ADMIN_API_KEY, auth::generate_api_key)?;
    let hash = auth::hash_api_key(&key);
    secrets::store_admin_key_hash(db, &hash).await?;
    // Another replica may have stored its key first: the stored hash is the market's.
    let stored = secrets::admin_key_hash(db).await?.unwrap_or_else(|| hash.clone());
    if made && stored == hash {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            eprintln!("pcx: the operator's API key (shown once; also in {}, mode 0600): {key}", path.display());
        }
    }
    tracing::warn!(path = %path.display(), "PCX_ADMIN_API_KEY is not set; generated the operator's API key into this file (mode 0600)");
    Ok(stored)
}

impl AppState {
    /// Builds the state: resolves the JWT secret and the admin key (configured, or generated once
    /// into 0600 files under the data directory; see [`secrets`]).
    pub async fn new(db: PgPool, config: &ServeConfig, settings: Settings) -> anyhow::Result<AppState> {
        let secrets = secrets::SecretsDir::new(&config.db.resolved_data_dir());
        secrets::migrate_legacy(&db, &secrets).await?;
        let jwt_secret = match (&config.jwt_secret, &config.jwt_secret_file) {
            (Some(secret), _) => secret.clone(),
            (None, Some(path)) => secrets::read_secret(path)?
                .with_context(|| format!("PCX_JWT_SECRET_FILE {} does not exist", path.display()))?,
            (None, None) => secrets.load_or_create(secrets::JWT_SECRET, || auth::random_hex(32))?.0,
        };
        if jwt_secret.len() < 16 {
            anyhow::bail!("the JWT secret must be at least 16 characters");
        }
        let mut tokens = TokenKeys::from_secret(jwt_secret.as_bytes());
        if config.jwt_secret.is_none() && config.jwt_secret_file.is_none() {
            if let Some((previous, until)) = secrets::previous_jwt_secret(&secrets)? {
                if until > chrono::Utc::now() {
                    tracing::info!(until = %until.to_rfc3339(), "tokens signed with the previous JWT secret are accepted until then");
                    tokens = tokens.with_previous(previous.as_bytes(), until);
                }
            }
        }
        let admin_key_hash = match &config.admin_api_key {
            Some(key) if key.len() >= 16 => auth::hash_api_key(key),
            Some(_) => anyhow::bail!("PCX_ADMIN_API_KEY must be at least 16 characters"),
            None => admin_key_hash(&db, &secrets).await?,
        };
        let dev_keys = config.settlement.dev_keys;
        let origin = match dev_keys {
            true => {
                tracing::warn!(
                    "--dev-keys: hash-chain uses the DETERMINISTIC DEVELOPMENT Groth16 setup; anyone can forge its \
                     proofs. For tests and benchmarks only, never for real value"
                );
                pcx_prover_pool::keys::KeyOrigin::Development
            }
            false => pcx_prover_pool::keys::KeyOrigin::Provided,
        };
        let keys = Arc::new(pcx_prover_pool::keys::KeyStore::with_origin(config.settlement.resolved_keys_dir(), origin));
        let setups = Arc::new(service::setups::Setups::new(db.clone(), Arc::clone(&keys), dev_keys));
        let keys_warmer = Arc::new(background::KeyWarmer::new(Arc::clone(&setups)));
        let submissions = service::settlement::submissions(Arc::clone(&keys));
        // The keys of everything still traded are made ready now, not at the first proof.
        for class in store::progress::running_classes(&mut *db.acquire().await?).await.context("reading the traded classes")? {
            keys_warmer.warm(&class);
        }
        let rate_limits = Arc::new(ratelimit::RateLimits::new(settings.rate));
        let webhook_key = match (&config.webhooks.webhook_key, &config.webhooks.webhook_key_file) {
            (Some(key), _) => key.clone(),
            (None, Some(path)) => secrets::read_secret(path)?
                .with_context(|| format!("PCX_WEBHOOK_KEY_FILE {} does not exist", path.display()))?,
            (None, None) => secrets.load_or_create(secrets::WEBHOOK_KEY, || auth::random_hex(32))?.0,
        };
        let webhook_sealer = Arc::new(webhooks::sealing::Sealer::from_hex(&webhook_key).context("PCX_WEBHOOK_KEY")?);
        Ok(AppState {
            tokens: Arc::new(tokens),
            admin_key_hash: Arc::new(admin_key_hash),
            caps: Arc::new(limits::Caps::new(&settings)),
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::default()),
            keys,
            keys_warmer,
            circuits: Arc::default(),
            setups,
            rate_limits,
            background: Arc::new(background::Background::default()),
            oracle: Arc::new(service::oracle::OracleRuntime::new(&db, &config.oracle, &secrets).await?),
            clock: Arc::new(clock::SystemClock),
            lease: None,
            availability: Arc::default(),
            webhook_sealer,
            withdrawals: service::funds::withdrawals(db.clone(), routes::funds::withdrawal_reply),
            submissions,
            tickets: service::settlement::tickets(db.clone()),
            live_keys: service::api_keys::live_keys(db.clone()),
            read_db: db.clone(),
            direct_db: db.clone(),
            db,
        })
    }

    /// Begins a transaction; in the background loops' state it first checks that this replica
    /// still holds the worker lease (fencing: see [`lease`]), else it is refused.
    pub async fn begin(&self) -> error::ApiResult<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.db.begin().await?;
        if let Some(lease) = &self.lease {
            lease.check(&mut tx).await?;
        }
        Ok(tx)
    }

    /// Whether the background work runs here now: always without a lease (tests, the demo),
    /// else while this replica holds it.
    pub fn runs_background(&self) -> bool {
        self.lease.as_ref().is_none_or(|lease| lease.is_held())
    }

    /// The same state with public reads sent to `pool` (a read replica).
    pub fn with_read_pool(mut self, pool: PgPool) -> AppState {
        self.read_db = pool;
        self
    }

    /// The same state with `LISTEN` on `pool` (`DATABASE_DIRECT_URL`'s).
    pub fn with_direct_pool(mut self, pool: PgPool) -> AppState {
        self.direct_db = pool;
        self
    }

    /// The same state with the worker lease checked by [`AppState::begin`].
    pub fn with_lease(mut self, lease: Arc<lease::Lease>) -> AppState {
        self.lease = Some(lease);
        self
    }

    /// The circuit of a traded class, ready to check inputs and proofs: the built-in one with its
    /// setup installed (made now if this exchange never made it), or a registered one loaded
    /// from the database.
    pub async fn circuit(&self, class: &pcx_domain::ProofClass) -> error::ApiResult<pcx_prover_pool::circuit::Circuit> {
        match self.circuits.resolve(&self.db, class).await? {
            pcx_prover_pool::circuit::Circuit::HashChain { size_log2 } => {
                // Installed once per process (after its checks); every proof after the first
                // skips the database and the per-size lock.
                if !self.setups.is_installed(size_log2) {
                    self.setups.ensure(size_log2).await?;
                }
                Ok(pcx_prover_pool::circuit::Circuit::HashChain { size_log2 })
            }
            registered => Ok(registered),
        }
    }

    /// The same state on another clock (tests drive settlement with a [`clock::ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn clock::Clock>) -> AppState {
        self.clock = clock;
        self
    }

    /// The same state over `pool`, for the settlement scheduler and the oracle: every query of
    /// their ticks goes through it (made by [`db::background_pool`]), so requests holding every
    /// connection of the main pool cannot delay settlement. Everything else is shared.
    pub fn for_background(&self, pool: PgPool) -> AppState {
        AppState { db: pool, ..self.clone() }
    }

    /// Now, on the state's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

/// The whole HTTP application for `state`.
pub fn app(state: AppState) -> Router {
    let (router, openapi) = routes::router_and_openapi();
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .merge(routes::page::router())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), availability::refuse_while_down))
        .layer(axum::middleware::from_fn_with_state(state.clone(), limits::request_deadline))
        .layer(axum::middleware::from_fn_with_state(state.clone(), ratelimit::rate_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_panic| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .with_state(state)
}

/// What a `worker` replica serves: `/health` and `/metrics` only.
pub fn ops_app(state: AppState) -> Router {
    Router::new()
        .route("/health", axum::routing::get(routes::ops::health))
        .route("/metrics", axum::routing::get(routes::ops::metrics))
        .fallback(routes::not_found)
        .with_state(state)
}

/// Limits of the HTTP server on each connection.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// A request's headers must arrive within this; it also closes a keep-alive connection
    /// that sends no next request for that long (idle).
    pub header_read_timeout: std::time::Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { header_read_timeout: std::time::Duration::from_secs(10) }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests, with
/// the default [`ServerLimits`].
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with_limits(listener, app, shutdown, ServerLimits::default()).await
}

/// Serves `app` on `listener` until `shutdown` resolves; each connection is HTTP/1.1 with
/// `limits` (a slow or silent client cannot hold one open), and at shutdown the server stops
/// accepting and waits for the requests in flight.
pub async fn run_with_limits(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let mut make_service = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = match tower::Service::call(&mut make_service, peer).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let connection = builder.serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(service));
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = watched.await {
                tracing::debug!(error = %err, %peer, "connection closed with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Resolves when the process receives SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

/// `pcx serve`: opens the database, serves until SIGTERM or Ctrl-C, then stops cleanly (the
/// private cluster too, if one was started).
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let database = db::Database::open(&config.db).await?;
    tracing::info!(database = %database.description, "database ready, migrations applied");
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    let settings = Settings::from_config(&config, bound)?;
    let mut state = AppState::new(database.pool.clone(), &config, settings).await?.with_direct_pool(database.direct.clone());
    if let Some(read) = db::read_pool(&config.db)? {
        tracing::info!("public reads (the book, oracle history) go to DATABASE_READ_URL");
        state = state.with_read_pool(read);
    }
    tracing::info!(address = %bound, docs = %format!("http://{bound}/docs"), "pcx exchange listening");
    let background = db::background_pool(&database.pool, config.db.background_connections);
    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    // The worker lease decides where the background work runs (see `lease`); every replica
    // follows the oracle's rounds, whichever publishes them.
    let lease = lease::Lease::new(lease::BACKGROUND, std::time::Duration::from_secs(u64::from(config.worker_lease_secs.max(3))));
    let background_state = state.for_background(background.clone()).with_lease(Arc::clone(&lease));
    // Replicas that must share secrets are seen to share them (see `replicas`).
    let (jwt_fingerprint, previous_jwt_fingerprint) = state.tokens.fingerprints();
    let replica = replicas::ReplicaRow {
        id: lease.holder(),
        host: replicas::host_name(),
        pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        jwt_fingerprint: jwt_fingerprint.to_owned(),
        previous_jwt_fingerprint: previous_jwt_fingerprint.map(str::to_owned),
        oracle_signer: state.oracle.signer.address().to_string(),
        webhook_key_fingerprint: Some(state.webhook_sealer.fingerprint().to_owned()),
    };
    replicas::register(&background, &replica).await?;
    let mut tasks = vec![tokio::spawn(replicas::keep(background.clone(), replica, background_stopped.clone()))];
    if config.role.runs_background() {
        state.background.compete_for(Arc::clone(&lease));
        let taken = Arc::clone(&state.background);
        tasks.push(tokio::spawn(lease::keep(lease, background.clone(), background_stopped.clone(), move || taken.holding_started())));
        tasks.push(tokio::spawn(service::settlement::run_scheduler(background_state.clone(), background_stopped.clone())));
        tasks.push(tokio::spawn(service::webhooks::run_deliveries(background_state.clone(), background_stopped.clone())));
    }
    tasks.push(tokio::spawn(service::oracle::run_oracle(background_state, background_stopped.clone())));
    tasks.push(tokio::spawn(service::oracle::listen_for_rounds(state.clone(), background_stopped.clone())));
    tasks.push(tokio::spawn(availability::watch(state.db.clone(), Arc::clone(&state.availability), background_stopped)));
    tracing::info!(role = ?config.role, "replica role");
    let limits = ServerLimits { header_read_timeout: std::time::Duration::from_secs(u64::from(config.header_read_timeout_secs.max(1))) };
    let router = match config.role.serves_api() {
        true => app(state),
        false => ops_app(state),
    };
    let served = run_with_limits(listener, router, shutdown_signal(), limits).await;
    let _ = stop_background.send(true);
    for task in tasks {
        let _ = task.await;
    }
    background.close().await;
    database.close().await;
    tracing::info!("pcx exchange stopped");
    served.context("serving HTTP")
}
