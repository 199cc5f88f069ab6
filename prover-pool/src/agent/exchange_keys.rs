//! The `hash-chain` proving keys the agent proves with: the exchange's, never its own.
//!
//! The exchange makes each traded size's Groth16 setup once (from the OS's randomness, or, only
//! when its operator asks for it, the deterministic development setup) and serves its proving
//! key at `GET /v1/circuits/hash-chain-<k>/artifacts/pk`, described (sha256, bytes) by
//! `GET /v1/circuits/hash-chain-<k>`. Before benchmarking a size, [`ensure_exchange_key`] makes
//! `<keys dir>/hash-chain-<k>.pk` that key and loads it.
//!
//! Invariants:
//! - The agent's [`KeyStore`] is [`KeyOrigin::Provided`](crate::keys::KeyOrigin::Provided): it
//!   never generates a key. A size whose key the exchange does not serve stops the agent at start.
//! - The `.pk` is used only when its SHA-256 equals the view's: a matching file is reused without
//!   a download, any other is replaced by a download checked as `super::circuits` checks
//!   artifacts ([`fetch_artifact`]: streamed and hashed into a temporary file of the key
//!   directory, renamed into place only once it matched, a second mismatch refused).
//! - When the `.pk` was downloaded, the `.vk` next to it is deleted and the store forgets the
//!   size: the store rebuilds the `.vk` from the `.pk` when it loads it, so the pair never mixes
//!   two setups. A `.vk` of another setup next to a reused `.pk` is deleted and rebuilt likewise.
//! - The key is loaded (every point checked, and the shape of the circuit of that size) before the
//!   benchmark; a key that does not load is deleted and the agent does not start.
//! - While the exchange is still making a setup (503, or a status other than `ready`), the agent
//!   waits: the client's backoff, at least `Retry-After`, at most [`MAX_POLL`] between polls, with
//!   a progress line every [`PROGRESS_EVERY`]. Shutdown ends the wait.
//! - Agents of one process sharing a key directory (`pcx demo`) take turns per key file, so one
//!   never deletes the `.vk` another just rebuilt. Separate processes sharing a directory are not
//!   coordinated: give each agent process its own `--keys-dir`, or start them one after another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use reqwest::StatusCode;

use super::api::HashChainView;
use super::backoff::Backoff;
use super::circuits::{fetch_artifact, remove_stale_partials, ArtifactTarget, Obtained, PrepareError};
use super::cli::CIRCUIT;
use super::client::{CallError, CallOptions, ExchangeClient};
use super::signal::Signal;
use super::worker::fatal;
use super::TARGET;
use crate::keys::{KeyError, KeyStore};

/// The status of a size whose setup is made.
const READY: &str = "ready";
/// The artifact route's name of the proving key.
const PK: &str = "pk";
/// Longest wait between two polls of a setup in the making, whatever `Retry-After` says.
pub(crate) const MAX_POLL: Duration = Duration::from_secs(30);
/// How often a wait for a setup logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The exchange's view id of size 2^size_log2: `hash-chain-<k>`.
pub(crate) fn circuit_id(size_log2: u8) -> String {
    format!("{CIRCUIT}-{size_log2}")
}

/// Makes `keys`' proving key of size 2^size_log2 the exchange's (see the module docs) and loads
/// it into the store. An error stops the agent; when `cancel` was raised it is only the shutdown.
pub(crate) async fn ensure_exchange_key(
    client: &ExchangeClient,
    keys: &Arc<KeyStore>,
    size_log2: u8,
    cancel: &Signal,
) -> anyhow::Result<()> {
    let id = circuit_id(size_log2);
    let view = wait_for_setup(client, &id, size_log2, cancel).await?;
    if view.circuit_id != id {
        bail!("asked the exchange for {id}, it answered with {}", view.circuit_id);
    }
    if let Some(stated) = view.size_log2.filter(|stated| *stated != size_log2) {
        bail!("asked the exchange for {id}, it describes size_log2 {stated}");
    }
    let stated = view
        .artifacts
        .as_ref()
        .map(|artifacts| &artifacts.pk)
        .ok_or_else(|| anyhow!("the exchange's view of {id} has no `artifacts.pk`"))?;
    match view.development_keys {
        Some(true) => tracing::warn!(
            target: TARGET,
            size_log2,
            exchange = %client.base(),
            "THIS EXCHANGE USES DEVELOPMENT KEYS for hash-chain 2^{size_log2}: their setup is public and \
             deterministic, so ANYONE CAN FORGE PROOFS that verify; never trade real value on it"
        ),
        Some(false) => {}
        None => tracing::warn!(
            target: TARGET,
            size_log2,
            "the exchange does not say whether its hash-chain keys are development keys"
        ),
    }

    let dir = keys.dir().to_path_buf();
    tokio::fs::create_dir_all(&dir).await.with_context(|| format!("creating the keys directory {}", dir.display()))?;
    let pk_path = keys.proving_key_path(size_log2);
    let turn = file_turn(&pk_path).await;
    let _turn = turn.lock().await;
    remove_stale_partials(dir).await;

    let target = ArtifactTarget { circuit_id: &id, artifact: PK, path: pk_path.clone() };
    let obtained = fetch_artifact(client, &target, stated, cancel).await.map_err(PrepareError::into_inner)?;
    if let Obtained::Downloaded { bytes, elapsed } = obtained {
        // The `.vk` was derived from whatever `.pk` was there before, if any.
        let vk_path = keys.verifying_key_path(size_log2);
        remove_if_present(&vk_path).await?;
        keys.forget(size_log2);
        tracing::info!(
            target: TARGET,
            size_log2,
            path = %pk_path.display(),
            sha256 = %stated.sha256,
            bytes,
            download_ms = elapsed.as_millis() as u64,
            "installed the exchange's hash-chain proving key"
        );
    }
    load(keys, size_log2, &pk_path).await.with_context(|| {
        format!("the exchange's hash-chain 2^{size_log2} proving key (sha256 {}) is not usable", stated.sha256)
    })
}

/// The view of `id` once its setup is made: waits out 503s and statuses other than `ready`.
async fn wait_for_setup(
    client: &ExchangeClient,
    id: &str,
    size_log2: u8,
    cancel: &Signal,
) -> anyhow::Result<HashChainView> {
    let path = format!("/v1/circuits/{id}");
    let options = CallOptions::until_cancelled(cancel);
    let (started, mut backoff, mut logged) = (Instant::now(), Backoff::new(), None::<Instant>);
    loop {
        let (reason, retry_after) =
            match client.get_or_unavailable::<HashChainView>("hash-chain key", &path, &options).await {
                Ok(view) => match view.status.as_deref() {
                    None | Some(READY) => {
                        if logged.is_some() {
                            tracing::info!(
                                target: TARGET,
                                size_log2,
                                waited_secs = started.elapsed().as_secs(),
                                "the exchange's hash-chain setup is ready"
                            );
                        }
                        return Ok(view);
                    }
                    Some(status) => (format!("its status is `{status}`"), None),
                },
                Err(CallError::Unavailable { message, retry_after }) => (message, retry_after),
                Err(CallError::Api { status: StatusCode::NOT_FOUND, message, .. }) => {
                    return Err(not_served(client, &path, size_log2, &message));
                }
                Err(err) => return Err(fatal(err, client, &format!("reading {path}"))),
            };
        if logged.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            logged = Some(Instant::now());
            tracing::info!(
                target: TARGET,
                size_log2,
                waited_secs = started.elapsed().as_secs(),
                reason = %reason,
                "waiting for the exchange's hash-chain 2^{size_log2} setup"
            );
        }
        let delay = backoff.next_delay().max(retry_after.unwrap_or_default()).min(MAX_POLL);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.raised() => bail!("shutdown while waiting for the exchange's hash-chain 2^{size_log2} setup"),
        }
    }
}

/// The error of a size whose view the exchange does not have.
fn not_served(client: &ExchangeClient, path: &str, size_log2: u8, message: &str) -> anyhow::Error {
    anyhow!(
        "the exchange at {} serves no hash-chain 2^{size_log2} key (GET {path}: 404 {message}): it does not trade \
         this size, or predates exchange-made keys; agents never make their own keys",
        client.base()
    )
}

/// Loads the proving key into the store (on a blocking thread). A `.vk` of another setup is
/// deleted and the key loaded once more; a `.pk` that does not load is deleted with its `.vk`.
async fn load(keys: &Arc<KeyStore>, size_log2: u8, pk_path: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut rebuilt_vk = false;
    loop {
        let store = Arc::clone(keys);
        let loaded = tokio::task::spawn_blocking(move || store.proving_key(size_log2).map(|_| ()))
            .await
            .context("loading the proving key panicked")?;
        match loaded {
            Ok(()) => {
                tracing::info!(
                    target: TARGET,
                    size_log2,
                    load_ms = started.elapsed().as_millis() as u64,
                    "loaded the exchange's hash-chain proving key"
                );
                return Ok(());
            }
            Err(KeyError::Mismatch { vk, .. }) if !rebuilt_vk => {
                tracing::warn!(
                    target: TARGET,
                    size_log2,
                    path = %vk.display(),
                    "the verifying key file is of another setup than the exchange's proving key; rebuilding it"
                );
                remove_if_present(&vk).await?;
                keys.forget(size_log2);
                rebuilt_vk = true;
            }
            Err(err) => {
                keys.forget(size_log2);
                remove_if_present(pk_path).await?;
                remove_if_present(&keys.verifying_key_path(size_log2)).await?;
                return Err(anyhow::Error::new(err).context(format!("deleted {}", pk_path.display())));
            }
        }
    }
}

/// Deletes a file unless it is already gone.
async fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(anyhow::Error::new(err).context(format!("deleting {}", path.display()))),
    }
}

/// The lock the agents of this process take in turn to replace and load the key file at `path`.
async fn file_turn(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static TURNS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    // One name per file however the directory was spelled (it exists: the caller created it).
    let key = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            tokio::fs::canonicalize(dir).await.map_or_else(|_| path.to_path_buf(), |dir| dir.join(name))
        }
        _ => path.to_path_buf(),
    };
    let mut turns = TURNS.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(turns.entry(key).or_default())
}
