//! Delivered proofs checked together: the proofs that arrive while others are being verified are
//! verified as one batch per verifying key ([`pcx_prover_pool::batch_verify`]: one final
//! exponentiation and about one pairing per proof instead of three), on the blocking pool. Each
//! verdict is exactly the one-by-one verdict: a bad proof in a batch is found and refused alone.

use std::sync::Arc;

use pcx_prover_pool::batch_verify::{verify_batch, Claim};
use pcx_prover_pool::circuit::{ProofClaim, Verdict};

use crate::batch::Batcher;

/// See the module docs.
pub type ProofChecks = Batcher<ProofClaim, Verdict>;

/// Proofs per batch at most (the gain per proof levels off well before).
const PROOFS_PER_BATCH: usize = 64;

/// The [`ProofChecks`] of this process: as many batches at a time as there are cores.
pub fn proof_checks() -> ProofChecks {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    Batcher::new(
        PROOFS_PER_BATCH,
        cores,
        Arc::new(|claims: Vec<ProofClaim>| {
            Box::pin(async move {
                match tokio::task::spawn_blocking(move || check(&claims)).await {
                    Ok(verdicts) => verdicts,
                    // A verification that broke gives no verdict (never "invalid": that would
                    // charge the provers for the exchange's fault); its callers get an error.
                    Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                    Err(err) => panic!("proof verification did not finish: {err}"),
                }
            })
        }),
    )
}

/// The verdicts of `claims`, in their order, each key's claims as one batch.
fn check(claims: &[ProofClaim]) -> Vec<Verdict> {
    // Claims of one key share its Arc (keys are loaded once per circuit); few keys per batch.
    let mut by_key: Vec<Vec<usize>> = Vec::new();
    for (i, claim) in claims.iter().enumerate() {
        match by_key.iter_mut().find(|group| Arc::ptr_eq(&claims[group[0]].verifying_key, &claim.verifying_key)) {
            Some(group) => group.push(i),
            None => by_key.push(vec![i]),
        }
    }
    let mut valid = vec![false; claims.len()];
    let mut rng = rand::thread_rng();
    for indices in by_key {
        let batch: Vec<Claim<'_>> =
            indices.iter().map(|&i| Claim { public_inputs: &claims[i].public_inputs, proof: &claims[i].proof }).collect();
        let pvk = &claims[indices[0]].verifying_key;
        for (&i, ok) in indices.iter().zip(verify_batch(pvk, &batch, &mut rng)) {
            valid[i] = ok;
        }
    }
    claims.iter().zip(valid).map(|(claim, ok)| claim.verdict(ok)).collect()
}
