//! The R1CS-to-QAP witness map snarkjs' setups are made for ("CircomReduction" in ark-circom).
//!
//! Over the domain of n = `domain_size` points (n >= constraints + public signals + 1), the
//! rows of A are the constraints' left sides followed by one row per public wire (wire 0
//! included) that selects it, which is what binds the public signals; B has the constraints'
//! right sides and zeros after them; C's evaluations are A∘B (they equal the C side wherever the
//! witness satisfies the constraints). snarkjs' H points are made for the quotient's values on
//! the odd coset g·ω^i, g a primitive 2n-th root of unity, where the vanishing polynomial
//! x^n - 1 is the constant -2; that constant is folded into the points, so
//!
//! ```text
//! h_i = A(g·ω^i) · B(g·ω^i) - C(g·ω^i),   i < n
//! ```
//!
//! (no division), computed with three inverse FFTs and three coset FFTs. arkworks' default
//! `LibsnarkReduction` gives other h values, and proofs that do not verify against a snarkjs key.

use ark_bn254::Fr;
use ark_ff::Zero;
use ark_poly::{EvaluationDomain, Radix2EvaluationDomain};
use rayon::prelude::*;

use super::r1cs::{evaluate, R1cs};

/// Why the witness map cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QapError {
    /// The domain is too small or not a power of two BN254 supports.
    #[error("a domain of {domain_size} points cannot hold {rows} rows (constraints + public signals + 1)")]
    Domain {
        /// Points.
        domain_size: usize,
        /// Rows needed.
        rows: usize,
    },
    /// The witness does not have one value per wire.
    #[error("the witness has {got} values; the circuit has {wires} wires")]
    WitnessLength {
        /// Values given.
        got: usize,
        /// Wires.
        wires: usize,
    },
}

/// The n values of h for `witness` (one per wire, starting with the one).
pub fn witness_map(r1cs: &R1cs, witness: &[Fr], domain_size: usize) -> Result<Vec<Fr>, QapError> {
    if witness.len() != r1cs.wires as usize {
        return Err(QapError::WitnessLength { got: witness.len(), wires: r1cs.wires as usize });
    }
    let constraints = r1cs.constraints.len();
    let public_rows = r1cs.public_signals() as usize + 1;
    let rows = constraints + public_rows;
    let domain = Radix2EvaluationDomain::<Fr>::new(domain_size)
        .filter(|d| d.size() == domain_size && rows <= domain_size)
        .ok_or(QapError::Domain { domain_size, rows })?;
    let double = Radix2EvaluationDomain::<Fr>::new(2 * domain_size).ok_or(QapError::Domain { domain_size, rows })?;
    let coset = domain.get_coset(double.group_gen()).ok_or(QapError::Domain { domain_size, rows })?;

    let (mut a, mut b): (Vec<Fr>, Vec<Fr>) = r1cs
        .constraints
        .par_iter()
        .map(|constraint| (evaluate(&constraint.a, witness), evaluate(&constraint.b, witness)))
        .unzip();
    a.extend_from_slice(&witness[..public_rows]);
    a.resize(domain_size, Fr::zero());
    b.resize(domain_size, Fr::zero());
    let mut c: Vec<Fr> = a.par_iter().zip(&b).map(|(x, y)| *x * y).collect();

    for values in [&mut a, &mut b, &mut c] {
        domain.ifft_in_place(values);
        coset.fft_in_place(values);
    }
    Ok(a.par_iter().zip(&b).zip(&c).map(|((x, y), z)| *x * y - z).collect())
}
