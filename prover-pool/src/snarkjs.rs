//! Groth16/BN254 keys, proofs and public signals in the JSON shapes snarkjs reads and writes
//! (`vk.json`, `proof.json`, `public.json`), converted to and from arkworks types.
//!
//! # Shapes
//! Every number is a **decimal string**. snarkjs writes points in projective coordinates that are
//! always affine, so a G1 point is `["x", "y", "1"]` and a G2 point is
//! `[["x.c0", "x.c1"], ["y.c0", "y.c1"], ["1", "0"]]` (real part first, unlike the EVM's
//! imaginary-first order, see [`crate::solidity`]). The point at infinity is written as snarkjs
//! writes it: `["0", "1", "0"]` and `[["0", "0"], ["1", "0"], ["0", "0"]]`.
//!
//! - `vk.json`: `{"protocol": "groth16", "curve": "bn128", "nPublic": n, "vk_alpha_1": G1,
//!   "vk_beta_2": G2, "vk_gamma_2": G2, "vk_delta_2": G2, "vk_alphabeta_12": Fq12, "IC": [G1; n+1]}`.
//! - `proof.json`: `{"pi_a": G1, "pi_b": G2, "pi_c": G1, "protocol": "groth16", "curve": "bn128"}`.
//! - `public.json`: `["s1", "s2", ...]`, scalar field elements (below r).
//!
//! `vk_alphabeta_12` is the pairing e(alpha, beta) in GT, an Fq12 element written as
//! `[[[c0.c0.c0, c0.c0.c1], [c0.c1.c0, c0.c1.c1], [c0.c2.c0, c0.c2.c1]], [[c1.c0.c0, ...], ...]]`.
//! snarkjs (ffjavascript) builds Fq12 with the same tower as arkworks (Fq2 = Fq[u]/(u² + 1),
//! Fq6 = Fq2[v]/(v³ - (9 + u)), Fq12 = Fq6[w]/(w² - v)) and the same optimal-ate pairing with the
//! same final exponentiation, so arkworks' `c0`/`c1` nesting maps one to one onto the nested arrays
//! and no conversion is needed; a unit test pins this to ffjavascript's value of e(G1, G2).
//!
//! # Validation
//! Reading is strict, so that a damaged file is refused instead of silently altered: numbers must
//! be strings of ASCII digits (no sign, spaces, `0x` or JSON numbers; leading zeros are accepted),
//! coordinates below the base field modulus q and signals below the scalar field modulus r (never
//! reduced), z coordinates exactly `1` (or the infinity forms above), points on the curve and in
//! the prime-order subgroup (which matters for G2, whose cofactor is large). In `vk.json`,
//! `protocol` and `curve` are required, `IC` must have `nPublic + 1` points, and
//! `vk_alphabeta_12`, if present, must equal e(alpha, beta) (snarkjs always writes it; it is
//! redundant, so a key without it is accepted). In `proof.json`, `protocol` and `curve` may be
//! absent (some provers omit them) but must be right when present. Fields this module does not
//! know are ignored. Every error names the offending field, e.g. `IC[2][0]` or `pi_b[1][1]`.
//!
//! Writing always gives canonical text (no leading zeros), so reading and writing a snarkjs file
//! gives back the same JSON value.

use ark_bn254::{Bn254, Fq, Fq12, Fq2, Fq6, Fr, G1Affine, G2Affine};
use ark_ec::pairing::Pairing;
use ark_ec::AffineRepr;
use ark_ff::{One, PrimeField, Zero};
use ark_groth16::{Proof, VerifyingKey};
use serde_json::{json, Map, Value};

use crate::field::{field_to_decimal, parse_field_element, FieldError, MAX_DECIMAL_DIGITS};

/// The `protocol` value of snarkjs' Groth16 files.
pub const PROTOCOL: &str = "groth16";
/// The `curve` value snarkjs uses for BN254.
pub const CURVE: &str = "bn128";

/// Why a JSON value is not a snarkjs Groth16/BN254 key, proof or list of public signals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnarkjsError {
    /// A required field is absent.
    #[error("`{field}` is missing")]
    Missing {
        /// The field's path, e.g. `vk_beta_2`.
        field: String,
    },
    /// The value has the wrong JSON type or number of elements.
    #[error("`{field}` must be {expected}")]
    WrongShape {
        /// The field's path.
        field: String,
        /// What it must be.
        expected: &'static str,
    },
    /// `protocol` or `curve` names something else.
    #[error("`{field}` must be \"{expected}\"; got {got}")]
    WrongValue {
        /// `protocol` or `curve`.
        field: String,
        /// The only accepted value.
        expected: &'static str,
        /// The value found, as JSON.
        got: String,
    },
    /// A number is not a string of decimal digits.
    #[error("`{field}` must be a decimal integer string: {problem}")]
    NotDecimal {
        /// The field's path.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A coordinate is not below the base field modulus.
    #[error(
        "`{field}` must be below the BN254 base field modulus q = {modulus}; got a value at or above \
         it (coordinates are never reduced)",
        modulus = Fq::MODULUS
    )]
    NotBelowModulus {
        /// The field's path.
        field: String,
    },
    /// A point's z coordinate is neither 1 nor that of the snarkjs point at infinity.
    #[error(
        "`{field}` must be an affine point, with z coordinate {one}, or the point at infinity, written \
         {infinity}"
    )]
    NotAffine {
        /// The point's path.
        field: String,
        /// The z coordinate of an affine point.
        one: &'static str,
        /// How snarkjs writes the point at infinity.
        infinity: &'static str,
    },
    /// The coordinates do not satisfy the curve equation.
    #[error("`{field}` is not a point of BN254 {group} (its coordinates are not on the curve)")]
    NotOnCurve {
        /// The point's path.
        field: String,
        /// `G1` or `G2`.
        group: &'static str,
    },
    /// A point on the curve outside the prime-order subgroup.
    #[error("`{field}` is on the curve but not in the prime-order subgroup {group}")]
    NotInSubgroup {
        /// The point's path.
        field: String,
        /// `G2` (every point of the G1 curve is in G1).
        group: &'static str,
    },
    /// `IC` does not have one point per public signal plus one.
    #[error("`IC` must have nPublic + 1 = {expected} points; got {got}")]
    WrongIcLength {
        /// nPublic + 1.
        expected: usize,
        /// Points in `IC`.
        got: usize,
    },
    /// `vk_alphabeta_12` is well formed but is not e(vk_alpha_1, vk_beta_2).
    #[error("`vk_alphabeta_12` is not the pairing e(vk_alpha_1, vk_beta_2) of this key")]
    AlphaBetaMismatch,
    /// An entry of `public.json` is not a scalar field element.
    #[error("public signal `[{index}]`: {source}")]
    PublicSignal {
        /// Its position in the array.
        index: usize,
        /// Why it is not a field element.
        #[source]
        source: FieldError,
    },
}

/// A verifying key in snarkjs' `vk.json` shape (see the module docs).
///
/// `nPublic` is the number of `IC` points minus one (zero for a key without any, which is no
/// valid key).
pub fn verifying_key_to_json(vk: &VerifyingKey<Bn254>) -> Value {
    let alphabeta = Bn254::pairing(vk.alpha_g1, vk.beta_g2).0;
    json!({
        "protocol": PROTOCOL,
        "curve": CURVE,
        "nPublic": vk.gamma_abc_g1.len().saturating_sub(1),
        "vk_alpha_1": g1_to_json(&vk.alpha_g1),
        "vk_beta_2": g2_to_json(&vk.beta_g2),
        "vk_gamma_2": g2_to_json(&vk.gamma_g2),
        "vk_delta_2": g2_to_json(&vk.delta_g2),
        "vk_alphabeta_12": fq12_to_json(&alphabeta),
        "IC": vk.gamma_abc_g1.iter().map(g1_to_json).collect::<Vec<_>>(),
    })
}

/// Reads a snarkjs `vk.json`, validating it as the module docs say.
pub fn verifying_key_from_json(json: &Value) -> Result<VerifyingKey<Bn254>, SnarkjsError> {
    let object = as_object(json, "vk.json")?;
    check_tag(object, "protocol", PROTOCOL, true)?;
    check_tag(object, "curve", CURVE, true)?;
    let n_public = required(object, "nPublic")?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| shape("nPublic", "a non-negative integer (a JSON number)"))?;
    let alpha_g1 = g1_from_json(required(object, "vk_alpha_1")?, "vk_alpha_1")?;
    let beta_g2 = g2_from_json(required(object, "vk_beta_2")?, "vk_beta_2")?;
    let gamma_g2 = g2_from_json(required(object, "vk_gamma_2")?, "vk_gamma_2")?;
    let delta_g2 = g2_from_json(required(object, "vk_delta_2")?, "vk_delta_2")?;
    let ic = required(object, "IC")?.as_array().ok_or_else(|| shape("IC", "an array of G1 points"))?;
    let expected = n_public.saturating_add(1);
    if ic.len() != expected {
        return Err(SnarkjsError::WrongIcLength { expected, got: ic.len() });
    }
    let gamma_abc_g1 =
        ic.iter().enumerate().map(|(i, point)| g1_from_json(point, &format!("IC[{i}]"))).collect::<Result<_, _>>()?;
    if let Some(value) = object.get("vk_alphabeta_12") {
        let alphabeta = fq12_from_json(value, "vk_alphabeta_12")?;
        if alphabeta != Bn254::pairing(alpha_g1, beta_g2).0 {
            return Err(SnarkjsError::AlphaBetaMismatch);
        }
    }
    Ok(VerifyingKey { alpha_g1, beta_g2, gamma_g2, delta_g2, gamma_abc_g1 })
}

/// A proof in snarkjs' `proof.json` shape (see the module docs).
pub fn proof_to_json(proof: &Proof<Bn254>) -> Value {
    json!({
        "pi_a": g1_to_json(&proof.a),
        "pi_b": g2_to_json(&proof.b),
        "pi_c": g1_to_json(&proof.c),
        "protocol": PROTOCOL,
        "curve": CURVE,
    })
}

/// Reads a snarkjs `proof.json`, validating every point; a valid proof may still be false (that
/// is the verifier's business).
pub fn proof_from_json(json: &Value) -> Result<Proof<Bn254>, SnarkjsError> {
    let object = as_object(json, "proof.json")?;
    check_tag(object, "protocol", PROTOCOL, false)?;
    check_tag(object, "curve", CURVE, false)?;
    Ok(Proof {
        a: g1_from_json(required(object, "pi_a")?, "pi_a")?,
        b: g2_from_json(required(object, "pi_b")?, "pi_b")?,
        c: g1_from_json(required(object, "pi_c")?, "pi_c")?,
    })
}

/// Public signals in snarkjs' `public.json` shape: an array of canonical decimal strings.
pub fn public_signals_to_json(signals: &[Fr]) -> Value {
    Value::Array(signals.iter().map(|s| Value::String(field_to_decimal(s))).collect())
}

/// Reads a snarkjs `public.json`: an array of decimal strings, each below r (see [`crate::field`]).
pub fn public_signals_from_json(json: &Value) -> Result<Vec<Fr>, SnarkjsError> {
    let array = json.as_array().ok_or_else(|| shape("public.json", "an array of decimal strings"))?;
    array
        .iter()
        .enumerate()
        .map(|(index, value)| {
            let text = value.as_str().ok_or_else(|| shape(&format!("[{index}]"), "a decimal string"))?;
            parse_field_element(text).map_err(|source| SnarkjsError::PublicSignal { index, source })
        })
        .collect()
}

// ----- writing -----

fn fq_to_json(x: &Fq) -> Value {
    Value::String(x.into_bigint().to_string())
}

fn fq2_to_json(x: &Fq2) -> Value {
    Value::Array(vec![fq_to_json(&x.c0), fq_to_json(&x.c1)])
}

fn g1_to_json(point: &G1Affine) -> Value {
    match point.xy() {
        Some((x, y)) => json!([fq_to_json(&x), fq_to_json(&y), "1"]),
        None => json!(["0", "1", "0"]),
    }
}

fn g2_to_json(point: &G2Affine) -> Value {
    match point.xy() {
        Some((x, y)) => json!([fq2_to_json(&x), fq2_to_json(&y), ["1", "0"]]),
        None => json!([["0", "0"], ["1", "0"], ["0", "0"]]),
    }
}

fn fq6_to_json(x: &Fq6) -> Value {
    Value::Array(vec![fq2_to_json(&x.c0), fq2_to_json(&x.c1), fq2_to_json(&x.c2)])
}

fn fq12_to_json(x: &Fq12) -> Value {
    Value::Array(vec![fq6_to_json(&x.c0), fq6_to_json(&x.c1)])
}

// ----- reading -----

const G1_INFINITY: &str = r#"["0", "1", "0"]"#;
const G2_INFINITY: &str = r#"[["0", "0"], ["1", "0"], ["0", "0"]]"#;

fn shape(field: &str, expected: &'static str) -> SnarkjsError {
    SnarkjsError::WrongShape { field: field.to_string(), expected }
}

fn as_object<'a>(json: &'a Value, what: &str) -> Result<&'a Map<String, Value>, SnarkjsError> {
    json.as_object().ok_or_else(|| shape(what, "a JSON object"))
}

fn required<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a Value, SnarkjsError> {
    object.get(field).ok_or_else(|| SnarkjsError::Missing { field: field.to_string() })
}

/// `protocol` / `curve`: must be `expected` when present; absent is an error only if `needed`.
fn check_tag(
    object: &Map<String, Value>,
    field: &str,
    expected: &'static str,
    needed: bool,
) -> Result<(), SnarkjsError> {
    match object.get(field) {
        None if needed => Err(SnarkjsError::Missing { field: field.to_string() }),
        None => Ok(()),
        Some(Value::String(s)) if s == expected => Ok(()),
        Some(other) => Err(SnarkjsError::WrongValue { field: field.to_string(), expected, got: other.to_string() }),
    }
}

/// A JSON array of exactly `len` elements.
fn array_of<'a>(json: &'a Value, len: usize, field: &str, expected: &'static str) -> Result<&'a [Value], SnarkjsError> {
    match json.as_array() {
        Some(items) if items.len() == len => Ok(items),
        _ => Err(shape(field, expected)),
    }
}

/// A base field element from a strict decimal string (same rules as [`crate::field`], modulus q).
fn fq_from_json(json: &Value, field: &str) -> Result<Fq, SnarkjsError> {
    let not_decimal = |problem: String| SnarkjsError::NotDecimal { field: field.to_string(), problem };
    let text = json.as_str().ok_or_else(|| not_decimal(format!("got {json}, which is not a JSON string")))?;
    if text.is_empty() {
        return Err(not_decimal("it is empty".into()));
    }
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_digit()) {
        return Err(not_decimal(format!("it contains {bad:?}; use only the digits 0-9 (no sign, spaces or 0x)")));
    }
    if text.len() > MAX_DECIMAL_DIGITS {
        return Err(not_decimal(format!("it has {} digits, at most {MAX_DECIMAL_DIGITS} are allowed", text.len())));
    }
    // Equal-length decimal strings without leading zeros compare like the numbers they write.
    let significant = text.trim_start_matches('0');
    let modulus = Fq::MODULUS.to_string();
    let below = significant.len() < modulus.len() || (significant.len() == modulus.len() && significant < &modulus[..]);
    if !below {
        return Err(SnarkjsError::NotBelowModulus { field: field.to_string() });
    }
    // Below the modulus, Horner's rule in the field is exact.
    let ten = Fq::from(10u64);
    Ok(significant.bytes().fold(Fq::zero(), |acc, digit| acc * ten + Fq::from(u64::from(digit - b'0'))))
}

fn fq2_from_json(json: &Value, field: &str) -> Result<Fq2, SnarkjsError> {
    let items = array_of(json, 2, field, "an array of 2 decimal strings [c0, c1]")?;
    Ok(Fq2::new(fq_from_json(&items[0], &format!("{field}[0]"))?, fq_from_json(&items[1], &format!("{field}[1]"))?))
}

fn g1_from_json(json: &Value, field: &str) -> Result<G1Affine, SnarkjsError> {
    let items = array_of(json, 3, field, "a G1 point: an array of 3 decimal strings [x, y, z]")?;
    let x = fq_from_json(&items[0], &format!("{field}[0]"))?;
    let y = fq_from_json(&items[1], &format!("{field}[1]"))?;
    let z = fq_from_json(&items[2], &format!("{field}[2]"))?;
    let not_affine = || SnarkjsError::NotAffine { field: field.to_string(), one: "\"1\"", infinity: G1_INFINITY };
    if z.is_zero() {
        return if x.is_zero() && y.is_one() { Ok(G1Affine::zero()) } else { Err(not_affine()) };
    }
    if !z.is_one() {
        return Err(not_affine());
    }
    let point = G1Affine::new_unchecked(x, y);
    if !point.is_on_curve() {
        return Err(SnarkjsError::NotOnCurve { field: field.to_string(), group: "G1" });
    }
    // The G1 cofactor is 1, but the check is cheap and keeps both groups alike.
    if !point.is_in_correct_subgroup_assuming_on_curve() {
        return Err(SnarkjsError::NotInSubgroup { field: field.to_string(), group: "G1" });
    }
    Ok(point)
}

fn g2_from_json(json: &Value, field: &str) -> Result<G2Affine, SnarkjsError> {
    let items = array_of(
        json,
        3,
        field,
        "a G2 point: an array of 3 pairs of decimal strings [[x.c0, x.c1], [y.c0, y.c1], [z.c0, z.c1]]",
    )?;
    let x = fq2_from_json(&items[0], &format!("{field}[0]"))?;
    let y = fq2_from_json(&items[1], &format!("{field}[1]"))?;
    let z = fq2_from_json(&items[2], &format!("{field}[2]"))?;
    let not_affine =
        || SnarkjsError::NotAffine { field: field.to_string(), one: r#"["1", "0"]"#, infinity: G2_INFINITY };
    if z.is_zero() {
        return if x.is_zero() && y.is_one() { Ok(G2Affine::zero()) } else { Err(not_affine()) };
    }
    if !z.is_one() {
        return Err(not_affine());
    }
    let point = G2Affine::new_unchecked(x, y);
    if !point.is_on_curve() {
        return Err(SnarkjsError::NotOnCurve { field: field.to_string(), group: "G2" });
    }
    if !point.is_in_correct_subgroup_assuming_on_curve() {
        return Err(SnarkjsError::NotInSubgroup { field: field.to_string(), group: "G2" });
    }
    Ok(point)
}

fn fq6_from_json(json: &Value, field: &str) -> Result<Fq6, SnarkjsError> {
    let items = array_of(json, 3, field, "an Fq6 element: an array of 3 pairs of decimal strings")?;
    Ok(Fq6::new(
        fq2_from_json(&items[0], &format!("{field}[0]"))?,
        fq2_from_json(&items[1], &format!("{field}[1]"))?,
        fq2_from_json(&items[2], &format!("{field}[2]"))?,
    ))
}

fn fq12_from_json(json: &Value, field: &str) -> Result<Fq12, SnarkjsError> {
    let items = array_of(json, 2, field, "an Fq12 element: an array of 2 arrays of 3 pairs of decimal strings")?;
    Ok(Fq12::new(fq6_from_json(&items[0], &format!("{field}[0]"))?, fq6_from_json(&items[1], &format!("{field}[1]"))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_bn254::{G1Projective, G2Projective};
    use ark_ec::CurveGroup;
    use ark_ff::UniformRand;
    use ark_groth16::Groth16;
    use ark_relations::lc;
    use ark_relations::r1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};
    use ark_snark::SNARK;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// Knowledge of a, b with a * b = c and (a + b) * 1 = d; c and d are public.
    #[derive(Clone)]
    struct MulAdd {
        a: Option<Fr>,
        b: Option<Fr>,
    }

    impl ConstraintSynthesizer<Fr> for MulAdd {
        fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
            let (a, b) = (self.a, self.b);
            let c = cs.new_input_variable(|| {
                Ok(a.ok_or(SynthesisError::AssignmentMissing)? * b.ok_or(SynthesisError::AssignmentMissing)?)
            })?;
            let d = cs.new_input_variable(|| {
                Ok(a.ok_or(SynthesisError::AssignmentMissing)? + b.ok_or(SynthesisError::AssignmentMissing)?)
            })?;
            let a = cs.new_witness_variable(|| a.ok_or(SynthesisError::AssignmentMissing))?;
            let b = cs.new_witness_variable(|| b.ok_or(SynthesisError::AssignmentMissing))?;
            cs.enforce_constraint(lc!() + a, lc!() + b, lc!() + c)?;
            cs.enforce_constraint(lc!() + a + b, lc!() + ark_relations::r1cs::Variable::One, lc!() + d)?;
            Ok(())
        }
    }

    fn setup_and_prove(seed: u64) -> (VerifyingKey<Bn254>, Proof<Bn254>, Vec<Fr>) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (pk, vk) = Groth16::<Bn254>::circuit_specific_setup(MulAdd { a: None, b: None }, &mut rng).unwrap();
        let (a, b) = (Fr::from(3u64), Fr::from(11u64));
        let proof = Groth16::<Bn254>::prove(&pk, MulAdd { a: Some(a), b: Some(b) }, &mut rng).unwrap();
        (vk, proof, vec![a * b, a + b])
    }

    fn vk_json() -> Value {
        verifying_key_to_json(&setup_and_prove(1).0)
    }

    fn err_vk(json: &Value) -> String {
        verifying_key_from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn keys_proofs_and_signals_round_trip_and_still_verify() {
        let (vk, proof, signals) = setup_and_prove(7);
        let vk_json = verifying_key_to_json(&vk);
        let proof_json = proof_to_json(&proof);
        let public_json = public_signals_to_json(&signals);

        assert_eq!(vk_json["protocol"], "groth16");
        assert_eq!(vk_json["curve"], "bn128");
        assert_eq!(vk_json["nPublic"], 2);
        assert_eq!(vk_json["IC"].as_array().unwrap().len(), 3);
        assert_eq!(vk_json["vk_alpha_1"][2], "1");
        assert_eq!(vk_json["vk_beta_2"][2], json!(["1", "0"]));
        assert_eq!(public_json, json!(["33", "14"]));
        assert_eq!(proof_json["protocol"], "groth16");

        let vk_back = verifying_key_from_json(&vk_json).unwrap();
        let proof_back = proof_from_json(&proof_json).unwrap();
        let signals_back = public_signals_from_json(&public_json).unwrap();
        assert_eq!(vk_back, vk);
        assert_eq!(proof_back, proof);
        assert_eq!(signals_back, signals);
        // Writing again gives the same JSON (canonical text).
        assert_eq!(verifying_key_to_json(&vk_back), vk_json);
        assert_eq!(proof_to_json(&proof_back), proof_json);

        // Through text, as files would go.
        let reparsed: Value = serde_json::from_str(&serde_json::to_string_pretty(&vk_json).unwrap()).unwrap();
        assert_eq!(verifying_key_from_json(&reparsed).unwrap(), vk);

        let pvk = ark_groth16::prepare_verifying_key(&vk_back);
        assert!(Groth16::<Bn254>::verify_proof(&pvk, &proof_back, &signals_back).unwrap());
        let wrong = [signals_back[0] + Fr::from(1u64), signals_back[1]];
        assert!(!Groth16::<Bn254>::verify_proof(&pvk, &proof_back, &wrong).unwrap());
    }

    /// ffjavascript's e(G1 generator, G2 generator) as `curve.Gt.toObject` prints it (snarkjs
    /// 0.7.6's dependency): the layout of `vk_alphabeta_12` is arkworks' c0/c1 nesting as is.
    #[test]
    fn fq12_layout_and_pairing_match_ffjavascript() {
        let ffjavascript = json!([
            [
                [
                    "17264119758069723980713015158403419364912226240334615592005620718956030922389",
                    "1300711225518851207585954685848229181392358478699795190245709208408267917898"
                ],
                [
                    "8894217292938489450175280157304813535227569267786222825147475294561798790624",
                    "1829859855596098509359522796979920150769875799037311140071969971193843357227"
                ],
                [
                    "4968700049505451466697923764727215585075098085662966862137174841375779106779",
                    "12814315002058128940449527172080950701976819591738376253772993495204862218736"
                ]
            ],
            [
                [
                    "4233474252585134102088637248223601499779641130562251948384759786370563844606",
                    "9420544134055737381096389798327244442442230840902787283326002357297404128074"
                ],
                [
                    "13457906610892676317612909831857663099224588803620954529514857102808143524905",
                    "5122435115068592725432309312491733755581898052459744089947319066829791570839"
                ],
                [
                    "8891987925005301465158626530377582234132838601606565363865129986128301774627",
                    "440796048150724096437130979851431985500142692666486515369083499585648077975"
                ]
            ]
        ]);
        let gt = Bn254::pairing(G1Affine::generator(), G2Affine::generator()).0;
        assert_eq!(fq12_to_json(&gt), ffjavascript);
        assert_eq!(fq12_from_json(&ffjavascript, "x").unwrap(), gt);
        // And ffjavascript's G2 generator, affine, real part first.
        let g2 = json!([
            [
                "10857046999023057135944570762232829481370756359578518086990519993285655852781",
                "11559732032986387107991004021392285783925812861821192530917403151452391805634"
            ],
            [
                "8495653923123431417604973247489272438418190587263600148770280649306958101930",
                "4082367875863433681332203403145435568316851327593401208105741076214120093531"
            ],
            ["1", "0"]
        ]);
        assert_eq!(g2_to_json(&G2Affine::generator()), g2);
        assert_eq!(g2_from_json(&g2, "g2").unwrap(), G2Affine::generator());
    }

    #[test]
    fn points_at_infinity_use_the_snarkjs_forms() {
        assert_eq!(g1_to_json(&G1Affine::zero()), json!(["0", "1", "0"]));
        assert_eq!(g2_to_json(&G2Affine::zero()), json!([["0", "0"], ["1", "0"], ["0", "0"]]));
        assert_eq!(g1_from_json(&json!(["0", "1", "0"]), "p").unwrap(), G1Affine::zero());
        assert_eq!(g2_from_json(&json!([["0", "0"], ["1", "0"], ["0", "0"]]), "p").unwrap(), G2Affine::zero());
        let err = g1_from_json(&json!(["5", "1", "0"]), "IC[1]").unwrap_err();
        assert!(matches!(err, SnarkjsError::NotAffine { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            r#"`IC[1]` must be an affine point, with z coordinate "1", or the point at infinity, written ["0", "1", "0"]"#
        );
    }

    #[test]
    fn leading_zeros_are_accepted_and_dropped() {
        let mut json = vk_json();
        let x = json["vk_alpha_1"][0].as_str().unwrap().to_string();
        json["vk_alpha_1"][0] = json!(format!("0{x}"));
        json["vk_alpha_1"][2] = json!("01");
        let vk = verifying_key_from_json(&json).unwrap();
        assert_eq!(verifying_key_to_json(&vk), vk_json());
    }

    #[test]
    fn wrong_tags_and_shapes_are_named() {
        let mut json = vk_json();
        json["curve"] = json!("bls12381");
        assert_eq!(err_vk(&json), r#"`curve` must be "bn128"; got "bls12381""#);

        let mut json = vk_json();
        json["protocol"] = json!("plonk");
        assert_eq!(err_vk(&json), r#"`protocol` must be "groth16"; got "plonk""#);

        let mut json = vk_json();
        json.as_object_mut().unwrap().remove("protocol");
        assert_eq!(err_vk(&json), "`protocol` is missing");

        let mut json = vk_json();
        json.as_object_mut().unwrap().remove("vk_delta_2");
        assert_eq!(err_vk(&json), "`vk_delta_2` is missing");

        let mut json = vk_json();
        json["nPublic"] = json!("2");
        assert_eq!(err_vk(&json), "`nPublic` must be a non-negative integer (a JSON number)");

        let mut json = vk_json();
        json["nPublic"] = json!(1);
        assert_eq!(verifying_key_from_json(&json).unwrap_err(), SnarkjsError::WrongIcLength { expected: 2, got: 3 });
        assert_eq!(err_vk(&json), "`IC` must have nPublic + 1 = 2 points; got 3");

        let mut json = vk_json();
        json["vk_gamma_2"][1] = json!(["1"]);
        assert_eq!(err_vk(&json), "`vk_gamma_2[1]` must be an array of 2 decimal strings [c0, c1]");

        let mut json = vk_json();
        json["IC"][2] = json!(["1", "2"]);
        assert_eq!(err_vk(&json), "`IC[2]` must be a G1 point: an array of 3 decimal strings [x, y, z]");

        assert_eq!(err_vk(&json!([])), "`vk.json` must be a JSON object");
        assert_eq!(proof_from_json(&json!("x")).unwrap_err().to_string(), "`proof.json` must be a JSON object");
    }

    #[test]
    fn numbers_must_be_strict_decimal_strings_below_q() {
        let q = Fq::MODULUS.to_string();
        let cases = [
            (json!(1), "`IC[0][1]` must be a decimal integer string: got 1, which is not a JSON string"),
            (json!(""), "`IC[0][1]` must be a decimal integer string: it is empty"),
            (json!("0x1f"), "`IC[0][1]` must be a decimal integer string: it contains 'x'; use only the digits 0-9 (no sign, spaces or 0x)"),
            (json!("-1"), "`IC[0][1]` must be a decimal integer string: it contains '-'; use only the digits 0-9 (no sign, spaces or 0x)"),
            (json!(" 1"), "`IC[0][1]` must be a decimal integer string: it contains ' '; use only the digits 0-9 (no sign, spaces or 0x)"),
            (json!("1".repeat(79)), "`IC[0][1]` must be a decimal integer string: it has 79 digits, at most 78 are allowed"),
        ];
        for (bad, message) in cases {
            let mut json = vk_json();
            json["IC"][0][1] = bad;
            assert_eq!(err_vk(&json), message);
        }
        let mut json = vk_json();
        json["IC"][0][1] = json!(q);
        let message = err_vk(&json);
        assert_eq!(
            verifying_key_from_json(&json).unwrap_err(),
            SnarkjsError::NotBelowModulus { field: "IC[0][1]".into() }
        );
        assert!(message.starts_with("`IC[0][1]` must be below the BN254 base field modulus q = 218882428718392752222464057452572750886963111572978236626890378946452262"), "{message}");

        // y + q would be the same point if reduced; it is refused instead.
        let mut json = proof_to_json(&setup_and_prove(2).1);
        let y: Fq = g1_from_json(&json["pi_c"], "pi_c").unwrap().y;
        let y_plus_q = (num_plus(&y.into_bigint().to_string(), &q)).to_string();
        json["pi_c"][1] = json!(y_plus_q);
        assert_eq!(proof_from_json(&json).unwrap_err(), SnarkjsError::NotBelowModulus { field: "pi_c[1]".into() });
    }

    /// Decimal addition of two digit strings (for building out-of-range coordinates).
    fn num_plus(a: &str, b: &str) -> String {
        let (a, b): (Vec<u8>, Vec<u8>) = (a.bytes().rev().collect(), b.bytes().rev().collect());
        let mut out = Vec::new();
        let mut carry = 0;
        for i in 0..a.len().max(b.len()) {
            let d = carry + a.get(i).map_or(0, |d| d - b'0') + b.get(i).map_or(0, |d| d - b'0');
            out.push(b'0' + d % 10);
            carry = d / 10;
        }
        if carry > 0 {
            out.push(b'0' + carry);
        }
        out.reverse();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn points_off_the_curve_or_outside_the_subgroup_are_refused() {
        let mut json = proof_to_json(&setup_and_prove(3).1);
        json["pi_a"][1] = json!("5");
        assert_eq!(
            proof_from_json(&json).unwrap_err().to_string(),
            "`pi_a` is not a point of BN254 G1 (its coordinates are not on the curve)"
        );

        let mut json = proof_to_json(&setup_and_prove(3).1);
        json["pi_b"][0][1] = json!("5");
        assert_eq!(proof_from_json(&json).unwrap_err(), SnarkjsError::NotOnCurve { field: "pi_b".into(), group: "G2" });

        // A point of the twist curve outside the r-torsion (the G2 cofactor is large).
        let mut x = Fq2::new(Fq::from(1u64), Fq::zero());
        let off_subgroup = loop {
            if let Some(point) = G2Affine::get_point_from_x_unchecked(x, false) {
                if !point.is_in_correct_subgroup_assuming_on_curve() {
                    break point;
                }
            }
            x += Fq2::from(1u64);
        };
        let mut json = vk_json();
        json["vk_delta_2"] = g2_to_json(&off_subgroup);
        assert_eq!(err_vk(&json), "`vk_delta_2` is on the curve but not in the prime-order subgroup G2");

        let mut json = proof_to_json(&setup_and_prove(3).1);
        json["pi_b"][2] = json!(["2", "0"]);
        assert!(matches!(proof_from_json(&json).unwrap_err(), SnarkjsError::NotAffine { .. }));
    }

    #[test]
    fn alphabeta_must_match_when_present_and_may_be_absent() {
        let mut json = vk_json();
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let other =
            Bn254::pairing(G1Projective::rand(&mut rng).into_affine(), G2Projective::rand(&mut rng).into_affine()).0;
        json["vk_alphabeta_12"] = fq12_to_json(&other);
        assert_eq!(err_vk(&json), "`vk_alphabeta_12` is not the pairing e(vk_alpha_1, vk_beta_2) of this key");

        json["vk_alphabeta_12"][1][2] = json!(["1"]);
        assert_eq!(err_vk(&json), "`vk_alphabeta_12[1][2]` must be an array of 2 decimal strings [c0, c1]");

        json.as_object_mut().unwrap().remove("vk_alphabeta_12");
        assert_eq!(verifying_key_from_json(&json).unwrap(), setup_and_prove(1).0);
    }

    #[test]
    fn proof_tags_are_optional_but_checked() {
        let proof = setup_and_prove(4).1;
        let mut json = proof_to_json(&proof);
        json.as_object_mut().unwrap().remove("protocol");
        json.as_object_mut().unwrap().remove("curve");
        assert_eq!(proof_from_json(&json).unwrap(), proof);
        json["curve"] = json!("bn254");
        assert_eq!(proof_from_json(&json).unwrap_err().to_string(), r#"`curve` must be "bn128"; got "bn254""#);
        let mut json = proof_to_json(&proof);
        json.as_object_mut().unwrap().remove("pi_b");
        assert_eq!(proof_from_json(&json).unwrap_err().to_string(), "`pi_b` is missing");
    }

    #[test]
    fn public_signals_are_strict_and_errors_give_the_index() {
        assert_eq!(public_signals_from_json(&json!([])).unwrap(), Vec::<Fr>::new());
        assert_eq!(public_signals_from_json(&json!(["0", "007"])).unwrap(), vec![Fr::from(0u64), Fr::from(7u64)]);
        let r = Fr::MODULUS.to_string();
        let err = public_signals_from_json(&json!(["1", r])).unwrap_err();
        assert_eq!(err, SnarkjsError::PublicSignal { index: 1, source: FieldError::NotBelowModulus });
        assert!(err.to_string().starts_with("public signal `[1]`: "), "{err}");
        assert_eq!(
            public_signals_from_json(&json!(["1", 2])).unwrap_err().to_string(),
            "`[1]` must be a decimal string"
        );
        assert_eq!(
            public_signals_from_json(&json!({})).unwrap_err().to_string(),
            "`public.json` must be an array of decimal strings"
        );
        assert!(matches!(
            public_signals_from_json(&json!(["-1"])).unwrap_err(),
            SnarkjsError::PublicSignal { index: 0, source: FieldError::NotDecimal { .. } }
        ));
    }
}
