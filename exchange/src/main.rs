//! `pcx`: the proof-capacity exchange's one binary.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use pcx_exchange::bench::{CircomBenchArgs, ContractsBenchArgs, DeliveriesBenchArgs, LedgerBenchArgs, OracleBenchArgs, SchedulerBenchArgs};
use pcx_exchange::config::{DbConfig, ServeConfig};

#[derive(Debug, Parser)]
#[command(name = "pcx", version, about = "Proof-capacity exchange and pricing oracle")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the exchange (HTTP API). With no DATABASE_URL it uses the embedded default database.
    Serve(ServeConfig),
    /// Apply the database migrations and exit.
    Migrate(DbConfig),
    /// Print the OpenAPI document (JSON) of the HTTP API.
    Openapi,
    /// Run a prover agent next to your GPUs/CPUs, or benchmark this machine (`pcx prover bench`).
    Prover(pcx_prover_pool::agent::ProverCli),
    /// Run the whole market on this machine for a few minutes: exchange, three prover agents (one
    /// missing on purpose) and a buyer; prints live progress and a summary.
    Demo(pcx_exchange::demo::DemoArgs),
    /// The exchange's generated secrets (in `<data dir>/secrets/`, mode 0600).
    Secrets {
        /// What to do.
        #[command(subcommand)]
        which: SecretsCommand,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// A new JWT secret; tokens signed with the old one stay valid for `--grace-secs` (default:
    /// one token lifetime). Servers pick it up when they (re)start.
    RotateJwt {
        /// How long tokens of the old secret are still accepted, in seconds.
        #[arg(long, env = "PCX_TOKEN_TTL_SECS", default_value_t = 3600)]
        grace_secs: u32,
        /// Where the data directory is.
        #[command(flatten)]
        db: DbConfig,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Durable money movements per second through the API against bare INSERT commits.
    Ledger(LedgerBenchArgs),
    /// Quote + accept latency of one-year hourly contracts across 50 provers; rows per contract.
    Contracts(ContractsBenchArgs),
    /// Verified deliveries per second through the API against raw Groth16 verifications.
    Deliveries(DeliveriesBenchArgs),
    /// The settlement scheduler with 10,000 one-year hourly contracts: rows and time per tick.
    Scheduler(SchedulerBenchArgs),
    /// Oracle latest-price reads vs a bare axum handler; aggregation time; SSE fan-out.
    Oracle(OracleBenchArgs),
    /// A circom circuit: our witness and proof against snarkjs' prover, and registration time.
    Circom(CircomBenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PCX_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole chain of causes on one line, without a backtrace.
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(config) => pcx_exchange::serve(config).await,
            Command::Migrate(config) => {
                let database = pcx_exchange::db::Database::open(&config).await?;
                tracing::info!(database = %database.description, "migrations applied");
                database.close().await;
                Ok(())
            }
            Command::Prover(cli) => pcx_prover_pool::agent::main(cli).await,
            Command::Demo(args) => pcx_exchange::demo::run(args).await,
            Command::Secrets { which: SecretsCommand::RotateJwt { grace_secs, db } } => {
                let dir = pcx_exchange::secrets::SecretsDir::new(&db.resolved_data_dir());
                let until = chrono::Utc::now() + chrono::Duration::seconds(i64::from(grace_secs));
                pcx_exchange::secrets::rotate_jwt(&dir, &pcx_exchange::auth::random_hex(32), until)?;
                println!(
                    "rotated the JWT secret in {}; tokens of the old one are accepted until {} by servers (re)started now",
                    dir.path(pcx_exchange::secrets::JWT_SECRET).display(),
                    until.to_rfc3339()
                );
                Ok(())
            }
            Command::Openapi => {
                println!("{}", pcx_exchange::routes::openapi().to_pretty_json()?);
                Ok(())
            }
            Command::Bench { which: BenchCommand::Ledger(args) } => pcx_exchange::bench::ledger(args).await,
            Command::Bench { which: BenchCommand::Contracts(args) } => pcx_exchange::bench::contracts(args).await,
            Command::Bench { which: BenchCommand::Deliveries(args) } => pcx_exchange::bench::deliveries(args).await,
            Command::Bench { which: BenchCommand::Scheduler(args) } => pcx_exchange::bench::scheduler(args).await,
            Command::Bench { which: BenchCommand::Oracle(args) } => pcx_exchange::bench::oracle(args).await,
            Command::Bench { which: BenchCommand::Circom(args) } => pcx_exchange::bench::circom(args).await,
        }
    });
    // A proof abandoned at shutdown keeps its blocking thread busy; don't wait for it forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    outcome
}
