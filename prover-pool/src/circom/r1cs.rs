//! circom's `.r1cs` file: the constraint system a circuit compiled to.
//!
//! Sections: 1 header (field, wire counts, constraint count), 2 constraints (each `A * B = C`,
//! every side a sparse linear combination of wires), 3 wire-to-label map (read for its length
//! only). Wire 0 is the constant one; then come the public outputs, the public inputs, the
//! private inputs and the internal wires, which is also the witness order of the circuit's
//! witness generator. Coefficients are stored in normal form, little-endian.
//!
//! Invariants of a parsed [`R1cs`]: the field is BN254's scalar field, every wire id is below
//! `wires`, the counts add up (`1 + outputs + public inputs + private inputs <= wires`), and the
//! constraint count is the header's. Custom gates (PLONK only) are refused.

use ark_bn254::Fr;
use ark_ff::{PrimeField, Zero};

use super::binfile::{expect_prime, BinError, Reader, Sections};

/// A sparse linear combination: (wire, coefficient) pairs.
pub type LinearCombination = Vec<(u32, Fr)>;

/// One constraint `<a, w> * <b, w> = <c, w>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Left factor.
    pub a: LinearCombination,
    /// Right factor.
    pub b: LinearCombination,
    /// Product.
    pub c: LinearCombination,
}

/// A parsed `.r1cs` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct R1cs {
    /// Wires, including the constant one.
    pub wires: u32,
    /// Public outputs (wires 1..=outputs).
    pub public_outputs: u32,
    /// Public inputs (after the outputs).
    pub public_inputs: u32,
    /// Private inputs.
    pub private_inputs: u32,
    /// Labels (signals before optimisation).
    pub labels: u64,
    /// The constraints.
    pub constraints: Vec<Constraint>,
}

/// Bytes of one (wire, coefficient) term.
const TERM_BYTES: usize = 4 + 32;

impl R1cs {
    /// Parses a whole `.r1cs` file.
    pub fn parse(file: &[u8]) -> Result<R1cs, BinError> {
        let sections = Sections::parse(file, b"r1cs", "r1cs")?;
        if sections.has(4) || sections.has(5) {
            return Err(BinError::Malformed(
                "the r1cs uses custom gates (a PLONK feature); Groth16 circuits cannot have them".into(),
            ));
        }
        let mut header = sections.section(1, "header")?;
        expect_prime(&mut header, Fr::MODULUS, "field")?;
        let wires = header.u32("the wire count")?;
        let public_outputs = header.u32("the public output count")?;
        let public_inputs = header.u32("the public input count")?;
        let private_inputs = header.u32("the private input count")?;
        let labels = header.u64("the label count")?;
        let constraint_count = header.u32("the constraint count")?;
        let named = 1u64 + u64::from(public_outputs) + u64::from(public_inputs) + u64::from(private_inputs);
        if named > u64::from(wires) {
            return Err(BinError::Malformed(format!(
                "the header counts {named} wires for the one, outputs and inputs but only {wires} wires in all"
            )));
        }

        let mut body = sections.section(2, "constraints")?;
        // Each constraint has at least three term counts; refuse a count the section cannot hold.
        if (constraint_count as usize).saturating_mul(12) > body.remaining() {
            return Err(BinError::Malformed(format!(
                "the header claims {constraint_count} constraints but the constraints section has only {} bytes",
                body.remaining()
            )));
        }
        let mut constraints = Vec::with_capacity(constraint_count as usize);
        for index in 0..constraint_count {
            let a = read_combination(&mut body, wires, index)?;
            let b = read_combination(&mut body, wires, index)?;
            let c = read_combination(&mut body, wires, index)?;
            constraints.push(Constraint { a, b, c });
        }
        if body.remaining() != 0 {
            return Err(BinError::Malformed(format!(
                "{} bytes follow the last of the {constraint_count} constraints",
                body.remaining()
            )));
        }
        // The wire-to-label map has one u64 per wire; circom always writes it.
        let map = sections.section(3, "wire-to-label")?;
        if map.remaining() != wires as usize * 8 {
            return Err(BinError::Malformed(format!(
                "the wire-to-label section has {} bytes; {wires} wires need {}",
                map.remaining(),
                wires as usize * 8
            )));
        }
        Ok(R1cs { wires, public_outputs, public_inputs, private_inputs, labels, constraints })
    }

    /// Public signals (outputs, then public inputs): wires 1..=public.
    pub fn public_signals(&self) -> u32 {
        self.public_outputs + self.public_inputs
    }

    /// The first constraint `witness` does not satisfy, if any (the first, too, when `witness`
    /// does not have one value per wire). The witness starts with the one.
    pub fn first_unsatisfied(&self, witness: &[Fr]) -> Option<usize> {
        if witness.len() != self.wires as usize {
            return Some(0);
        }
        self.constraints.iter().position(|constraint| {
            evaluate(&constraint.a, witness) * evaluate(&constraint.b, witness) != evaluate(&constraint.c, witness)
        })
    }
}

fn read_combination(r: &mut Reader<'_>, wires: u32, constraint: u32) -> Result<LinearCombination, BinError> {
    let terms = r.count(TERM_BYTES, "linear combination terms")?;
    let mut out = Vec::with_capacity(terms);
    for _ in 0..terms {
        let wire = r.u32("a wire id")?;
        if wire >= wires {
            return Err(BinError::Malformed(format!(
                "constraint {constraint} names wire {wire}, but the circuit has {wires} wires"
            )));
        }
        let value = r.fr("a coefficient")?;
        if !value.is_zero() {
            out.push((wire, value));
        }
    }
    Ok(out)
}

/// `<lc, witness>`. Wire ids were checked against the wire count when the file was read; a wire
/// past the end of `witness` counts as zero rather than panicking.
pub fn evaluate(lc: &[(u32, Fr)], witness: &[Fr]) -> Fr {
    lc.iter().map(|&(wire, coefficient)| coefficient * witness.get(wire as usize).copied().unwrap_or_default()).sum()
}
