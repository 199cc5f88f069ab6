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
//! - [`bench`]: the `pcx bench` programs; [`demo`]: `pcx demo`; [`inprocess`]: the exchange run
//!   inside those programs.
//!
//! # Entry points
//! [`app`] builds the router for a state; [`run`] serves it on a listener until a shutdown signal,
//! so tests serve on port 0 with a fresh database each.

pub mod auth;
pub mod background;
pub mod bench;
pub mod clock;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod inprocess;
pub mod metrics;
pub mod periodic;
pub mod retry;
pub mod routes;
pub mod service;
pub mod store;
pub mod validate;

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
    /// The database pool.
    pub db: PgPool,
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
    /// The background loops' health and periodic checks.
    pub background: Arc<background::Background>,
    /// The pricing oracle.
    pub oracle: Arc<service::oracle::OracleRuntime>,
    /// "Now" for the market and settlement (the system clock, or a test's).
    pub clock: Arc<dyn clock::Clock>,
}

impl AppState {
    /// Builds the state: resolves the JWT secret and the admin key (configured, or generated once and
    /// stored in the database).
    pub async fn new(db: PgPool, config: &ServeConfig, settings: Settings) -> anyhow::Result<AppState> {
        let jwt_secret = match &config.jwt_secret {
            Some(secret) if secret.len() >= 16 => secret.clone(),
            Some(_) => anyhow::bail!("PCX_JWT_SECRET must be at least 16 characters"),
            None => store::secrets::get_or_create(&db, "jwt_secret", || auth::random_hex(32))
                .await
                .context("reading the stored JWT secret")?,
        };
        let admin_key = match &config.admin_api_key {
            Some(key) if key.len() >= 16 => key.clone(),
            Some(_) => anyhow::bail!("PCX_ADMIN_API_KEY must be at least 16 characters"),
            None => {
                let key = store::secrets::get_or_create(&db, "admin_api_key", auth::generate_api_key)
                    .await
                    .context("reading the stored admin API key")?;
                tracing::warn!(
                    admin_api_key = %key,
                    "PCX_ADMIN_API_KEY is not set; using the generated admin key stored in the database"
                );
                key
            }
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
        // The keys of everything still traded are made ready now, not at the first proof.
        for class in store::progress::running_classes(&mut *db.acquire().await?).await.context("reading the traded classes")? {
            keys_warmer.warm(&class);
        }
        Ok(AppState {
            tokens: Arc::new(TokenKeys::from_secret(jwt_secret.as_bytes())),
            admin_key_hash: Arc::new(auth::hash_api_key(&admin_key)),
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::default()),
            keys,
            keys_warmer,
            circuits: Arc::default(),
            setups,
            background: Arc::new(background::Background::default()),
            oracle: Arc::new(service::oracle::OracleRuntime::new(&db, &config.oracle).await?),
            clock: Arc::new(clock::SystemClock),
            db,
        })
    }

    /// The circuit of a traded class, ready to check inputs and proofs: the built-in one with its
    /// setup installed (made now if this exchange never made it), or a registered one loaded
    /// from the database.
    pub async fn circuit(&self, class: &pcx_domain::ProofClass) -> error::ApiResult<pcx_prover_pool::circuit::Circuit> {
        match self.circuits.resolve(&self.db, class).await? {
            pcx_prover_pool::circuit::Circuit::HashChain { size_log2 } => {
                self.setups.ensure(size_log2).await?;
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

    /// Now, on the state's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

/// The whole HTTP application for `state`.
pub fn app(state: AppState) -> Router {
    let (router, openapi) = routes::api_router().split_for_parts();
    let mut openapi = openapi;
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_panic| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
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
    let state = AppState::new(database.pool.clone(), &config, settings).await?;
    tracing::info!(address = %bound, docs = %format!("http://{bound}/docs"), "pcx exchange listening");
    let (stop_scheduler, scheduler_stopped) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(service::settlement::run_scheduler(state.clone(), scheduler_stopped.clone()));
    let oracle = tokio::spawn(service::oracle::run_oracle(state.clone(), scheduler_stopped));
    let served = run(listener, app(state), shutdown_signal()).await;
    let _ = stop_scheduler.send(true);
    let _ = scheduler.await;
    let _ = oracle.await;
    database.close().await;
    tracing::info!("pcx exchange stopped");
    served.context("serving HTTP")
}
