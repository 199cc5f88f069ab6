//! The ICICLE backend against a real ICICLE, on ICICLE's CPU device (so no GPU is needed):
//! results compared with arkworks, proofs, selection, errors.
//!
//! Runs when `ICICLE_FRONTEND_DIR` names a directory with ICICLE's frontend libraries
//! (`libicicle_device.so`, `libicicle_field_bn254.so`, `libicicle_curve_bn254.so`); otherwise
//! every test prints why it is skipped and passes. How to build ICICLE for this:
//! `docs/PERFORMANCE.md`. The tests always use `ICICLE_DEVICE=CPU` semantics
//! ([`IcicleSettings::cpu_device`]), whatever the environment says about the device.

// Test code: a failed unwrap is a failed test (clippy only sees `#[test]` functions as tests).
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use ark_bn254::{Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{AffineRepr, CurveGroup, PrimeGroup};
use ark_ff::{One, UniformRand, Zero};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use pcx_prover_pool::agent::{select_backend_with, BackendChoice, Probe};
use pcx_prover_pool::bench::compare_backends;
use pcx_prover_pool::groth16::{prove, verify_hash_chain};
use pcx_prover_pool::hash_chain::HashChainCircuit;
use pcx_prover_pool::icicle::{IcicleError, IcicleMsm, IcicleSettings, SELF_TEST_G1_SIZES, SELF_TEST_G2_SIZES};
use pcx_prover_pool::keys::KeyStore;
use pcx_prover_pool::msm::{ArkworksMsm, MsmBackend, MsmError};

/// ICICLE's frontend directory, or `None` after printing why the test is skipped (straight to
/// stderr, so the reason shows even though the harness captures `println!`).
fn frontend_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("ICICLE_FRONTEND_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "skipped {test}: ICICLE_FRONTEND_DIR is not set (point it at a built ICICLE's lib directory; \
                 see docs/PERFORMANCE.md)"
            );
            None
        }
    }
}

fn icicle(test: &str) -> Option<IcicleMsm> {
    let dir = frontend_dir(test)?;
    match IcicleMsm::open_verified(&IcicleSettings::cpu_device(dir)) {
        Ok((msm, _)) => Some(msm),
        Err(err) => panic!("ICICLE_FRONTEND_DIR is set but ICICLE's CPU device cannot be used: {err}"),
    }
}

struct TempKeys(PathBuf);

impl TempKeys {
    fn new(name: &str) -> TempKeys {
        let dir = std::env::temp_dir().join(format!("pcx-icicle-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempKeys(dir)
    }
}

impl Drop for TempKeys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_g1(n: usize, rng: &mut ChaCha20Rng) -> Vec<G1Affine> {
    let points: Vec<G1Projective> = (0..n).map(|_| G1Projective::rand(rng)).collect();
    G1Projective::normalize_batch(&points)
}

fn random_g2(n: usize, rng: &mut ChaCha20Rng) -> Vec<G2Affine> {
    let points: Vec<G2Projective> = (0..n).map(|_| G2Projective::rand(rng)).collect();
    G2Projective::normalize_batch(&points)
}

#[test]
fn icicle_loads_and_passes_its_self_test() {
    let Some(dir) = frontend_dir("icicle_loads_and_passes_its_self_test") else { return };
    let (msm, report) = IcicleMsm::open_verified(&IcicleSettings::cpu_device(&dir)).unwrap();
    assert_eq!(msm.name(), "icicle-cpu");
    assert_eq!(msm.device(), "CPU:0");
    assert!(msm.g2_on_icicle(), "this ICICLE was built without G2");
    assert_eq!(report.g1_sizes, SELF_TEST_G1_SIZES.to_vec());
    assert_eq!(report.g2_sizes, SELF_TEST_G2_SIZES.to_vec());
    // Loading again in the same process reuses the runtime.
    let again = IcicleMsm::open(&IcicleSettings::cpu_device(&dir)).unwrap();
    assert_eq!(again.frontend_dir(), msm.frontend_dir());
    // G2 on arkworks, on request.
    let g2_on_cpu =
        IcicleMsm::open(&IcicleSettings { g2_on_icicle: false, ..IcicleSettings::cpu_device(&dir) }).unwrap();
    assert_eq!(g2_on_cpu.name(), "icicle-cpu (g2 on cpu)");
    assert!(g2_on_cpu.self_test().unwrap().g2_sizes.is_empty());
}

#[test]
fn g1_msms_equal_arkworks() {
    let Some(msm) = icicle("g1_msms_equal_arkworks") else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    // 5000 crosses the size from which inputs are packed in parallel.
    for n in [1usize, 2, 31, 1000, 5000] {
        let bases = random_g1(n, &mut rng);
        let scalars: Vec<Fr> = (0..n).map(|_| Fr::rand(&mut rng)).collect();
        assert_eq!(msm.msm_g1(&bases, &scalars).unwrap(), ArkworksMsm.msm_g1(&bases, &scalars).unwrap(), "n = {n}");
    }
}

#[test]
fn g2_msms_equal_arkworks() {
    let Some(msm) = icicle("g2_msms_equal_arkworks") else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    for n in [1usize, 5, 300] {
        let bases = random_g2(n, &mut rng);
        let scalars: Vec<Fr> = (0..n).map(|_| Fr::rand(&mut rng)).collect();
        assert_eq!(msm.msm_g2(&bases, &scalars).unwrap(), ArkworksMsm.msm_g2(&bases, &scalars).unwrap(), "n = {n}");
    }
}

#[test]
fn edge_cases_equal_arkworks() {
    let Some(msm) = icicle("edge_cases_equal_arkworks") else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let g = G1Affine::generator();
    let p = random_g1(1, &mut rng)[0];
    let cases: Vec<(Vec<G1Affine>, Vec<Fr>)> = vec![
        (vec![], vec![]),
        (vec![g], vec![Fr::zero()]),
        (vec![G1Affine::zero()], vec![Fr::from(5u64)]),
        (vec![G1Affine::zero(), g], vec![Fr::from(5u64), Fr::from(7u64)]),
        (vec![g], vec![-Fr::one()]),
        (vec![p, p], vec![Fr::from(3u64), -Fr::from(3u64)]),
        (vec![p, p, p], vec![Fr::one(), Fr::one(), Fr::one()]),
        (vec![g, (-G1Projective::generator()).into_affine()], vec![Fr::from(9u64), Fr::from(9u64)]),
    ];
    for (bases, scalars) in &cases {
        assert_eq!(msm.msm_g1(bases, scalars).unwrap(), ArkworksMsm.msm_g1(bases, scalars).unwrap(), "{scalars:?}");
    }
    let two_g2 = msm.msm_g2(&[G2Affine::generator()], &[Fr::from(2u64)]).unwrap();
    assert_eq!(two_g2, G2Projective::generator() * Fr::from(2u64));
    assert!(msm.msm_g2(&[G2Affine::zero()], &[Fr::one()]).unwrap().is_zero());
    assert_eq!(msm.msm_g1(&[g, g], &[Fr::one()]).unwrap_err(), MsmError::LengthMismatch { bases: 2, scalars: 1 });
}

#[test]
fn concurrent_msms_from_many_threads_are_correct() {
    let Some(msm) = icicle("concurrent_msms_from_many_threads_are_correct") else { return };
    let msm: Arc<dyn MsmBackend> = Arc::new(msm);
    let threads: Vec<_> = (0..4u64)
        .map(|seed| {
            let msm = Arc::clone(&msm);
            std::thread::spawn(move || {
                let mut rng = ChaCha20Rng::seed_from_u64(100 + seed);
                for _ in 0..3 {
                    let bases = random_g1(200, &mut rng);
                    let scalars: Vec<Fr> = (0..200).map(|_| Fr::rand(&mut rng)).collect();
                    assert_eq!(msm.msm_g1(&bases, &scalars).unwrap(), ArkworksMsm.msm_g1(&bases, &scalars).unwrap());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn proofs_on_icicle_verify_and_equal_arkworks_proofs() {
    let Some(msm) = icicle("proofs_on_icicle_verify_and_equal_arkworks_proofs") else { return };
    let dir = TempKeys::new("prove");
    let keys = KeyStore::new(&dir.0);
    let pk = keys.proving_key(10).unwrap();
    let seed = Fr::from(424242u64);
    let circuit = || HashChainCircuit { seed: Some(seed), size_log2: 10 };
    let on_icicle = prove(&pk, circuit(), &msm, &mut ChaCha20Rng::seed_from_u64(9)).unwrap();
    let on_cpu = prove(&pk, circuit(), &ArkworksMsm, &mut ChaCha20Rng::seed_from_u64(9)).unwrap();
    assert_eq!(on_icicle, on_cpu);
    assert!(verify_hash_chain(&keys, 10, seed, &on_icicle).unwrap());
}

#[test]
fn the_benchmark_comparison_agrees() {
    let Some(msm) = icicle("the_benchmark_comparison_agrees") else { return };
    let dir = TempKeys::new("compare");
    let keys = KeyStore::new(&dir.0);
    let row = compare_backends(&keys, 10, &msm, &ArkworksMsm, 1).unwrap();
    assert_eq!((row.candidate.as_str(), row.reference.as_str()), ("icicle-cpu", "cpu"));
    assert_eq!(row.g1_points, 1023);
}

#[test]
fn selection_uses_icicle_only_when_asked_for_its_cpu_device() {
    let Some(dir) = frontend_dir("selection_uses_icicle_only_when_asked_for_its_cpu_device") else { return };
    let cpu_device = IcicleSettings::cpu_device(&dir);
    let selected = select_backend_with(BackendChoice::Icicle, Ok(cpu_device.clone()), &Probe::InProcess).unwrap();
    assert!(selected.is_icicle);
    assert_eq!(selected.label, "icicle-cpu");
    assert_eq!(selected.backend.name(), "icicle-cpu");
    // `auto` does not take ICICLE's CPU backend for a GPU.
    let selected = select_backend_with(BackendChoice::Auto, Ok(cpu_device), &Probe::InProcess).unwrap();
    assert!(!selected.is_icicle);
    assert!(selected.label.starts_with("cpu (icicle: ICICLE_DEVICE=CPU"), "{}", selected.label);
}

#[test]
fn a_gpu_that_is_not_there_is_an_error_not_an_abort() {
    let Some(dir) = frontend_dir("a_gpu_that_is_not_there_is_an_error_not_an_abort") else { return };
    // An empty backend directory: icicle_load_backend says SUCCESS and registers nothing.
    let empty = TempKeys::new("empty-backend");
    let settings =
        IcicleSettings { device: "CUDA".to_owned(), backend_dir: empty.0.clone(), ..IcicleSettings::cpu_device(&dir) };
    let err = IcicleMsm::open(&settings).unwrap_err();
    assert!(matches!(err, IcicleError::NoCurveBackend { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("ICICLE CUDA backend has no BN254 MSM"), "{text}");
    assert!(text.contains("no CUDA device was registered"), "{text}");

    // `auto` falls back to the CPU and says why; `icicle` refuses, naming ICICLE.
    let selected = select_backend_with(BackendChoice::Auto, Ok(settings.clone()), &Probe::InProcess).unwrap();
    assert!(!selected.is_icicle);
    assert!(selected.label.starts_with("cpu (icicle: ICICLE CUDA backend has no BN254 MSM"), "{}", selected.label);
    let err = select_backend_with(BackendChoice::Icicle, Ok(settings.clone()), &Probe::InProcess).unwrap_err();
    assert!(err.to_string().starts_with("--backend icicle: ICICLE CUDA backend"), "{err}");

    // Another index of the CPU device does not exist (ICICLE's CPU backend refuses to activate it).
    let err = IcicleMsm::open(&IcicleSettings { device_id: 3, ..IcicleSettings::cpu_device(&dir) }).unwrap_err();
    assert!(
        matches!(err, IcicleError::NoSuchDevice { id: 3, .. } | IcicleError::CannotActivate { id: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("ICICLE"), "{err}");

    // A device type ICICLE never heard of.
    let metal = IcicleSettings { device: "METAL".to_owned(), ..settings };
    let err = IcicleMsm::open(&metal).unwrap_err().to_string();
    assert!(err.starts_with("ICICLE METAL backend has no BN254 MSM"), "{err}");

    // A second frontend directory in the same process is refused.
    let other = TempKeys::new("other-frontend");
    for library in ["libicicle_device.so", "libicicle_field_bn254.so", "libicicle_curve_bn254.so"] {
        std::fs::write(other.0.join(library), b"").unwrap();
    }
    let err = IcicleMsm::open(&IcicleSettings::cpu_device(&other.0)).unwrap_err();
    assert!(matches!(err, IcicleError::AlreadyLoaded { .. }), "{err:?}");
}

/// Timing run, not a check (it does assert that every result equals arkworks'): G1 and G2 MSMs
/// of random scalars on distinct bases, on ICICLE as the environment says (`ICICLE_DEVICE`,
/// default CUDA) and on arkworks; median of `PCX_MSM_REPS` (default 5) runs after one warm-up,
/// for the sizes (log2) in `PCX_MSM_SIZES` (default 16..=22). Times include marshalling.
/// `ICICLE_FRONTEND_DIR=/opt/icicle/lib cargo test --release -p pcx-prover-pool --test icicle -- --ignored --nocapture msm_timing`
#[test]
#[ignore = "a timing run; use a release build"]
fn msm_timing() {
    let Some(_) = frontend_dir("msm_timing") else { return };
    let sizes: Vec<u32> = match std::env::var("PCX_MSM_SIZES") {
        Ok(list) => list.split(',').map(|size| size.trim().parse().unwrap()).collect(),
        Err(_) => (16..=22).collect(),
    };
    let reps: usize = std::env::var("PCX_MSM_REPS").map_or(5, |reps| reps.parse().unwrap());
    let (msm, report) = IcicleMsm::open_verified(&IcicleSettings::from_env().unwrap()).unwrap();
    println!(
        "ICICLE {} on {} (self-test {:?} / {:?} points passed)",
        msm.name(),
        msm.device(),
        report.g1_sizes,
        report.g2_sizes
    );
    println!("median of {reps} runs after a warm-up, ms; rayon threads: {}", rayon::current_num_threads());
    println!(
        "{:<6} {:>12} {:>12} {:>8} {:>12} {:>12} {:>8}",
        "size", "G1 icicle", "G1 arkworks", "speedup", "G2 icicle", "G2 arkworks", "speedup"
    );
    let max = 1usize << sizes.iter().copied().max().unwrap_or(16);
    // Distinct bases cheaply: P_i = P_{i-1} + Q, then one batch normalisation.
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let g1: Vec<G1Affine> = {
        let step = G1Projective::rand(&mut rng);
        let mut acc = G1Projective::rand(&mut rng);
        let points: Vec<G1Projective> = (0..max)
            .map(|_| {
                acc += step;
                acc
            })
            .collect();
        G1Projective::normalize_batch(&points)
    };
    let g2: Vec<G2Affine> = {
        let step = G2Projective::rand(&mut rng);
        let mut acc = G2Projective::rand(&mut rng);
        let points: Vec<G2Projective> = (0..max)
            .map(|_| {
                acc += step;
                acc
            })
            .collect();
        G2Projective::normalize_batch(&points)
    };
    let scalars: Vec<Fr> = (0..max).map(|_| Fr::rand(&mut rng)).collect();
    let median = |f: &mut dyn FnMut()| {
        f();
        let mut times: Vec<f64> = (0..reps.max(1))
            .map(|_| {
                let started = std::time::Instant::now();
                f();
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    for size in sizes {
        let n = 1usize << size;
        let (b1, b2, s) = (&g1[..n], &g2[..n], &scalars[..n]);
        assert_eq!(msm.msm_g1(b1, s).unwrap(), ArkworksMsm.msm_g1(b1, s).unwrap(), "G1 2^{size}");
        assert_eq!(msm.msm_g2(b2, s).unwrap(), ArkworksMsm.msm_g2(b2, s).unwrap(), "G2 2^{size}");
        let g1_icicle = median(&mut || {
            let _ = std::hint::black_box(msm.msm_g1(b1, s).unwrap());
        });
        let g1_ark = median(&mut || {
            let _ = std::hint::black_box(ArkworksMsm.msm_g1(b1, s).unwrap());
        });
        let g2_icicle = median(&mut || {
            let _ = std::hint::black_box(msm.msm_g2(b2, s).unwrap());
        });
        let g2_ark = median(&mut || {
            let _ = std::hint::black_box(ArkworksMsm.msm_g2(b2, s).unwrap());
        });
        println!(
            "{:<6} {:>12.1} {:>12.1} {:>7.1}x {:>12.1} {:>12.1} {:>7.1}x",
            format!("2^{size}"),
            g1_icicle,
            g1_ark,
            g1_ark / g1_icicle,
            g2_icicle,
            g2_ark,
            g2_ark / g2_icicle
        );
    }
}
