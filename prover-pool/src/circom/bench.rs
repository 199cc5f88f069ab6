//! Timing a circom circuit: our witness and proof next to snarkjs' own prover on the same
//! machine, circuit and input (`pcx bench circom`).
//!
//! snarkjs runs in-process in node (`snarkjs_reference.js`, embedded here): one warm-up proof,
//! then the median of `reps` runs of witness calculation, `groth16.prove` and `fullProve`, so
//! node's start-up and snarkjs' curve set-up are not counted against it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::zkey::Zkey;
use super::{prove, CircomCircuit, CircomSetup};
use crate::msm::MsmBackend;

/// The reference script.
const REFERENCE_JS: &str = include_str!("snarkjs_reference.js");

/// Our figures for one circuit.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Parsing the r1cs and compiling the wasm.
    pub load: Duration,
    /// Parsing the zkey.
    pub load_zkey: Duration,
    /// Median witness computation (wasm + constraint check).
    pub witness: Duration,
    /// Median proof from a computed witness.
    pub prove: Duration,
}

/// snarkjs' figures (milliseconds, medians).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Reference {
    /// `wtns.calculate`.
    pub witness_ms: f64,
    /// `groth16.prove` from a computed witness.
    pub prove_ms: f64,
    /// `groth16.fullProve`.
    pub fullprove_ms: f64,
}

/// Times our prover on `r1cs`/`wasm`/`zkey` with `input`, `reps` times (median).
pub fn measure(
    r1cs: &[u8],
    wasm: &[u8],
    zkey: &[u8],
    input: &serde_json::Value,
    backend: &dyn MsmBackend,
    reps: usize,
) -> anyhow::Result<Timing> {
    let started = Instant::now();
    let circuit = CircomCircuit::load(r1cs, wasm)?;
    let load = started.elapsed();
    let started = Instant::now();
    let setup = Zkey::parse(zkey)?;
    let load_zkey = started.elapsed();
    CircomSetup::check(&circuit, &setup)?;
    let vk = ark_groth16::prepare_verifying_key(&setup.proving_key.vk);
    let (mut witness_times, mut prove_times) = (Vec::new(), Vec::new());
    // One warm-up round (thread pools, caches), then `reps` measured ones.
    for round in 0..=reps.max(1) {
        let started = Instant::now();
        let witness = circuit.witness(input)?;
        let witness_time = started.elapsed();
        let started = Instant::now();
        let proof = prove(&circuit, &setup, &witness, backend, &mut rand::rngs::OsRng)?;
        let prove_time = started.elapsed();
        anyhow::ensure!(
            crate::groth16::verify(&vk, &circuit.public_signals(&witness), &proof),
            "a proof made with backend {} does not verify",
            backend.name()
        );
        if round > 0 {
            witness_times.push(witness_time);
            prove_times.push(prove_time);
        }
    }
    Ok(Timing { load, load_zkey, witness: median(witness_times), prove: median(prove_times) })
}

/// Runs snarkjs' prover on the same files (`snarkjs_dir` is the npm package's folder), or says
/// why it could not.
pub fn reference(snarkjs_dir: &Path, wasm: &Path, zkey: &Path, input: &Path, reps: usize) -> anyhow::Result<Reference> {
    let output = Command::new("node")
        .arg("-e")
        .arg(REFERENCE_JS)
        .arg(snarkjs_dir)
        .arg(wasm)
        .arg(zkey)
        .arg(input)
        .arg(reps.max(1).to_string())
        .output()
        .map_err(|e| anyhow::anyhow!("running node (needed for the snarkjs reference): {e}"))?;
    anyhow::ensure!(output.status.success(), "snarkjs failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    let line = String::from_utf8_lossy(&output.stdout);
    Ok(serde_json::from_str(line.trim().lines().last().unwrap_or_default())?)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}
