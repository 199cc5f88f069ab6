//! Groth16 batch verification: many proofs under one verifying key checked together, for the
//! price of about one pairing each instead of three, and one final exponentiation per batch.
//!
//! A proof (A, B, C) for public inputs x is valid when
//! `e(A, B) = e(alpha, beta) · e(L(x), gamma) · e(C, delta)` with `L(x) = IC_0 + Σ_j x_j IC_j`.
//! For fresh random 128-bit scalars r_i, unknown to whoever made the proofs, the batch holds when
//!
//! ```text
//! Π_i e(r_i·A_i, B_i) · e(Σ_i r_i·L(x_i), −gamma) · e(Σ_i r_i·C_i, −delta) = e(alpha, beta)^(Σ_i r_i)
//! ```
//!
//! which every batch of valid proofs satisfies, and a batch with any invalid proof satisfies with
//! probability at most 2^-128 over the r_i (the random linear combination of Bellare, Garay and
//! Rabin's small-exponent test). `Σ r_i·L(x_i)` is one MSM over the key's IC points with the
//! inputs' combined scalars, so the per-proof cost is one Miller loop with B_i plus two scalar
//! multiplications in G1.
//!
//! When a batch fails, [`verify_batch`] splits it in halves and checks each, down to single
//! proofs checked one by one, so the verdicts are exactly those of one-by-one verification: every
//! valid proof is accepted and every invalid one refused, whatever else is in its batch.

use ark_bn254::{Bn254, Fq12, Fr, G1Affine, G1Projective};
use ark_ec::bn::g2::EllCoeff;
use ark_ec::bn::BnConfig;
use ark_ec::pairing::{MillerLoopOutput, Pairing, PairingOutput};
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{CyclotomicMultSubgroup, Field, One, PrimeField, Zero};
use ark_groth16::{PreparedVerifyingKey, Proof};
use rand::{CryptoRng, RngCore};

/// One proof to check with its public inputs (without the leading one).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The statement's public inputs.
    pub public_inputs: &'a [Fr],
    /// The proof.
    pub proof: &'a Proof<Bn254>,
}

/// Whether each claim holds under `pvk`, the same verdicts as [`crate::groth16::verify`] one by
/// one; the combination's scalars come from `rng`, which must be cryptographically secure and
/// unseen by the provers.
pub fn verify_batch<R: RngCore + CryptoRng>(pvk: &PreparedVerifyingKey<Bn254>, claims: &[Claim<'_>], rng: &mut R) -> Vec<bool> {
    let mut verdicts = vec![false; claims.len()];
    // A claim with the wrong number of inputs is invalid on its own; it stays out of every batch.
    let well_formed: Vec<usize> =
        (0..claims.len()).filter(|&i| claims[i].public_inputs.len() + 1 == pvk.vk.gamma_abc_g1.len()).collect();
    settle(pvk, claims, &well_formed, rng, &mut verdicts);
    verdicts
}

/// Decides `indices` (all well formed): the whole group at once, else each half.
fn settle<R: RngCore + CryptoRng>(
    pvk: &PreparedVerifyingKey<Bn254>,
    claims: &[Claim<'_>],
    indices: &[usize],
    rng: &mut R,
    verdicts: &mut [bool],
) {
    match indices {
        [] => {}
        [only] => verdicts[*only] = crate::groth16::verify(pvk, claims[*only].public_inputs, claims[*only].proof),
        _ if combination_holds(pvk, claims, indices, rng) => indices.iter().for_each(|&i| verdicts[i] = true),
        _ => {
            let (left, right) = indices.split_at(indices.len() / 2);
            settle(pvk, claims, left, rng, verdicts);
            settle(pvk, claims, right, rng, verdicts);
        }
    }
}

/// The randomised equation of the module docs over `indices` (each with the key's input count).
fn combination_holds<R: RngCore + CryptoRng>(
    pvk: &PreparedVerifyingKey<Bn254>,
    claims: &[Claim<'_>],
    indices: &[usize],
    rng: &mut R,
) -> bool {
    // Nonzero 128-bit scalars: a zero would drop its proof from the check.
    let r: Vec<Fr> = indices.iter().map(|_| Fr::from(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64() | 1))).collect();
    let ic = &pvk.vk.gamma_abc_g1;
    // Σ r_i·L(x_i) = (Σ r_i)·IC_0 + Σ_j (Σ_i r_i·x_ij)·IC_j: one combination of the key's points.
    let mut input_scalars = vec![Fr::zero(); ic.len()];
    for (&i, r_i) in indices.iter().zip(&r) {
        input_scalars[0] += r_i;
        for (scalar, x) in input_scalars[1..].iter_mut().zip(claims[i].public_inputs) {
            *scalar += *r_i * x;
        }
    }
    let Some(inputs) = combine(ic, &input_scalars) else { return false };
    let c_points: Vec<G1Affine> = indices.iter().map(|&i| claims[i].proof.c).collect();
    let Some(c_combined) = combine(&c_points, &r) else { return false };
    let (scaled_a, prepared_b): (Vec<G1Projective>, Vec<G2Prepared>) = indices
        .iter()
        .zip(&r)
        .map(|(&i, r_i)| (claims[i].proof.a.mul_bigint(r_i.into_bigint()), G2Prepared::from(claims[i].proof.b)))
        .unzip();
    let mut g1 = G1Projective::normalize_batch(&scaled_a);
    let mut g2: Vec<&G2Prepared> = prepared_b.iter().collect();
    g1.extend(G1Projective::normalize_batch(&[inputs, c_combined]));
    g2.extend([&pvk.gamma_g2_neg_pc, &pvk.delta_g2_neg_pc]);
    let Some(PairingOutput(left)) = Bn254::final_exponentiation(MillerLoopOutput(miller_loop(&g1, &g2))) else { return false };
    // Pairing outputs lie in the cyclotomic subgroup, where powers are cheaper (a third of `pow`).
    let r_sum: Fr = r.iter().sum();
    left == pvk.alpha_g1_beta_g2.cyclotomic_exp(r_sum.into_bigint())
}

/// The key's G2 points with their line coefficients.
type G2Prepared = <Bn254 as Pairing>::G2Prepared;

/// Σ scalars_k·points_k: point by point (GLV) for a few points, where an MSM's buckets cost more
/// than they save; an MSM beyond. `None` when the lengths differ.
fn combine(points: &[G1Affine], scalars: &[Fr]) -> Option<G1Projective> {
    const MSM_FROM: usize = 8;
    if points.len() != scalars.len() {
        return None;
    }
    if points.len() >= MSM_FROM {
        return G1Projective::msm(points, scalars).ok();
    }
    Some(points.iter().zip(scalars).map(|(p, s)| G1Projective::from(*p) * s).sum())
}

/// The product of the Miller loops of `g1[k]` with `g2[k]`, with one accumulator for all pairs:
/// arkworks' `multi_miller_loop` keeps one per four pairs (to spread them over threads), and
/// each is squared at every step of the loop, which costs a batch of 16 a quarter more; the
/// batches are spread over the cores instead (one verification at a time per core saturates a
/// busy exchange better than threads within one). Zero points are skipped, as arkworks does.
fn miller_loop(g1: &[G1Affine], g2: &[&G2Prepared]) -> Fq12 {
    let mut pairs: Vec<(&G1Affine, std::slice::Iter<'_, EllCoeff<ark_bn254::Config>>)> = g1
        .iter()
        .zip(g2)
        .filter(|(p, q)| !p.is_zero() && !q.infinity)
        .map(|(p, q)| (p, q.ell_coeffs.iter()))
        .collect();
    // Each pair's coefficients come in the order arkworks prepared them: one line per step of
    // the ate loop (two where its digit is nonzero), then the two Frobenius lines.
    let mut lines = |f: &mut Fq12| {
        for (p, coefficients) in &mut pairs {
            let Some(&(mut c0, mut c1, c2)) = coefficients.next() else { continue };
            // BN254's twist is a D-type one: the line evaluated at p is sparse in slots 0, 3, 4.
            c0.mul_assign_by_fp(&p.y);
            c1.mul_assign_by_fp(&p.x);
            f.mul_by_034(&c0, &c1, &c2);
        }
    };
    // BN254's curve parameter is positive: the loop's result needs no inversion at the end.
    const _: () = assert!(!<ark_bn254::Config as BnConfig>::X_IS_NEGATIVE);
    let digits = <ark_bn254::Config as BnConfig>::ATE_LOOP_COUNT;
    let mut f = Fq12::one();
    for i in (1..digits.len()).rev() {
        if i != digits.len() - 1 {
            f.square_in_place();
        }
        lines(&mut f);
        if digits[i - 1] != 0 {
            lines(&mut f);
        }
    }
    lines(&mut f);
    lines(&mut f);
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::groth16::{prove_hash_chain, verify};
    use crate::keys::test_support::TempDir;
    use crate::keys::KeyStore;
    use crate::msm::ArkworksMsm;
    use ark_ff::UniformRand;
    use rand::SeedableRng;
    use std::sync::{Arc, OnceLock};
    use rand_chacha::ChaCha20Rng;

    /// The verifying key of hash-chain 2^10 (the smallest traded size) and nine valid proofs for
    /// seeds 1..=9 with their public inputs, made once for all these tests.
    fn fixture() -> &'static (Arc<PreparedVerifyingKey<Bn254>>, Vec<(Proof<Bn254>, [Fr; 2])>) {
        static FIXTURE: OnceLock<(Arc<PreparedVerifyingKey<Bn254>>, Vec<(Proof<Bn254>, [Fr; 2])>)> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let dir = TempDir::new("batch-verify");
            let keys = KeyStore::new(dir.path());
            let proofs = (1..=9).map(|seed| prove_hash_chain(&keys, 10, Fr::from(seed), &ArkworksMsm).unwrap()).collect();
            (keys.verifying_key(10).unwrap(), proofs)
        })
    }

    fn proofs(n: usize) -> (&'static PreparedVerifyingKey<Bn254>, Vec<(Proof<Bn254>, [Fr; 2])>) {
        let (pvk, proofs) = fixture();
        (&**pvk, proofs[..n].to_vec())
    }

    fn claims(items: &[(Proof<Bn254>, [Fr; 2])]) -> Vec<Claim<'_>> {
        items.iter().map(|(proof, inputs)| Claim { public_inputs: inputs, proof }).collect()
    }

    #[test]
    fn a_batch_of_valid_proofs_is_accepted_whole() {
        let (pvk, items) = proofs(9);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        assert_eq!(verify_batch(pvk, &claims(&items), &mut rng), vec![true; 9]);
        assert!(verify_batch(pvk, &[], &mut rng).is_empty());
    }

    #[test]
    fn every_kind_of_bad_proof_is_refused_alone_and_its_batch_mates_accepted() {
        let (pvk, items) = proofs(8);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        // Each corruption of one claim, at each position: the verdicts equal one-by-one verification.
        let corruptions: Vec<Box<dyn Fn(&mut (Proof<Bn254>, [Fr; 2]))>> = vec![
            Box::new(|(_, inputs)| inputs[1] += Fr::one()),               // another statement
            Box::new(|(proof, _)| proof.c = (proof.c + proof.c).into_affine()), // a tampered point
            Box::new(|(proof, _)| proof.a = G1Affine::generator()),
            Box::new(|(proof, _)| std::mem::swap(&mut proof.a, &mut proof.c)),
        ];
        for corrupt in &corruptions {
            for bad in [0, 3, 7] {
                let mut batch = items.clone();
                corrupt(&mut batch[bad]);
                let one_by_one: Vec<bool> = batch.iter().map(|(proof, inputs)| verify(pvk, inputs, proof)).collect();
                assert!(!one_by_one[bad]);
                let verdicts = verify_batch(pvk, &claims(&batch), &mut rng);
                assert_eq!(verdicts, one_by_one, "bad claim at {bad}");
            }
        }
    }

    #[test]
    fn two_bad_proofs_that_would_cancel_under_known_scalars_are_both_refused() {
        // With all r_i = 1, shifting C_0 by +D and C_1 by -D would cancel in Σ C_i; random
        // scalars do not let it.
        let (pvk, mut items) = proofs(4);
        let shift = G1Affine::generator();
        items[0].0.c = (items[0].0.c + shift).into_affine();
        items[1].0.c = (items[1].0.c.into_group() - shift).into_affine();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        assert_eq!(verify_batch(pvk, &claims(&items), &mut rng), vec![false, false, true, true]);
    }

    #[test]
    fn the_one_accumulator_miller_loop_equals_arkworks_for_any_number_of_pairs() {
        let (_, items) = proofs(9);
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let prepared: Vec<G2Prepared> = items.iter().map(|(proof, _)| proof.b.into()).collect();
        // Past four pairs arkworks splits them in accumulators of four; a zero point is skipped.
        for n in [1, 3, 4, 5, 9] {
            let mut g1: Vec<G1Affine> = (0..n).map(|_| (G1Affine::generator() * Fr::rand(&mut rng)).into_affine()).collect();
            if n == 5 {
                g1[2] = G1Affine::zero();
            }
            let g2: Vec<&G2Prepared> = prepared[..n].iter().collect();
            let theirs = Bn254::multi_miller_loop(g1.iter().copied(), g2.iter().map(|&q| q.clone()));
            assert_eq!(miller_loop(&g1, &g2), theirs.0, "{n} pairs");
        }
    }

    #[test]
    fn point_by_point_combinations_equal_the_msm() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        for n in [0, 1, 2, 7, 8, 20] {
            let points: Vec<G1Affine> = (0..n).map(|_| (G1Affine::generator() * Fr::rand(&mut rng)).into_affine()).collect();
            let scalars: Vec<Fr> = (0..n).map(|_| Fr::rand(&mut rng)).collect();
            assert_eq!(combine(&points, &scalars), Some(G1Projective::msm(&points, &scalars).unwrap()), "{n} points");
        }
        assert_eq!(combine(&[G1Affine::generator()], &[]), None);
    }

    #[test]
    fn a_claim_with_the_wrong_number_of_inputs_is_refused_without_spoiling_the_batch() {
        let (pvk, items) = proofs(3);
        let short = [items[1].1[0]];
        let mut batch = claims(&items);
        batch[1].public_inputs = &short;
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        assert_eq!(verify_batch(pvk, &batch, &mut rng), vec![true, false, true]);
    }
}
