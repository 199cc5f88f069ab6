//! Multi-scalar multiplication (MSM) backends.
//!
//! Every MSM the Groth16 prover ([`crate::groth16`]) performs goes through [`MsmBackend`], so an
//! accelerated backend (e.g. ICICLE on a GPU) can be plugged in without touching the prover. MSMs
//! are where almost all of a Groth16 proof's time goes (four in G1, one in G2, each as long as the
//! circuit), which is why this is the seam.
//!
//! - [`ArkworksMsm`]: the CPU backend, arkworks' Pippenger MSM, parallel over all cores (rayon).
//! - [`CountingMsm`]: a diagnostics wrapper around any backend that counts calls and the time
//!   spent in them, then delegates. Tests use it to prove that the prover's MSMs really go through
//!   the backend; the benchmark uses it to report which share of a proof is MSM time.
//!
//! Contract of every backend: `bases` and `scalars` have the same length (else
//! [`MsmError::LengthMismatch`], never a silent truncation), and the result is
//! `sum(scalars[i] * bases[i])`; an empty input gives the identity.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use ark_bn254::{Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::VariableBaseMSM;

/// Why an MSM could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsmError {
    /// `bases` and `scalars` differ in length.
    #[error("MSM input length mismatch: {bases} bases but {scalars} scalars")]
    LengthMismatch {
        /// Number of bases given.
        bases: usize,
        /// Number of scalars given.
        scalars: usize,
    },
    /// The backend itself failed (device error, out of memory, ...).
    #[error("MSM backend failed: {0}")]
    Backend(String),
}

/// A way to compute multi-scalar multiplications over BN254.
///
/// Implementations must be thread-safe: one backend is shared by every proof a process makes.
pub trait MsmBackend: Send + Sync {
    /// Short name for logs and capabilities, e.g. "cpu".
    fn name(&self) -> &str;

    /// `sum(scalars[i] * bases[i])` in G1; `bases.len()` must equal `scalars.len()`.
    fn msm_g1(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1Projective, MsmError>;

    /// `sum(scalars[i] * bases[i])` in G2; `bases.len()` must equal `scalars.len()`.
    fn msm_g2(&self, bases: &[G2Affine], scalars: &[Fr]) -> Result<G2Projective, MsmError>;
}

/// A reference to a backend is a backend, so wrappers such as [`CountingMsm`] can borrow one
/// (`CountingMsm::new(&*backend)`) instead of owning it.
impl<B: MsmBackend + ?Sized> MsmBackend for &B {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn msm_g1(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1Projective, MsmError> {
        (**self).msm_g1(bases, scalars)
    }

    fn msm_g2(&self, bases: &[G2Affine], scalars: &[Fr]) -> Result<G2Projective, MsmError> {
        (**self).msm_g2(bases, scalars)
    }
}

/// The CPU backend: arkworks' variable-base MSM (Pippenger), parallelised with rayon.
#[derive(Debug, Clone, Copy, Default)]
pub struct ArkworksMsm;

impl MsmBackend for ArkworksMsm {
    fn name(&self) -> &str {
        "cpu"
    }

    fn msm_g1(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1Projective, MsmError> {
        // arkworks reports a mismatch only as the shorter length; we want both in the error.
        check_lengths(bases.len(), scalars.len())?;
        G1Projective::msm(bases, scalars)
            .map_err(|_| MsmError::LengthMismatch { bases: bases.len(), scalars: scalars.len() })
    }

    fn msm_g2(&self, bases: &[G2Affine], scalars: &[Fr]) -> Result<G2Projective, MsmError> {
        check_lengths(bases.len(), scalars.len())?;
        G2Projective::msm(bases, scalars)
            .map_err(|_| MsmError::LengthMismatch { bases: bases.len(), scalars: scalars.len() })
    }
}

pub(crate) fn check_lengths(bases: usize, scalars: usize) -> Result<(), MsmError> {
    if bases == scalars {
        Ok(())
    } else {
        Err(MsmError::LengthMismatch { bases, scalars })
    }
}

/// Diagnostics wrapper: counts the MSMs made through it and the wall time they took, then
/// delegates to the wrapped backend. Results are exactly the inner backend's.
#[derive(Debug, Default)]
pub struct CountingMsm<B> {
    inner: B,
    g1_calls: AtomicUsize,
    g2_calls: AtomicUsize,
    nanos_in_msm: AtomicU64,
}

impl<B: MsmBackend> CountingMsm<B> {
    /// Wraps `inner` with all counters at zero.
    pub fn new(inner: B) -> Self {
        Self { inner, g1_calls: AtomicUsize::new(0), g2_calls: AtomicUsize::new(0), nanos_in_msm: AtomicU64::new(0) }
    }

    /// How many G1 MSMs were made (successful or not).
    pub fn g1_calls(&self) -> usize {
        self.g1_calls.load(Ordering::Relaxed)
    }

    /// How many G2 MSMs were made (successful or not).
    pub fn g2_calls(&self) -> usize {
        self.g2_calls.load(Ordering::Relaxed)
    }

    /// Total wall time spent inside the wrapped backend's MSMs.
    pub fn time_in_msm(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.nanos_in_msm.load(Ordering::Relaxed))
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        self.g1_calls.store(0, Ordering::Relaxed);
        self.g2_calls.store(0, Ordering::Relaxed);
        self.nanos_in_msm.store(0, Ordering::Relaxed);
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    fn timed<T>(&self, msm: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let result = msm();
        // An MSM longer than u64 nanoseconds (584 years) saturates rather than wraps.
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos_in_msm.fetch_add(nanos, Ordering::Relaxed);
        result
    }
}

impl<B: MsmBackend> MsmBackend for CountingMsm<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn msm_g1(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1Projective, MsmError> {
        self.g1_calls.fetch_add(1, Ordering::Relaxed);
        self.timed(|| self.inner.msm_g1(bases, scalars))
    }

    fn msm_g2(&self, bases: &[G2Affine], scalars: &[Fr]) -> Result<G2Projective, MsmError> {
        self.g2_calls.fetch_add(1, Ordering::Relaxed);
        self.timed(|| self.inner.msm_g2(bases, scalars))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ec::{AffineRepr, CurveGroup, PrimeGroup};
    use ark_ff::{UniformRand, Zero};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn naive_g1(bases: &[G1Affine], scalars: &[Fr]) -> G1Projective {
        bases.iter().zip(scalars).map(|(b, s)| *b * s).sum()
    }

    #[test]
    fn cpu_msm_matches_the_naive_sum_in_g1_and_g2() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let g1: Vec<G1Affine> = (0..33).map(|_| G1Projective::rand(&mut rng).into_affine()).collect();
        let g2: Vec<G2Affine> = (0..9).map(|_| G2Projective::rand(&mut rng).into_affine()).collect();
        let s1: Vec<Fr> = (0..33).map(|_| Fr::rand(&mut rng)).collect();
        let s2: Vec<Fr> = (0..9).map(|_| Fr::rand(&mut rng)).collect();

        assert_eq!(ArkworksMsm.msm_g1(&g1, &s1).unwrap(), naive_g1(&g1, &s1));
        let naive_g2: G2Projective = g2.iter().zip(&s2).map(|(b, s)| *b * s).sum();
        assert_eq!(ArkworksMsm.msm_g2(&g2, &s2).unwrap(), naive_g2);
    }

    #[test]
    fn empty_msm_is_the_identity() {
        assert!(ArkworksMsm.msm_g1(&[], &[]).unwrap().is_zero());
        assert!(ArkworksMsm.msm_g2(&[], &[]).unwrap().is_zero());
    }

    #[test]
    fn length_mismatch_is_an_error_not_a_truncation() {
        let g = G1Affine::generator();
        let err = ArkworksMsm.msm_g1(&[g, g], &[Fr::from(1u64)]).unwrap_err();
        assert_eq!(err, MsmError::LengthMismatch { bases: 2, scalars: 1 });
        assert_eq!(err.to_string(), "MSM input length mismatch: 2 bases but 1 scalars");
        let err = ArkworksMsm.msm_g2(&[G2Affine::generator()], &[]).unwrap_err();
        assert_eq!(err, MsmError::LengthMismatch { bases: 1, scalars: 0 });
    }

    #[test]
    fn counting_wrapper_counts_and_delegates() {
        let counting = CountingMsm::new(ArkworksMsm);
        let g = G1Affine::generator();
        let three = counting.msm_g1(&[g], &[Fr::from(3u64)]).unwrap();
        assert_eq!(three, G1Projective::generator() * Fr::from(3u64));
        let two = counting.msm_g2(&[G2Affine::generator()], &[Fr::from(2u64)]).unwrap();
        assert_eq!(two, G2Projective::generator() * Fr::from(2u64));
        assert!(counting.msm_g1(&[g], &[]).is_err());
        assert_eq!((counting.g1_calls(), counting.g2_calls()), (2, 1));
        assert_eq!(counting.name(), "cpu");
        counting.reset();
        assert_eq!((counting.g1_calls(), counting.g2_calls()), (0, 0));
        assert!(counting.time_in_msm().is_zero());
    }

    #[test]
    fn backends_work_behind_a_trait_object_and_a_reference() {
        let backend: &dyn MsmBackend = &ArkworksMsm;
        let counting = CountingMsm::new(backend);
        let one = counting.msm_g1(&[G1Affine::generator()], &[Fr::from(1u64)]).unwrap();
        assert_eq!(one, G1Projective::generator());
        assert_eq!(counting.g1_calls(), 1);
    }
}
