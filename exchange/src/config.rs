//! Typed configuration, parsed once at start-up from flags and environment variables.
//!
//! Every setting, its environment variable and its default (also in README.md):
//!
//! | setting | env | default |
//! |---|---|---|
//! | listen address | `PCX_LISTEN` | `127.0.0.1:8080` |
//! | database | `DATABASE_URL` | unset: the embedded default (see [`crate::db`]) |
//! | data directory | `PCX_DATA_DIR` | `/var/lib/pcx` as root, else `$XDG_DATA_HOME/pcx` or `~/.local/share/pcx` |
//! | server probed for the embedded default | `PCX_EMBEDDED_PROBE` | `127.0.0.1:5432` |
//! | database created there | `PCX_EMBEDDED_DATABASE` | `pcx` |
//! | port of the private cluster | `PCX_EMBEDDED_PORT` | `54329` |
//! | PostgreSQL binaries for the private cluster | `PCX_POSTGRES_BIN_DIR` | newest `/usr/lib/postgresql/*/bin`, else PATH |
//! | database pool size | `PCX_DB_MAX_CONNECTIONS` | `16` |
//! | admin API key | `PCX_ADMIN_API_KEY` | generated once, stored in the database, logged at start |
//! | JWT signing secret | `PCX_JWT_SECRET` | generated once, stored in the database |
//! | token lifetime | `PCX_TOKEN_TTL_SECS` | `3600` |
//! | wallet-login nonce lifetime | `PCX_WALLET_NONCE_TTL_SECS` | `300` |
//! | public URL (wallet-login messages) | `PCX_PUBLIC_URL` | `http://<listen address>` |
//! | shortest slot cadence | `PCX_MIN_CADENCE_SECS` | `60` |
//! | log filter | `PCX_LOG` | `info` |

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the database is and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct DbConfig {
    /// PostgreSQL URL. Unset: use the embedded default (a local server, or a private cluster).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

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

    /// Maximum connections in the pool.
    #[arg(long, env = "PCX_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub max_connections: u32,
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

    /// Database settings.
    #[command(flatten)]
    pub db: DbConfig,

    /// API key of the operator (admin). Unset: one is generated, stored, and logged at start.
    #[arg(long, env = "PCX_ADMIN_API_KEY", hide_env_values = true)]
    pub admin_api_key: Option<String>,

    /// Secret that signs access tokens (HS256). Unset: one is generated and stored in the database.
    #[arg(long, env = "PCX_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

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
}

impl Settings {
    /// Resolves the settings; `bound` is the address actually listened on (port 0 resolved).
    pub fn from_config(config: &ServeConfig, bound: SocketAddr) -> Self {
        Self {
            token_ttl: chrono::Duration::seconds(i64::from(config.token_ttl_secs.max(1))),
            nonce_ttl: chrono::Duration::seconds(i64::from(config.nonce_ttl_secs.max(1))),
            public_url: config
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{bound}"))
                .trim_end_matches('/')
                .to_owned(),
            min_cadence_secs: config.min_cadence_secs,
        }
    }
}
