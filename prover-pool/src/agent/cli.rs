//! Command-line types of `pcx prover` and `pcx prover bench`, and where proving keys and
//! registered circuits' artifacts are cached.
//!
//! Everything here is plain data: parsing never touches the network or the disk. Values that clap
//! cannot check alone (sizes against the circuit registry, at least one worker, a claim wait of at
//! most 30 s, circuit ids of 64 lowercase hex digits) are checked by [`AgentArgs::validate`] and
//! [`BenchArgs::sizes`], so agents built in-process (tests, `pcx demo`) get the same checks.
//! Whether `--backend icicle` can be used is only known by loading ICICLE, which `super::select`
//! does; whether a circuit id is registered and ready, only by asking the exchange, which
//! `super::circuits` does at start.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::registry::CIRCUITS;

/// The built-in circuit the agent always proves (registered circuits come with `--circuits`).
pub(crate) const CIRCUIT: &str = "hash-chain";
/// Longest long-poll the exchange accepts on `POST /v1/agent/jobs/claim`.
pub(crate) const MAX_CLAIM_WAIT_SECS: u32 = 30;
/// Sizes `pcx prover bench` measures when given none.
const DEFAULT_BENCH_SIZES: [u8; 4] = [10, 12, 14, 16];

/// `pcx prover`: run the prover agent, or (`pcx prover bench`) measure this machine.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProverCli {
    /// `bench`, or none to run the agent.
    #[command(subcommand)]
    pub command: Option<ProverCommand>,
    /// Options of the agent (used when no subcommand is given).
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// Subcommands of `pcx prover`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ProverCommand {
    /// Measures prove time and proofs/hour per size (with ICICLE: MSM and prove times next to the
    /// CPU backend's, and a check that both give the same results).
    Bench(BenchArgs),
    /// Loads ICICLE as ICICLE_FRONTEND_DIR, ICICLE_BACKEND_INSTALL_DIR and ICICLE_DEVICE say and
    /// checks its MSMs against arkworks; exits non-zero if it cannot be used. The agent and the
    /// benchmark run this in a child process before loading ICICLE themselves.
    IcicleSelfTest,
}

/// Which MSM backend proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// ICICLE on a GPU when one is registered and passes the self-test against arkworks, else
    /// the CPU (the reason is logged and sent in heartbeats).
    #[default]
    Auto,
    /// arkworks multi-scalar multiplication on the CPU.
    Cpu,
    /// ICICLE (loaded at run time from ICICLE_FRONTEND_DIR, default /opt/icicle/lib; device
    /// ICICLE_DEVICE, default CUDA); an error if it is missing or fails its self-test.
    Icicle,
}

/// Misbehaviour on purpose, to exercise the exchange's penalties. TESTING AID only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Claims jobs and never delivers them (no proof, no release): every claimed slot is missed.
    Miss,
    /// Submits well-formed proofs that fail to verify: for `hash-chain` one made for another public
    /// input (the job's seed + 1), for a registered circuit the job's proof with its A point negated.
    Invalid,
}

/// Options of the prover agent (`pcx prover`).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Base URL of the exchange: `https://...`, or `http://...` on loopback only (127.0.0.0/8,
    /// ::1, `localhost`) unless --allow-insecure-http is given, since the API key is sent to it.
    #[arg(long, env = "PCX_EXCHANGE_URL", default_value = "http://127.0.0.1:8080")]
    pub exchange: String,
    /// Lets --exchange be a plain `http://` URL of a host that is not loopback. The API key and
    /// every token then travel in clear (a loud warning is logged at start); use TLS instead. The
    /// variable takes true/false, yes/no, on/off or 1/0.
    #[arg(long, env = "PCX_AGENT_ALLOW_INSECURE_HTTP", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_insecure_http: bool,
    /// PEM file of one or more CA certificates trusted for an `https://` exchange besides the
    /// system's roots and the bundled Mozilla roots (a self-hosted exchange with a private CA or a
    /// self-signed certificate).
    #[arg(long, env = "PCX_EXCHANGE_CA_FILE", value_name = "PEM")]
    pub exchange_ca_file: Option<PathBuf>,
    /// API key of the prover account (required to run the agent).
    #[arg(long, env = "PCX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Worker tasks proving in parallel; each claims one job at a time.
    #[arg(long, env = "PCX_PROVER_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// MSM backend: `auto` uses ICICLE on a GPU when it is installed and agrees with arkworks,
    /// else the CPU.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// TESTING AID, never for real capacity: `miss` claims jobs and never delivers them;
    /// `invalid` submits well-formed proofs that do not verify.
    #[arg(long, value_enum)]
    pub fault: Option<Fault>,
    /// Where the exchange's proving keys are downloaded and cached (checked against the sha256 the
    /// exchange states at every start) [default: $PCX_DATA_DIR/keys, else
    /// $XDG_CACHE_HOME/pcx/keys, else ~/.cache/pcx/keys, else ./.pcx/keys].
    #[arg(long, env = "PCX_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
    /// Sizes (log2 of the constraint count) benchmarked at start and then served, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,11,12")]
    pub sizes: Vec<u8>,
    /// Seconds between heartbeats until the exchange states its own interval.
    #[arg(long, default_value_t = 10)]
    pub heartbeat_secs: u64,
    /// Seconds the exchange may hold a claim open waiting for a job (long-poll), 0 to 30.
    #[arg(long, default_value_t = 20)]
    pub claim_wait_secs: u32,
    /// Registered circuits to serve besides `hash-chain`: `all` (every circuit the exchange lists
    /// as ready when the agent starts) or circuit ids (64 lowercase hex digits), comma-separated
    /// [default: none, only `hash-chain`]. Each is downloaded (cached in --circuits-dir), checked
    /// and benchmarked on its sample input before it is advertised.
    #[arg(long, env = "PCX_AGENT_CIRCUITS", value_delimiter = ',', value_name = "all|ID[,ID...]")]
    pub circuits: Vec<String>,
    /// Where registered circuits' artifacts are cached, one folder per circuit id (files are
    /// checked against their sha256 before use) [default: the `circuits` folder of the keys
    /// directory].
    #[arg(long, env = "PCX_AGENT_CIRCUITS_DIR")]
    pub circuits_dir: Option<PathBuf>,
}

/// Which registered circuits the agent serves (`--circuits`), checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CircuitSelection {
    /// Only `hash-chain`.
    None,
    /// Every circuit the exchange lists as ready at start.
    All,
    /// These circuit ids, sorted, without repeats.
    Ids(Vec<String>),
}

/// Whether `id` is a circuit id: 64 lowercase hex digits. (Ids name cache folders: this is also
/// what keeps an id from being a path.)
pub(crate) fn is_circuit_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl AgentArgs {
    /// The defaults of the command line, for agents run in-process (tests, `pcx demo`); environment
    /// variables are not read.
    pub fn new(exchange: impl Into<String>, api_key: impl Into<String>) -> AgentArgs {
        AgentArgs {
            exchange: exchange.into(),
            allow_insecure_http: false,
            exchange_ca_file: None,
            api_key: Some(api_key.into()),
            workers: 1,
            backend: BackendChoice::Auto,
            fault: None,
            keys_dir: None,
            sizes: vec![10, 11, 12],
            heartbeat_secs: 10,
            claim_wait_secs: 20,
            circuits: Vec::new(),
            circuits_dir: None,
        }
    }

    /// Checks what clap cannot, and returns the sizes to serve, sorted and without repeats.
    pub(crate) fn validate(&self) -> anyhow::Result<Vec<u8>> {
        match self.api_key.as_deref().map(str::trim) {
            None | Some("") => {
                bail!("the prover agent needs the API key of a prover account: pass --api-key or set PCX_API_KEY")
            }
            Some(_) => {}
        }
        self.exchange_transport()?;
        if self.workers == 0 {
            bail!("--workers must be at least 1");
        }
        if self.heartbeat_secs == 0 {
            bail!("--heartbeat-secs must be at least 1");
        }
        if self.claim_wait_secs > MAX_CLAIM_WAIT_SECS {
            bail!("--claim-wait-secs must be 0 to {MAX_CLAIM_WAIT_SECS}, not {}", self.claim_wait_secs);
        }
        self.circuit_selection()?;
        checked_sizes(&self.sizes, "--sizes")
    }

    /// How the agent reaches `--exchange`, checked with [`exchange_transport`] under
    /// `--allow-insecure-http`.
    pub(crate) fn exchange_transport(&self) -> anyhow::Result<Transport> {
        exchange_transport(&self.exchange, self.allow_insecure_http)
    }

    /// `--circuits`, checked: `all`, or ids of 64 lowercase hex digits (empty items are ignored, so
    /// an empty `PCX_AGENT_CIRCUITS` means none).
    pub(crate) fn circuit_selection(&self) -> anyhow::Result<CircuitSelection> {
        let items: Vec<&str> = self.circuits.iter().map(|item| item.trim()).filter(|item| !item.is_empty()).collect();
        if items.is_empty() {
            return Ok(CircuitSelection::None);
        }
        if items.contains(&"all") {
            if items.len() > 1 {
                bail!("--circuits: `all` already means every ready circuit; give it alone or list circuit ids");
            }
            return Ok(CircuitSelection::All);
        }
        if let Some(bad) = items.iter().find(|item| !is_circuit_id(item)) {
            bail!(
                "--circuits: `{bad}` is not a circuit id (64 lowercase hex digits, as `GET /v1/circuits` lists them) \
                 nor `all`"
            );
        }
        let mut ids: Vec<String> = items.iter().map(|item| (*item).to_string()).collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(CircuitSelection::Ids(ids))
    }

    /// The keys directory: `--keys-dir`, else [`default_keys_dir`].
    pub(crate) fn keys_dir(&self) -> PathBuf {
        self.keys_dir.clone().unwrap_or_else(default_keys_dir)
    }

    /// The artifacts cache: `--circuits-dir`, else `circuits` in [`AgentArgs::keys_dir`].
    pub(crate) fn circuits_dir(&self) -> PathBuf {
        self.circuits_dir.clone().unwrap_or_else(|| self.keys_dir().join("circuits"))
    }
}

/// How the agent reaches the exchange, which it sends its API key (and then bearer tokens) to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// `https://`: TLS, the server's certificate checked.
    Https,
    /// `http://` to this machine (127.0.0.0/8, ::1, `localhost`): nothing leaves it.
    LoopbackHttp,
    /// `http://` to another machine, allowed by `--allow-insecure-http`: the API key travels in
    /// clear.
    InsecureHttp,
}

/// Checks an exchange URL (`--exchange`, also each redirect's target): `https://` is fine,
/// `http://` only to a loopback host unless `allow_insecure_http`; anything else (another scheme,
/// no scheme, not a URL) is an error naming the option.
pub(crate) fn exchange_transport(url: &str, allow_insecure_http: bool) -> anyhow::Result<Transport> {
    let parsed = reqwest::Url::parse(url).with_context(|| {
        format!("--exchange / PCX_EXCHANGE_URL `{url}` is not a URL (e.g. https://exchange.example or http://127.0.0.1:8080)")
    })?;
    match parsed.scheme() {
        "https" => Ok(Transport::Https),
        "http" if is_loopback(&parsed) => Ok(Transport::LoopbackHttp),
        "http" if allow_insecure_http => Ok(Transport::InsecureHttp),
        "http" => bail!(
            "--exchange / PCX_EXCHANGE_URL `{url}` is plain http:// to a host that is not loopback: the API key \
             would travel in clear. Use https://, or pass --allow-insecure-http (PCX_AGENT_ALLOW_INSECURE_HTTP=true) \
             to accept that"
        ),
        other => bail!(
            "--exchange / PCX_EXCHANGE_URL `{url}`: the scheme `{other}` is neither https nor http (e.g. \
             https://exchange.example or http://127.0.0.1:8080)"
        ),
    }
}

/// Whether the URL's host is this machine: 127.0.0.0/8, ::1 (also as ::ffff:127.x.y.z), or the
/// name `localhost` (resolved by the system, by convention to loopback).
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    // The URL parser has already normalised IP addresses (`127.1` is `127.0.0.1`, IPv6 in brackets).
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => host.strip_suffix('.').unwrap_or(host).eq_ignore_ascii_case("localhost"),
    }
}

/// Options of `pcx prover bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// MSM backend: `auto` uses ICICLE on a GPU when it is installed and agrees with arkworks,
    /// else the CPU. With ICICLE the table compares it with the CPU backend, and the command
    /// fails unless both give the same MSMs and proofs.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Measure this one size (log2 of the constraint count) [default: 10, 12, 14 and 16].
    #[arg(long, conflicts_with = "max_size_log2")]
    pub size_log2: Option<u8>,
    /// Measure every even size from 10 up to this one (e.g. 18).
    #[arg(long)]
    pub max_size_log2: Option<u8>,
    /// Proofs per size; the table shows their median.
    #[arg(long, default_value_t = 3)]
    pub repetitions: usize,
    /// Where proving keys are read, and development keys generated once and cached for sizes
    /// without one [default: as for the agent].
    #[arg(long, env = "PCX_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
}

impl BenchArgs {
    /// The sizes to measure, checked against the circuit registry.
    pub(crate) fn sizes(&self) -> anyhow::Result<Vec<u8>> {
        let sizes: Vec<u8> = match (self.size_log2, self.max_size_log2) {
            (Some(size), _) => vec![size],
            (None, Some(max)) => {
                let (min, _) = size_range();
                let first = min + min % 2;
                if max < first {
                    bail!("--max-size-log2 must be at least {first}, not {max}");
                }
                (first..=max).step_by(2).collect()
            }
            (None, None) => DEFAULT_BENCH_SIZES.to_vec(),
        };
        if self.repetitions == 0 {
            bail!("--repetitions must be at least 1");
        }
        checked_sizes(&sizes, "the size")
    }
}

/// The traded size range of the hash-chain circuit, from the registry.
pub(crate) fn size_range() -> (u8, u8) {
    CIRCUITS.iter().find(|spec| spec.name == CIRCUIT).map_or((10, 20), |spec| (spec.min_size_log2, spec.max_size_log2))
}

/// Sorted, without repeats, each within the registry's range.
fn checked_sizes(sizes: &[u8], what: &str) -> anyhow::Result<Vec<u8>> {
    let (min, max) = size_range();
    if sizes.is_empty() {
        bail!("{what}: give at least one size from {min} to {max}");
    }
    if let Some(bad) = sizes.iter().find(|size| !(min..=max).contains(*size)) {
        bail!("{what}: size_log2 {bad} is not traded for `{CIRCUIT}`; use {min} to {max}");
    }
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    Ok(sizes)
}

/// Where proving keys are cached when `--keys-dir` is not given. The first of:
/// 1. `$PCX_KEYS_DIR`;
/// 2. `$PCX_DATA_DIR/keys` (next to the exchange's embedded database);
/// 3. `$XDG_CACHE_HOME/pcx/keys`;
/// 4. `$HOME/.cache/pcx/keys`;
/// 5. `./.pcx/keys` (relative to the working directory).
///
/// Variables that are set but empty count as unset. The agent's keys there are the exchange's,
/// checked against its sha256 at every start, so deleting the directory only costs downloading them
/// again; `pcx prover bench` adds deterministic development keys for sizes without one.
pub fn default_keys_dir() -> PathBuf {
    keys_dir_from(|name| std::env::var_os(name).map(PathBuf::from))
}

/// [`default_keys_dir`] over any variable lookup (testable without touching the environment).
fn keys_dir_from(var: impl Fn(&str) -> Option<PathBuf>) -> PathBuf {
    let var = |name: &str| var(name).filter(|value| !value.as_os_str().is_empty());
    if let Some(dir) = var("PCX_KEYS_DIR") {
        return dir;
    }
    if let Some(dir) = var("PCX_DATA_DIR") {
        return dir.join("keys");
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return dir.join("pcx").join("keys");
    }
    if let Some(dir) = var("HOME") {
        return dir.join(".cache").join("pcx").join("keys");
    }
    PathBuf::from(".pcx").join("keys")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    /// Stands in for the `pcx` binary.
    #[derive(Debug, Parser)]
    struct Pcx {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Prover(ProverCli),
    }

    fn parse(args: &[&str]) -> Result<ProverCli, clap::Error> {
        let argv = ["pcx", "prover"].iter().chain(args).copied();
        Pcx::try_parse_from(argv).map(|pcx| match pcx.command {
            Top::Prover(cli) => cli,
        })
    }

    #[test]
    fn agent_options_parse() {
        let cli = parse(&["--exchange", "https://x:1", "--api-key", "K", "--workers", "2", "--fault", "miss"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.agent.exchange, "https://x:1");
        assert!(!cli.agent.allow_insecure_http);
        assert_eq!(cli.agent.exchange_ca_file, None);
        assert_eq!(cli.agent.api_key.as_deref(), Some("K"));
        assert_eq!(cli.agent.workers, 2);
        assert_eq!(cli.agent.fault, Some(Fault::Miss));
        assert_eq!(cli.agent.backend, BackendChoice::Auto);
        assert_eq!(cli.agent.claim_wait_secs, 20);
        assert_eq!(cli.agent.heartbeat_secs, 10);
        assert_eq!(cli.agent.validate().unwrap(), vec![10, 11, 12]);
    }

    #[test]
    fn sizes_are_a_comma_list_checked_against_the_registry() {
        let cli = parse(&["--api-key", "K", "--sizes", "12,10,12", "--fault", "invalid"]).unwrap();
        assert_eq!(cli.agent.validate().unwrap(), vec![10, 12]);
        assert_eq!(cli.agent.fault, Some(Fault::Invalid));
        let cli = parse(&["--api-key", "K", "--sizes", "9,12"]).unwrap();
        let err = cli.agent.validate().unwrap_err().to_string();
        assert!(err.contains("size_log2 9 is not traded"), "{err}");
    }

    #[test]
    fn circuits_are_all_or_a_list_of_ids() {
        let cli = parse(&["--api-key", "K"]).unwrap();
        assert_eq!(cli.agent.circuit_selection().unwrap(), CircuitSelection::None);
        let cli = parse(&["--api-key", "K", "--circuits", "all"]).unwrap();
        assert_eq!(cli.agent.circuit_selection().unwrap(), CircuitSelection::All);
        let (a, b) = ("0a".repeat(32), "f1".repeat(32));
        let cli = parse(&["--api-key", "K", "--circuits", &format!("{b},{a},{b}")]).unwrap();
        assert_eq!(cli.agent.circuit_selection().unwrap(), CircuitSelection::Ids(vec![a.clone(), b.clone()]));
        assert_eq!(cli.agent.validate().unwrap(), vec![10, 11, 12]);

        for bad in [format!("all,{a}"), a.to_uppercase(), a[..63].to_string(), format!("{a}0"), "../x".into()] {
            let cli = parse(&["--api-key", "K", "--circuits", &bad]).unwrap();
            let err = cli.agent.validate().unwrap_err().to_string();
            assert!(err.starts_with("--circuits"), "{bad}: {err}");
        }
        let cli = parse(&["--api-key", "K", "--circuits", ""]).unwrap();
        assert_eq!(cli.agent.circuit_selection().unwrap(), CircuitSelection::None);
    }

    #[test]
    fn the_circuits_cache_defaults_to_a_folder_of_the_keys_dir() {
        let cli = parse(&["--api-key", "K", "--keys-dir", "/k"]).unwrap();
        assert_eq!(cli.agent.circuits_dir(), PathBuf::from("/k/circuits"));
        let cli = parse(&["--api-key", "K", "--keys-dir", "/k", "--circuits-dir", "/c"]).unwrap();
        assert_eq!(cli.agent.circuits_dir(), PathBuf::from("/c"));
        assert_eq!(AgentArgs::new("http://x", "k").circuit_selection().unwrap(), CircuitSelection::None);
    }

    #[test]
    fn bench_parses_as_a_subcommand() {
        let cli = parse(&["bench", "--size-log2", "12"]).unwrap();
        let Some(ProverCommand::Bench(bench)) = cli.command else { panic!("no bench: {cli:?}") };
        assert_eq!(bench.size_log2, Some(12));
        assert_eq!(bench.repetitions, 3);
        assert_eq!(bench.sizes().unwrap(), vec![12]);
    }

    #[test]
    fn bench_sizes_default_and_range() {
        let cli = parse(&["bench"]).unwrap();
        let Some(ProverCommand::Bench(bench)) = cli.command else { panic!("no bench") };
        assert_eq!(bench.sizes().unwrap(), vec![10, 12, 14, 16]);
        let cli = parse(&["bench", "--max-size-log2", "18", "--backend", "cpu"]).unwrap();
        let Some(ProverCommand::Bench(bench)) = cli.command else { panic!("no bench") };
        assert_eq!(bench.sizes().unwrap(), vec![10, 12, 14, 16, 18]);
        assert_eq!(bench.backend, BackendChoice::Cpu);
        assert!(parse(&["bench", "--size-log2", "12", "--max-size-log2", "18"]).is_err());
        let cli = parse(&["bench", "--size-log2", "30"]).unwrap();
        let Some(ProverCommand::Bench(bench)) = cli.command else { panic!("no bench") };
        assert!(bench.sizes().is_err());
    }

    #[test]
    fn the_icicle_self_test_is_a_subcommand() {
        let cli = parse(&["icicle-self-test"]).unwrap();
        assert!(matches!(cli.command, Some(ProverCommand::IcicleSelfTest)), "{cli:?}");
        let cli = parse(&["bench", "--backend", "icicle", "--size-log2", "16"]).unwrap();
        let Some(ProverCommand::Bench(bench)) = cli.command else { panic!("no bench") };
        assert_eq!(bench.backend, BackendChoice::Icicle);
    }

    #[test]
    fn agent_options_do_not_mix_with_bench() {
        assert!(parse(&["--workers", "2", "bench"]).is_err());
    }

    #[test]
    fn a_missing_api_key_is_a_clear_error() {
        let mut args = AgentArgs::new("http://127.0.0.1:8080", "");
        let err = args.validate().unwrap_err().to_string();
        assert!(err.contains("--api-key") && err.contains("PCX_API_KEY"), "{err}");
        args.api_key = None;
        assert!(args.validate().is_err());
        args.api_key = Some("k".into());
        args.claim_wait_secs = 31;
        assert!(args.validate().is_err());
        args.claim_wait_secs = 30;
        args.workers = 0;
        assert!(args.validate().is_err());
    }

    #[test]
    fn https_is_always_fine_and_http_only_on_loopback() {
        for url in ["https://exchange.example", "https://203.0.113.7:8443/", "https://[2001:db8::1]", "HTTPS://x"] {
            assert_eq!(exchange_transport(url, false).unwrap(), Transport::Https, "{url}");
        }
        let loopback = [
            "http://127.0.0.1:8080",
            "http://127.255.0.9",
            "http://127.1",
            "http://[::1]:8080",
            "http://[::ffff:127.0.0.1]",
            "http://localhost:8080",
            "http://LOCALHOST.",
        ];
        for url in loopback {
            assert_eq!(exchange_transport(url, false).unwrap(), Transport::LoopbackHttp, "{url}");
            assert_eq!(exchange_transport(url, true).unwrap(), Transport::LoopbackHttp, "{url}");
        }
    }

    #[test]
    fn plain_http_off_loopback_needs_allow_insecure_http() {
        let off_loopback = [
            "http://exchange.example",
            "http://10.0.0.5:8080",
            "http://0.0.0.0:8080",
            "http://[2001:db8::1]",
            "http://localhost.example",
            "http://128.0.0.1",
        ];
        for url in off_loopback {
            let err = exchange_transport(url, false).unwrap_err().to_string();
            assert!(err.starts_with("--exchange / PCX_EXCHANGE_URL"), "{url}: {err}");
            assert!(err.contains("--allow-insecure-http") && err.contains("PCX_AGENT_ALLOW_INSECURE_HTTP"), "{err}");
            assert_eq!(exchange_transport(url, true).unwrap(), Transport::InsecureHttp, "{url}");
        }
        let cli = parse(&["--api-key", "K", "--exchange", "http://exchange.example"]).unwrap();
        assert!(cli.agent.validate().unwrap_err().to_string().contains("--allow-insecure-http"));
        let cli = parse(&["--api-key", "K", "--exchange", "http://exchange.example", "--allow-insecure-http"]).unwrap();
        assert_eq!(cli.agent.validate().unwrap(), vec![10, 11, 12]);
        assert_eq!(cli.agent.exchange_transport().unwrap(), Transport::InsecureHttp);
        // The default is loopback.
        assert_eq!(parse(&["--api-key", "K"]).unwrap().agent.exchange_transport().unwrap(), Transport::LoopbackHttp);
    }

    #[test]
    fn other_schemes_and_bare_hosts_are_errors_naming_the_option() {
        for url in ["ftp://exchange.example", "localhost:8080", "ws://127.0.0.1", "file:///tmp/x"] {
            let err = exchange_transport(url, true).unwrap_err().to_string();
            assert!(
                err.starts_with("--exchange / PCX_EXCHANGE_URL") && err.contains("neither https nor http"),
                "{err}"
            );
        }
        for url in ["127.0.0.1:8080", "exchange.example", "", "http://"] {
            let err = exchange_transport(url, true).unwrap_err().to_string();
            assert!(err.starts_with("--exchange / PCX_EXCHANGE_URL") && err.contains("not a URL"), "{url}: {err}");
        }
    }

    #[test]
    fn the_ca_file_is_an_option() {
        let cli =
            parse(&["--api-key", "K", "--exchange", "https://x", "--exchange-ca-file", "/etc/pcx/ca.pem"]).unwrap();
        assert_eq!(cli.agent.exchange_ca_file, Some(PathBuf::from("/etc/pcx/ca.pem")));
    }

    #[test]
    fn keys_dir_precedence() {
        let env = |pairs: &[(&str, &str)]| {
            let map: HashMap<String, PathBuf> = pairs.iter().map(|(k, v)| (k.to_string(), PathBuf::from(v))).collect();
            keys_dir_from(move |name| map.get(name).cloned())
        };
        let all = [("PCX_KEYS_DIR", "/k"), ("PCX_DATA_DIR", "/d"), ("XDG_CACHE_HOME", "/x"), ("HOME", "/h")];
        assert_eq!(env(&all), PathBuf::from("/k"));
        assert_eq!(env(&all[1..]), PathBuf::from("/d/keys"));
        assert_eq!(env(&all[2..]), PathBuf::from("/x/pcx/keys"));
        assert_eq!(env(&all[3..]), PathBuf::from("/h/.cache/pcx/keys"));
        assert_eq!(env(&[]), PathBuf::from(".pcx/keys"));
        assert_eq!(env(&[("PCX_KEYS_DIR", ""), ("HOME", "/h")]), PathBuf::from("/h/.cache/pcx/keys"));
    }
}
