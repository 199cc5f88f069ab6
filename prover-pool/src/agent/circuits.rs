//! Registered circuits the agent serves besides `hash-chain` (`--circuits`): which ones, their
//! artifacts fetched into a cache and checked, loaded, and benchmarked before they are
//! advertised; and proving a job's input with one ([`ServedCircuit::prove_input`]).
//!
//! Cache layout: `<circuits dir>/<circuit_id>/{r1cs,wasm,zkey}`; a download is written to
//! `.<file name>.<random>.part` in the same folder first.
//!
//! The download machinery ([`fetch_artifact`]) also fetches the built-in `hash-chain` circuit's
//! proving keys into the key directory (`super::exchange_keys`); what is said below of
//! artifacts holds for those too.
//!
//! Invariants:
//! - Only an id of 64 lowercase hex digits names a folder: ids come from the command line or the
//!   exchange, and neither is trusted to be a path.
//! - An artifact is used only when its SHA-256 equals the circuit view's (and the download's
//!   `x-content-sha256` header, when the exchange sends one). A cached file is hashed at every
//!   start and reused, without a download, when it matches; otherwise it is deleted.
//! - A download is never held in memory: it is written and hashed chunk by chunk into the
//!   temporary file, which is renamed into place (atomic in one folder) only once it matched, so
//!   the final name only ever holds a checked file, even after a crash. A download that does not
//!   match is deleted and fetched once more; a second mismatch is an error. A body larger than
//!   the view states is cut off there (a runaway answer cannot fill the disk). A transfer that
//!   breaks off is started again, with backoff, until it completes or the agent stops; partial
//!   files left by an agent stopped mid-download are deleted when they are [`STALE_PARTIAL`] old.
//! - A circuit is advertised only after its sample input was proved with the agent's MSM backend
//!   and the proof verified (ark-groth16) against the zkey's verifying key and the witness's public
//!   signals: a proof that does not verify is an error, not a timing.
//! - With `--circuits all`, a circuit that cannot be prepared is skipped (logged as an error) and
//!   the others are served; a circuit named by its id must be prepared or the agent does not
//!   start. Refused credentials and shutdown stop the preparation either way.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use ark_bn254::{Bn254, Fr};
use ark_groth16::{prepare_verifying_key, Groth16, Proof};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::api::{ArtifactView, CircuitList, CircuitView};
use super::backoff::Backoff;
use super::cli::{is_circuit_id, CircuitSelection};
use super::client::{CallError, CallOptions, ExchangeClient};
use super::signal::Signal;
use super::worker::fatal;
use super::TARGET;
use crate::circom::zkey::Zkey;
use crate::circom::{self, Artifact, CircomCircuit, CircomSetup, InputError};
use crate::groth16::ProveError;
use crate::msm::MsmBackend;

/// The status of a circuit that can be served.
const READY: &str = "ready";
/// The files a circuit is served from, in the order they are fetched.
const KINDS: [Artifact; 3] = [Artifact::R1cs, Artifact::Wasm, Artifact::Zkey];
/// Downloads of one artifact, the first included, before one that does not match is an error.
const DOWNLOAD_TRIES: u32 = 2;
/// Longest wait for a download's head, and then for each of its chunks.
const DOWNLOAD_STALL: Duration = Duration::from_secs(60);
/// Chunks queued between the download and the blocking writer (a bound on memory in flight).
const WRITE_QUEUE: usize = 16;
/// Read buffer when hashing a cached file.
const HASH_BUFFER: usize = 1 << 20;
/// How often a long download logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// A partial download untouched for this long belongs to no running download (a live one writes
/// at least every [`DOWNLOAD_STALL`]), so it is deleted.
pub(crate) const STALE_PARTIAL: Duration = Duration::from_secs(600);
/// The header of an artifact download that states its SHA-256.
const SHA256_HEADER: &str = "x-content-sha256";
/// How the exchange's views of the built-in circuit's sizes are named (`hash-chain-<k>`).
const BUILT_IN_PREFIX: &str = "hash-chain-";

/// One file the exchange serves, to be kept at `path` once checked:
/// `GET /v1/circuits/{circuit_id}/artifacts/{artifact}`.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactTarget<'a> {
    /// The circuit it belongs to (a registered circuit's id, or `hash-chain-<k>`).
    pub circuit_id: &'a str,
    /// Its name in the route (`r1cs`, `wasm`, `zkey`, `pk`).
    pub artifact: &'a str,
    /// Where the checked file is kept; its folder also takes the partial download.
    pub path: PathBuf,
}

/// How [`fetch_artifact`] came by a checked copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Obtained {
    /// The file already there matched: nothing was downloaded.
    Cached,
    /// Downloaded and moved into place (replacing whatever was there).
    Downloaded {
        /// Its size.
        bytes: u64,
        /// How long the download took.
        elapsed: Duration,
    },
}

/// A registered circuit ready to prove: artifacts checked, loaded, benchmarked.
pub(crate) struct ServedCircuit {
    /// Its circuit id, as in proof classes and capabilities.
    pub id: String,
    /// The name it was registered under (for logs).
    pub name: String,
    pub circuit: CircomCircuit,
    pub zkey: Zkey,
    /// log2 of its QAP domain: the size of its proof class.
    pub size_log2: u8,
    /// One proof (witness and Groth16) of the sample input on one worker, at start.
    pub prove: Duration,
    /// Proofs per hour on one worker, from [`ServedCircuit::prove`].
    pub proofs_per_hour: u64,
}

/// Why a registered circuit's job could not be proved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CircuitJobError {
    /// The input gives no witness (the exchange checks inputs when buyers post them, so this
    /// should not happen).
    #[error("the job's input cannot be proved: {0}")]
    Input(#[from] InputError),
    /// The prover failed.
    #[error(transparent)]
    Prove(#[from] ProveError),
}

impl ServedCircuit {
    /// Proves `input` (its witness, then Groth16 with every MSM on `backend`); returns the proof
    /// and the public signals it is verified against. With `tamper` (`--fault invalid`) the
    /// proof's A point is negated: still a well-formed proof, encoded alike, that does not verify.
    pub(crate) fn prove_input(
        &self,
        input: &Value,
        backend: &dyn MsmBackend,
        tamper: bool,
    ) -> Result<(Proof<Bn254>, Vec<Fr>), CircuitJobError> {
        let witness = self.circuit.witness(input)?;
        let mut proof = circom::prove(&self.circuit, &self.zkey, &witness, backend, &mut rand::rngs::OsRng)?;
        if tamper {
            proof.a = -proof.a;
        }
        Ok((proof, self.circuit.public_signals(&witness)))
    }

    /// Proves the sample input once and checks the proof: the time of one proof.
    fn benchmark(&self, sample: &Value, backend: &dyn MsmBackend) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let (proof, public) = self.prove_input(sample, backend, false).context("proving the sample input")?;
        let elapsed = started.elapsed();
        let vk = prepare_verifying_key(&self.zkey.proving_key.vk);
        let verifies =
            Groth16::<Bn254>::verify_proof(&vk, &proof, &public).context("verifying the sample input's proof")?;
        if !verifies {
            bail!(
                "the proof of the sample input does not verify against the zkey's verifying key: the {} backend \
                 computes wrong results, or the artifacts are broken",
                backend.name()
            );
        }
        Ok(elapsed)
    }
}

/// Why a circuit could not be prepared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    /// Stops the agent whatever was asked: refused credentials, or shutdown.
    #[error(transparent)]
    Fatal(anyhow::Error),
    /// This circuit cannot be served (its view, its artifacts, a download that never matches).
    #[error(transparent)]
    Circuit(anyhow::Error),
}

impl PrepareError {
    /// The error, whichever kind it is (for callers that stop either way).
    pub(crate) fn into_inner(self) -> anyhow::Error {
        match self {
            PrepareError::Fatal(err) | PrepareError::Circuit(err) => err,
        }
    }
}

impl From<anyhow::Error> for PrepareError {
    fn from(err: anyhow::Error) -> PrepareError {
        PrepareError::Circuit(err)
    }
}

/// The circuits `selection` names, each prepared ([`prepare`]) in turn, in id order.
pub(crate) async fn prepare_selected(
    client: &ExchangeClient,
    selection: &CircuitSelection,
    dir: &Path,
    backend: &Arc<dyn MsmBackend>,
    cancel: &Signal,
) -> anyhow::Result<Vec<Arc<ServedCircuit>>> {
    let views = selected_views(client, selection, cancel).await?;
    let mut served = Vec::with_capacity(views.len());
    for view in &views {
        match prepare(client, view, dir, backend, cancel).await {
            Ok(circuit) => served.push(Arc::new(circuit)),
            Err(PrepareError::Circuit(err)) if *selection == CircuitSelection::All => tracing::error!(
                target: TARGET,
                circuit_id = %view.circuit_id,
                name = %view.name,
                error = format!("{err:#}"),
                "cannot serve this circuit; skipping it and serving the others"
            ),
            Err(PrepareError::Circuit(err)) => {
                return Err(err.context(format!("--circuits: cannot serve circuit {}", view.circuit_id)))
            }
            Err(PrepareError::Fatal(err)) => return Err(err),
        }
    }
    Ok(served)
}

/// The views of the circuits to serve: every ready one the exchange lists (`all`; the others are
/// skipped with a note), or the ones named, each of which must exist and be ready.
async fn selected_views(
    client: &ExchangeClient,
    selection: &CircuitSelection,
    cancel: &Signal,
) -> anyhow::Result<Vec<CircuitView>> {
    let options = CallOptions::until_cancelled(cancel);
    match selection {
        CircuitSelection::None => Ok(Vec::new()),
        CircuitSelection::All => {
            let list: CircuitList = client
                .get("circuits", "/v1/circuits", &options)
                .await
                .map_err(|err| fatal(err, client, "listing the registered circuits"))?;
            let mut ready = Vec::with_capacity(list.circuits.len());
            for view in list.circuits {
                if view.circuit_id.starts_with(BUILT_IN_PREFIX) {
                    tracing::debug!(
                        target: TARGET,
                        circuit_id = %view.circuit_id,
                        "--circuits all: the built-in circuit is served by --sizes, not as a registered circuit"
                    );
                } else if view.status != READY {
                    tracing::info!(
                        target: TARGET,
                        circuit_id = %view.circuit_id,
                        status = %view.status,
                        "--circuits all: skipping a circuit that is not ready"
                    );
                } else if !is_circuit_id(&view.circuit_id) {
                    tracing::warn!(
                        target: TARGET,
                        circuit_id = %view.circuit_id,
                        "--circuits all: skipping a circuit whose id is not 64 lowercase hex digits"
                    );
                } else {
                    ready.push(view);
                }
            }
            ready.sort_by(|a, b| a.circuit_id.cmp(&b.circuit_id));
            ready.dedup_by(|a, b| a.circuit_id == b.circuit_id);
            if ready.is_empty() {
                tracing::info!(
                    target: TARGET,
                    "--circuits all: the exchange lists no ready circuit; serving hash-chain only"
                );
            }
            Ok(ready)
        }
        CircuitSelection::Ids(ids) => {
            let mut views = Vec::with_capacity(ids.len());
            for id in ids {
                let view: CircuitView = match client.get("circuit", &format!("/v1/circuits/{id}"), &options).await {
                    Ok(view) => view,
                    Err(CallError::Api { status: StatusCode::NOT_FOUND, .. }) => {
                        bail!("--circuits: the exchange at {} has no circuit {id}", client.base())
                    }
                    Err(err) => return Err(fatal(err, client, &format!("reading circuit {id}"))),
                };
                if view.circuit_id != *id {
                    bail!("asked the exchange for circuit {id}, it answered with circuit {}", view.circuit_id);
                }
                if view.status != READY {
                    bail!(
                        "--circuits: circuit {id} is `{}`, not `{READY}`; only ready circuits are served",
                        view.status
                    );
                }
                views.push(view);
            }
            Ok(views)
        }
    }
}

/// Fetches (or finds in the cache) one ready circuit's artifacts, loads them, checks them
/// against each other and benchmarks the circuit on its sample input.
pub(crate) async fn prepare(
    client: &ExchangeClient,
    view: &CircuitView,
    dir: &Path,
    backend: &Arc<dyn MsmBackend>,
    cancel: &Signal,
) -> Result<ServedCircuit, PrepareError> {
    let id = view.circuit_id.clone();
    if !is_circuit_id(&id) {
        return Err(anyhow!("`{id}` is not a circuit id (64 lowercase hex digits)").into());
    }
    let missing = |field: &str| anyhow!("the exchange's view of circuit {id} has no `{field}`");
    let artifacts = view.artifacts.as_ref().ok_or_else(|| missing("artifacts"))?;
    let size_log2 = view.size_log2.ok_or_else(|| missing("size_log2"))?;
    let sample = view.sample_input.clone().filter(Value::is_object).ok_or_else(|| missing("sample_input"))?;
    let folder = dir.join(&id);
    tokio::fs::create_dir_all(&folder).await.with_context(|| format!("creating {}", folder.display()))?;
    tracing::info!(
        target: TARGET,
        circuit_id = %id,
        name = %view.name,
        constraints = view.constraints,
        public_signals = view.public_signals,
        size_log2,
        folder = %folder.display(),
        "preparing a registered circuit"
    );
    remove_stale_partials(folder.clone()).await;

    let mut paths = Vec::with_capacity(KINDS.len());
    for kind in KINDS {
        let stated = match kind {
            Artifact::R1cs => &artifacts.r1cs,
            Artifact::Wasm => &artifacts.wasm,
            _ => &artifacts.zkey,
        };
        let target = ArtifactTarget { circuit_id: &id, artifact: kind.as_str(), path: folder.join(kind.as_str()) };
        fetch_artifact(client, &target, stated, cancel).await?;
        paths.push(target.path);
    }

    let started = Instant::now();
    let (circuit, zkey) = tokio::task::spawn_blocking(move || load(&paths))
        .await
        .context("loading the artifacts panicked")?
        .with_context(|| format!("loading circuit {id}"))?;
    let shape = circuit.shape();
    tracing::info!(
        target: TARGET,
        circuit_id = %id,
        load_ms = started.elapsed().as_millis() as u64,
        constraints = shape.constraints,
        public_signals = shape.public_signals,
        size_log2 = shape.size_log2,
        "loaded the circuit and its zkey"
    );
    if shape.size_log2 != size_log2 {
        return Err(anyhow!(
            "circuit {id}: the exchange states size_log2 {size_log2}, its artifacts give {}",
            shape.size_log2
        )
        .into());
    }

    let served = ServedCircuit {
        id,
        name: view.name.clone(),
        circuit,
        zkey,
        size_log2,
        prove: Duration::ZERO,
        proofs_per_hour: 0,
    };
    tracing::info!(
        target: TARGET,
        circuit_id = %served.id,
        backend = backend.name(),
        "benchmarking on the sample input"
    );
    let backend = Arc::clone(backend);
    let (mut served, prove) = tokio::task::spawn_blocking(move || {
        let prove = served.benchmark(&sample, backend.as_ref());
        (served, prove)
    })
    .await
    .context("the benchmark panicked")?;
    let prove = prove.with_context(|| format!("benchmarking circuit {}", served.id))?;
    served.prove = prove;
    served.proofs_per_hour = crate::bench::proofs_per_hour(prove);
    tracing::info!(
        target: TARGET,
        circuit_id = %served.id,
        name = %served.name,
        size_log2,
        prove_ms = prove.as_millis() as u64,
        proofs_per_hour_per_worker = served.proofs_per_hour,
        "benchmarked: the sample proof verifies"
    );
    Ok(served)
}

/// Reads and parses the r1cs, wasm and zkey at `paths` (in [`KINDS`] order) and checks them
/// against each other. Each file is read whole (the parsers take bytes); the zkey's bytes are
/// dropped once parsed.
fn load(paths: &[PathBuf]) -> anyhow::Result<(CircomCircuit, Zkey)> {
    let [r1cs, wasm, zkey] = paths else { bail!("expected three artifacts, got {}", paths.len()) };
    let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let circuit = CircomCircuit::load(&read(r1cs)?, &read(wasm)?)?;
    let zkey = Zkey::parse(&read(zkey)?).map_err(|err| anyhow!("zkey: {err}"))?;
    CircomSetup::check(&circuit, &zkey)?;
    Ok((circuit, zkey))
}

/// Makes `target.path` a checked copy of the artifact: the file already there when its SHA-256
/// matches `stated`, else a fresh download (see the module docs).
pub(crate) async fn fetch_artifact(
    client: &ExchangeClient,
    target: &ArtifactTarget<'_>,
    stated: &ArtifactView,
    cancel: &Signal,
) -> Result<Obtained, PrepareError> {
    let (id, kind, path) = (target.circuit_id, target.artifact, &target.path);
    let want = stated.sha256.trim().to_ascii_lowercase();
    if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(
            anyhow!("circuit {id}: the exchange states the {kind}'s sha256 as `{want}`, not 64 hex digits").into()
        );
    }
    if tokio::fs::try_exists(path).await.unwrap_or(false) {
        let started = Instant::now();
        let (sha256, bytes) = hash_file(path.clone()).await?;
        if sha256 == want {
            tracing::info!(
                target: TARGET,
                circuit_id = id,
                artifact = kind,
                bytes,
                hash_ms = started.elapsed().as_millis() as u64,
                "cached artifact matches its sha256; not downloading it"
            );
            return Ok(Obtained::Cached);
        }
        // Not corruption as a rule: the exchange's file changed (a new setup) or the cache holds
        // another exchange's. Either way the exchange's sha256 decides.
        tracing::info!(
            target: TARGET,
            circuit_id = id,
            artifact = kind,
            path = %path.display(),
            cached = %sha256,
            expected = %want,
            "the cached artifact is not the exchange's (its sha256 differs); downloading the exchange's"
        );
        tokio::fs::remove_file(path).await.with_context(|| format!("deleting {}", path.display()))?;
    }

    for attempt in 1..=DOWNLOAD_TRIES {
        let fetched = download(client, target, stated.bytes, cancel).await?;
        let problem = if fetched.too_large {
            Some(format!("it is larger than the {} bytes the circuit's {kind} has", stated.bytes))
        } else if fetched.sha256 != want {
            Some(format!("its sha256 is {}, the circuit's {kind} has {want}", fetched.sha256))
        } else {
            match fetched.header.as_deref() {
                Some(header) if header != want => {
                    Some(format!("the exchange sent it as sha256 {header}, the circuit's {kind} has {want}"))
                }
                _ => None,
            }
        };
        let Some(problem) = problem else {
            if let Err(err) = tokio::fs::rename(&fetched.temp, path).await {
                remove_quietly(&fetched.temp).await;
                return Err(anyhow!("moving {} into place: {err}", fetched.temp.display()).into());
            }
            let secs = fetched.elapsed.as_secs_f64().max(1e-3);
            tracing::info!(
                target: TARGET,
                circuit_id = id,
                artifact = kind,
                bytes = fetched.bytes,
                download_ms = fetched.elapsed.as_millis() as u64,
                mib_per_s = format!("{:.1}", fetched.bytes as f64 / secs / (1024.0 * 1024.0)),
                "downloaded; sha256 matches"
            );
            return Ok(Obtained::Downloaded { bytes: fetched.bytes, elapsed: fetched.elapsed });
        };
        remove_quietly(&fetched.temp).await;
        if attempt == DOWNLOAD_TRIES {
            return Err(anyhow!(
                "circuit {id}: the {kind} was downloaded {DOWNLOAD_TRIES} times and did not match the circuit either \
                 time (last: {problem}); refusing to use it"
            )
            .into());
        }
        tracing::warn!(
            target: TARGET,
            circuit_id = id,
            artifact = kind,
            problem,
            "the download does not match the circuit; deleted it, downloading it once more"
        );
    }
    Err(anyhow!("circuit {id}: the {kind} could not be downloaded").into())
}

/// A download written to its temporary file.
struct Fetched {
    temp: PathBuf,
    /// Hex of the SHA-256 of what was written.
    sha256: String,
    bytes: u64,
    /// The `x-content-sha256` header, lowercased, when sent.
    header: Option<String>,
    elapsed: Duration,
    /// The body went past the stated size and was cut off there.
    too_large: bool,
}

/// Downloads the artifact into a new temporary file next to `target.path`, hashing as it writes;
/// a transfer that breaks off is deleted and started again with backoff until it completes or
/// `cancel` rises.
async fn download(
    client: &ExchangeClient,
    target: &ArtifactTarget<'_>,
    limit: u64,
    cancel: &Signal,
) -> Result<Fetched, PrepareError> {
    let (id, kind) = (target.circuit_id, target.artifact);
    let folder = target.path.parent().unwrap_or_else(|| Path::new("."));
    let file_name =
        target.path.file_name().map_or_else(|| kind.to_string(), |name| name.to_string_lossy().into_owned());
    let path = format!("/v1/circuits/{id}/artifacts/{kind}");
    let options =
        CallOptions { timeout: DOWNLOAD_STALL, idempotency_key: None, retry_until: None, cancel: Some(cancel.clone()) };
    let mut backoff = Backoff::new();
    loop {
        tracing::info!(target: TARGET, circuit_id = id, artifact = kind, bytes = limit, "downloading");
        let started = Instant::now();
        let mut body =
            client.download("artifact", &path, &options).await.map_err(|err| call_failed(err, client, id, kind))?;
        let header = body.header(SHA256_HEADER).map(|value| value.trim().to_ascii_lowercase());
        let temp = folder.join(format!(".{file_name}.{}.part", Uuid::new_v4().simple()));
        let (chunks, queue) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let writer = tokio::task::spawn_blocking({
            let temp = temp.clone();
            move || write_hashing(&temp, queue)
        });
        let (mut received, mut too_large, mut logged) = (0u64, false, Instant::now());
        let transfer = loop {
            match body.chunk().await {
                Ok(Some(chunk)) => {
                    received = received.saturating_add(chunk.len() as u64);
                    if received > limit {
                        too_large = true;
                        break Ok(());
                    }
                    // A send fails only when the writer stopped on an error, which it returns.
                    if chunks.send(chunk).await.is_err() {
                        break Ok(());
                    }
                    if logged.elapsed() >= PROGRESS_EVERY {
                        logged = Instant::now();
                        tracing::info!(
                            target: TARGET,
                            circuit_id = id,
                            artifact = kind,
                            received,
                            bytes = limit,
                            "downloading"
                        );
                    }
                }
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        drop(chunks);
        let written = match writer.await {
            Ok(written) => written,
            Err(err) => {
                remove_quietly(&temp).await;
                return Err(anyhow!("the artifact writer panicked: {err}").into());
            }
        };
        match (transfer, written) {
            (_, Err(err)) => {
                remove_quietly(&temp).await;
                return Err(anyhow!("writing {}: {err}", temp.display()).into());
            }
            (Ok(()), Ok((sha256, bytes))) => {
                return Ok(Fetched { temp, sha256, bytes, header, elapsed: started.elapsed(), too_large });
            }
            (Err(err), Ok(_)) => {
                remove_quietly(&temp).await;
                let delay = backoff.next_delay();
                tracing::warn!(
                    target: TARGET,
                    circuit_id = id,
                    artifact = kind,
                    received,
                    error = %err,
                    delay_ms = delay.as_millis() as u64,
                    "the download broke off; starting it again"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = cancel.raised() => return Err(PrepareError::Fatal(anyhow!("shutdown while downloading"))),
                }
            }
        }
    }
}

/// A failed download call: refused credentials and shutdown stop the agent, anything else (a
/// 404: the circuit was withdrawn) only this circuit.
fn call_failed(err: CallError, client: &ExchangeClient, id: &str, kind: &str) -> PrepareError {
    let doing = format!("downloading the {kind} of circuit {id}");
    match err {
        CallError::Unauthorized { .. } | CallError::Cancelled => PrepareError::Fatal(fatal(err, client, &doing)),
        CallError::Api { status: StatusCode::FORBIDDEN, .. } => PrepareError::Fatal(fatal(err, client, &doing)),
        other => PrepareError::Circuit(anyhow::Error::new(other).context(doing)),
    }
}

/// Writes the chunks to a new file at `path` as they come, hashing them; syncs it at the end.
/// Runs on a blocking thread (this crate's tokio has no async file writes).
fn write_hashing(path: &Path, mut chunks: mpsc::Receiver<Vec<u8>>) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(path)?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = chunks.blocking_recv() {
        file.write_all(&chunk)?;
        hasher.update(&chunk);
        bytes = bytes.saturating_add(chunk.len() as u64);
    }
    file.sync_all()?;
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// Hex of the SHA-256 of the file at `path`, and its size, read on a blocking thread.
async fn hash_file(path: PathBuf) -> anyhow::Result<(String, u64)> {
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; HASH_BUFFER];
        let mut bytes = 0u64;
        loop {
            let read = file.read(&mut buffer).with_context(|| format!("reading {}", path.display()))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            bytes = bytes.saturating_add(read as u64);
        }
        Ok((hex::encode(hasher.finalize()), bytes))
    })
    .await
    .context("hashing a cached artifact panicked")?
}

/// Deletes the partial downloads of `folder` no download has touched for [`STALE_PARTIAL`]
/// (left by an agent stopped mid-download; a fresh one may be another agent's, in progress).
pub(crate) async fn remove_stale_partials(folder: PathBuf) {
    let removed = tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&folder) else { return 0 };
        let now = SystemTime::now();
        let mut removed = 0usize;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with('.') && name.ends_with(".part")) {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age >= STALE_PARTIAL);
            if stale && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    })
    .await
    .unwrap_or(0);
    if removed > 0 {
        tracing::info!(target: TARGET, removed, "deleted partial downloads left by an earlier run");
    }
}

/// Deletes a file, ignoring failures (it may never have been created).
async fn remove_quietly(path: &Path) {
    let _ = tokio::fs::remove_file(path).await;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{sha256_hex, CircuitFixture, FakeExchange, Reply, Request};
    use super::*;
    use crate::keys::test_support::TempDir;
    use crate::msm::ArkworksMsm;

    fn backend() -> Arc<dyn MsmBackend> {
        Arc::new(ArkworksMsm)
    }

    /// A fake exchange serving `fixture`'s routes; `tweak` may replace any answer.
    async fn exchange(
        fixture: &CircuitFixture,
        tweak: impl Fn(&Request, usize) -> Option<Reply> + Send + Sync + 'static,
    ) -> FakeExchange {
        let fixture = fixture.clone();
        FakeExchange::start(move |request, count| {
            if request.path == "/v1/auth/token" {
                return Reply::json(200, json!({"token": "tok"}));
            }
            tweak(request, count)
                .or_else(|| fixture.reply(request))
                .unwrap_or_else(|| Reply::json(404, json!({"error": {"code": "not_found", "message": "no route"}})))
        })
        .await
    }

    async fn client(exchange: &FakeExchange) -> ExchangeClient {
        let client = ExchangeClient::new(&exchange.url(), "pk_test").unwrap();
        client.login(&CallOptions::until_cancelled(&Signal::new())).await.unwrap();
        client
    }

    fn artifact_requests(exchange: &FakeExchange) -> Vec<Request> {
        exchange.requests().into_iter().filter(|request| request.path.contains("/artifacts/")).collect()
    }

    fn view(fixture: &CircuitFixture) -> CircuitView {
        serde_json::from_value(fixture.view()).unwrap()
    }

    /// Files in the circuit's cache folder, sorted.
    fn cached(dir: &TempDir, fixture: &CircuitFixture) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join(&fixture.id))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn artifacts_are_downloaded_checked_and_then_reused_from_the_cache() {
        let fixture = CircuitFixture::multiplier();
        let exchange = exchange(&fixture, |_, _| None).await;
        let client = client(&exchange).await;
        let dir = TempDir::new("circuits-cache");
        let served = prepare(&client, &view(&fixture), dir.path(), &backend(), &Signal::new()).await.unwrap();
        assert_eq!(
            (served.id.as_str(), served.size_log2, served.name.as_str()),
            (fixture.id.as_str(), 4, "multiplier")
        );
        assert!(served.prove > Duration::ZERO && served.proofs_per_hour > 0);
        let downloads = artifact_requests(&exchange);
        assert_eq!(downloads.len(), 3, "one download per artifact");
        assert!(downloads.iter().all(|request| request.method == "GET"));
        assert!(downloads.iter().all(|request| request.header("authorization") == Some("Bearer tok")));
        assert_eq!(cached(&dir, &fixture), ["r1cs", "wasm", "zkey"], "no temporary file left");
        for kind in ["r1cs", "wasm", "zkey"] {
            let file = std::fs::read(dir.path().join(&fixture.id).join(kind)).unwrap();
            assert_eq!(file, fixture.artifact(kind).unwrap(), "{kind}");
        }

        // A second start finds every file in the cache.
        prepare(&client, &view(&fixture), dir.path(), &backend(), &Signal::new()).await.unwrap();
        assert_eq!(artifact_requests(&exchange).len(), 3, "nothing downloaded again");

        // A cached file that no longer matches is replaced, and only that one.
        std::fs::write(dir.path().join(&fixture.id).join("wasm"), b"not the wasm").unwrap();
        prepare(&client, &view(&fixture), dir.path(), &backend(), &Signal::new()).await.unwrap();
        let downloads = artifact_requests(&exchange);
        assert_eq!(downloads.len(), 4);
        assert!(downloads[3].path.ends_with("/artifacts/wasm"), "{}", downloads[3].path);
        assert_eq!(std::fs::read(dir.path().join(&fixture.id).join("wasm")).unwrap(), fixture.wasm);
    }

    #[tokio::test]
    async fn a_corrupted_download_is_fetched_once_more_then_refused() {
        let fixture = CircuitFixture::multiplier();
        let honest = fixture.clone();
        // Every zkey download has one byte flipped; its header and the view state the true sha256.
        let exchange = exchange(&fixture, move |request, _| {
            request.path.ends_with("/artifacts/zkey").then(|| {
                let mut zkey = honest.zkey.clone();
                zkey[100] ^= 1;
                Reply::bytes(200, zkey).header("x-content-sha256", &sha256_hex(&honest.zkey))
            })
        })
        .await;
        let client = client(&exchange).await;
        let dir = TempDir::new("circuits-corrupt");
        let err = match prepare(&client, &view(&fixture), dir.path(), &backend(), &Signal::new()).await {
            Err(PrepareError::Circuit(err)) => format!("{err:#}"),
            Err(PrepareError::Fatal(err)) => panic!("not fatal: {err:#}"),
            Ok(_) => panic!("a corrupted zkey was accepted"),
        };
        assert!(err.contains("zkey") && err.contains("did not match") && err.contains("sha256"), "{err}");
        let zkeys = artifact_requests(&exchange).into_iter().filter(|r| r.path.ends_with("/zkey")).count();
        assert_eq!(zkeys, 2, "downloaded once more, then refused");
        assert_eq!(cached(&dir, &fixture), ["r1cs", "wasm"], "neither the bad zkey nor a temporary file is kept");
    }

    #[tokio::test]
    async fn a_download_whose_header_disagrees_or_that_runs_long_is_refused() {
        let fixture = CircuitFixture::multiplier();
        let honest = fixture.clone();
        let exchange = exchange(&fixture, move |request, _| {
            if request.path.ends_with("/artifacts/r1cs") {
                return Some(Reply::bytes(200, honest.r1cs.clone()).header("x-content-sha256", &"0".repeat(64)));
            }
            request.path.ends_with("/artifacts/wasm").then(|| {
                let mut longer = honest.wasm.clone();
                longer.extend_from_slice(&[0u8; 4096]);
                Reply::bytes(200, longer)
            })
        })
        .await;
        let client = client(&exchange).await;
        let dir = TempDir::new("circuits-header");
        let Err(PrepareError::Circuit(err)) =
            prepare(&client, &view(&fixture), dir.path(), &backend(), &Signal::new()).await
        else {
            panic!("a download whose header disagrees was accepted")
        };
        let err = format!("{err:#}");
        assert!(err.contains("r1cs") && err.contains("sent it as sha256"), "{err}");

        // With the r1cs cached, the wasm is fetched next.
        std::fs::write(dir.path().join(&fixture.id).join("r1cs"), &fixture.r1cs).unwrap();
        let Err(PrepareError::Circuit(err)) =
            prepare(&client, &view(&fixture), dir.path(), &backend(), &Signal::new()).await
        else {
            panic!("an overlong download was accepted")
        };
        let err = format!("{err:#}");
        assert!(err.contains("wasm") && err.contains("larger than"), "{err}");
        assert_eq!(cached(&dir, &fixture), ["r1cs"]);
    }

    #[tokio::test]
    async fn all_serves_the_ready_circuits_and_named_ones_must_exist() {
        let fixture = CircuitFixture::multiplier();
        let exchange = exchange(&fixture, |_, _| None).await;
        let client = client(&exchange).await;
        let dir = TempDir::new("circuits-all");
        let cancel = Signal::new();
        let served = prepare_selected(&client, &CircuitSelection::All, dir.path(), &backend(), &cancel).await.unwrap();
        let ids: Vec<&str> = served.iter().map(|circuit| circuit.id.as_str()).collect();
        assert_eq!(ids, [fixture.id.as_str()], "the circuit that is not ready is skipped");

        let named = CircuitSelection::Ids(vec![fixture.id.clone()]);
        let served = prepare_selected(&client, &named, dir.path(), &backend(), &cancel).await.unwrap();
        assert_eq!(served.len(), 1);
        let unknown = CircuitSelection::Ids(vec!["a".repeat(64)]);
        let err = prepare_selected(&client, &unknown, dir.path(), &backend(), &cancel).await.err().unwrap();
        assert!(err.to_string().contains("has no circuit"), "{err:#}");
        let none = prepare_selected(&client, &CircuitSelection::None, dir.path(), &backend(), &cancel).await.unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn a_broken_transfer_and_a_first_mismatch_are_recovered_from() {
        let fixture = CircuitFixture::multiplier();
        let honest = fixture.clone();
        // The first wasm download breaks off after 1000 bytes; the first zkey is a corrupt one.
        let exchange = exchange(&fixture, move |request, count| match request.path.rsplit('/').next() {
            Some("wasm") if count == 1 => Some(Reply::bytes(200, honest.wasm.clone()).cut_after(1000)),
            Some("zkey") if count == 1 => Some(Reply::bytes(200, honest.zkey[..honest.zkey.len() - 1].to_vec())),
            _ => None,
        })
        .await;
        let client = client(&exchange).await;
        let dir = TempDir::new("circuits-broken");
        let served = prepare(&client, &view(&fixture), dir.path(), &backend(), &Signal::new()).await.unwrap();
        assert_eq!(served.size_log2, 4);
        let downloads: Vec<String> = artifact_requests(&exchange).into_iter().map(|r| r.path).collect();
        assert_eq!(downloads.iter().filter(|path| path.ends_with("/wasm")).count(), 2, "{downloads:?}");
        assert_eq!(downloads.iter().filter(|path| path.ends_with("/zkey")).count(), 2, "{downloads:?}");
        assert_eq!(cached(&dir, &fixture), ["r1cs", "wasm", "zkey"]);
        assert_eq!(std::fs::read(dir.path().join(&fixture.id).join("zkey")).unwrap(), fixture.zkey);
    }

    #[tokio::test]
    async fn stale_partial_downloads_are_deleted_fresh_ones_kept() {
        let dir = TempDir::new("circuits-partials");
        let (stale, fresh, other) =
            (dir.path().join(".zkey.1.part"), dir.path().join(".zkey.2.part"), dir.path().join("zkey"));
        for path in [&stale, &fresh, &other] {
            std::fs::write(path, b"x").unwrap();
        }
        let old = SystemTime::now() - STALE_PARTIAL - Duration::from_secs(1);
        std::fs::File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
        remove_stale_partials(dir.path().to_path_buf()).await;
        assert!(!stale.exists() && fresh.exists() && other.exists());
    }

    #[test]
    fn a_tampered_proof_is_well_formed_and_does_not_verify() {
        let fixture = CircuitFixture::multiplier();
        let circuit = CircomCircuit::load(&fixture.r1cs, &fixture.wasm).unwrap();
        let zkey = Zkey::parse(&fixture.zkey).unwrap();
        let served = ServedCircuit {
            id: fixture.id.clone(),
            name: "multiplier".into(),
            circuit,
            zkey,
            size_log2: 4,
            prove: Duration::ZERO,
            proofs_per_hour: 0,
        };
        let vk = prepare_verifying_key(&served.zkey.proving_key.vk);
        let (proof, public) = served.prove_input(&fixture.input, &ArkworksMsm, false).unwrap();
        assert!(Groth16::<Bn254>::verify_proof(&vk, &proof, &public).unwrap());
        let (tampered, public) = served.prove_input(&fixture.input, &ArkworksMsm, true).unwrap();
        let encoded = crate::encoding::encode_proof(&tampered);
        assert_eq!(crate::encoding::decode_proof(&encoded).unwrap(), tampered, "encodes like any proof");
        assert!(!Groth16::<Bn254>::verify_proof(&vk, &tampered, &public).unwrap());
        let err = served.prove_input(&json!({"a": "1"}), &ArkworksMsm, false).unwrap_err();
        assert!(matches!(err, CircuitJobError::Input(_)), "{err}");
    }
}
