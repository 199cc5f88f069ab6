//! Prover benchmark: how long a `hash-chain` proof takes here, and so how many proofs per hour
//! this machine can sell. Backs `pcx prover bench`.
//!
//! Every measured proof is verified; a proof that does not verify is an error, never a timing
//! (a fast wrong backend must not look good). Times are wall-clock medians over the repetitions,
//! excluding key setup/loading and verification, including synthesis, the QAP and all MSMs.
//!
//! [`compare_backends`] puts a candidate backend (ICICLE) next to a reference (arkworks): MSM
//! times on the proving key's own bases, prove times, and agreement: equal MSM results and
//! byte-identical proofs from the same blinding randomness. Any disagreement is an error.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ark_bn254::Fr;
use ark_ff::UniformRand;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::groth16::{prove, verify, ProveError};
use crate::hash_chain::{hash_chain_output, rounds, HashChainCircuit};
use crate::keys::KeyStore;
use crate::msm::{CountingMsm, MsmBackend, MsmError};

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
    /// Median time of ark-groth16's own `create_random_proof` on the same key and circuit, when
    /// measured ([`measure_reference`]): the reference for "no overhead of ours".
    pub reference: Option<Duration>,
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
        reference: None,
    })
}

/// ark-groth16's own prover (`Groth16::create_random_proof_with_reduction`, arkworks' MSMs on the
/// same rayon threads) on the same proving key and circuit, `repetitions` times (at least once),
/// each proof verified: the median time. What [`measure_prove`] reports next to it shows what our
/// prover (its MSMs through a backend) costs over the library's.
pub fn measure_reference(keys: &KeyStore, size_log2: u8, repetitions: usize) -> Result<Duration, ProveError> {
    use ark_groth16::Groth16;
    let pk = keys.proving_key(size_log2)?;
    let pvk = keys.verifying_key(size_log2)?;
    let mut rng = rand::rngs::OsRng;
    let mut runs = Vec::with_capacity(repetitions.max(1));
    for _ in 0..repetitions.max(1) {
        let seed = Fr::rand(&mut rng);
        let started = Instant::now();
        let proof = Groth16::<ark_bn254::Bn254>::create_random_proof_with_reduction(
            HashChainCircuit { seed: Some(seed), size_log2 },
            &pk,
            &mut rng,
        )?;
        let elapsed = started.elapsed();
        if !verify(&pvk, &[seed, hash_chain_output(seed, size_log2)], &proof) {
            return Err(ProveError::ProofDoesNotVerify { backend: "ark-groth16".to_owned() });
        }
        runs.push(elapsed);
    }
    runs.sort();
    Ok(runs[runs.len() / 2])
}

/// floor(3600 s / `per_proof`), saturating (a zero duration counts as 1 ns).
pub fn proofs_per_hour(per_proof: Duration) -> u64 {
    let per_hour = Duration::from_secs(3600).as_nanos() / per_proof.as_nanos().max(1);
    u64::try_from(per_hour).unwrap_or(u64::MAX)
}

/// The table [`print_table`] prints: size, constraints, setup ms, prove ms, proofs/hour, MSM
/// share, and when measured ark-groth16's prove ms and the ratio ours/ark-groth16.
pub fn format_table(rows: &[ProveTiming]) -> String {
    let mut table = format!(
        "{:<6} {:>11} {:>10} {:>10} {:>12} {:>9} {:>15} {:>9}\n",
        "size", "constraints", "setup ms", "prove ms", "proofs/hour", "MSM share", "ark-groth16 ms", "ours/ark"
    );
    for row in rows {
        let constraints = rounds(row.size_log2).map_or_else(|| "-".to_owned(), |n| n.to_string());
        let msm_share = row.msm_share.map_or_else(|| "-".to_owned(), |share| format!("{:.0}%", share * 100.0));
        let (reference, ratio) = match row.reference {
            Some(r) if !r.is_zero() => (
                format!("{:.1}", r.as_secs_f64() * 1000.0),
                format!("{:.3}", row.prove.as_secs_f64() / r.as_secs_f64()),
            ),
            _ => ("-".to_owned(), "-".to_owned()),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            table,
            "{:<6} {:>11} {:>10.1} {:>10.1} {:>12} {:>9} {:>15} {:>9}",
            format!("2^{}", row.size_log2),
            constraints,
            row.setup.as_secs_f64() * 1000.0,
            row.prove.as_secs_f64() * 1000.0,
            row.proofs_per_hour,
            msm_share,
            reference,
            ratio
        );
    }
    table
}

/// Prints [`format_table`] to stdout.
pub fn print_table(rows: &[ProveTiming]) {
    print!("{}", format_table(rows));
}

/// Why two backends could not be compared, or how they differ.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A proof could not be made, or did not verify.
    #[error(transparent)]
    Prove(#[from] ProveError),
    /// An MSM failed.
    #[error(transparent)]
    Msm(#[from] MsmError),
    /// The backends computed different results.
    #[error("MSM backend `{candidate}` disagrees with `{reference}`: {what}")]
    Disagree {
        /// The backend under test.
        candidate: String,
        /// The reference backend.
        reference: String,
        /// What differed.
        what: String,
    },
}

/// One size measured on a candidate backend and on the reference backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendComparison {
    /// The candidate's name (e.g. "icicle-cuda").
    pub candidate: String,
    /// The reference's name ("cpu").
    pub reference: String,
    /// The circuit size (log2).
    pub size_log2: u8,
    /// Points in the timed G1 MSM (the proving key's `h_query`).
    pub g1_points: usize,
    /// Median time of that G1 MSM on the candidate, and on the reference.
    pub g1_msm: (Duration, Duration),
    /// Points in the timed G2 MSM (the proving key's `b_g2_query`, as the prover uses it).
    pub g2_points: usize,
    /// Median time of that G2 MSM on the candidate, and on the reference.
    pub g2_msm: (Duration, Duration),
    /// The whole proof on the candidate, and on the reference.
    pub prove: (ProveTiming, ProveTiming),
}

/// Measures size `size_log2` on `candidate` and on `reference` (`repetitions` runs each, at
/// least one) and checks they agree: the same G1 and G2 MSM results on the proving key's bases
/// with random scalars, and the same proof bytes from the same blinding randomness. Every
/// proof is also verified ([`measure_prove`]).
pub fn compare_backends(
    keys: &KeyStore,
    size_log2: u8,
    candidate: &dyn MsmBackend,
    reference: &dyn MsmBackend,
    repetitions: usize,
) -> Result<BackendComparison, CompareError> {
    let disagree = |what: String| CompareError::Disagree {
        candidate: candidate.name().to_owned(),
        reference: reference.name().to_owned(),
        what,
    };
    let pk = keys.proving_key(size_log2).map_err(ProveError::from)?;
    let mut rng = ChaCha20Rng::from_rng(rand::rngs::OsRng).map_err(|err| MsmError::Backend(err.to_string()))?;

    let g1_bases = &pk.h_query;
    let g1_scalars: Vec<Fr> = (0..g1_bases.len()).map(|_| Fr::rand(&mut rng)).collect();
    let (g1_candidate, g1_result) = median_time(repetitions, || candidate.msm_g1(g1_bases, &g1_scalars))?;
    let (g1_reference, g1_expected) = median_time(repetitions, || reference.msm_g1(g1_bases, &g1_scalars))?;
    if g1_result != g1_expected {
        return Err(disagree(format!("G1 MSM of {} points", g1_bases.len())));
    }

    let g2_bases = pk.b_g2_query.get(1..).unwrap_or_default();
    let g2_scalars: Vec<Fr> = (0..g2_bases.len()).map(|_| Fr::rand(&mut rng)).collect();
    let (g2_candidate, g2_result) = median_time(repetitions, || candidate.msm_g2(g2_bases, &g2_scalars))?;
    let (g2_reference, g2_expected) = median_time(repetitions, || reference.msm_g2(g2_bases, &g2_scalars))?;
    if g2_result != g2_expected {
        return Err(disagree(format!("G2 MSM of {} points", g2_bases.len())));
    }

    // The same seed and blinding randomness must give the same proof on both backends.
    let seed = Fr::rand(&mut rng);
    let blinding: [u8; 32] = rand::Rng::gen(&mut rng);
    let circuit = || HashChainCircuit { seed: Some(seed), size_log2 };
    let candidate_proof = prove(&pk, circuit(), candidate, &mut ChaCha20Rng::from_seed(blinding))?;
    let reference_proof = prove(&pk, circuit(), reference, &mut ChaCha20Rng::from_seed(blinding))?;
    if candidate_proof != reference_proof {
        return Err(disagree("the proofs made with the same randomness differ".to_owned()));
    }

    let prove_candidate = measure_prove(keys, size_log2, candidate, repetitions)?;
    let prove_reference = measure_prove(keys, size_log2, reference, repetitions)?;
    Ok(BackendComparison {
        candidate: candidate.name().to_owned(),
        reference: reference.name().to_owned(),
        size_log2,
        g1_points: g1_bases.len(),
        g1_msm: (g1_candidate, g1_reference),
        g2_points: g2_bases.len(),
        g2_msm: (g2_candidate, g2_reference),
        prove: (prove_candidate, prove_reference),
    })
}

/// The median wall time of `runs` (at least one) calls, and the last result.
fn median_time<T, E>(runs: usize, mut call: impl FnMut() -> Result<T, E>) -> Result<(Duration, T), E> {
    let mut timed = || {
        let started = Instant::now();
        call().map(|result| (started.elapsed(), result))
    };
    let (first, mut result) = timed()?;
    let mut times = vec![first];
    for _ in 1..runs {
        let (elapsed, next) = timed()?;
        times.push(elapsed);
        result = next;
    }
    times.sort_unstable();
    Ok((times[times.len() / 2], result))
}

/// The table [`print_comparison`] prints: per size, G1 MSM, G2 MSM and prove times on the
/// candidate and the reference, the speed-ups, and the candidate's proofs per hour.
pub fn format_comparison(rows: &[BackendComparison]) -> String {
    let Some(first) = rows.first() else { return String::new() };
    let (cand, refr) = (&first.candidate, &first.reference);
    let mut table = format!(
        "MSM backend `{cand}` against `{refr}` (median ms; every result equal, every proof verified)\n\
         {:<6} {:>8} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>12}\n",
        "size", "points", "G1 MSM", "G1 MSM", "", "G2 MSM", "G2 MSM", "", "prove", "prove", "", "proofs/hour",
    );
    let _ = writeln!(
        table,
        "{:<6} {:>8} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>12}",
        "", "", short(cand), short(refr), "speedup", short(cand), short(refr), "speedup", short(cand), short(refr), "speedup", short(cand)
    );
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let speedup = |(a, b): (Duration, Duration)| {
        if a.is_zero() {
            "-".to_owned()
        } else {
            format!("{:.1}x", b.as_secs_f64() / a.as_secs_f64())
        }
    };
    for row in rows {
        let prove = (row.prove.0.prove, row.prove.1.prove);
        // Writing to a String cannot fail.
        let _ = writeln!(
            table,
            "{:<6} {:>8} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>11} {:>11} {:>7} {:>12}",
            format!("2^{}", row.size_log2),
            row.g1_points,
            ms(row.g1_msm.0),
            ms(row.g1_msm.1),
            speedup(row.g1_msm),
            ms(row.g2_msm.0),
            ms(row.g2_msm.1),
            speedup(row.g2_msm),
            ms(prove.0),
            ms(prove.1),
            speedup(prove),
            row.prove.0.proofs_per_hour,
        );
    }
    table
}

/// A backend name cut to a column (11 characters).
fn short(name: &str) -> String {
    let name = name.split(' ').next().unwrap_or(name);
    name.chars().take(11).collect()
}

/// Prints [`format_comparison`] to stdout.
pub fn print_comparison(rows: &[BackendComparison]) {
    print!("{}", format_comparison(rows));
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

        let mut with_reference = second.clone();
        with_reference.reference = Some(measure_reference(&keys, 10, 1).unwrap());
        assert!(with_reference.reference.unwrap() > Duration::ZERO);

        let table = format_table(&[first, second, with_reference.clone()]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("size") && lines[0].contains("proofs/hour") && lines[0].ends_with("ours/ark"));
        assert!(lines[1].starts_with("2^10") && lines[1].contains(" 1021 "), "{table}");
        assert!(lines[2].ends_with(" -"), "no reference measured: {table}");
        let ratio = with_reference.prove.as_secs_f64() / with_reference.reference.unwrap().as_secs_f64();
        assert!(lines[3].ends_with(&format!("{ratio:.3}")), "{table}");
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
    fn comparing_a_backend_with_itself_agrees_and_reports_both() {
        let dir = TempDir::new("bench-compare");
        let keys = KeyStore::new(dir.path());
        let row = compare_backends(&keys, 10, &ArkworksMsm, &ArkworksMsm, 1).unwrap();
        assert_eq!((row.candidate.as_str(), row.reference.as_str(), row.size_log2), ("cpu", "cpu", 10));
        assert_eq!(row.g1_points, keys.proving_key(10).unwrap().h_query.len());
        assert!(row.g2_points > 1000, "{}", row.g2_points);
        assert!(row.prove.0.prove > Duration::ZERO && row.prove.1.prove > Duration::ZERO);
        let table = format_comparison(&[row]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("MSM backend `cpu` against `cpu`"), "{table}");
        assert!(lines[3].starts_with("2^10"), "{table}");
        assert_eq!(format_comparison(&[]), "");
    }

    #[test]
    fn a_backend_with_wrong_msms_fails_the_comparison() {
        /// Correct except that every G1 result is doubled.
        struct WrongG1;
        impl MsmBackend for WrongG1 {
            fn name(&self) -> &str {
                "wrong-g1"
            }
            fn msm_g1(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1Projective, MsmError> {
                Ok(ArkworksMsm.msm_g1(bases, scalars)? * Fr::from(2u64))
            }
            fn msm_g2(&self, bases: &[G2Affine], scalars: &[Fr]) -> Result<G2Projective, MsmError> {
                ArkworksMsm.msm_g2(bases, scalars)
            }
        }
        let dir = TempDir::new("bench-compare-wrong");
        let keys = KeyStore::new(dir.path());
        let err = compare_backends(&keys, 10, &WrongG1, &ArkworksMsm, 1).unwrap_err();
        assert_eq!(err.to_string(), "MSM backend `wrong-g1` disagrees with `cpu`: G1 MSM of 1023 points");
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
