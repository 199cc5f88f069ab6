//! The `pcx prover` agent: runs next to a prover's CPUs/GPUs, claims slot jobs from the exchange,
//! proves them and submits the proofs; and `pcx prover bench`, which measures this machine.
//!
//! - [`ProverCli`], [`AgentArgs`], [`BenchArgs`] (`cli`): the command line; [`default_keys_dir`]
//!   says where proving keys are cached.
//! - [`main`]: what `pcx prover ...` runs; [`run_agent`] (`worker`): the agent itself, also run
//!   in-process by tests and `pcx demo`; [`bench()`]: the benchmark table.
//! - [`select_backend`] (`select`): `--backend auto|cpu|icicle`, shared by the agent and the
//!   benchmark; ICICLE is used only after its self-test against arkworks passed (in a child
//!   process first when running as `pcx`: [`icicle_self_test`] is that child's command).
//! - `exchange_keys`: the `hash-chain` proving keys the agent proves with, the exchange's
//!   (`GET /v1/circuits/hash-chain-<k>` and its `pk` artifact), downloaded into the keys directory
//!   or reused from it when the sha256 matches; the agent's key store never generates keys.
//!   `pcx prover bench` alone uses the deterministic DEVELOPMENT keys (no exchange involved).
//! - `circuits`: the registered circuits served besides `hash-chain` (`--circuits`): artifacts
//!   downloaded into a cache and checked against their sha256, loaded, benchmarked on the sample
//!   input (the proof must verify) before they are advertised; its download machinery also
//!   fetches the `hash-chain` keys.
//! - `client`: the HTTP client (bearer token, re-login on 401, retries with `backoff`: 250 ms
//!   doubling to 5 s, jittered; streamed downloads; TLS by rustls with the system's and Mozilla's
//!   roots plus `--exchange-ca-file`); `api`: the request and response bodies; `signal`: the
//!   shutdown flags.
//!
//! What holds (details in the `worker` and `client` docs): the API key is only sent over TLS
//! (`https://`) or to this machine (`http://` to 127.0.0.0/8, ::1, `localhost`) unless
//! `--allow-insecure-http` says otherwise (checked before any request, and for every redirect); a
//! TLS certificate the client refuses stops the agent with an error instead of being retried; the
//! agent never sends two different proofs for one job; every proof is sent with
//! `Idempotency-Key: <job_id>` and retried unchanged until answered or its lease (plus a 5 s grace)
//! is over; an unreachable exchange is retried for as long as it takes, with one warning per outage; a refused API key stops the agent with an error;
//! on shutdown the agent claims nothing more, finishes the proofs that can still make their lease,
//! releases the others, and returns within about a minute.
//!
//! Logs use the tracing target `pcx_prover`.

mod api;
mod backoff;
mod circuits;
mod cli;
mod client;
mod exchange_keys;
mod select;
mod signal;
#[cfg(test)]
mod testing;
mod worker;

use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::sync::watch;

pub use cli::{default_keys_dir, AgentArgs, BackendChoice, BenchArgs, Fault, ProverCli, ProverCommand};
pub use select::{icicle_self_test, select_backend, select_backend_with, Probe, SelectedBackend};
pub use worker::run_agent;

use crate::keys::KeyStore;
use crate::msm::ArkworksMsm;

/// The tracing target of the agent's logs.
pub(crate) const TARGET: &str = "pcx_prover";

/// Runs `pcx prover ...`: the benchmark, or the agent until SIGTERM or Ctrl-C.
///
/// The first signal starts a graceful shutdown (see [`run_agent`]); a second one returns an error
/// at once, without waiting for jobs in hand.
///
/// ICICLE is self-tested in a child process (`<this executable> ... prover icicle-self-test`)
/// before this process loads it, so an ICICLE that aborts cannot take the agent down.
pub async fn main(cli: ProverCli) -> anyhow::Result<()> {
    select::enable_child_probe();
    match cli.command {
        Some(ProverCommand::Bench(args)) => bench(args).await,
        Some(ProverCommand::IcicleSelfTest) => {
            tokio::task::spawn_blocking(icicle_self_test).await.context("the ICICLE self-test panicked")?
        }
        None => {
            let signals = listen_for_termination();
            tokio::select! {
                result = run_agent(cli.agent, signal_count(signals.clone(), 1)) => result,
                () = signal_count(signals, 2) => bail!("interrupted twice: stopped without waiting for the jobs in hand"),
            }
        }
    }
}

/// Runs `pcx prover bench`: measures each size and prints the table to stdout. No exchange is
/// involved: a size without a key file in the keys directory is measured with the deterministic
/// DEVELOPMENT keys, generated and cached there on its first run (forgeable, but a proof takes as
/// long with any key of the size); a key file already there (the exchange's, fetched by the agent)
/// is used as it is. The output ends with a line saying so. With ICICLE (chosen by `--backend icicle`,
/// or by `auto` on a GPU) each size is measured on ICICLE and on the CPU backend side by side, and
/// the command fails unless ICICLE's MSMs and proofs equal arkworks'.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let sizes = args.sizes()?;
    let choice = args.backend;
    let selected =
        tokio::task::spawn_blocking(move || select_backend(choice)).await.context("choosing the backend panicked")??;
    let keys = Arc::new(KeyStore::new(args.keys_dir.clone().unwrap_or_else(default_keys_dir)));
    if selected.is_icicle {
        let mut rows = Vec::with_capacity(sizes.len());
        for size_log2 in sizes {
            log_measuring(&keys, size_log2, args.repetitions);
            let (keys, backend, repetitions) = (Arc::clone(&keys), Arc::clone(&selected.backend), args.repetitions);
            let row = tokio::task::spawn_blocking(move || {
                crate::bench::compare_backends(&keys, size_log2, backend.as_ref(), &ArkworksMsm, repetitions)
            })
            .await
            .context("the benchmark panicked")?
            .with_context(|| format!("benchmarking size_log2 {size_log2}"))?;
            rows.push(row);
        }
        crate::bench::print_comparison(&rows);
        print_keys_note(&keys);
        return Ok(());
    }
    let mut rows = Vec::with_capacity(sizes.len());
    for size_log2 in sizes {
        log_measuring(&keys, size_log2, args.repetitions);
        let (keys, backend, repetitions) = (Arc::clone(&keys), Arc::clone(&selected.backend), args.repetitions);
        let row = tokio::task::spawn_blocking(move || {
            let mut row = crate::bench::measure_prove(&keys, size_log2, backend.as_ref(), repetitions)?;
            row.reference = Some(crate::bench::measure_reference(&keys, size_log2, repetitions)?);
            Ok::<_, crate::groth16::ProveError>(row)
        })
        .await
        .context("the benchmark panicked")?
        .with_context(|| format!("benchmarking size_log2 {size_log2}"))?;
        rows.push(row);
    }
    println!("backend: {}", selected.label);
    crate::bench::print_table(&rows);
    print_keys_note(&keys);
    Ok(())
}

fn log_measuring(keys: &KeyStore, size_log2: u8, repetitions: usize) {
    tracing::info!(
        target: TARGET,
        size_log2,
        repetitions,
        keys_dir = %keys.dir().display(),
        "measuring with the key file of this size, else with DEVELOPMENT keys (deterministic, forgeable; for timing \
         only) generated and cached on the first run, which can take a while"
    );
}

/// The last line of `pcx prover bench`: which keys it measured with.
fn print_keys_note(keys: &KeyStore) {
    println!(
        "keys: {} (sizes without a key file there use the deterministic DEVELOPMENT setup, forgeable, for timing \
         only; the agent proves with the exchange's keys)",
        keys.dir().display()
    );
}

/// Counts SIGINT (Ctrl-C) and SIGTERM from now on.
fn listen_for_termination() -> watch::Receiver<u32> {
    let (count, receiver) = watch::channel(0u32);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|err| tracing::warn!(target: TARGET, error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the agent"))
            .ok();
        let mut ctrl_c_works = true;
        loop {
            let listen_ctrl_c = ctrl_c_works;
            let ctrl_c = async move {
                if listen_ctrl_c {
                    tokio::signal::ctrl_c().await
                } else {
                    std::future::pending().await
                }
            };
            #[cfg(unix)]
            let sigterm = async {
                let received = match terminate.as_mut() {
                    Some(stream) => stream.recv().await.is_some(),
                    None => false,
                };
                if !received {
                    std::future::pending::<()>().await;
                }
            };
            #[cfg(not(unix))]
            let sigterm = std::future::pending::<()>();
            let name = tokio::select! {
                result = ctrl_c => match result {
                    Ok(()) => "Ctrl-C",
                    Err(err) => {
                        tracing::warn!(target: TARGET, error = %err, "cannot listen for Ctrl-C");
                        ctrl_c_works = false;
                        continue;
                    }
                },
                () = sigterm => "SIGTERM",
            };
            count.send_modify(|count| *count = count.saturating_add(1));
            let seen = *count.borrow();
            if seen == 1 {
                tracing::info!(target: TARGET, signal = name, "stopping gracefully; send it again to stop at once");
            } else {
                tracing::warn!(target: TARGET, signal = name, "stopping at once");
            }
        }
    });
    receiver
}

/// Resolves once `signals` has counted `n` (never, if the listener is gone).
async fn signal_count(mut signals: watch::Receiver<u32>, n: u32) {
    if signals.wait_for(|count| *count >= n).await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
