//! The running agent: start-up, heartbeats, the claim → prove → submit workers, and shutdown.
//!
//! `hash-chain` is proved only with the exchange's keys: before a size is benchmarked its proving
//! key is made the exchange's (`super::exchange_keys`), and the key store never generates one.
//!
//! A job is dispatched on its proof class's circuit: `hash-chain` is proved from its
//! `public_input` seed with the cached keys of its size; a registered circuit this agent serves
//! (`--circuits`, prepared at start by `super::circuits`) from its `input` object with that
//! circuit's zkey. Both go through the same book, proof submission and release paths, so what
//! follows holds for either.
//!
//! Invariants:
//! - At most one proof is ever made per job: the [`JobBook`] records each job this agent holds or
//!   has proved, so a job the exchange hands out twice is proved once, and if it is claimed again
//!   after its proof was sent, the same proof bytes are sent again (never a second, different
//!   Groth16 proof, which would differ because proofs are randomised).
//! - A proof is submitted with `Idempotency-Key: <job_id>` and retried unchanged until the exchange
//!   answers, or the job's lease (converted to this machine's clock) plus [`LEASE_GRACE`] passes.
//! - `409 lease_lost`, `404` and any other refusal drop the job; nothing else is sent for it.
//! - A job the agent cannot or will not finish (unservable class, unparsable input, failed proof,
//!   shutdown) is released at once so the exchange can hand it to a backup; the `miss` fault is
//!   the one exception, on purpose.
//! - Shutdown: no claim starts after the signal. A long-poll already in flight is let return (at
//!   most `claim_wait_secs`) so a job the exchange handed out at that instant is not stranded: it
//!   is released. A proof in progress is finished and submitted when the benchmark says it can be
//!   done before both its lease and the drain limit ([`DRAIN_TIMEOUT`]); otherwise it is released.
//!   After the drain limit, retries stop and the remaining tasks are abandoned.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use ark_bn254::Fr;
use chrono::Utc;
use reqwest::StatusCode;
use serde::de::IgnoredAny;
use serde_json::Value;
use tokio::task::{JoinError, JoinSet};
use uuid::Uuid;

use super::api::{
    Capability, ClaimRequest, ClaimResponse, HeartbeatRequest, HeartbeatResponse, Job, SubmitRequest, SubmitResponse,
};
use super::circuits::{prepare_selected, ServedCircuit};
use super::cli::{AgentArgs, Fault, Transport, CIRCUIT};
use super::client::{CallError, CallOptions, Connection, ExchangeClient, CALL_TIMEOUT};
use super::exchange_keys::ensure_exchange_key;
use super::signal::Signal;
use super::{select_backend, TARGET};
use crate::keys::{KeyOrigin, KeyStore};
use crate::msm::MsmBackend;

/// How long shutdown waits for the workers to finish or release their jobs.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after its lease a proof may still be retried.
pub(crate) const LEASE_GRACE: Duration = Duration::from_secs(5);
/// Time kept for the submission when deciding at shutdown whether a proof can still be finished.
const SUBMIT_ALLOWANCE: Duration = Duration::from_secs(2);
/// Proof system name of the capabilities (as `pcx_domain::ProofSystem` serialises).
const SYSTEM: &str = "groth16-bn254";
/// Largest heartbeat interval taken from the exchange.
const MAX_HEARTBEAT: Duration = Duration::from_secs(300);
/// A claim answered faster than this with no job is followed by a pause (no busy loop with
/// `--claim-wait-secs 0`).
const MIN_CLAIM_CYCLE: Duration = Duration::from_secs(1);
/// The job book forgets settled jobs older than this.
const BOOK_TTL: Duration = Duration::from_secs(24 * 3600);
/// The job book prunes when it holds this many jobs.
const BOOK_LIMIT: usize = 10_000;
/// Most jobs a claim lists as in hand (the exchange takes up to 1024).
const MAX_IN_HAND: usize = 1000;

/// Runs the prover agent until `shutdown` resolves (then drains, see the module docs).
///
/// Order at start: check `--exchange` (`https://`, or `http://` on loopback unless
/// `--allow-insecure-http`, warned about loudly) and read `--exchange-ca-file`, before any request;
/// log in (a refused API key or TLS certificate ends it with an error before any proving key is
/// fetched), then for each size: wait until the exchange's setup of that size is made, make the
/// keys directory's proving key the exchange's (reused when its sha256 matches, else downloaded;
/// the agent never generates keys), load it and benchmark it once; then prepare the registered
/// circuits of `--circuits` (download or find in the cache, check, load, benchmark on the sample
/// input; a circuit named by id that cannot be served is an error), first heartbeat, then the
/// heartbeat task and the workers. Returns `Ok(())` after a clean shutdown, or the first fatal
/// error (refused credentials, a refused TLS certificate, an answer retrying cannot change, a size
/// whose key the exchange does not serve or that does not check out) after draining like a
/// shutdown.
pub async fn run_agent(args: AgentArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let sizes = args.validate()?;
    match args.exchange_transport()? {
        Transport::InsecureHttp => tracing::warn!(
            target: TARGET,
            exchange = %args.exchange,
            "INSECURE: --allow-insecure-http: the exchange is plain http:// to another machine, so the API key and \
             every bearer token travel IN CLEAR and anyone on the path can take over this prover account; use https://"
        ),
        Transport::Https | Transport::LoopbackHttp => {}
    }
    // Before the backend (whose ICICLE self-test may take minutes): a bad --exchange-ca-file fails now.
    let connection =
        Connection { allow_insecure_http: args.allow_insecure_http, ca_file: args.exchange_ca_file.clone() };
    let client = ExchangeClient::connect(&args.exchange, args.api_key.as_deref().unwrap_or_default(), &connection)?;
    let selection = args.circuit_selection()?;
    // Loading ICICLE and its self-test block for up to seconds (minutes for a first CUDA start).
    let choice = args.backend;
    let selected =
        tokio::task::spawn_blocking(move || select_backend(choice)).await.context("choosing the backend panicked")??;
    let (backend, backend_name) = (selected.backend, selected.label);

    let stop = Signal::new();
    let watcher = tokio::spawn({
        let stop = stop.clone();
        async move {
            shutdown.await;
            if stop.raise() {
                tracing::info!(target: TARGET, "shutdown requested: claiming no more jobs; finishing or releasing the jobs in hand");
            }
        }
    });
    let _watcher = AbortOnDrop(watcher);

    match args.fault {
        Some(Fault::Miss) => tracing::warn!(
            target: TARGET,
            "TESTING AID --fault miss: jobs are claimed and never delivered; every claimed slot will be missed"
        ),
        Some(Fault::Invalid) => tracing::warn!(
            target: TARGET,
            "TESTING AID --fault invalid: every proof will fail to verify (hash-chain: made for the job's seed + 1; \
             registered circuits: A point negated)"
        ),
        None => {}
    }

    tracing::info!(target: TARGET, exchange = %client.base(), "logging in");
    match client.login(&CallOptions::until_cancelled(&stop)).await {
        Ok(()) => {}
        Err(CallError::Cancelled) => return Ok(()),
        Err(err) => return Err(fatal(err, &client, "logging in")),
    }

    let keys = Arc::new(KeyStore::with_origin(args.keys_dir(), KeyOrigin::Provided));
    let timings = tokio::select! {
        timings = benchmark(&client, &keys, &backend, &sizes, &stop) => timings,
        () = stop.raised() => return Ok(()),
    };
    let timings = match timings {
        Ok(timings) => timings,
        // Shutdown interrupted a call or a wait: not a failure.
        Err(_) if stop.is_raised() => return Ok(()),
        Err(err) => return Err(err),
    };
    let circuits_dir = args.circuits_dir();
    let prepared = tokio::select! {
        prepared = prepare_selected(&client, &selection, &circuits_dir, &backend, &stop) => prepared,
        () = stop.raised() => return Ok(()),
    };
    let served = match prepared {
        Ok(served) => served,
        // Shutdown interrupted a call: not a failure.
        Err(_) if stop.is_raised() => return Ok(()),
        Err(err) => return Err(err),
    };
    let workers = args.workers;
    let capability = |circuit: String, size_log2: u8, prove: Duration, per_worker_hourly: u64| Capability {
        system: SYSTEM,
        circuit,
        size_log2,
        prove_ms: u64::try_from(prove.as_millis()).unwrap_or(u64::MAX).max(1),
        proofs_per_hour: per_worker_hourly.saturating_mul(u64::try_from(workers).unwrap_or(u64::MAX)),
    };
    let capabilities: Vec<Capability> = timings
        .iter()
        .map(|(size_log2, prove, per_worker_hourly)| capability(CIRCUIT.into(), *size_log2, *prove, *per_worker_hourly))
        .chain(served.iter().map(|circuit| {
            capability(circuit.id.clone(), circuit.size_log2, circuit.prove, circuit.proofs_per_hour)
        }))
        .collect();
    let circuit_ids: Vec<String> = served.iter().map(|circuit| circuit.id.clone()).collect();

    let agent = Arc::new(Agent {
        id: Uuid::new_v4(),
        client,
        keys,
        backend,
        backend_name,
        fault: args.fault,
        expected_prove: timings.iter().map(|(size, prove, _)| (*size, *prove)).collect(),
        sizes,
        circuits: served.into_iter().map(|circuit| (circuit.id.clone(), circuit)).collect(),
        circuit_ids,
        capabilities,
        workers,
        claim_wait_secs: args.claim_wait_secs,
        default_heartbeat: Duration::from_secs(args.heartbeat_secs),
        shutdown: stop,
        drain_expired: Signal::new(),
        drain_deadline: Mutex::new(None),
        book: JobBook::default(),
    });

    let every = tokio::select! {
        beat = agent.heartbeat() => match beat {
            Ok(every) => every,
            Err(CallError::Cancelled) => return Ok(()),
            Err(err) => return Err(fatal(err, &agent.client, "sending the first heartbeat")),
        },
        () = agent.shutdown.raised() => return Ok(()),
    };
    tracing::info!(
        target: TARGET,
        agent_id = %agent.id,
        workers,
        backend = %agent.backend_name,
        sizes = ?agent.sizes,
        circuits = ?agent.circuit_ids,
        heartbeat_secs = every.as_secs(),
        "serving: claiming jobs"
    );

    let mut tasks = JoinSet::new();
    tasks.spawn(Arc::clone(&agent).heartbeat_loop(every));
    for worker in 0..workers {
        tasks.spawn(Arc::clone(&agent).worker(worker));
    }
    agent.supervise(tasks).await
}

/// Makes each size's proving key the exchange's, then measures it once; `(size_log2, prove
/// time, proofs per hour on one worker)`.
async fn benchmark(
    client: &ExchangeClient,
    keys: &Arc<KeyStore>,
    backend: &Arc<dyn MsmBackend>,
    sizes: &[u8],
    cancel: &Signal,
) -> anyhow::Result<Vec<(u8, Duration, u64)>> {
    let mut timings = Vec::with_capacity(sizes.len());
    for &size_log2 in sizes {
        tracing::info!(
            target: TARGET,
            size_log2,
            keys_dir = %keys.dir().display(),
            "fetching the exchange's proving key of this size (reused when the cached one matches)"
        );
        ensure_exchange_key(client, keys, size_log2, cancel)
            .await
            .with_context(|| format!("getting the exchange's hash-chain 2^{size_log2} proving key"))?;
        tracing::info!(target: TARGET, size_log2, "benchmarking with the exchange's proving key");
        let (keys, backend) = (Arc::clone(keys), Arc::clone(backend));
        let timing =
            tokio::task::spawn_blocking(move || crate::bench::measure_prove(&keys, size_log2, backend.as_ref(), 1))
                .await
                .context("the benchmark panicked")?
                .with_context(|| format!("benchmarking size_log2 {size_log2}"))?;
        tracing::info!(
            target: TARGET,
            size_log2,
            prove_ms = timing.prove.as_millis() as u64,
            proofs_per_hour_per_worker = timing.proofs_per_hour,
            "benchmarked"
        );
        timings.push((size_log2, timing.prove, timing.proofs_per_hour));
    }
    Ok(timings)
}

/// The state shared by the tasks of one agent.
struct Agent {
    id: Uuid,
    client: ExchangeClient,
    keys: Arc<KeyStore>,
    backend: Arc<dyn MsmBackend>,
    /// What heartbeats say the backend is: its name, or `cpu (icicle: <why not>)`.
    backend_name: String,
    fault: Option<Fault>,
    /// Sizes of `hash-chain` served, sorted.
    sizes: Vec<u8>,
    /// The registered circuits served, by id.
    circuits: HashMap<String, Arc<ServedCircuit>>,
    /// Their ids, sorted: what claims list.
    circuit_ids: Vec<String>,
    /// One `hash-chain` proof on one worker, per size, from the start-up benchmark.
    expected_prove: HashMap<u8, Duration>,
    capabilities: Vec<Capability>,
    workers: usize,
    claim_wait_secs: u32,
    default_heartbeat: Duration,
    /// Raised once: stop claiming, finish or release.
    shutdown: Signal,
    /// Raised when the drain limit is over: stop retrying submissions and releases.
    drain_expired: Signal,
    /// Set by whoever first sees `shutdown`: when the drain ends.
    drain_deadline: Mutex<Option<Instant>>,
    book: JobBook,
}

impl Agent {
    /// Waits for shutdown (or a fatal task error, which starts one), then for the tasks.
    async fn supervise(&self, mut tasks: JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
        let mut failure: Option<anyhow::Error> = None;
        loop {
            tokio::select! {
                () = self.shutdown.raised() => break,
                joined = tasks.join_next() => match joined {
                    None => break,
                    Some(joined) => if let Some(err) = task_error(joined) {
                        tracing::error!(target: TARGET, error = format!("{err:#}"), "stopping the agent");
                        failure.get_or_insert(err);
                        self.shutdown.raise();
                    },
                },
            }
        }
        let deadline = self.drain_deadline();
        loop {
            match tokio::time::timeout_at(deadline.into(), tasks.join_next()).await {
                Ok(None) => break,
                Ok(Some(joined)) => {
                    if let Some(err) = task_error(joined) {
                        failure.get_or_insert(err);
                    }
                }
                Err(_) => {
                    self.drain_expired.raise();
                    tracing::warn!(
                        target: TARGET,
                        tasks = tasks.len(),
                        drain_secs = DRAIN_TIMEOUT.as_secs(),
                        "drain time is over; abandoning the tasks still running"
                    );
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while tasks.join_next().await.is_some() {}
                    })
                    .await;
                    tasks.abort_all();
                    break;
                }
            }
        }
        match failure {
            Some(err) => Err(err),
            None => {
                tracing::info!(target: TARGET, agent_id = %self.id, "agent stopped");
                Ok(())
            }
        }
    }

    /// When the drain after shutdown ends (fixed by the first caller).
    fn drain_deadline(&self) -> Instant {
        *self
            .drain_deadline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT)
    }

    /// One heartbeat (retried until answered or shutdown); the interval the exchange asks for.
    async fn heartbeat(&self) -> Result<Duration, CallError> {
        let body = HeartbeatRequest {
            agent_id: self.id,
            workers: self.workers,
            backend: &self.backend_name,
            capabilities: &self.capabilities,
        };
        let sent = Utc::now();
        let answer: HeartbeatResponse = self
            .client
            .post("heartbeat", "/v1/agent/heartbeat", &body, &CallOptions::until_cancelled(&self.shutdown))
            .await?;
        let received = Utc::now();
        // Only a quick round trip says much about the offset between the clocks.
        if let Some(exchange_time) = answer.server_time.filter(|_| received - sent < chrono::Duration::seconds(2)) {
            self.client.observe_exchange_clock(exchange_time, sent, received);
        }
        Ok(answer
            .heartbeat_secs
            .filter(|secs| *secs > 0)
            .map_or(self.default_heartbeat, |secs| Duration::from_secs(secs).min(MAX_HEARTBEAT)))
    }

    async fn heartbeat_loop(self: Arc<Self>, mut every: Duration) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.shutdown.raised() => return Ok(()),
            }
            let beat = tokio::select! {
                beat = self.heartbeat() => beat,
                () = self.shutdown.raised() => return Ok(()),
            };
            match beat {
                Ok(next) => every = next,
                Err(CallError::Cancelled) => return Ok(()),
                Err(err) => return Err(fatal(err, &self.client, "sending a heartbeat")),
            }
        }
    }

    /// Claims, proves and submits one job after the other until shutdown.
    async fn worker(self: Arc<Self>, worker: usize) -> anyhow::Result<()> {
        while !self.shutdown.is_raised() {
            let claim = ClaimRequest {
                agent_id: self.id,
                wait_secs: self.claim_wait_secs,
                sizes: &self.sizes,
                circuits: &self.circuit_ids,
                in_hand: self.book.in_hand(),
            };
            let options = CallOptions {
                timeout: Duration::from_secs(u64::from(self.claim_wait_secs) + 10),
                // One key per claim, the same on its retries: an exchange that honours it hands a
                // retried claim the job its lost answer carried.
                idempotency_key: Some(Uuid::new_v4().to_string()),
                retry_until: None,
                cancel: Some(self.shutdown.clone()),
            };
            let started = Instant::now();
            let answer: ClaimResponse = match self.client.post("claim", "/v1/agent/jobs/claim", &claim, &options).await
            {
                Ok(answer) => answer,
                Err(CallError::Cancelled) => break,
                Err(err) => return Err(fatal(err, &self.client, "claiming jobs")),
            };
            let Some(job) = answer.job else {
                let pause = MIN_CLAIM_CYCLE.saturating_sub(started.elapsed());
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = self.shutdown.raised() => break,
                }
                continue;
            };
            let lease = self.client.local_instant(job.lease_expires_at);
            tracing::info!(
                target: TARGET,
                worker,
                job_id = %job.job_id,
                contract_id = %job.contract_id,
                slot = job.slot,
                role = job.role.as_str(),
                circuit = %job.proof_class.circuit,
                size_log2 = job.proof_class.size_log2,
                deadline = %job.deadline,
                lease_left_ms = lease.saturating_duration_since(Instant::now()).as_millis() as u64,
                "claimed job"
            );
            if self.shutdown.is_raised() {
                tracing::info!(target: TARGET, job_id = %job.job_id, "shutting down: releasing the job claimed just now");
                self.release(&job, lease).await;
                break;
            }
            self.serve(&job, lease).await?;
        }
        Ok(())
    }

    /// Proves and submits one claimed job; errors only for fatal ones.
    async fn serve(&self, job: &Job, lease: Instant) -> anyhow::Result<()> {
        if let Err(why) = self.check_servable(job) {
            tracing::warn!(target: TARGET, job_id = %job.job_id, why, "cannot serve the job; releasing it");
            self.release(job, lease).await;
            return Ok(());
        }
        match self.book.begin(job.job_id) {
            Begin::New => {}
            Begin::Busy => {
                tracing::info!(target: TARGET, job_id = %job.job_id, "job already in hand on another worker; leaving it there");
                return Ok(());
            }
            Begin::Missed => {
                tracing::info!(target: TARGET, job_id = %job.job_id, "TESTING AID --fault miss: job claimed again, dropped again");
                return Ok(());
            }
            Begin::Proved(proof) => {
                tracing::info!(target: TARGET, job_id = %job.job_id, "job claimed again; re-sending the proof made for it");
                return self.submit(job, lease, &proof, None).await;
            }
        }
        if self.fault == Some(Fault::Miss) {
            self.book.settle(job.job_id, Entry::Missed);
            tracing::info!(
                target: TARGET,
                job_id = %job.job_id,
                slot = job.slot,
                "TESTING AID --fault miss: dropping the job without proving or releasing it"
            );
            return Ok(());
        }
        let work = match self.work(job) {
            Ok(work) => work,
            Err(why) => {
                tracing::warn!(
                    target: TARGET,
                    job_id = %job.job_id,
                    why,
                    "cannot prove the job's input; releasing the job"
                );
                self.book.forget(job.job_id);
                self.release(job, lease).await;
                return Ok(());
            }
        };
        let started = Instant::now();
        let Some(proof) = self.prove(job, work, lease).await else {
            self.book.forget(job.job_id);
            return Ok(());
        };
        let prove_time = started.elapsed();
        self.book.settle(job.job_id, Entry::Proved(proof.clone()));
        self.submit(job, lease, &proof, Some(prove_time)).await
    }

    /// Whether this agent serves the job's proof class: `hash-chain` in a size it serves, or a
    /// registered circuit it serves (the exchange matches those by id; its size must be the
    /// circuit's).
    fn check_servable(&self, job: &Job) -> Result<(), String> {
        let class = &job.proof_class;
        if class.circuit == CIRCUIT {
            crate::registry::lookup(class).map_err(|err| err.to_string())?;
            if !self.sizes.contains(&class.size_log2) {
                return Err(format!("size_log2 {} is not one of the sizes served {:?}", class.size_log2, self.sizes));
            }
            return Ok(());
        }
        let Some(circuit) = self.circuits.get(&class.circuit) else {
            return Err(format!(
                "this agent proves `{CIRCUIT}` and the registered circuits {:?}, not `{}`",
                self.circuit_ids, class.circuit
            ));
        };
        if class.system.as_str() != SYSTEM {
            return Err(format!("circuit {} is proved with {SYSTEM}, not {}", circuit.id, class.system.as_str()));
        }
        if class.size_log2 != circuit.size_log2 {
            return Err(format!(
                "circuit {} has size_log2 {}, the job states {}",
                circuit.id, circuit.size_log2, class.size_log2
            ));
        }
        Ok(())
    }

    /// What to prove for a job [`Agent::check_servable`] accepted, from the input field of its
    /// kind; `--fault invalid` is applied here (a hash-chain seed + 1) or in the prover (a
    /// registered circuit's tampered proof).
    fn work(&self, job: &Job) -> Result<Work, String> {
        let tamper = self.fault == Some(Fault::Invalid);
        if let Some(circuit) = self.circuits.get(&job.proof_class.circuit) {
            return match &job.input {
                Some(input @ Value::Object(_)) => {
                    Ok(Work::Circuit { circuit: Arc::clone(circuit), input: input.clone(), tamper })
                }
                Some(Value::Null) | None => Err(format!("the job of circuit {} carries no `input`", circuit.id)),
                Some(_) => Err(format!("the `input` of the job of circuit {} is not a JSON object", circuit.id)),
            };
        }
        let Some(public_input) = job.public_input.as_deref() else {
            return Err(format!("the `{CIRCUIT}` job carries no `public_input`"));
        };
        let seed = crate::field::parse_field_element(public_input)
            .map_err(|err| format!("the public input is not a field element: {err}"))?;
        let seed = if tamper { seed + Fr::from(1u64) } else { seed };
        Ok(Work::HashChain { size_log2: job.proof_class.size_log2, seed })
    }

    /// The encoded proof, or `None` after releasing the job (failure, or shutdown with too little
    /// time left).
    async fn prove(&self, job: &Job, work: Work, lease: Instant) -> Option<String> {
        let (keys, backend) = (Arc::clone(&self.keys), Arc::clone(&self.backend));
        let expected = match &work {
            Work::HashChain { size_log2, .. } => self.expected_prove.get(size_log2).copied(),
            Work::Circuit { circuit, .. } => Some(circuit.prove),
        };
        let started = Instant::now();
        let mut task = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let proof = match work {
                Work::HashChain { size_log2, seed } => {
                    crate::groth16::prove_hash_chain(&keys, size_log2, seed, backend.as_ref())?.0
                }
                Work::Circuit { circuit, input, tamper } => {
                    circuit.prove_input(&input, backend.as_ref(), tamper)?.0
                }
            };
            Ok(crate::encoding::encode_proof(&proof))
        });
        let joined = tokio::select! {
            biased;
            joined = &mut task => joined,
            () = self.shutdown.raised() => {
                let expected = expected.unwrap_or(DRAIN_TIMEOUT);
                let limit = lease.min(self.drain_deadline());
                if !can_finish(started, expected, limit) {
                    tracing::info!(
                        target: TARGET,
                        job_id = %job.job_id,
                        "shutting down: the proof cannot be finished before the lease or drain ends; releasing the job"
                    );
                    self.release(job, lease).await;
                    return None;
                }
                tracing::info!(target: TARGET, job_id = %job.job_id, "shutting down: finishing the proof in progress");
                match tokio::time::timeout_at(limit.into(), &mut task).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        tracing::warn!(target: TARGET, job_id = %job.job_id, "the proof took too long; releasing the job");
                        self.release(job, lease).await;
                        return None;
                    }
                }
            }
        };
        let failure = match joined {
            Ok(Ok(proof)) => return Some(proof),
            Ok(Err(err)) => err,
            Err(err) => anyhow!("the prover panicked: {err}"),
        };
        tracing::error!(target: TARGET, job_id = %job.job_id, error = format!("{failure:#}"), "proving failed; releasing the job");
        self.release(job, lease).await;
        None
    }

    /// Sends `proof` for `job` until answered or the lease (+ grace) is over; logs the outcome.
    async fn submit(&self, job: &Job, lease: Instant, proof: &str, prove_time: Option<Duration>) -> anyhow::Result<()> {
        let options = CallOptions {
            timeout: CALL_TIMEOUT,
            idempotency_key: Some(job.job_id.to_string()),
            retry_until: Some(lease + LEASE_GRACE),
            cancel: Some(self.drain_expired.clone()),
        };
        let path = format!("/v1/agent/jobs/{}/proof", job.job_id);
        let prove_ms = prove_time.map(|time| time.as_millis() as u64);
        let (job_id, slot, role) = (job.job_id, job.slot, job.role.as_str());
        let fault = self.fault.map(|fault| format!("{fault:?}").to_lowercase());
        match self.client.post::<_, SubmitResponse>("submit", &path, &SubmitRequest { proof }, &options).await {
            Ok(answer) if answer.accepted => tracing::info!(
                target: TARGET,
                %job_id, slot, role, prove_ms, accepted = true, slot_state = answer.slot_state.as_deref(),
                "proof delivered"
            ),
            Ok(answer) => tracing::warn!(
                target: TARGET,
                %job_id, slot, role, prove_ms, accepted = false, slot_state = answer.slot_state.as_deref(),
                reason = answer.reason.as_deref(), fault = fault.as_deref(),
                "proof delivered and refused: it did not verify"
            ),
            Err(CallError::Api { status: StatusCode::CONFLICT, code, message }) if code == "lease_lost" => {
                tracing::warn!(
                    target: TARGET,
                    %job_id, slot, role, prove_ms, message,
                    "lease lost: the job is no longer this prover's; dropping it"
                )
            }
            Err(CallError::Api { status: StatusCode::NOT_FOUND, message, .. }) => tracing::warn!(
                target: TARGET,
                %job_id, slot, role, message,
                "the exchange does not know the job; dropping it"
            ),
            Err(err @ CallError::Unauthorized { .. }) => return Err(fatal(err, &self.client, "submitting a proof")),
            Err(err) => tracing::error!(
                target: TARGET,
                %job_id, slot, role, prove_ms, error = %err,
                "proof not delivered; dropping the job"
            ),
        }
        Ok(())
    }

    /// Gives the job back (best effort, until its lease ends or the drain is over).
    async fn release(&self, job: &Job, lease: Instant) {
        let options = CallOptions {
            timeout: CALL_TIMEOUT,
            idempotency_key: None,
            retry_until: Some(lease),
            cancel: Some(self.drain_expired.clone()),
        };
        let path = format!("/v1/agent/jobs/{}/release", job.job_id);
        match self.client.post::<_, IgnoredAny>("release", &path, &serde_json::json!({}), &options).await {
            Ok(_) => tracing::info!(target: TARGET, job_id = %job.job_id, slot = job.slot, "job released"),
            Err(err) => tracing::warn!(
                target: TARGET,
                job_id = %job.job_id,
                error = %err,
                "could not release the job; the exchange reassigns it when its lease expires"
            ),
        }
    }
}

/// Whether a proof started at `started`, expected (by the benchmark) to take `expected`, can be
/// finished and submitted by `limit`, with a 25 % margin on the estimate.
fn can_finish(started: Instant, expected: Duration, limit: Instant) -> bool {
    started + expected + expected / 4 + SUBMIT_ALLOWANCE <= limit
}

/// An error that stops the agent, worded for the operator.
pub(super) fn fatal(err: CallError, client: &ExchangeClient, doing: &str) -> anyhow::Error {
    match err {
        CallError::Unauthorized { message } => {
            anyhow!("the exchange at {} refused the API key ({message}); check --api-key / PCX_API_KEY", client.base())
        }
        CallError::Api { status: StatusCode::FORBIDDEN, message, .. } => anyhow!(
            "{doing}: the exchange at {} refused access ({message}); is the API key that of a prover account?",
            client.base()
        ),
        other => anyhow::Error::new(other).context(format!("{doing} at {}", client.base())),
    }
}

fn task_error(joined: Result<anyhow::Result<()>, JoinError>) -> Option<anyhow::Error> {
    match joined {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(err),
        Err(err) if err.is_panic() => Some(anyhow!("an agent task panicked: {err}")),
        Err(_) => None,
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one job asks to be proved.
enum Work {
    /// `hash-chain` of `2^size_log2` constraints from `seed`.
    HashChain { size_log2: u8, seed: Fr },
    /// A registered circuit from the job's input; `tamper` for `--fault invalid`.
    Circuit { circuit: Arc<ServedCircuit>, input: Value, tamper: bool },
}

/// What the agent knows of a job it was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A worker holds it.
    Busy,
    /// Dropped on purpose (`--fault miss`).
    Missed,
    /// Proved; the encoded proof, the only one ever sent for it.
    Proved(String),
}

/// What a worker should do with a job it claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Begin {
    /// First time: prove it.
    New,
    /// Another worker holds it.
    Busy,
    /// Missed on purpose before.
    Missed,
    /// Proved before: send this proof again.
    Proved(String),
}

/// The jobs this agent holds or has proved (see the module docs). Bounded: settled jobs are
/// forgotten after [`BOOK_TTL`], or oldest first when it grows past [`BOOK_LIMIT`].
#[derive(Debug, Default)]
struct JobBook {
    entries: Mutex<HashMap<Uuid, (Instant, Entry)>>,
}

impl JobBook {
    /// Marks `job_id` busy when it is new; says what to do with it.
    fn begin(&self, job_id: Uuid) -> Begin {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= BOOK_LIMIT {
            prune(&mut entries);
        }
        match entries.get(&job_id) {
            None => {
                entries.insert(job_id, (Instant::now(), Entry::Busy));
                Begin::New
            }
            Some((_, Entry::Busy)) => Begin::Busy,
            Some((_, Entry::Missed)) => Begin::Missed,
            Some((_, Entry::Proved(proof))) => Begin::Proved(proof.clone()),
        }
    }

    /// The jobs being proved or dropped on purpose, newest first (at most [`MAX_IN_HAND`]): what a
    /// claim lists as in hand, so that only a job whose claim answer was lost comes back.
    fn in_hand(&self) -> Vec<Uuid> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let mut held: Vec<(Instant, Uuid)> = entries
            .iter()
            .filter(|(_, (_, entry))| matches!(entry, Entry::Busy | Entry::Missed))
            .map(|(id, (at, _))| (*at, *id))
            .collect();
        held.sort_unstable_by_key(|(at, _)| std::cmp::Reverse(*at));
        held.into_iter().take(MAX_IN_HAND).map(|(_, id)| id).collect()
    }

    fn settle(&self, job_id: Uuid, entry: Entry) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).insert(job_id, (Instant::now(), entry));
    }

    /// Forgets a job no proof was made for (released): it may be proved afresh if handed out again.
    fn forget(&self, job_id: Uuid) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(&job_id);
    }
}

fn prune(entries: &mut HashMap<Uuid, (Instant, Entry)>) {
    entries.retain(|_, (at, entry)| *entry == Entry::Busy || at.elapsed() < BOOK_TTL);
    if entries.len() >= BOOK_LIMIT {
        let mut settled: Vec<(Instant, Uuid)> =
            entries.iter().filter(|(_, (_, entry))| *entry != Entry::Busy).map(|(id, (at, _))| (*at, *id)).collect();
        settled.sort_unstable();
        for (_, id) in settled.iter().take(entries.len() - BOOK_LIMIT / 2) {
            entries.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_system_is_the_domain_name() {
        let name = serde_json::to_value(pcx_domain::ProofSystem::Groth16Bn254).unwrap();
        assert_eq!(name, SYSTEM);
    }

    #[test]
    fn at_shutdown_a_proof_is_finished_only_when_it_can_make_its_lease() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        assert!(can_finish(now, second, now + 10 * second));
        // 1 s + 25 % + 2 s for the submission = 3.25 s.
        assert!(!can_finish(now, second, now + 3 * second));
        assert!(can_finish(now, second, now + 4 * second));
        assert!(!can_finish(now, 10 * second, now + 10 * second));
    }

    #[test]
    fn a_job_is_proved_once_and_its_proof_reused() {
        let book = JobBook::default();
        let id = Uuid::new_v4();
        assert_eq!(book.begin(id), Begin::New);
        assert_eq!(book.begin(id), Begin::Busy);
        book.settle(id, Entry::Proved("0xab".into()));
        assert_eq!(book.begin(id), Begin::Proved("0xab".into()));
        let released = Uuid::new_v4();
        assert_eq!(book.begin(released), Begin::New);
        book.forget(released);
        assert_eq!(book.begin(released), Begin::New);
        assert_eq!(book.in_hand(), vec![released], "proved jobs are not in hand, busy ones are");
    }

    #[test]
    fn the_book_stays_bounded_and_keeps_busy_jobs() {
        let book = JobBook::default();
        let busy = Uuid::new_v4();
        assert_eq!(book.begin(busy), Begin::New);
        for _ in 0..BOOK_LIMIT + 10 {
            let id = Uuid::new_v4();
            book.begin(id);
            book.settle(id, Entry::Proved(String::new()));
        }
        assert!(book.entries.lock().unwrap().len() <= BOOK_LIMIT);
        assert_eq!(book.begin(busy), Begin::Busy);
    }
}
