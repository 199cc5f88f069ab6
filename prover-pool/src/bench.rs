//! Prover benchmark: how long a `hash-chain` proof takes here, and so how many proofs per hour
//! this machine can sell. Backs `pcx prover bench`.
//!
//! Every measured proof is verified; a proof that does not verify is an error, never a timing
//! (a fast wrong backend must not look good). Times are wall-clock medians over the repetitions,
//! excluding key setup/loading and verification, including synthesis, the QAP and all MSMs.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ark_bn254::Fr;
use ark_ff::UniformRand;

use crate::groth16::{prove, verify, ProveError};
use crate::hash_chain::{hash_chain_output, rounds, HashChainCircuit};
use crate::keys::KeyStore;
use crate::msm::{CountingMsm, MsmBackend};

/// One size's measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct ProveTiming {
    /// The circuit size (log2).
    pub size_log2: u8,
    /// Time to obtain the proving key: generating it or loading its file; zero when it was
    /// already in memory.
    pub setup: Duration,
    /// Median time of one proof.
    pub prove: Duration,
    /// floor(3600 s / `prove`).
    pub proofs_per_hour: u64,
    /// Share of the median proof's time spent inside the MSM backend (0.0 ..= 1.0).
    pub msm_share: Option<f64>,
}

/// Proves hash-chain 2^size_log2 `repetitions` times (at least once) with `backend`, verifying
/// each proof, and reports the median.
pub fn measure_prove(
    keys: &KeyStore,
    size_log2: u8,
    backend: &dyn MsmBackend,
    repetitions: usize,
) -> Result<ProveTiming, ProveError> {
    let setup_started = Instant::now();
    let in_memory = keys.has_proving_key_in_memory(size_log2);
    let pk = keys.proving_key(size_log2)?;
    let setup = if in_memory { Duration::ZERO } else { setup_started.elapsed() };
    let pvk = keys.verifying_key(size_log2)?;

    let counting = CountingMsm::new(backend);
    let mut rng = rand::rngs::OsRng;
    let mut runs = Vec::with_capacity(repetitions.max(1));
    for _ in 0..repetitions.max(1) {
        let seed = Fr::rand(&mut rng);
        counting.reset();
        let started = Instant::now();
        let proof = prove(&pk, HashChainCircuit { seed: Some(seed), size_log2 }, &counting, &mut rng)?;
        let elapsed = started.elapsed();
        if !verify(&pvk, &[seed, hash_chain_output(seed, size_log2)], &proof) {
            return Err(ProveError::ProofDoesNotVerify { backend: backend.name().to_owned() });
        }
        runs.push((elapsed, counting.time_in_msm()));
    }
    runs.sort_by_key(|(elapsed, _)| *elapsed);
    let (prove_time, msm_time) = runs[runs.len() / 2];
    tracing::info!(size_log2, backend = backend.name(), prove_ms = prove_time.as_millis(), "measured hash-chain proof");
    Ok(ProveTiming {
        size_log2,
        setup,
        prove: prove_time,
        proofs_per_hour: proofs_per_hour(prove_time),
        msm_share: (!prove_time.is_zero()).then(|| msm_time.as_secs_f64() / prove_time.as_secs_f64()),
    })
}

/// floor(3600 s / `per_proof`), saturating (a zero duration counts as 1 ns).
pub fn proofs_per_hour(per_proof: Duration) -> u64 {
    let per_hour = Duration::from_secs(3600).as_nanos() / per_proof.as_nanos().max(1);
    u64::try_from(per_hour).unwrap_or(u64::MAX)
}

/// The table [`print_table`] prints: size, constraints, setup ms, prove ms, proofs/hour, MSM share.
pub fn format_table(rows: &[ProveTiming]) -> String {
    let mut table = format!(
        "{:<6} {:>11} {:>10} {:>10} {:>12} {:>9}\n",
        "size", "constraints", "setup ms", "prove ms", "proofs/hour", "MSM share"
    );
    for row in rows {
        let constraints = rounds(row.size_log2).map_or_else(|| "-".to_owned(), |n| n.to_string());
        let msm_share = row.msm_share.map_or_else(|| "-".to_owned(), |share| format!("{:.0}%", share * 100.0));
        // Writing to a String cannot fail.
        let _ = writeln!(
            table,
            "{:<6} {:>11} {:>10.1} {:>10.1} {:>12} {:>9}",
            format!("2^{}", row.size_log2),
            constraints,
            row.setup.as_secs_f64() * 1000.0,
            row.prove.as_secs_f64() * 1000.0,
            row.proofs_per_hour,
            msm_share
        );
    }
    table
}

/// Prints [`format_table`] to stdout.
pub fn print_table(rows: &[ProveTiming]) {
    print!("{}", format_table(rows));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::TempDir;
    use crate::msm::{ArkworksMsm, MsmError};
    use ark_bn254::{G1Affine, G1Projective, G2Affine, G2Projective};

    #[test]
    fn proofs_per_hour_is_the_floor_and_saturates() {
        assert_eq!(proofs_per_hour(Duration::from_secs(1)), 3600);
        assert_eq!(proofs_per_hour(Duration::from_millis(7)), 514_285);
        assert_eq!(proofs_per_hour(Duration::from_secs(7200)), 0);
        assert_eq!(proofs_per_hour(Duration::ZERO), 3_600_000_000_000);
    }

    #[test]
    fn measuring_proves_verifies_and_reports() {
        let dir = TempDir::new("bench");
        let keys = KeyStore::new(dir.path());
        let first = measure_prove(&keys, 10, &ArkworksMsm, 1).unwrap();
        assert!(first.setup > Duration::ZERO, "keys were generated");
        let second = measure_prove(&keys, 10, &ArkworksMsm, 3).unwrap();
        assert_eq!(second.setup, Duration::ZERO, "keys were in memory");
        assert!(second.prove > Duration::ZERO);
        assert_eq!(second.proofs_per_hour, proofs_per_hour(second.prove));
        let share = second.msm_share.unwrap();
        assert!(share > 0.0 && share <= 1.0, "{share}");

        let table = format_table(&[first, second]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("size") && lines[0].contains("proofs/hour"));
        assert!(lines[1].starts_with("2^10") && lines[1].contains(" 1021 "), "{table}");
    }

    /// Timing run, not a check:
    /// `cargo test --release -p pcx-prover-pool -- --ignored --nocapture timing_table`.
    #[test]
    #[ignore = "a timing run; use a release build"]
    fn timing_table() {
        let dir = TempDir::new("bench-timing");
        let keys = KeyStore::new(dir.path());
        let rows: Vec<ProveTiming> = [10, 12, 14]
            .into_iter()
            .map(|size_log2| measure_prove(&keys, size_log2, &ArkworksMsm, 5).unwrap())
            .collect();
        print_table(&rows);
    }

    #[test]
    fn a_backend_making_wrong_proofs_is_an_error_not_a_timing() {
        /// Correct in G1, but doubles every G2 result.
        struct WrongG2;
        impl MsmBackend for WrongG2 {
            fn name(&self) -> &str {
                "wrong-g2"
            }
            fn msm_g1(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1Projective, MsmError> {
                ArkworksMsm.msm_g1(bases, scalars)
            }
            fn msm_g2(&self, bases: &[G2Affine], scalars: &[Fr]) -> Result<G2Projective, MsmError> {
                Ok(ArkworksMsm.msm_g2(bases, scalars)? * Fr::from(2u64))
            }
        }
        let dir = TempDir::new("bench-wrong");
        let keys = KeyStore::new(dir.path());
        let err = measure_prove(&keys, 10, &WrongG2, 1).unwrap_err();
        assert!(matches!(err, ProveError::ProofDoesNotVerify { ref backend } if backend == "wrong-g2"), "{err:?}");
    }
}
