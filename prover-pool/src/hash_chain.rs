//! The `hash-chain` circuit: a chain of squarings with round constants over the BN254 scalar
//! field.
//!
//! Statement: for public inputs `[seed, out]`, with x_0 = seed and x_{i+1} = x_i^2 + c_i for
//! i in 0..rounds, `out = x_rounds`. It is a **benchmark workload** with a known, exact size, not a
//! cryptographic hash: squaring with additive constants is neither one-way nor collision-resistant
//! in any sense anyone should rely on. Its point is that proving it costs what a real circuit of
//! the same size costs.
//!
//! Invariants:
//! - One R1CS constraint per round, `x_i * x_i = x_{i+1} - c_i`, where x_0 is the public `seed`
//!   variable and the last round's x_{i+1} is the public `out` variable; x_1 .. x_{rounds-1} are
//!   witnesses.
//! - `rounds = 2^size_log2 - 3`, so that constraints plus instance variables (one, seed, out)
//!   fill exactly the 2^size_log2 evaluation domain of ark-groth16's `LibsnarkReduction`: a circuit
//!   of "size 2^k" costs a 2^k FFT domain and MSMs of about 2^k points, not 2^(k+1).
//! - Round constants are `c_i = (i + 1) * K`, where K is the first 40 decimal digits of pi
//!   ([`ROUND_CONSTANT_MULTIPLIER`]): fixed, public, nothing up the sleeve, and distinct for every
//!   round. Changing them changes the circuit, so every key ever generated would be invalid.

use ark_bn254::Fr;
use ark_ff::{AdditiveGroup, Field, MontFp};
use ark_relations::lc;
use ark_relations::r1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError, Variable};

/// Registry name of this circuit.
pub const CIRCUIT_NAME: &str = "hash-chain";

/// Smallest size this circuit can be built for (it needs at least one round).
pub const MIN_SIZE_LOG2: u8 = 2;

/// Largest size this circuit can be built for: BN254's scalar field has FFT domains up to 2^28.
pub const MAX_SIZE_LOG2: u8 = 28;

/// Instance variables of the constraint system: the constant one, `seed` and `out`.
pub const INSTANCE_VARIABLES: usize = 3;

/// K in `c_i = (i + 1) * K`: the first 40 decimal digits of pi.
pub const ROUND_CONSTANT_MULTIPLIER: Fr = MontFp!("3141592653589793238462643383279502884197");

/// The hash-chain circuit of size 2^size_log2 for a seed.
///
/// `seed: None` is the shape only, for key generation: it synthesizes the same constraints
/// without any values. Proving needs `Some(seed)`; `out` is computed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashChainCircuit {
    /// The first public input, or `None` for setup.
    pub seed: Option<Fr>,
    /// The circuit has 2^size_log2 - 3 constraints; see the module docs.
    pub size_log2: u8,
}

/// Number of rounds (= constraints) of the circuit of size 2^size_log2, or `None` if no circuit
/// of that size exists (outside [`MIN_SIZE_LOG2`]..=[`MAX_SIZE_LOG2`]).
pub fn rounds(size_log2: u8) -> Option<usize> {
    (MIN_SIZE_LOG2..=MAX_SIZE_LOG2).contains(&size_log2).then(|| (1usize << size_log2) - INSTANCE_VARIABLES)
}

/// The round constant c_i.
pub fn round_constant(round: usize) -> Fr {
    // usize -> u64 is lossless on every supported target; rounds are below 2^28 anyway.
    Fr::from(round as u64 + 1) * ROUND_CONSTANT_MULTIPLIER
}

/// The chain's end `out` for `seed`: the second public input, computed natively (microseconds
/// per thousand rounds).
///
/// Sizes outside [`MIN_SIZE_LOG2`]..=[`MAX_SIZE_LOG2`] have no circuit (and so no proof can
/// exist for them); for them this returns `seed` unchanged (zero rounds) rather than panic or run
/// for long. Callers validate sizes against the registry first.
pub fn hash_chain_output(seed: Fr, size_log2: u8) -> Fr {
    // c_i = (i + 1)·M, kept as a running sum: one addition a round instead of a conversion and a
    // multiplication (this runs for every delivered proof, to know its public output).
    let mut constant = Fr::ZERO;
    (0..rounds(size_log2).unwrap_or(0)).fold(seed, |x, _| {
        constant += ROUND_CONSTANT_MULTIPLIER;
        x.square() + constant
    })
}

impl ConstraintSynthesizer<Fr> for HashChainCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        // Refuse a bad size before computing anything.
        rounds(self.size_log2).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        let out = self.seed.map(|seed| hash_chain_output(seed, self.size_log2));
        synthesize(cs, self.seed, out, self.size_log2)
    }
}

/// Synthesizes the circuit with an explicit (possibly wrong) claimed `out`; the public
/// [`HashChainCircuit`] always claims the honest one. Tests use this to show the constraints
/// catch a wrong output.
pub(crate) fn synthesize(
    cs: ConstraintSystemRef<Fr>,
    seed: Option<Fr>,
    claimed_out: Option<Fr>,
    size_log2: u8,
) -> Result<(), SynthesisError> {
    let rounds = rounds(size_log2).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
    // In setup mode arkworks never calls these closures, so `None` values are fine there.
    let seed_var = cs.new_input_variable(|| seed.ok_or(SynthesisError::AssignmentMissing))?;
    let out_var = cs.new_input_variable(|| claimed_out.ok_or(SynthesisError::AssignmentMissing))?;

    let (mut x_var, mut x_value) = (seed_var, seed);
    for round in 0..rounds {
        let constant = round_constant(round);
        let next_value = x_value.map(|x| x.square() + constant);
        let next_var = if round + 1 == rounds {
            out_var
        } else {
            cs.new_witness_variable(|| next_value.ok_or(SynthesisError::AssignmentMissing))?
        };
        // x_i * x_i = x_{i+1} - c_i
        cs.enforce_constraint(lc!() + x_var, lc!() + x_var, lc!() + next_var - (constant, Variable::One))?;
        (x_var, x_value) = (next_var, next_value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_poly::{EvaluationDomain, GeneralEvaluationDomain};
    use ark_relations::r1cs::{ConstraintSystem, SynthesisMode};

    fn proving_cs(seed: Fr, claimed_out: Fr, size_log2: u8) -> ConstraintSystemRef<Fr> {
        let cs = ConstraintSystem::new_ref();
        synthesize(cs.clone(), Some(seed), Some(claimed_out), size_log2).unwrap();
        cs
    }

    #[test]
    fn size_2_pow_10_fills_exactly_a_2_pow_10_domain() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_mode(SynthesisMode::Setup);
        HashChainCircuit { seed: None, size_log2: 10 }.generate_constraints(cs.clone()).unwrap();
        cs.finalize();
        assert_eq!(cs.num_constraints(), (1 << 10) - 3);
        assert_eq!(cs.num_instance_variables(), 3);
        assert_eq!(cs.num_witness_variables(), (1 << 10) - 4);
        // ark-groth16's LibsnarkReduction sizes its domain from exactly this sum.
        let needed = cs.num_constraints() + cs.num_instance_variables();
        assert_eq!(needed, 1 << 10);
        assert_eq!(GeneralEvaluationDomain::<Fr>::new(needed).unwrap().size(), 1 << 10);
    }

    #[test]
    fn honest_witness_satisfies_the_constraints() {
        let seed = Fr::from(12345u64);
        let cs = ConstraintSystem::new_ref();
        HashChainCircuit { seed: Some(seed), size_log2: 10 }.generate_constraints(cs.clone()).unwrap();
        assert!(cs.is_satisfied().unwrap());
        assert_eq!(cs.num_constraints(), 1021);
    }

    #[test]
    fn a_wrong_output_is_caught_by_the_last_constraint() {
        let seed = Fr::from(7u64);
        let honest = hash_chain_output(seed, 10);
        assert!(proving_cs(seed, honest, 10).is_satisfied().unwrap());

        let cs = proving_cs(seed, honest + Fr::ONE, 10);
        assert!(!cs.is_satisfied().unwrap());
        assert!(cs.which_is_unsatisfied().unwrap().is_some());
        // A wrong seed with the honest output is caught too.
        assert!(!proving_cs(seed + Fr::ONE, honest, 10).is_satisfied().unwrap());
    }

    #[test]
    fn native_output_follows_the_recurrence() {
        let seed = Fr::from(3u64);
        let mut x = seed;
        for round in 0..(1 << 10) - 3 {
            x = x.square() + Fr::from(round as u64 + 1) * ROUND_CONSTANT_MULTIPLIER;
        }
        assert_eq!(hash_chain_output(seed, 10), x);
        assert_ne!(hash_chain_output(seed, 10), hash_chain_output(seed, 11));
        assert_ne!(hash_chain_output(seed, 10), hash_chain_output(seed + Fr::ONE, 10));
    }

    #[test]
    fn sizes_without_a_circuit_are_refused() {
        assert_eq!(rounds(1), None);
        assert_eq!(rounds(29), None);
        assert_eq!(rounds(2), Some(1));
        assert_eq!(rounds(28), Some((1 << 28) - 3));
        let cs = ConstraintSystem::<Fr>::new_ref();
        let err = HashChainCircuit { seed: Some(Fr::ONE), size_log2: 29 }.generate_constraints(cs).unwrap_err();
        assert!(matches!(err, SynthesisError::PolynomialDegreeTooLarge));
        assert_eq!(hash_chain_output(Fr::ONE, 0), Fr::ONE);
        assert_eq!(hash_chain_output(Fr::ONE, 200), Fr::ONE);
    }

    #[test]
    fn proving_without_a_seed_reports_the_missing_assignment() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let err = HashChainCircuit { seed: None, size_log2: 10 }.generate_constraints(cs).unwrap_err();
        assert!(matches!(err, SynthesisError::AssignmentMissing));
    }

    #[test]
    fn the_round_constant_multiplier_is_pi() {
        assert_eq!(
            crate::field::field_to_decimal(&ROUND_CONSTANT_MULTIPLIER),
            "3141592653589793238462643383279502884197"
        );
        assert_eq!(round_constant(1), ROUND_CONSTANT_MULTIPLIER + ROUND_CONSTANT_MULTIPLIER);
    }
}
