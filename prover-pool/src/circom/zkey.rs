//! snarkjs' Groth16 `.zkey` file: the proving and verifying key of one circuit's setup.
//!
//! Sections: 1 protocol (1 = Groth16), 2 header (base and scalar field, `nVars`, `nPublic`,
//! domain size, alpha1, beta1, beta2, gamma2, delta1, delta2), 3 IC (the verifying key's
//! public-input points), 4 coefficients (the QAP's A and B, which we take from the `.r1cs`
//! instead), 5 A, 6 B1, 7 B2 (one point per wire), 8 C (one per private wire), 9 H (one per
//! domain point), 10 the ceremony's contributions (not needed to prove or verify). Points are
//! affine, each coordinate 32 bytes little-endian in Montgomery form; the all-zero encoding is
//! the point at infinity.
//!
//! The sections map one to one onto arkworks' [`ProvingKey`]: A -> `a_query`, B1 ->
//! `b_g1_query`, B2 -> `b_g2_query`, C -> `l_query`, H -> `h_query`, IC -> `gamma_abc_g1`.
//!
//! Checks: every point is on its curve; the verifying key's points are also in their
//! prime-order subgroups (soundness of verification rests on them). The proving key's G2 points
//! are only checked to be on the curve: a bad one can only make proofs that do not verify, which
//! registration's sample proof catches, and subgroup checks of every point would make loading a
//! large key take minutes.

use ark_bn254::{Bn254, Fq, Fq2, Fr, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{PrimeField, Zero};
use ark_groth16::{ProvingKey, VerifyingKey};
use rayon::prelude::*;

use super::binfile::{expect_prime, BinError, Reader, Sections};

const G1_BYTES: usize = 64;
const G2_BYTES: usize = 128;

/// The header of a Groth16 zkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZkeyHeader {
    /// Wires of the circuit (including the one).
    pub vars: u32,
    /// Public signals (outputs and public inputs).
    pub public: u32,
    /// The QAP's evaluation domain size (a power of two).
    pub domain_size: u32,
}

/// A parsed zkey.
#[derive(Debug, Clone)]
pub struct Zkey {
    /// Counts.
    pub header: ZkeyHeader,
    /// The proving key (whose `vk` is the verifying key).
    pub proving_key: ProvingKey<Bn254>,
}

impl Zkey {
    /// Parses a whole zkey file.
    pub fn parse(file: &[u8]) -> Result<Zkey, BinError> {
        let sections = Sections::parse(file, b"zkey", "zkey")?;
        let protocol = sections.section(1, "protocol")?.u32("the protocol")?;
        if protocol != 1 {
            return Err(BinError::Malformed(format!(
                "the zkey is for protocol {protocol} ({}), not Groth16 (1)",
                match protocol {
                    2 => "PLONK",
                    10 => "FFLONK",
                    _ => "unknown",
                }
            )));
        }
        let mut r = sections.section(2, "Groth16 header")?;
        expect_prime(&mut r, Fq::MODULUS, "base field")?;
        expect_prime(&mut r, Fr::MODULUS, "scalar field")?;
        let vars = r.u32("nVars")?;
        let public = r.u32("nPublic")?;
        let domain_size = r.u32("the domain size")?;
        if !domain_size.is_power_of_two() {
            return Err(BinError::Malformed(format!("the domain size {domain_size} is not a power of two")));
        }
        if public >= vars {
            return Err(BinError::Malformed(format!("nPublic {public} must be below nVars {vars}")));
        }
        let alpha_g1 = checked_g1(read_g1(&mut r, "alpha1")?, "alpha1")?;
        let beta_g1 = checked_g1(read_g1(&mut r, "beta1")?, "beta1")?;
        let beta_g2 = checked_g2(read_g2(&mut r, "beta2")?, "beta2")?;
        let gamma_g2 = checked_g2(read_g2(&mut r, "gamma2")?, "gamma2")?;
        let delta_g1 = checked_g1(read_g1(&mut r, "delta1")?, "delta1")?;
        let delta_g2 = checked_g2(read_g2(&mut r, "delta2")?, "delta2")?;
        let header = ZkeyHeader { vars, public, domain_size };

        let vars = vars as usize;
        let gamma_abc_g1 = g1_section(&sections, 3, "IC", public as usize + 1)?;
        let a_query = g1_section(&sections, 5, "A", vars)?;
        let b_g1_query = g1_section(&sections, 6, "B1", vars)?;
        let b_g2_query = g2_section(&sections, 7, "B2", vars)?;
        let l_query = g1_section(&sections, 8, "C", vars - public as usize - 1)?;
        let h_query = g1_section(&sections, 9, "H", domain_size as usize)?;
        let vk = VerifyingKey { alpha_g1, beta_g2, gamma_g2, delta_g2, gamma_abc_g1 };
        let proving_key = ProvingKey { vk, beta_g1, delta_g1, a_query, b_g1_query, b_g2_query, h_query, l_query };
        Ok(Zkey { header, proving_key })
    }
}

fn read_g1(r: &mut Reader<'_>, what: &str) -> Result<G1Affine, BinError> {
    let x = r.fq_montgomery(what)?;
    let y = r.fq_montgomery(what)?;
    Ok(g1_from_coordinates(x, y))
}

fn read_g2(r: &mut Reader<'_>, what: &str) -> Result<G2Affine, BinError> {
    let x = Fq2::new(r.fq_montgomery(what)?, r.fq_montgomery(what)?);
    let y = Fq2::new(r.fq_montgomery(what)?, r.fq_montgomery(what)?);
    Ok(match x.is_zero() && y.is_zero() {
        true => G2Affine::zero(),
        false => G2Affine::new_unchecked(x, y),
    })
}

fn g1_from_coordinates(x: Fq, y: Fq) -> G1Affine {
    match x.is_zero() && y.is_zero() {
        true => G1Affine::zero(),
        false => G1Affine::new_unchecked(x, y),
    }
}

/// G1 has cofactor one: on the curve is in the subgroup.
fn checked_g1(p: G1Affine, what: &str) -> Result<G1Affine, BinError> {
    match p.is_on_curve() {
        true => Ok(p),
        false => Err(BinError::Malformed(format!("{what} is not a point of BN254's G1"))),
    }
}

fn checked_g2(p: G2Affine, what: &str) -> Result<G2Affine, BinError> {
    match p.is_on_curve() && p.is_in_correct_subgroup_assuming_on_curve() {
        true => Ok(p),
        false => Err(BinError::Malformed(format!("{what} is not a point of BN254's G2 subgroup"))),
    }
}

/// A section of exactly `count` G1 points, parsed and checked in parallel.
fn g1_section(sections: &Sections<'_>, id: u32, name: &str, count: usize) -> Result<Vec<G1Affine>, BinError> {
    let bytes = points_bytes(sections, id, name, count, G1_BYTES)?;
    bytes
        .par_chunks_exact(G1_BYTES)
        .enumerate()
        .map(|(i, chunk)| {
            let what = format!("{name} point {i}");
            let mut r = Reader::new(chunk, 0);
            let point = read_g1(&mut r, &what)?;
            checked_g1(point, &what)
        })
        .collect()
}

fn g2_section(sections: &Sections<'_>, id: u32, name: &str, count: usize) -> Result<Vec<G2Affine>, BinError> {
    let bytes = points_bytes(sections, id, name, count, G2_BYTES)?;
    bytes
        .par_chunks_exact(G2_BYTES)
        .enumerate()
        .map(|(i, chunk)| {
            let what = format!("{name} point {i}");
            let mut r = Reader::new(chunk, 0);
            let point = read_g2(&mut r, &what)?;
            match point.is_on_curve() {
                true => Ok(point),
                false => Err(BinError::Malformed(format!("{what} is not a point of BN254's G2"))),
            }
        })
        .collect()
}

fn points_bytes<'a>(
    sections: &Sections<'a>,
    id: u32,
    name: &str,
    count: usize,
    point_bytes: usize,
) -> Result<&'a [u8], BinError> {
    let mut r = sections.section(id, &format!("{name} points"))?;
    let expected = count * point_bytes;
    if r.remaining() != expected {
        return Err(BinError::Malformed(format!(
            "the {name} section has {} bytes; the header's counts need {count} points ({expected} bytes)",
            r.remaining()
        )));
    }
    r.take(expected, name)
}
