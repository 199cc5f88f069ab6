//! Our Groth16 prover over BN254, with every MSM going through an [`MsmBackend`].
//!
//! ark-groth16's own `Groth16::prove` calls arkworks' MSM directly, so it cannot use a GPU. This
//! module reimplements its `create_proof` (ark-groth16 0.5, `prover.rs`) step by step, with the
//! same index conventions and the same R1CS-to-QAP reduction (`LibsnarkReduction`), so proofs are
//! ordinary Groth16 proofs, verified by ark-groth16's verifier against keys from its setup:
//!
//! ```text
//! synthesize in prove mode, check the witness satisfies every constraint, finalize
//! h    = the QAP quotient's coefficients (LibsnarkReduction::witness_map, domain n = 2^k)
//! A    = alpha_g1 + a_query[0]    + MSM(a_query[1..], z)    + r * delta_g1
//! B_g1 = beta_g1  + b_g1_query[0] + MSM(b_g1_query[1..], z) + s * delta_g1
//! B    = beta_g2  + b_g2_query[0] + MSM(b_g2_query[1..], z) + s * delta_g2
//! C    = MSM(l_query, w) + MSM(h_query, h[..n-1]) + s * A + r * B_g1 - r * s * delta_g1
//! ```
//!
//! where z is the full assignment without the leading one (public inputs, then witnesses) and w
//! the witnesses alone; index 0 of the a/b queries belongs to the constant one and is added
//! directly. That is four G1 MSMs and one G2 MSM per proof, all through the backend.
//!
//! r and s are fresh uniform field elements per proof (zero knowledge); they must come from a
//! cryptographically secure RNG, hence the `CryptoRng` bound.
//!
//! The group computations after the witness map ([`assemble_proof`]) are shared with circom
//! circuits ([`crate::circom`]), whose h comes from snarkjs' reduction instead.

use ark_bn254::{Bn254, Fr, G1Projective, G2Projective};
use ark_ec::CurveGroup;
use ark_ff::UniformRand;
use ark_groth16::r1cs_to_qap::{LibsnarkReduction, R1CSToQAP};
use ark_groth16::{Groth16, PreparedVerifyingKey, Proof, ProvingKey};
use ark_poly::GeneralEvaluationDomain;
use ark_relations::r1cs::{ConstraintSynthesizer, ConstraintSystem, OptimizationGoal, SynthesisError, SynthesisMode};
use rand::{CryptoRng, RngCore};

use crate::hash_chain::{hash_chain_output, HashChainCircuit};
use crate::keys::{KeyError, KeyStore};
use crate::msm::{MsmBackend, MsmError};

/// Why no proof was made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The keys could not be had.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Building the constraint system or the QAP failed.
    #[error("circuit synthesis failed: {0}")]
    Synthesis(#[from] SynthesisError),
    /// The witness map could not be computed (a witness or domain that does not fit the key).
    #[error("the witness does not fit the proving key: {0}")]
    Witness(String),
    /// The witness does not satisfy the constraints (no valid proof exists for it).
    #[error("the witness does not satisfy the circuit's constraints")]
    Unsatisfied,
    /// The proving key was made for another circuit or size.
    #[error("the proving key does not match the circuit: its {query} has {got} points, the circuit needs {expected}")]
    KeyDoesNotMatchCircuit {
        /// Which query of the proving key.
        query: &'static str,
        /// Points the circuit needs.
        expected: usize,
        /// Points the key has.
        got: usize,
    },
    /// The MSM backend failed.
    #[error(transparent)]
    Msm(#[from] MsmError),
    /// A proof was made but does not verify (a broken backend or mismatched keys).
    #[error("the proof made with MSM backend `{backend}` does not verify against the verifying key")]
    ProofDoesNotVerify {
        /// The backend's name.
        backend: String,
    },
}

/// Proves `circuit` with `pk`, every MSM through `backend`, blinding with randomness from `rng`.
pub fn prove<R: RngCore + CryptoRng>(
    pk: &ProvingKey<Bn254>,
    circuit: HashChainCircuit,
    backend: &dyn MsmBackend,
    rng: &mut R,
) -> Result<Proof<Bn254>, ProveError> {
    let r = Fr::rand(rng);
    let s = Fr::rand(rng);
    prove_with_blinding(pk, circuit, backend, r, s)
}

/// The prover with explicit blinding factors r and s; see the module docs for the formulas.
fn prove_with_blinding(
    pk: &ProvingKey<Bn254>,
    circuit: impl ConstraintSynthesizer<Fr>,
    backend: &dyn MsmBackend,
    r: Fr,
    s: Fr,
) -> Result<Proof<Bn254>, ProveError> {
    let cs = ConstraintSystem::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Prove { construct_matrices: true });
    circuit.generate_constraints(cs.clone())?;
    // Cheap (one pass over the constraints) and it saves computing a proof that cannot verify.
    if !cs.is_satisfied()? {
        return Err(ProveError::Unsatisfied);
    }
    cs.finalize();
    let h = LibsnarkReduction::witness_map::<Fr, GeneralEvaluationDomain<Fr>>(cs.clone())?;

    let system = cs.borrow().ok_or(SynthesisError::MissingCS)?;
    // instance_assignment[0] is the constant one, which every constraint system starts with.
    let public_inputs = &system.instance_assignment[1..];
    let assignment: Vec<Fr> = public_inputs.iter().chain(&system.witness_assignment).copied().collect();
    // h has one coefficient per domain point; the top one is always zero and has no query point.
    let h = &h[..h.len().saturating_sub(1)];
    assemble_proof(pk, &assignment, public_inputs.len(), h, backend, r, s)
}

/// The Groth16 group computations shared by every witness map (see the module docs):
/// `assignment` is the full assignment without the leading one (public signals first, then the
/// private wires), `public` how many of it are public, `h` one scalar per `h_query` point.
pub(crate) fn assemble_proof(
    pk: &ProvingKey<Bn254>,
    assignment: &[Fr],
    public: usize,
    h: &[Fr],
    backend: &dyn MsmBackend,
    r: Fr,
    s: Fr,
) -> Result<Proof<Bn254>, ProveError> {
    let variables = assignment.len() + 1;
    check_query_len("a_query", pk.a_query.len(), variables)?;
    check_query_len("b_g1_query", pk.b_g1_query.len(), variables)?;
    check_query_len("b_g2_query", pk.b_g2_query.len(), variables)?;
    check_query_len("l_query", pk.l_query.len(), assignment.len().saturating_sub(public))?;
    check_query_len("h_query", pk.h_query.len(), h.len())?;
    let witnesses = &assignment[public..];

    let h_acc = backend.msm_g1(&pk.h_query, h)?;
    let l_acc = backend.msm_g1(&pk.l_query, witnesses)?;

    let a: G1Projective =
        backend.msm_g1(&pk.a_query[1..], assignment)? + pk.a_query[0] + pk.vk.alpha_g1 + pk.delta_g1 * r;
    let b_g1: G1Projective =
        backend.msm_g1(&pk.b_g1_query[1..], assignment)? + pk.b_g1_query[0] + pk.beta_g1 + pk.delta_g1 * s;
    let b_g2: G2Projective =
        backend.msm_g2(&pk.b_g2_query[1..], assignment)? + pk.b_g2_query[0] + pk.vk.beta_g2 + pk.vk.delta_g2 * s;
    let c = a * s + b_g1 * r - pk.delta_g1 * (r * s) + l_acc + h_acc;

    Ok(Proof { a: a.into_affine(), b: b_g2.into_affine(), c: c.into_affine() })
}

fn check_query_len(query: &'static str, got: usize, expected: usize) -> Result<(), ProveError> {
    // The a/b queries always need at least the constant one's point, so equal lengths also make
    // the `[0]` / `[1..]` indexing in the prover safe.
    if got == expected {
        Ok(())
    } else {
        Err(ProveError::KeyDoesNotMatchCircuit { query, expected, got })
    }
}

/// Whether `proof` is valid for `public_inputs` (without the leading one) under `pvk`; `false`
/// also when the number of public inputs is wrong.
pub fn verify(pvk: &PreparedVerifyingKey<Bn254>, public_inputs: &[Fr], proof: &Proof<Bn254>) -> bool {
    Groth16::<Bn254>::verify_proof(pvk, proof, public_inputs).unwrap_or(false)
}

/// Proves hash-chain of size 2^size_log2 for `seed` with `backend`; returns the proof and its
/// public inputs [seed, out].
pub fn prove_hash_chain(
    keys: &KeyStore,
    size_log2: u8,
    seed: Fr,
    backend: &dyn MsmBackend,
) -> Result<(Proof<Bn254>, [Fr; 2]), ProveError> {
    let pk = keys.proving_key(size_log2)?;
    let proof = prove(&pk, HashChainCircuit { seed: Some(seed), size_log2 }, backend, &mut rand::rngs::OsRng)?;
    Ok((proof, [seed, hash_chain_output(seed, size_log2)]))
}

/// Verifies a proof of hash-chain for `seed` (computes `out` natively).
pub fn verify_hash_chain(keys: &KeyStore, size_log2: u8, seed: Fr, proof: &Proof<Bn254>) -> Result<bool, KeyError> {
    let pvk = keys.verifying_key(size_log2)?;
    Ok(verify(&pvk, &[seed, hash_chain_output(seed, size_log2)], proof))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::TempDir;
    use crate::msm::{ArkworksMsm, CountingMsm};
    use ark_ec::AffineRepr;
    use ark_ff::{Field, One};
    use ark_snark::SNARK;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn proofs_round_trip_and_bind_their_statement() {
        let dir = TempDir::new("groth16");
        let keys = KeyStore::new(dir.path());
        let seed = Fr::from(2024u64);
        let counting = CountingMsm::new(ArkworksMsm);

        let (proof, public) = prove_hash_chain(&keys, 10, seed, &counting).unwrap();
        assert_eq!(public, [seed, hash_chain_output(seed, 10)]);
        assert!(counting.g1_calls() >= 4, "G1 MSMs through the backend: {}", counting.g1_calls());
        assert!(counting.g2_calls() >= 1, "G2 MSMs through the backend: {}", counting.g2_calls());
        assert!(verify_hash_chain(&keys, 10, seed, &proof).unwrap());
        let pvk = keys.verifying_key(10).unwrap();
        assert!(verify(&pvk, &public, &proof));

        // Another seed, swapped or missing public inputs, a wrong output.
        assert!(!verify_hash_chain(&keys, 10, seed + Fr::one(), &proof).unwrap());
        assert!(!verify(&pvk, &[public[1], public[0]], &proof));
        assert!(!verify(&pvk, &[seed], &proof));
        assert!(!verify(&pvk, &[seed, public[1] + Fr::one()], &proof));

        // Tampered proofs.
        let g1 = ark_bn254::G1Affine::generator();
        let tampered_a = Proof { a: (proof.a + g1).into_affine(), ..proof.clone() };
        let tampered_c = Proof { c: (proof.c + g1).into_affine(), ..proof.clone() };
        let swapped = Proof { a: proof.c, c: proof.a, ..proof.clone() };
        for bad in [tampered_a, tampered_c, swapped] {
            assert!(!verify(&pvk, &public, &bad));
        }

        // A proof for size 2^10 does not verify as size 2^11.
        assert!(!verify_hash_chain(&keys, 11, seed, &proof).unwrap());
    }

    #[test]
    fn proofs_are_randomized_and_match_arkworks_for_the_same_blinding() {
        let dir = TempDir::new("groth16-ark");
        let keys = KeyStore::new(dir.path());
        let pk = keys.proving_key(10).unwrap();
        let circuit = HashChainCircuit { seed: Some(Fr::from(5u64)), size_log2: 10 };
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let first = prove(&pk, circuit, &ArkworksMsm, &mut rng).unwrap();
        let second = prove(&pk, circuit, &ArkworksMsm, &mut rng).unwrap();
        assert_ne!(first, second, "fresh blinding per proof");

        // Same r and s as ark-groth16's own prover: the very same proof.
        let (r, s) = (Fr::from(11u64), Fr::from(13u64).inverse().unwrap());
        let ours = prove_with_blinding(&pk, circuit, &ArkworksMsm, r, s).unwrap();
        let theirs = Groth16::<Bn254>::create_proof_with_reduction(circuit, &pk, r, s).unwrap();
        assert_eq!(ours, theirs);
        let ark_proof = Groth16::<Bn254>::prove(&pk, circuit, &mut rng).unwrap();
        assert!(verify(
            &keys.verifying_key(10).unwrap(),
            &[Fr::from(5u64), hash_chain_output(Fr::from(5u64), 10)],
            &ark_proof
        ));
    }

    #[test]
    fn a_key_for_another_size_is_refused_before_any_msm() {
        let dir = TempDir::new("groth16-size");
        let keys = KeyStore::new(dir.path());
        let pk_11 = keys.proving_key(11).unwrap();
        let counting = CountingMsm::new(ArkworksMsm);
        let circuit = HashChainCircuit { seed: Some(Fr::one()), size_log2: 10 };
        let err = prove(&pk_11, circuit, &counting, &mut ChaCha20Rng::seed_from_u64(2)).unwrap_err();
        assert!(matches!(err, ProveError::KeyDoesNotMatchCircuit { query: "a_query", .. }), "{err:?}");
        assert_eq!(counting.g1_calls() + counting.g2_calls(), 0);
    }

    #[test]
    fn an_unsatisfied_witness_is_refused_before_any_msm() {
        struct WrongOutput;
        impl ConstraintSynthesizer<Fr> for WrongOutput {
            fn generate_constraints(
                self,
                cs: ark_relations::r1cs::ConstraintSystemRef<Fr>,
            ) -> Result<(), SynthesisError> {
                crate::hash_chain::synthesize(cs, Some(Fr::one()), Some(Fr::one()), 10)
            }
        }
        let dir = TempDir::new("groth16-unsat");
        let keys = KeyStore::new(dir.path());
        let pk = keys.proving_key(10).unwrap();
        let counting = CountingMsm::new(ArkworksMsm);
        let err = prove_with_blinding(&pk, WrongOutput, &counting, Fr::one(), Fr::one()).unwrap_err();
        assert!(matches!(err, ProveError::Unsatisfied), "{err:?}");
        assert_eq!(counting.g1_calls() + counting.g2_calls(), 0);
    }

    #[test]
    fn a_failing_backend_fails_the_proof() {
        struct Broken;
        impl MsmBackend for Broken {
            fn name(&self) -> &str {
                "broken"
            }
            fn msm_g1(&self, _: &[ark_bn254::G1Affine], _: &[Fr]) -> Result<G1Projective, MsmError> {
                Err(MsmError::Backend("device lost".into()))
            }
            fn msm_g2(&self, _: &[ark_bn254::G2Affine], _: &[Fr]) -> Result<G2Projective, MsmError> {
                Err(MsmError::Backend("device lost".into()))
            }
        }
        let dir = TempDir::new("groth16-broken");
        let keys = KeyStore::new(dir.path());
        let err = prove_hash_chain(&keys, 10, Fr::one(), &Broken).unwrap_err();
        assert_eq!(err.to_string(), "MSM backend failed: device lost");
    }
}
