//! Typed configuration, parsed once at start-up from flags and environment variables.
//!
//! Every setting, its environment variable and its default (also in README.md):
//!
//! | setting | env | default |
//! |---|---|---|
//! | listen address | `PCX_LISTEN` | `127.0.0.1:8080` |
//! | what this replica runs: `all`, `api` (requests only), `worker` (background work only) | `PCX_ROLE` | `all` |
//! | worker lease time to live (background work moves to another replica within this + 1/3) | `PCX_WORKER_LEASE_SECS` | `15` |
//! | database | `DATABASE_URL` | unset: the embedded default (see [`crate::db`]) |
//! | read replica for public reads (book, oracle history) | `DATABASE_READ_URL` | unset: `DATABASE_URL` |
//! | data directory | `PCX_DATA_DIR` | `/var/lib/pcx` as root, else `$XDG_DATA_HOME/pcx` or `~/.local/share/pcx` |
//! | server probed for the embedded default | `PCX_EMBEDDED_PROBE` | `127.0.0.1:5432` |
//! | database created there | `PCX_EMBEDDED_DATABASE` | `pcx` |
//! | port of the private cluster | `PCX_EMBEDDED_PORT` | `54329` |
//! | PostgreSQL binaries for the private cluster | `PCX_POSTGRES_BIN_DIR` | newest `/usr/lib/postgresql/*/bin`, else PATH |
//! | database pool size (requests) | `PCX_DB_MAX_CONNECTIONS` | `16` |
//! | the background loops' own pool (settlement scheduler, oracle) | `PCX_BACKGROUND_DB_CONNECTIONS` | `4` |
//! | admin API key | `PCX_ADMIN_API_KEY` | generated once into `<data dir>/secrets/admin_api_key` (0600, shown on the starting terminal); only its hash in the database |
//! | JWT signing secret | `PCX_JWT_SECRET`, or a file: `PCX_JWT_SECRET_FILE` | generated once into `<data dir>/secrets/jwt_secret` (0600) |
//! | token lifetime | `PCX_TOKEN_TTL_SECS` | `3600` |
//! | wallet-login nonce lifetime | `PCX_WALLET_NONCE_TTL_SECS` | `300` |
//! | public URL (wallet-login messages) | `PCX_PUBLIC_URL` | `http://<listen address>` |
//! | shortest slot cadence | `PCX_MIN_CADENCE_SECS` | `60` |
//! | slash multiplier | `PCX_SLASH_MULTIPLIER` | `2` |
//! | collateral window | `PCX_COLLATERAL_WINDOW_SECS` | `86400` |
//! | escrow window | `PCX_ESCROW_WINDOW_SECS` | `86400` |
//! | exchange fee | `PCX_FEE_BPS` | `100` |
//! | quote lifetime | `PCX_QUOTE_TTL_SECS` | `60` |
//! | candidate offers a quote considers (the cheapest) | `PCX_MAX_QUOTE_CANDIDATES` | `2000` |
//! | time a quote's allocation may take | `PCX_QUOTE_BUDGET_MS` | `2000` |
//! | active offers per prover | `PCX_MAX_OFFERS_PER_PROVER` | `200` |
//! | discount schedule (JSON) | `PCX_DISCOUNTS` | built-in default |
//! | offers bounded by the agents' measured capacity | `PCX_OFFER_CAPACITY_CHECK` | `measured` |
//! | settlement scheduler period | `PCX_SETTLEMENT_TICK_MS` | `1000` |
//! | slot materialisation horizon | `PCX_SLOT_HORIZON_SECS` | `172800` |
//! | ack timeout of a job | `PCX_ACK_TIMEOUT_SECS` | `30` |
//! | lease of a claimed job | `PCX_LEASE_SECS` | `300` |
//! | invalid-proof slash factor | `PCX_INVALID_SLASH_FACTOR` | `2` |
//! | handover margin of the lease rule | `PCX_HANDOVER_MARGIN_MS` | `2000` |
//! | a gap between scheduler ticks that counts as an outage | `PCX_OUTAGE_AFTER_SECS` | `10` |
//! | rows per scheduler query | `PCX_SETTLEMENT_BATCH` | `200` |
//! | collateral re-check period (0: every tick) | `PCX_COLLATERAL_CHECK_SECS` | `30` |
//! | `/health` degrades when a background loop's last tick is older than | `PCX_HEALTH_STALL_SECS` | `30` |
//! | header read timeout (also closes idle keep-alive connections) | `PCX_HEADER_READ_TIMEOUT_SECS` | `10` |
//! | request timeout (claims: +30 s; SSE: none) | `PCX_REQUEST_TIMEOUT_SECS` | `30` |
//! | sign-ups and sign-ins per minute per address (burst 10) | `PCX_RATE_AUTH_PER_MIN` | `30` |
//! | oracle reads per second per address (burst 2x) | `PCX_RATE_ORACLE_PER_SEC` | `50` |
//! | quotes per minute per account (burst 20) | `PCX_RATE_QUOTES_PER_MIN` | `60` |
//! | circuit upload timeout | `PCX_UPLOAD_TIMEOUT_SECS` | `900` |
//! | `GET /v1/oracle/stream` subscribers at once | `PCX_MAX_SSE_SUBSCRIBERS` | `1000` |
//! | claims waiting for a job at once (`wait_secs` > 0) | `PCX_MAX_CLAIM_WAITERS` | `256` |
//! | Groth16 keys directory | `PCX_KEYS_DIR` | the prover agent's default (`$PCX_DATA_DIR/keys`, else `~/.cache/pcx/keys`) |
//! | deterministic development keys for hash-chain (forgeable; tests, benchmarks) | `PCX_DEV_KEYS` | `false` |
//! | oracle recompute period (0: off) | `PCX_ORACLE_TICK_MS` | `1000` |
//! | oracle heartbeat | `PCX_ORACLE_HEARTBEAT_SECS` | `60` |
//! | oracle deviation threshold | `PCX_ORACLE_DEVIATION_BPS` | `100` (1%) |
//! | oracle minimum sources | `PCX_ORACLE_MIN_SOURCES` | `3` |
//! | oracle signing key | `PCX_ORACLE_KEY`, or a file: `PCX_ORACLE_KEY_FILE` | generated once into `<data dir>/secrets/oracle_key` (0600) |
//! | EIP-712 chain id | `PCX_ORACLE_CHAIN_ID` | `1` |
//! | external providers file | `PCX_ORACLE_PROVIDERS` | none |
//! | provider fetch timeout | `PCX_ORACLE_PROVIDER_TIMEOUT_MS` | `2000` |
//! | provider refresh period | `PCX_ORACLE_PROVIDER_REFRESH_SECS` | `30` |
//! | webhook key (seals endpoint secrets) | `PCX_WEBHOOK_KEY`, or a file: `PCX_WEBHOOK_KEY_FILE` | generated once into `<data dir>/secrets/webhook_key` (0600) |
//! | an event is retried for | `PCX_WEBHOOK_RETRY_HORIZON_SECS` | `259200` (3 days) |
//! | one delivery attempt's timeout | `PCX_WEBHOOK_TIMEOUT_SECS` | `10` |
//! | deliveries in flight per endpoint | `PCX_WEBHOOK_CONCURRENCY` | `4` |
//! | delivery loop period | `PCX_WEBHOOK_TICK_MS` | `500` |
//! | endpoints on loopback/private networks allowed | `PCX_WEBHOOK_ALLOW_PRIVATE_NETWORKS` | `false` |
//! | log filter | `PCX_LOG` | `info,sqlx=warn` |

use std::net::SocketAddr;
use std::path::PathBuf;

/// What one `pcx serve` process runs (`PCX_ROLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The API, and the background work while this replica holds the worker lease.
    All,
    /// The API only.
    Api,
    /// The background work while this replica holds the worker lease; HTTP serves only
    /// `/health` and `/metrics`.
    Worker,
}

impl Role {
    /// Whether this role serves the API.
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// Whether this role competes for the worker lease.
    pub fn runs_background(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// Where the database is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct DbConfig {
    /// PostgreSQL URL. Unset: use the embedded default (a local server, or a private cluster).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// A read replica for public reads that may lag a moment (the book, oracle history).
    /// Unset: they read from `DATABASE_URL`.
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<String>,

    /// A connection to the same database that bypasses a transaction-mode pooler (PgBouncer),
    /// for what needs a session of its own: the migrations (under a session advisory lock) and
    /// `LISTEN` for the oracle's rounds. Unset: `DATABASE_URL`.
    #[arg(long, env = "DATABASE_DIRECT_URL", hide_env_values = true)]
    pub database_direct_url: Option<String>,

    /// Directory for the private cluster and other local state.
    #[arg(long, env = "PCX_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address probed for a local PostgreSQL server (user `postgres`, trust auth) by the embedded default.
    #[arg(long, env = "PCX_EMBEDDED_PROBE", default_value = "127.0.0.1:5432")]
    pub embedded_probe: String,

    /// Database that the embedded default creates and uses on a local server.
    #[arg(long, env = "PCX_EMBEDDED_DATABASE", default_value = "pcx")]
    pub embedded_database: String,

    /// Port of the private cluster started when no local server answers (listens on 127.0.0.1 only).
    #[arg(long, env = "PCX_EMBEDDED_PORT", default_value_t = 54329)]
    pub embedded_port: u16,

    /// Directory holding `initdb` and `pg_ctl` for the private cluster. Unset: the newest
    /// `/usr/lib/postgresql/<version>/bin`, else the first on PATH.
    #[arg(long, env = "PCX_POSTGRES_BIN_DIR")]
    pub postgres_bin_dir: Option<PathBuf>,

    /// Maximum connections in the pool that serves requests.
    #[arg(long, env = "PCX_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,

    /// Connections of the background loops' own pool (settlement scheduler, oracle), on top of
    /// `PCX_DB_MAX_CONNECTIONS`: requests cannot take them, so however busy the API is, a
    /// settlement tick never waits behind it. The scheduler runs 4 transitions at a time.
    #[arg(long, env = "PCX_BACKGROUND_DB_CONNECTIONS", default_value_t = 4)]
    pub background_connections: u32,
}

impl DbConfig {
    /// The data directory: `PCX_DATA_DIR`, else `/var/lib/pcx` when running as root (a private
    /// cluster then runs as another user, who cannot enter root's home), else the user's data dir.
    pub fn resolved_data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        if crate::db::running_as_root() {
            return PathBuf::from("/var/lib/pcx");
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("pcx");
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/share/pcx"),
            None => PathBuf::from(".pcx"),
        }
    }
}

/// Settings of `pcx serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "PCX_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// What this replica runs: `all` (the API, and the background work while it holds the worker
    /// lease), `api` (the API only; never takes the lease), `worker` (the background work while it
    /// holds the lease; HTTP serves only `/health` and `/metrics`).
    #[arg(long, env = "PCX_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// Time to live of the worker lease, in seconds: a replica that stops renewing it (it died,
    /// or lost the database) is replaced by another within this plus a third of it.
    #[arg(long, env = "PCX_WORKER_LEASE_SECS", default_value_t = 15)]
    pub worker_lease_secs: u32,

    /// Database settings.
    #[command(flatten)]
    pub db: DbConfig,

    /// API key of the operator (admin). Unset: one is generated once into
    /// `<data dir>/secrets/admin_api_key` (mode 0600; shown on the terminal that started the
    /// server); only its hash is stored in the database, and it is never logged.
    #[arg(long, env = "PCX_ADMIN_API_KEY", hide_env_values = true)]
    pub admin_api_key: Option<String>,

    /// Secret that signs access tokens (HS256). Unset: `PCX_JWT_SECRET_FILE`, else generated once
    /// into `<data dir>/secrets/jwt_secret` (mode 0600; rotate with `pcx secrets rotate-jwt`).
    #[arg(long, env = "PCX_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// A file holding the JWT secret (instead of `PCX_JWT_SECRET`); must not be readable by others.
    #[arg(long, env = "PCX_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "PCX_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub token_ttl_secs: u32,

    /// Lifetime of wallet-login nonces, in seconds.
    #[arg(long, env = "PCX_WALLET_NONCE_TTL_SECS", default_value_t = 300)]
    pub nonce_ttl_secs: u32,

    /// Public URL of the exchange, used as domain and URI of wallet-login (EIP-4361) messages.
    #[arg(long, env = "PCX_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Shortest slot cadence accepted, in seconds (tests and the demo lower it to 10).
    #[arg(long, env = "PCX_MIN_CADENCE_SECS", default_value_t = 60)]
    pub min_cadence_secs: u32,

    /// A request's headers must arrive within this many seconds; a keep-alive connection that
    /// sends nothing for as long is closed.
    #[arg(long, env = "PCX_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u32,

    /// Ordinary requests must be answered within this many seconds (else 408
    /// `request_timeout`); agent claims wait at most 30 s plus this, circuit uploads have
    /// `PCX_UPLOAD_TIMEOUT_SECS`, the SSE stream is bounded by its subscriber cap.
    #[arg(long, env = "PCX_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u32,

    /// A circuit upload (`POST /v1/circuits`, including its checks) must finish within this many
    /// seconds.
    #[arg(long, env = "PCX_UPLOAD_TIMEOUT_SECS", default_value_t = 900)]
    pub upload_timeout_secs: u32,

    /// Sign-ups and sign-ins (`POST /v1/accounts`, `/v1/auth/*`) per minute per client address
    /// (burst 10); past it 429 `rate_limited`.
    #[arg(long, env = "PCX_RATE_AUTH_PER_MIN", default_value_t = 30)]
    pub rate_auth_per_min: u32,

    /// Oracle reads (`GET /v1/oracle/*`) per second per client address (burst twice as many).
    #[arg(long, env = "PCX_RATE_ORACLE_PER_SEC", default_value_t = 50)]
    pub rate_oracle_per_sec: u32,

    /// Quotes (`POST /v1/quotes`) per minute per account (burst 20).
    #[arg(long, env = "PCX_RATE_QUOTES_PER_MIN", default_value_t = 60)]
    pub rate_quotes_per_min: u32,

    /// Largest circuit upload (`POST /v1/circuits`: r1cs + wasm + zkey + sample input), in bytes.
    /// 1 GiB holds a snarkjs setup of about a million constraints.
    #[arg(long, env = "PCX_MAX_CIRCUIT_BYTES", default_value_t = 1 << 30)]
    pub max_circuit_bytes: u64,

    /// Most `GET /v1/oracle/stream` (SSE) subscribers at once (at least 1); one more is answered
    /// 503 `too_many_subscribers` with `Retry-After`. Each holds a connection and a task for as
    /// long as it listens, with no request timeout.
    #[arg(long, env = "PCX_MAX_SSE_SUBSCRIBERS", default_value_t = 1000)]
    pub max_sse_subscribers: u32,

    /// Most agent claims waiting for a job at once (`wait_secs` > 0; at least 1); one more is
    /// answered 503 `too_many_waiting_claims` with `Retry-After`. A claim that does not wait is
    /// not counted.
    #[arg(long, env = "PCX_MAX_CLAIM_WAITERS", default_value_t = 256)]
    pub max_claim_waiters: u32,

    /// Market rules: fees, windows, slashing, discounts.
    #[command(flatten)]
    pub market: MarketConfig,

    /// Settlement timings.
    #[command(flatten)]
    pub settlement: SettlementConfig,

    /// The pricing oracle.
    #[command(flatten)]
    pub oracle: OracleConfig,

    /// Webhook delivery.
    #[command(flatten)]
    pub webhooks: WebhookConfig,
}

/// Webhook delivery's settings (see `service::webhooks`).
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookConfig {
    /// The key that seals endpoint signing secrets at rest (32 bytes hex); the same on every
    /// replica. Unset: `PCX_WEBHOOK_KEY_FILE`, else generated once into
    /// `<data dir>/secrets/webhook_key` (mode 0600).
    #[arg(long, env = "PCX_WEBHOOK_KEY", hide_env_values = true)]
    pub webhook_key: Option<String>,

    /// A file holding the webhook key (instead of `PCX_WEBHOOK_KEY`).
    #[arg(long, env = "PCX_WEBHOOK_KEY_FILE")]
    pub webhook_key_file: Option<PathBuf>,

    /// How long an event is retried before it is given up, in seconds (an endpoint none of whose
    /// deliveries succeeded for that long is disabled).
    #[arg(long, env = "PCX_WEBHOOK_RETRY_HORIZON_SECS", default_value_t = 259_200)]
    pub webhook_retry_horizon_secs: u32,

    /// Timeout of one delivery attempt, in seconds.
    #[arg(long, env = "PCX_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u32,

    /// Most deliveries in flight to one endpoint at once.
    #[arg(long, env = "PCX_WEBHOOK_CONCURRENCY", default_value_t = 4)]
    pub webhook_concurrency: u32,

    /// How often due deliveries are looked for, in milliseconds.
    #[arg(long, env = "PCX_WEBHOOK_TICK_MS", default_value_t = 500)]
    pub webhook_tick_ms: u64,

    /// Let endpoints on loopback and private networks receive events (one-machine setups and
    /// tests); off, only public addresses do (no cloud metadata service, no internal hosts).
    #[arg(long, env = "PCX_WEBHOOK_ALLOW_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private_networks: bool,
}

/// Webhook delivery, resolved.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// An event is retried until this long after it happened.
    pub retry_horizon: chrono::Duration,
    /// One attempt's bound.
    pub timeout: std::time::Duration,
    /// In flight per endpoint.
    pub concurrency: usize,
    /// Delivery loop period.
    pub tick: std::time::Duration,
    /// Where events may not go.
    pub rules: crate::webhooks::UrlRules,
}

/// The pricing oracle's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct OracleConfig {
    /// How often the oracle recomputes its feeds, in milliseconds (0: never, e.g. in tests that drive it).
    #[arg(long, env = "PCX_ORACLE_TICK_MS", default_value_t = 1000)]
    pub oracle_tick_ms: u64,

    /// A feed publishes at least this often, in seconds, even when its price does not move.
    #[arg(long, env = "PCX_ORACLE_HEARTBEAT_SECS", default_value_t = 60)]
    pub oracle_heartbeat_secs: u32,

    /// A feed publishes when its price moves more than this, in basis points.
    #[arg(long, env = "PCX_ORACLE_DEVIATION_BPS", default_value_t = 100)]
    pub oracle_deviation_bps: u32,

    /// Fewer distinct accepted sources than this: status `insufficient_sources`, no price.
    #[arg(long, env = "PCX_ORACLE_MIN_SOURCES", default_value_t = 3)]
    pub oracle_min_sources: usize,

    /// The oracle's signing key (32 bytes hex). Unset: `PCX_ORACLE_KEY_FILE`, else generated once
    /// into `<data dir>/secrets/oracle_key` (mode 0600).
    #[arg(long, env = "PCX_ORACLE_KEY", hide_env_values = true)]
    pub oracle_key: Option<String>,

    /// A file holding the oracle's signing key (instead of `PCX_ORACLE_KEY`).
    #[arg(long, env = "PCX_ORACLE_KEY_FILE")]
    pub oracle_key_file: Option<PathBuf>,

    /// Chain id in the EIP-712 domain of signed rounds.
    #[arg(long, env = "PCX_ORACLE_CHAIN_ID", default_value_t = 1)]
    pub oracle_chain_id: u64,

    /// JSON file listing external price providers (`{"providers": [...]}`, see docs/ORACLE.md).
    #[arg(long, env = "PCX_ORACLE_PROVIDERS")]
    pub oracle_providers: Option<PathBuf>,

    /// Timeout of one external provider fetch, in milliseconds.
    #[arg(long, env = "PCX_ORACLE_PROVIDER_TIMEOUT_MS", default_value_t = 2000)]
    pub oracle_provider_timeout_ms: u64,

    /// External providers are fetched at most this often, in seconds.
    #[arg(long, env = "PCX_ORACLE_PROVIDER_REFRESH_SECS", default_value_t = 30)]
    pub oracle_provider_refresh_secs: u32,
}

/// Settlement timings and where verifying keys live.
#[derive(Debug, Clone, clap::Args)]
pub struct SettlementConfig {
    /// How often the settlement scheduler runs, in milliseconds.
    #[arg(long, env = "PCX_SETTLEMENT_TICK_MS", default_value_t = 1000)]
    pub tick_ms: u64,

    /// Slots are materialised this far ahead, in seconds (at least the escrow window).
    #[arg(long, env = "PCX_SLOT_HORIZON_SECS", default_value_t = 172_800)]
    pub horizon_secs: u32,

    /// A job not claimed within this many seconds fails (`ack_timeout`) and goes to the next prover.
    #[arg(long, env = "PCX_ACK_TIMEOUT_SECS", default_value_t = 30)]
    pub ack_timeout_secs: u32,

    /// Longest lease of a claimed job, in seconds. A lease also ends early enough for the next
    /// prover in line to make the deadline (see the lease rule in pcx_settlement::timing).
    #[arg(long, env = "PCX_LEASE_SECS", default_value_t = 300)]
    pub lease_secs: u32,

    /// An invalid proof slashes this many times the slash of a miss.
    #[arg(long, env = "PCX_INVALID_SLASH_FACTOR", default_value = "2")]
    pub invalid_slash_factor: rust_decimal::Decimal,

    /// Handover margin of the lease rule, in milliseconds: a claim's latency, the upload and the
    /// verification of a proof, added to every prover's measured proving time.
    #[arg(long, env = "PCX_HANDOVER_MARGIN_MS", default_value_t = 2000)]
    pub handover_margin_ms: u64,

    /// A gap longer than this between two scheduler ticks, in seconds, counts as an exchange
    /// outage: nothing that expired in it is charged to a prover.
    #[arg(long, env = "PCX_OUTAGE_AFTER_SECS", default_value_t = 10)]
    pub outage_after_secs: u32,

    /// Rows the scheduler takes per query (contracts to materialise or fund, slots to open, ...).
    #[arg(long, env = "PCX_SETTLEMENT_BATCH", default_value_t = 200)]
    pub batch: u32,

    /// How often the scheduler re-checks that primaries' stake covers their slots in the
    /// collateral window, in seconds (0: every tick).
    #[arg(long, env = "PCX_COLLATERAL_CHECK_SECS", default_value_t = 30)]
    pub collateral_check_secs: u32,

    /// `/health` answers 503 when the settlement scheduler (or the oracle) has not completed a tick
    /// for this many seconds.
    #[arg(long, env = "PCX_HEALTH_STALL_SECS", default_value_t = 30)]
    pub health_stall_secs: u32,

    /// Directory of the Groth16 keys (development keys are cached there with `--dev-keys`).
    #[arg(long, env = "PCX_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,

    /// Use the deterministic DEVELOPMENT setup for hash-chain (anyone can forge its proofs):
    /// tests and benchmarks only. Without it each size's setup is made once from the OS's
    /// randomness and kept in the database.
    #[arg(long, env = "PCX_DEV_KEYS", default_value_t = false)]
    pub dev_keys: bool,
}

/// Settlement timings, resolved.
#[derive(Debug, Clone)]
pub struct SettlementSettings {
    /// Scheduler period.
    pub tick: std::time::Duration,
    /// Materialisation horizon (at least the escrow and collateral windows).
    pub horizon: chrono::Duration,
    /// The rules every settlement decision reads (fees, slashing, the lease rule).
    pub rules: pcx_settlement::Rules,
    /// A gap between ticks longer than this is an outage.
    pub outage_after: chrono::Duration,
    /// Rows per scheduler query.
    pub batch: i64,
    /// Collateral re-check period.
    pub collateral_check: chrono::Duration,
    /// `/health` degrades past this age of a background loop's last tick.
    pub health_stall: std::time::Duration,
}

impl SettlementConfig {
    /// Checks and resolves the settlement settings.
    pub fn resolve(&self, market: &MarketSettings) -> anyhow::Result<SettlementSettings> {
        anyhow::ensure!(self.invalid_slash_factor >= rust_decimal::Decimal::ONE, "PCX_INVALID_SLASH_FACTOR must be at least 1");
        let secs = |s: u32| chrono::Duration::seconds(i64::from(s.max(1)));
        let tick = std::time::Duration::from_millis(self.tick_ms.max(10));
        let timing = pcx_settlement::timing::Timing {
            ack_timeout: secs(self.ack_timeout_secs),
            max_lease: secs(self.lease_secs),
            handover: chrono::Duration::milliseconds(i64::try_from(self.handover_margin_ms).unwrap_or(i64::MAX)),
            tick: chrono::Duration::from_std(tick).unwrap_or(chrono::Duration::seconds(1)),
        };
        Ok(SettlementSettings {
            tick,
            horizon: secs(self.horizon_secs).max(market.escrow_window).max(market.collateral_window),
            rules: pcx_settlement::Rules {
                fee_bps: market.fee_bps,
                slash_multiplier: market.slash_multiplier,
                invalid_slash_factor: self.invalid_slash_factor,
                timing,
            },
            outage_after: secs(self.outage_after_secs),
            batch: i64::from(self.batch.max(1)),
            collateral_check: chrono::Duration::seconds(i64::from(self.collateral_check_secs)),
            health_stall: std::time::Duration::from_secs(u64::from(self.health_stall_secs.max(1))),
        })
    }

    /// The keys directory: `PCX_KEYS_DIR`, else the prover agent's default.
    pub fn resolved_keys_dir(&self) -> PathBuf {
        self.keys_dir.clone().unwrap_or_else(pcx_prover_pool::agent::default_keys_dir)
    }
}

/// Market rules.
#[derive(Debug, Clone, clap::Args)]
pub struct MarketConfig {
    /// A primary's stake must cover this multiple of the price of each of its slots in the collateral window.
    #[arg(long, env = "PCX_SLASH_MULTIPLIER", default_value = "2")]
    pub slash_multiplier: rust_decimal::Decimal,

    /// Rolling collateral window, in seconds.
    #[arg(long, env = "PCX_COLLATERAL_WINDOW_SECS", default_value_t = 86_400)]
    pub collateral_window_secs: u32,

    /// Rolling escrow window, in seconds: a buyer keeps this much of upcoming slot payments locked.
    #[arg(long, env = "PCX_ESCROW_WINDOW_SECS", default_value_t = 86_400)]
    pub escrow_window_secs: u32,

    /// Exchange fee in basis points of each payment to a prover.
    #[arg(long, env = "PCX_FEE_BPS", default_value_t = 100)]
    pub fee_bps: u32,

    /// How long a quote stays firm, in seconds.
    #[arg(long, env = "PCX_QUOTE_TTL_SECS", default_value_t = 60)]
    pub quote_ttl_secs: u32,

    /// A quote considers at most this many candidate offers, the cheapest (by base price, then
    /// age) of those that can serve its class, window and hourly rate: the allocation's work
    /// grows with candidates x segments of the term.
    #[arg(long, env = "PCX_MAX_QUOTE_CANDIDATES", default_value_t = 2000)]
    pub max_quote_candidates: u32,

    /// A quote's allocation (run off the async runtime) may take this many milliseconds; past it
    /// the quote is refused with 422 `quote_too_complex` (narrow the request).
    #[arg(long, env = "PCX_QUOTE_BUDGET_MS", default_value_t = 2000)]
    pub quote_budget_ms: u64,

    /// A prover may have at most this many active offers whose window has not ended (past it:
    /// 409 `too_many_offers`).
    #[arg(long, env = "PCX_MAX_OFFERS_PER_PROVER", default_value_t = 200)]
    pub max_offers_per_prover: u32,

    /// The published discount schedule as JSON (`{"volume": [...], "term": [...], "max_total_bps": N}`);
    /// unset: the built-in default (see GET /v1/discounts).
    #[arg(long, env = "PCX_DISCOUNTS")]
    pub discounts: Option<String>,

    /// Whether an offer must fit in what the prover's live agents measured for its class.
    #[arg(long, env = "PCX_OFFER_CAPACITY_CHECK", value_enum, default_value_t = OfferCapacityCheck::Measured)]
    pub offer_capacity_check: OfferCapacityCheck,
}

/// How `POST /v1/offers` bounds an offer's `proofs_per_hour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OfferCapacityCheck {
    /// At most what the prover's agents seen in the last minute measured for the class (bench x
    /// workers), less its other active offers of that circuit and size overlapping the window.
    #[default]
    Measured,
    /// No bound: for test rigs and demos that post offers before their agents run.
    Off,
}

/// Market rules, resolved.
#[derive(Debug, Clone)]
pub struct MarketSettings {
    /// Slash multiplier.
    pub slash_multiplier: rust_decimal::Decimal,
    /// Collateral window.
    pub collateral_window: chrono::Duration,
    /// Escrow window.
    pub escrow_window: chrono::Duration,
    /// Fee in bps.
    pub fee_bps: u32,
    /// Quote lifetime.
    pub quote_ttl: chrono::Duration,
    /// Candidate offers a quote considers, the cheapest.
    pub max_quote_candidates: i64,
    /// Time a quote's allocation may take.
    pub quote_budget: std::time::Duration,
    /// Active offers per prover.
    pub max_offers_per_prover: i64,
    /// The published discounts.
    pub discounts: pcx_capacity_reservation::discounts::DiscountSchedule,
    /// How offers are bounded by measured capacity.
    pub offer_capacity_check: OfferCapacityCheck,
}

impl MarketConfig {
    /// Checks and resolves the market rules.
    pub fn resolve(&self) -> anyhow::Result<MarketSettings> {
        use anyhow::Context;
        anyhow::ensure!(
            self.slash_multiplier > rust_decimal::Decimal::ZERO,
            "PCX_SLASH_MULTIPLIER must be greater than zero"
        );
        anyhow::ensure!(self.fee_bps < 10_000, "PCX_FEE_BPS must be below 10000");
        let discounts = match &self.discounts {
            Some(json) => serde_json::from_str(json).context("PCX_DISCOUNTS is not a valid discount schedule")?,
            None => pcx_capacity_reservation::discounts::DiscountSchedule::default(),
        };
        discounts.validate().context("PCX_DISCOUNTS")?;
        let secs = |s: u32| chrono::Duration::seconds(i64::from(s.max(1)));
        Ok(MarketSettings {
            slash_multiplier: self.slash_multiplier,
            collateral_window: secs(self.collateral_window_secs),
            escrow_window: secs(self.escrow_window_secs),
            fee_bps: self.fee_bps,
            quote_ttl: secs(self.quote_ttl_secs),
            max_quote_candidates: i64::from(self.max_quote_candidates.max(1)),
            quote_budget: std::time::Duration::from_millis(self.quote_budget_ms.max(1)),
            max_offers_per_prover: i64::from(self.max_offers_per_prover.max(1)),
            discounts,
            offer_capacity_check: self.offer_capacity_check,
        })
    }
}

/// The runtime settings the request handlers read, resolved from [`ServeConfig`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of access tokens.
    pub token_ttl: chrono::Duration,
    /// Lifetime of wallet-login nonces.
    pub nonce_ttl: chrono::Duration,
    /// Public URL, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    /// Shortest slot cadence accepted.
    pub min_cadence_secs: u32,
    /// Largest circuit upload, in bytes.
    pub max_circuit_bytes: u64,
    /// Rate limits.
    pub rate: crate::ratelimit::RateSettings,
    /// Bound on ordinary requests.
    pub request_timeout: std::time::Duration,
    /// Bound on circuit uploads.
    pub upload_timeout: std::time::Duration,
    /// Most SSE subscribers at once.
    pub max_sse_subscribers: usize,
    /// Most claims waiting for a job at once.
    pub max_claim_waiters: usize,
    /// Market rules.
    pub market: MarketSettings,
    /// Settlement timings.
    pub settlement: SettlementSettings,
    /// Webhook delivery.
    pub webhooks: WebhookSettings,
}

/// The `host:port`s that reach this exchange: where it listens and its public URL.
fn own_addresses(config: &ServeConfig, bound: SocketAddr) -> Vec<(String, u16)> {
    let mut own = vec![(bound.ip().to_string(), bound.port())];
    if bound.ip().is_loopback() || bound.ip().is_unspecified() {
        own.push(("localhost".into(), bound.port()));
    }
    if let Some(url) = config.public_url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()) {
        if let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) {
            own.push((host.trim_start_matches('[').trim_end_matches(']').to_owned(), port));
        }
    }
    own
}

impl Settings {
    /// Resolves the settings; `bound` is the address actually listened on (port 0 resolved).
    pub fn from_config(config: &ServeConfig, bound: SocketAddr) -> anyhow::Result<Self> {
        let market = config.market.resolve()?;
        Ok(Self {
            token_ttl: chrono::Duration::seconds(i64::from(config.token_ttl_secs.max(1))),
            nonce_ttl: chrono::Duration::seconds(i64::from(config.nonce_ttl_secs.max(1))),
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{bound}"))
                .trim_end_matches('/')
                .to_owned(),
            min_cadence_secs: config.min_cadence_secs,
            max_circuit_bytes: config.max_circuit_bytes,
            rate: crate::ratelimit::RateSettings {
                auth_per_min: config.rate_auth_per_min,
                oracle_per_sec: config.rate_oracle_per_sec,
                quotes_per_min: config.rate_quotes_per_min,
            },
            request_timeout: std::time::Duration::from_secs(u64::from(config.request_timeout_secs.max(1))),
            upload_timeout: std::time::Duration::from_secs(u64::from(config.upload_timeout_secs.max(1))),
            // A cap of 0 would refuse every subscriber and every waiting claim: at least one.
            max_sse_subscribers: usize::try_from(config.max_sse_subscribers.max(1)).unwrap_or(usize::MAX),
            max_claim_waiters: usize::try_from(config.max_claim_waiters.max(1)).unwrap_or(usize::MAX),
            settlement: config.settlement.resolve(&market)?,
            market,
            webhooks: WebhookSettings {
                retry_horizon: chrono::Duration::seconds(i64::from(config.webhooks.webhook_retry_horizon_secs.max(1))),
                timeout: std::time::Duration::from_secs(u64::from(config.webhooks.webhook_timeout_secs.max(1))),
                concurrency: usize::try_from(config.webhooks.webhook_concurrency.max(1)).unwrap_or(1),
                tick: std::time::Duration::from_millis(config.webhooks.webhook_tick_ms.max(10)),
                rules: crate::webhooks::UrlRules {
                    exchange: own_addresses(config, bound),
                    allow_private: config.webhooks.webhook_allow_private_networks,
                },
            },
        })
    }
}
