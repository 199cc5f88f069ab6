//! Delivered proofs checked together: the proofs of a batch of submissions
//! ([`super::deliveries`]) are decoded and verified as one batch per verifying key
//! ([`pcx_prover_pool::batch_verify`]: one final exponentiation and about one pairing per proof
//! instead of three), on the blocking pool, in one task per batch (a proof costs no thread
//! hand-off of its own). Each verdict is exactly
//! the one-by-one verdict: a bad proof in a batch is found and refused alone, a proof that does
//! not decode is invalid.

use std::sync::Arc;

use pcx_prover_pool::batch_verify::{verify_batch, Claim};
use pcx_prover_pool::circuit::{Circuit, Claimed, ProofClaim, Verdict};
use pcx_prover_pool::keys::KeyStore;


/// A submitted proof to check: the slot's circuit and stored input, and the proof as submitted.
#[derive(Debug, Clone)]
pub struct ProofToCheck {
    /// The circuit of the slot's class.
    pub circuit: Circuit,
    /// The slot's stored input.
    pub input: String,
    /// The proof, as submitted.
    pub proof: String,
}

/// Proofs per batch at most (the gain per proof levels off well before).
pub(super) const PROOFS_PER_BATCH: usize = 64;

/// The fewest proofs a core is given (below, batch verification gains little per proof).
const FEWEST_PER_CORE: usize = 16;

/// The verdicts of `proofs` (see [`check`]), in their order, on the blocking pool: split among
/// the cores, each part a batch of its own. An error is the exchange's own (a stored input or a
/// key it cannot use), in words for the log.
pub(super) async fn check_on_blocking_pool(keys: Arc<KeyStore>, proofs: Vec<ProofToCheck>) -> Vec<Result<Verdict, String>> {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let per_part = proofs.len().div_ceil(cores).max(FEWEST_PER_CORE);
    let mut parts = Vec::new();
    let mut rest = proofs;
    while !rest.is_empty() {
        let tail = rest.split_off(per_part.min(rest.len()));
        let (keys, part) = (Arc::clone(&keys), std::mem::replace(&mut rest, tail));
        parts.push(tokio::task::spawn_blocking(move || check(&keys, &part)));
    }
    let mut verdicts = Vec::new();
    for part in parts {
        match part.await {
            Ok(part) => verdicts.extend(part),
            // A verification that broke gives no verdict (never "invalid": that would charge the
            // provers for the exchange's fault); the batch's callers get an error.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("proof verification did not finish: {err}"),
        }
    }
    verdicts
}

/// The verdicts of `proofs`, in their order: each decoded, then each key's claims as one batch.
pub(super) fn check(keys: &KeyStore, proofs: &[ProofToCheck]) -> Vec<Result<Verdict, String>> {
    let mut verdicts: Vec<Option<Result<Verdict, String>>> = vec![None; proofs.len()];
    let mut claims: Vec<(usize, ProofClaim)> = Vec::new();
    for (i, p) in proofs.iter().enumerate() {
        match p.circuit.claim(keys, &p.input, &p.proof) {
            Ok(Claimed::Checkable(claim)) => claims.push((i, claim)),
            Ok(Claimed::Malformed) => verdicts[i] = Some(Ok(Verdict::Invalid)),
            Err(err) => verdicts[i] = Some(Err(err.to_string())),
        }
    }
    // Claims of one key share its Arc (keys are loaded once per circuit); few keys per batch.
    let mut by_key: Vec<Vec<usize>> = Vec::new();
    for (k, (_, claim)) in claims.iter().enumerate() {
        match by_key.iter_mut().find(|group| Arc::ptr_eq(&claims[group[0]].1.verifying_key, &claim.verifying_key)) {
            Some(group) => group.push(k),
            None => by_key.push(vec![k]),
        }
    }
    let mut rng = rand::thread_rng();
    for group in by_key {
        let batch: Vec<Claim<'_>> =
            group.iter().map(|&k| Claim { public_inputs: &claims[k].1.public_inputs, proof: &claims[k].1.proof }).collect();
        let pvk = &claims[group[0]].1.verifying_key;
        for (&k, ok) in group.iter().zip(verify_batch(pvk, &batch, &mut rng)) {
            let (i, claim) = &claims[k];
            verdicts[*i] = Some(Ok(claim.verdict(ok)));
        }
    }
    verdicts.into_iter().map(|v| v.unwrap_or_else(|| Err("a proof was left unchecked".into()))).collect()
}
