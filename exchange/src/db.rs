//! The database: a sqlx pool, the migrations, and the embedded default.
//!
//! With `DATABASE_URL` set, that database is used. Without it, `pcx` needs no configuration:
//! 1. if a PostgreSQL server answers at `PCX_EMBEDDED_PROBE` (default `127.0.0.1:5432`, user
//!    `postgres`, that server's own authentication), the database `PCX_EMBEDDED_DATABASE` (default
//!    `pcx`) is created there if missing and used, and the log says so;
//! 2. else a private cluster is created with the machine's `initdb` under
//!    `<data dir>/postgres` and started with `pg_ctl` on 127.0.0.1:`PCX_EMBEDDED_PORT` (default 54329);
//!    as root (where initdb refuses to run) the cluster belongs to the `postgres` user (else `nobody`);
//!    its superuser has a generated password (`<data dir>/secrets/postgres_password`, 0600), every
//!    connection authenticates with SCRAM (a cluster an older pcx made with `trust` is converted),
//!    and it listens on 127.0.0.1 and a socket in its data directory only; it is stopped when pcx
//!    exits;
//! 3. else start-up fails with a message saying how to install PostgreSQL or set `DATABASE_URL`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::config::DbConfig;

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A connected database, and the private cluster behind it when pcx started one.
pub struct Database {
    /// The connection pool.
    pub pool: PgPool,
    /// Sessions of their own, past a pooler: `DATABASE_DIRECT_URL`'s pool (two connections,
    /// connected lazily), or the same as `pool` when it is unset.
    pub direct: PgPool,
    /// Where the data lives, for the log.
    pub description: String,
    cluster: Option<PrivateCluster>,
}

impl Database {
    /// Connects as configured (see the module docs) and applies the migrations.
    pub async fn open(config: &DbConfig) -> anyhow::Result<Database> {
        let url = config.database_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let (options, description, cluster) = match url {
            Some(url) => {
                let options: PgConnectOptions =
                    url.parse().context("DATABASE_URL is not a valid PostgreSQL URL")?;
                (options, redact(url), None)
            }
            None => embedded_default(config).await?,
        };
        let pool = pool_options(config.max_connections)
            .connect_with(options.log_statements(tracing::log::LevelFilter::Debug))
            .await
            .with_context(|| format!("cannot connect to the database at {description}"))?;
        let direct = match config.database_direct_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => {
                let options: PgConnectOptions = url
                    .parse()
                    .with_context(|| format!("DATABASE_DIRECT_URL {} is not a PostgreSQL URL", redact(url)))?;
                pool_options(2)
                    .connect_lazy_with(options.log_statements(tracing::log::LevelFilter::Debug))
            }
            None => pool.clone(),
        };
        // The migrator holds a session advisory lock while it applies: through a pooler in
        // transaction mode that lock would stay behind on whichever server connection took it.
        MIGRATOR.run(&direct).await.context("applying database migrations")?;
        Ok(Database { pool, direct, description, cluster })
    }

    /// Closes the pool and stops the private cluster if pcx started it.
    pub async fn close(mut self) {
        self.direct.close().await;
        self.pool.close().await;
        if let Some(cluster) = self.cluster.take() {
            cluster.stop();
        }
    }
}

/// A second pool of `connections` to the database `pool` reaches (the same connect options, and so
/// the same credentials and acquire timeout), for the background loops: requests cannot take its
/// connections, so a settlement tick never waits for the API's. Connects lazily; close it before
/// the main pool's database goes away.
pub fn background_pool(pool: &PgPool, connections: u32) -> PgPool {
    pool_options(connections)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with(pool.connect_options().as_ref().clone())
}

/// The pool of `DATABASE_READ_URL`, if set: connected lazily (a replica that is down at start
/// fails those reads with 503, not the start), as large as the requests' pool.
pub fn read_pool(config: &DbConfig) -> anyhow::Result<Option<PgPool>> {
    let Some(url) = &config.database_read_url else { return Ok(None) };
    let options: PgConnectOptions = url.parse().with_context(|| format!("DATABASE_READ_URL {} is not a PostgreSQL URL", redact(url)))?;
    Ok(Some(
        pool_options(config.max_connections).connect_lazy_with(options),
    ))
}

/// A connection idle longer than this is pinged before it is handed out.
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

/// Options of every pool: `connections` at most, a 10 s acquire timeout, and a ping only for a
/// connection that sat idle for [`PING_WHEN_IDLE_FOR`]. sqlx's default pings every connection at
/// every acquire: a round trip per acquire, a fifth of a money movement's (`pcx bench ledger`,
/// docs/PERFORMANCE.md). A connection in steady use has just answered; one that sat idle through
/// a database restart is found dead by the ping and replaced; one cut while in use fails its
/// statement, which answers 503 `unavailable` with Retry-After (error.rs) and is not reused.
pub fn pool_options(connections: u32) -> PgPoolOptions {
    use sqlx::Connection as _;
    PgPoolOptions::new()
        .max_connections(connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < PING_WHEN_IDLE_FOR {
                    return Ok(true);
                }
                // A dead connection is dropped and another is taken (or opened).
                Ok(conn.ping().await.is_ok())
            })
        })
}

fn redact(url: &str) -> String {
    match url.parse::<reqwest::Url>() {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// True when the process runs as root.
pub fn running_as_root() -> bool {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    euid == 0
}

async fn embedded_default(
    config: &DbConfig,
) -> anyhow::Result<(PgConnectOptions, String, Option<PrivateCluster>)> {
    if let Some(options) = local_server(config).await? {
        let description = format!(
            "local PostgreSQL server at {}, database {}",
            config.embedded_probe, config.embedded_database
        );
        return Ok((options, description, None));
    }
    tracing::info!(probe = %config.embedded_probe, "no PostgreSQL server answers; starting a private cluster");
    let data_dir = config.resolved_data_dir().join("postgres");
    // The cluster's superuser password: generated once, kept 0600 with the exchange's other secrets.
    let secrets = crate::secrets::SecretsDir::new(&config.resolved_data_dir());
    let (password, _) = secrets.load_or_create(POSTGRES_PASSWORD, || crate::auth::random_hex(24))?;
    let cluster =
        PrivateCluster::start(&data_dir, config.embedded_port, config.postgres_bin_dir.as_deref(), &password)?;
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(config.embedded_port)
        .username("postgres")
        .password(&password)
        .database("postgres");
    cluster.require_passwords(&options, &password).await?;
    let description = format!(
        "private PostgreSQL cluster in {} on 127.0.0.1:{}",
        data_dir.display(),
        config.embedded_port
    );
    Ok((options, description, Some(cluster)))
}

/// The file (under the data directory's `secrets/`) with the private cluster's password.
pub const POSTGRES_PASSWORD: &str = "postgres_password";

/// Connects to the probed server; `None` when nothing answers there.
async fn local_server(config: &DbConfig) -> anyhow::Result<Option<PgConnectOptions>> {
    let (host, port) = config
        .embedded_probe
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .context("PCX_EMBEDDED_PROBE must be HOST:PORT, e.g. 127.0.0.1:5432")?;
    let base = PgConnectOptions::new().host(&host).port(port).username("postgres");
    let admin = base.clone().database("postgres");
    let connect = tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect_with(&admin));
    let mut conn = match connect.await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            tracing::debug!(%err, "probe of the local PostgreSQL server failed");
            return Ok(None);
        }
        Err(_) => return Ok(None),
    };
    let name = &config.embedded_database;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("PCX_EMBEDDED_DATABASE must be letters, digits and underscores, got `{name}`");
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        // CREATE DATABASE takes no bind parameters; the name was checked above.
        let created = sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await;
        if let Err(err) = created {
            // Another pcx may have created it at the same moment.
            let exists_now: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(name)
                    .fetch_one(&mut conn)
                    .await?;
            if !exists_now {
                return Err(err).context(format!("creating database {name}"));
            }
        }
        tracing::info!(database = %name, "created database on the local PostgreSQL server");
    }
    conn.close().await.ok();
    tracing::warn!(
        server = %config.embedded_probe,
        database = %name,
        "using the PostgreSQL server already answering here (user postgres, no password: its own authentication \
         rules apply); set DATABASE_URL to use another server or credentials"
    );
    Ok(Some(base.database(name)))
}

/// A PostgreSQL cluster that pcx initialised and started itself.
#[derive(Debug)]
pub struct PrivateCluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    run_as: Option<(u32, u32)>,
    stopped: bool,
}

impl PrivateCluster {
    /// Creates the cluster if needed (superuser `postgres` with `password`, SCRAM authentication
    /// on the socket and on loopback, nothing else) and starts it on 127.0.0.1:`port`.
    pub fn start(data_dir: &Path, port: u16, bin_dir: Option<&Path>, password: &str) -> anyhow::Result<PrivateCluster> {
        let bin_dir = match bin_dir {
            Some(dir) => dir.join("initdb").exists().then(|| dir.to_owned()),
            None => find_postgres_bin_dir(),
        };
        let bin_dir = bin_dir.context(
            "no PostgreSQL found: nothing answers at PCX_EMBEDDED_PROBE and no initdb/pg_ctl binaries \
             were found (PCX_POSTGRES_BIN_DIR, /usr/lib/postgresql/*/bin, PATH). Install PostgreSQL (Debian/Ubuntu: \
             `apt-get install postgresql`) or set DATABASE_URL=postgres://USER@HOST/DB",
        )?;
        let run_as = if running_as_root() {
            Some(unprivileged_user().context(
                "running as root, initdb needs an unprivileged user: create a `postgres` user or set DATABASE_URL",
            )?)
        } else {
            None
        };
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(data_dir, Some(uid), Some(gid))
                .with_context(|| format!("handing {} to the postgres user", data_dir.display()))?;
        }
        let cluster = PrivateCluster { bin_dir, data_dir: data_dir.to_owned(), run_as, stopped: false };
        if !data_dir.join("PG_VERSION").exists() {
            tracing::info!(dir = %data_dir.display(), "initialising a private PostgreSQL cluster");
            let pwfile = cluster.password_file(password)?;
            let initialised = cluster.run(
                "initdb",
                &[
                    "-D",
                    &cluster.data_arg(),
                    "-U",
                    "postgres",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    &format!("--pwfile={}", pwfile.display()),
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
            );
            let _ = std::fs::remove_file(&pwfile);
            initialised?;
        }
        if cluster.is_running() {
            tracing::warn!(dir = %data_dir.display(), "the private cluster was already running; restarting it");
            cluster.run("pg_ctl", &["-D", &cluster.data_arg(), "-m", "fast", "-w", "stop"])?;
        }
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {}",
            cluster.data_arg()
        );
        let log = data_dir.join("server.log");
        cluster
            .run(
                "pg_ctl",
                &["-D", &cluster.data_arg(), "-l", &log.to_string_lossy(), "-o", &options, "-w", "-t", "60", "start"],
            )
            .with_context(|| format!("starting the private cluster; see {}", log.display()))?;
        tracing::info!(dir = %data_dir.display(), port, "private PostgreSQL cluster started");
        Ok(cluster)
    }

    /// A 0600 file with the password for initdb, readable by the user the cluster runs as, next
    /// to (not inside) the data directory, which initdb wants empty.
    fn password_file(&self, password: &str) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let parent = self.data_dir.parent().unwrap_or(&self.data_dir);
        let path = parent.join(format!(".pcx-initdb-password-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        file.write_all(password.as_bytes())?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        }
        Ok(path)
    }

    /// A cluster an older version created with `trust` authentication gets the password and
    /// SCRAM-only `pg_hba.conf` rules; a cluster made with a password is left as it is.
    async fn require_passwords(&self, options: &PgConnectOptions, password: &str) -> anyhow::Result<()> {
        let hba = self.data_dir.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).with_context(|| format!("reading {}", hba.display()))?;
        let trusting = |line: &str| !line.trim_start().starts_with('#') && line.split_whitespace().last() == Some("trust");
        if !rules.lines().any(trusting) {
            return Ok(());
        }
        tracing::warn!(file = %hba.display(), "the private cluster trusts every local connection (made by an older pcx); setting a password and SCRAM authentication");
        let password = password.replace('\'', "''");
        let mut conn = sqlx::PgConnection::connect_with(options).await.context("connecting to the private cluster")?;
        sqlx::raw_sql(&format!("ALTER ROLE postgres PASSWORD '{password}'")).execute(&mut conn).await?;
        conn.close().await.ok();
        let rewritten: String = rules
            .lines()
            .map(|line| match trusting(line) {
                true => format!("{} scram-sha-256\n", line.trim_end().trim_end_matches("trust").trim_end()),
                false => format!("{line}\n"),
            })
            .collect();
        std::fs::write(&hba, rewritten).with_context(|| format!("writing {}", hba.display()))?;
        self.run("pg_ctl", &["-D", &self.data_arg(), "reload"])?;
        Ok(())
    }

    fn data_arg(&self) -> String {
        self.data_dir.to_string_lossy().into_owned()
    }

    fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .args(["-D", &self.data_arg(), "status"])
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        if let Some((uid, gid)) = self.run_as {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        command.current_dir(&self.data_dir);
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let output = self
            .command(program)
            .args(args)
            .output()
            .with_context(|| format!("running {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// Stops the cluster (fast shutdown), waiting for it to go down.
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        match self.run("pg_ctl", &["-D", &self.data_arg(), "-m", "fast", "-w", "stop"]) {
            Ok(()) => tracing::info!(dir = %self.data_dir.display(), "private PostgreSQL cluster stopped"),
            Err(err) => tracing::warn!(%err, "stopping the private cluster failed"),
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The directory holding `initdb` and `pg_ctl`: the newest `/usr/lib/postgresql/<v>/bin`, else PATH.
fn find_postgres_bin_dir() -> Option<PathBuf> {
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versioned.sort();
    if let Some((_, bin)) = versioned.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").exists() && dir.join("pg_ctl").exists())
    })
}

/// uid and gid of `postgres`, else `nobody`, from /etc/passwd.
fn unprivileged_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let lookup = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name) && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    lookup("postgres").or_else(|| lookup("nobody"))
}
