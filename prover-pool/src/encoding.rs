//! The wire encoding of proofs.
//!
//! A proof travels as `"0x"` + lowercase hex of its ark-serialize **compressed** bytes: 128 bytes
//! for Groth16 over BN254, in the order A (G1, 32 bytes), B (G2, 64 bytes), C (G1, 32 bytes).
//! Each point is its x coordinate, little-endian (for B: c0 then c1), with the flags (y sign,
//! infinity) in the top bits of the last byte, as arkworks writes them.
//!
//! Decoding accepts the hex with or without `0x` (either case) and refuses anything that is not
//! exactly 128 bytes of valid points: every point must decompress onto the curve and lie in the
//! prime-order subgroup. A decoded proof may still be *false*; that is the verifier's business.
//!
//! [`ProofPoints`] is the same proof as decimal affine coordinates, for tools (snarkjs-style or
//! EVM verifiers) that do not read arkworks bytes. Its G2 coordinates are `[c0, c1]` pairs
//! (real part first; note that EVM precompiles expect `[c1, c0]`). The point at infinity, which no
//! honest proof contains, is written as all zeros.

use ark_bn254::{Bn254, Fq, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::PrimeField;
use ark_groth16::Proof;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, SerializationError};
use serde::{Deserialize, Serialize};

/// Bytes of a compressed BN254 Groth16 proof.
pub const PROOF_BYTES: usize = 128;

/// Why a text is not a proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// Not hexadecimal.
    #[error("proof must be 0x-prefixed hex of {PROOF_BYTES} bytes (compressed arkworks Groth16/BN254): {0}")]
    NotHex(String),
    /// Hex of the wrong number of bytes.
    #[error("proof must be {PROOF_BYTES} bytes (compressed arkworks Groth16/BN254: A 32, B 64, C 32); got {0} bytes")]
    WrongLength(usize),
    /// The right length, but the bytes are not valid curve points.
    #[error("proof bytes are not valid BN254 points: {0}")]
    InvalidPoint(String),
}

/// The wire text of a proof: `0x` + hex of its 128 compressed bytes.
pub fn encode_proof(proof: &Proof<Bn254>) -> String {
    let mut bytes = Vec::with_capacity(PROOF_BYTES);
    // Writing into a Vec cannot fail, and a proof's points always serialize.
    if let Err(e) = proof.serialize_compressed(&mut bytes) {
        unreachable!("serializing a proof into memory failed: {e}");
    }
    format!("0x{}", hex::encode(bytes))
}

/// Parses the wire text of a proof, validating every point; see the module docs.
pub fn decode_proof(text: &str) -> Result<Proof<Bn254>, EncodingError> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    let bytes = hex::decode(digits).map_err(|e| EncodingError::NotHex(e.to_string()))?;
    if bytes.len() != PROOF_BYTES {
        return Err(EncodingError::WrongLength(bytes.len()));
    }
    Proof::deserialize_compressed(&bytes[..]).map_err(|e| {
        EncodingError::InvalidPoint(match e {
            SerializationError::InvalidData => "a point is not on the curve or not in the subgroup".into(),
            SerializationError::UnexpectedFlags => "a point has invalid flag bits".into(),
            other => other.to_string(),
        })
    })
}

/// A proof as decimal affine coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofPoints {
    /// A = [x, y].
    pub a: [String; 2],
    /// B = [[x.c0, x.c1], [y.c0, y.c1]].
    pub b: [[String; 2]; 2],
    /// C = [x, y].
    pub c: [String; 2],
}

/// The decimal affine coordinates of a proof's points.
pub fn proof_points(proof: &Proof<Bn254>) -> ProofPoints {
    ProofPoints { a: g1_decimal(&proof.a), b: g2_decimal(&proof.b), c: g1_decimal(&proof.c) }
}

fn fq_decimal(x: &Fq) -> String {
    x.into_bigint().to_string()
}

fn g1_decimal(point: &G1Affine) -> [String; 2] {
    let (x, y) = point.xy().unwrap_or_default();
    [fq_decimal(&x), fq_decimal(&y)]
}

fn g2_decimal(point: &G2Affine) -> [[String; 2]; 2] {
    let (x, y) = point.xy().unwrap_or_default();
    [[fq_decimal(&x.c0), fq_decimal(&x.c1)], [fq_decimal(&y.c0), fq_decimal(&y.c1)]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_bn254::{G1Projective, G2Projective};
    use ark_ec::CurveGroup;
    use ark_ff::{UniformRand, Zero};
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn random_proof(seed: u64) -> Proof<Bn254> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        Proof {
            a: G1Projective::rand(&mut rng).into_affine(),
            b: G2Projective::rand(&mut rng).into_affine(),
            c: G1Projective::rand(&mut rng).into_affine(),
        }
    }

    #[test]
    fn proofs_round_trip_through_128_bytes_of_hex() {
        for seed in 0..8 {
            let proof = random_proof(seed);
            let text = encode_proof(&proof);
            assert!(text.starts_with("0x"));
            assert_eq!(text.len(), 2 + 2 * PROOF_BYTES);
            assert_eq!(decode_proof(&text).unwrap(), proof);
            assert_eq!(decode_proof(&text[2..]).unwrap(), proof);
            assert_eq!(decode_proof(&text.to_uppercase().replacen("0X", "0x", 1)).unwrap(), proof);
        }
    }

    #[test]
    fn wrong_lengths_and_garbage_are_refused() {
        let text = encode_proof(&random_proof(1));
        assert_eq!(decode_proof(&text[..text.len() - 2]), Err(EncodingError::WrongLength(127)));
        assert_eq!(decode_proof(&format!("{text}00")), Err(EncodingError::WrongLength(129)));
        assert_eq!(decode_proof(""), Err(EncodingError::WrongLength(0)));
        assert!(matches!(decode_proof("0xzz"), Err(EncodingError::NotHex(_))));
        assert!(matches!(decode_proof(&text[..text.len() - 1]), Err(EncodingError::NotHex(_))));
        let message = decode_proof("0x1234").unwrap_err().to_string();
        assert_eq!(
            message,
            "proof must be 128 bytes (compressed arkworks Groth16/BN254: A 32, B 64, C 32); got 2 bytes"
        );
    }

    #[test]
    fn bytes_that_are_not_points_are_refused() {
        // x = 0 has no point on BN254 G1 (0^3 + 3 = 3 is not a square mod p).
        let mut bytes = hex::decode(&encode_proof(&random_proof(2))[2..]).unwrap();
        bytes[..32].fill(0);
        assert!(matches!(decode_proof(&hex::encode(&bytes)), Err(EncodingError::InvalidPoint(_))));
        // All 0xff: x is above the field modulus.
        let err = decode_proof(&"ff".repeat(PROOF_BYTES)).unwrap_err();
        assert!(matches!(err, EncodingError::InvalidPoint(_)), "{err:?}");
    }

    #[test]
    fn a_g2_point_outside_the_subgroup_is_refused() {
        // Find a point on the twist curve that is not in the r-torsion (the G2 cofactor is large,
        // so the first x with a valid y almost surely is one).
        let mut x = ark_bn254::Fq2::new(Fq::from(1u64), Fq::zero());
        let off_subgroup = loop {
            if let Some(point) = G2Affine::get_point_from_x_unchecked(x, false) {
                if !point.is_in_correct_subgroup_assuming_on_curve() {
                    break point;
                }
            }
            x += ark_bn254::Fq2::from(1u64);
        };
        let proof = Proof { b: off_subgroup, ..random_proof(3) };
        let mut bytes = Vec::new();
        proof.serialize_with_mode(&mut bytes, ark_serialize::Compress::Yes).unwrap();
        let err = decode_proof(&hex::encode(&bytes)).unwrap_err();
        assert_eq!(err, EncodingError::InvalidPoint("a point is not on the curve or not in the subgroup".into()));
    }

    #[test]
    fn points_are_decimal_coordinates() {
        let proof = random_proof(4);
        let points = proof_points(&proof);
        let all = points.a.iter().chain(points.c.iter()).chain(points.b.iter().flatten());
        for coordinate in all {
            assert!(!coordinate.is_empty() && coordinate.bytes().all(|b| b.is_ascii_digit()), "{coordinate}");
        }
        let (x, y) = proof.a.xy().unwrap();
        assert_eq!(points.a, [x.into_bigint().to_string(), y.into_bigint().to_string()]);
        let (bx, _) = proof.b.xy().unwrap();
        assert_eq!(points.b[0][1], bx.c1.into_bigint().to_string());

        let json = serde_json::to_value(&points).unwrap();
        assert!(json["b"][1][0].is_string());

        let at_infinity = proof_points(&Proof { a: G1Affine::zero(), ..proof });
        assert_eq!(at_infinity.a, ["0".to_string(), "0".to_string()]);
    }
}
