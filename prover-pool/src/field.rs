//! BN254 scalar field elements as decimal text: how public inputs travel in the API.
//!
//! Accepted text is strict so that a typo is refused instead of silently reduced: ASCII digits
//! only (no sign, no whitespace, no `0x`), at least one and at most 78 of them, and the value
//! strictly below the scalar field modulus r (77 digits). Leading zeros are accepted (hence 78
//! digits); [`field_to_decimal`] always writes the canonical form, without them. Values are never
//! reduced modulo r: `r` itself and anything larger are errors.

use ark_bn254::Fr;
use ark_ff::PrimeField;

/// The most digits a field element's text may have (the modulus has 77).
pub const MAX_DECIMAL_DIGITS: usize = 78;

/// Why a text is not a BN254 scalar field element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Empty, too long, or contains something other than ASCII digits.
    #[error(
        "public_input must be a decimal integer below the BN254 scalar field modulus {modulus}: \
         {problem}",
        modulus = modulus_decimal()
    )]
    NotDecimal {
        /// What is wrong with the text.
        problem: String,
    },
    /// A well-formed number that is not below the modulus.
    #[error(
        "public_input must be a decimal integer below the BN254 scalar field modulus {modulus}; \
         got a value at or above it (values are never reduced)",
        modulus = modulus_decimal()
    )]
    NotBelowModulus,
}

/// The BN254 scalar field modulus r, in decimal.
pub fn modulus_decimal() -> String {
    Fr::MODULUS.to_string()
}

/// Parses a decimal string into a field element; see the module docs for what is accepted.
pub fn parse_field_element(text: &str) -> Result<Fr, FieldError> {
    if text.is_empty() {
        return Err(FieldError::NotDecimal { problem: "it is empty".into() });
    }
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_digit()) {
        return Err(FieldError::NotDecimal {
            problem: format!("it contains {bad:?}; use only the digits 0-9 (no sign, spaces or 0x)"),
        });
    }
    if text.len() > MAX_DECIMAL_DIGITS {
        return Err(FieldError::NotDecimal {
            problem: format!("it has {} digits, at most {MAX_DECIMAL_DIGITS} are allowed", text.len()),
        });
    }
    // Compare as decimal strings without leading zeros: equal lengths compare lexicographically.
    let significant = text.trim_start_matches('0');
    let modulus = modulus_decimal();
    let below_modulus =
        significant.len() < modulus.len() || (significant.len() == modulus.len() && significant < modulus.as_str());
    if !below_modulus {
        return Err(FieldError::NotBelowModulus);
    }
    // Below the modulus, Horner's rule in the field is exact: nothing ever wraps around.
    let ten = Fr::from(10u64);
    Ok(significant.bytes().fold(Fr::from(0u64), |acc, digit| acc * ten + Fr::from(u64::from(digit - b'0'))))
}

/// The canonical decimal text of a field element (no leading zeros; zero is "0").
pub fn field_to_decimal(x: &Fr) -> String {
    x.into_bigint().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ff::Field;
    use proptest::prelude::*;

    const MODULUS: &str = "21888242871839275222246405745257275088548364400416034343698204186575808495617";
    const MODULUS_MINUS_ONE: &str = "21888242871839275222246405745257275088548364400416034343698204186575808495616";

    #[test]
    fn the_modulus_is_the_bn254_scalar_modulus() {
        assert_eq!(modulus_decimal(), MODULUS);
    }

    #[test]
    fn small_values_parse() {
        assert_eq!(parse_field_element("0").unwrap(), Fr::from(0u64));
        assert_eq!(parse_field_element("1").unwrap(), Fr::from(1u64));
        assert_eq!(parse_field_element("1234567890").unwrap(), Fr::from(1_234_567_890u64));
        assert_eq!(parse_field_element("18446744073709551616").unwrap(), Fr::from(u64::MAX) + Fr::ONE);
        assert_eq!(parse_field_element("000042").unwrap(), Fr::from(42u64));
    }

    #[test]
    fn modulus_minus_one_is_accepted_and_is_minus_one() {
        assert_eq!(parse_field_element(MODULUS_MINUS_ONE).unwrap(), -Fr::ONE);
        assert_eq!(parse_field_element(&format!("0{MODULUS_MINUS_ONE}")).unwrap(), -Fr::ONE);
    }

    #[test]
    fn the_modulus_and_above_are_refused() {
        assert_eq!(parse_field_element(MODULUS), Err(FieldError::NotBelowModulus));
        assert_eq!(parse_field_element(&format!("0{MODULUS}")), Err(FieldError::NotBelowModulus));
        let above = "21888242871839275222246405745257275088548364400416034343698204186575808495618";
        assert_eq!(parse_field_element(above), Err(FieldError::NotBelowModulus));
        assert_eq!(parse_field_element(&"9".repeat(77)), Err(FieldError::NotBelowModulus));
        assert_eq!(parse_field_element(&"1".repeat(78)), Err(FieldError::NotBelowModulus));
        let message = parse_field_element(MODULUS).unwrap_err().to_string();
        let expected_start = "public_input must be a decimal integer below the BN254 scalar field modulus 2188";
        assert!(message.starts_with(expected_start), "{message}");
        assert!(message.contains(MODULUS), "{message}");
    }

    #[test]
    fn non_digits_are_refused_with_a_hint() {
        for bad in ["", "-1", "+1", " 1", "1 ", "0x10", "1e3", "1.0", "１", "12a"] {
            let err = parse_field_element(bad).unwrap_err();
            assert!(matches!(err, FieldError::NotDecimal { .. }), "{bad:?} gave {err:?}");
        }
        let message = parse_field_element("-1").unwrap_err().to_string();
        assert!(message.contains("it contains '-'; use only the digits 0-9"), "{message}");
        let message = parse_field_element(&"0".repeat(79)).unwrap_err().to_string();
        assert!(message.contains("it has 79 digits, at most 78 are allowed"), "{message}");
    }

    #[test]
    fn decimal_output_is_canonical() {
        assert_eq!(field_to_decimal(&Fr::from(0u64)), "0");
        assert_eq!(field_to_decimal(&Fr::from(42u64)), "42");
        assert_eq!(field_to_decimal(&-Fr::ONE), MODULUS_MINUS_ONE);
    }

    proptest! {
        #[test]
        fn decimal_round_trips(limbs in any::<[u64; 4]>()) {
            let x = Fr::from_le_bytes_mod_order(&limbs.iter().flat_map(|l| l.to_le_bytes()).collect::<Vec<_>>());
            let text = field_to_decimal(&x);
            prop_assert_eq!(parse_field_element(&text).unwrap(), x);
            prop_assert!(!text.starts_with('0') || text == "0");
        }

        #[test]
        fn u128_values_parse_to_themselves(value in any::<u128>()) {
            prop_assert_eq!(parse_field_element(&value.to_string()).unwrap(), Fr::from(value));
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
            let _ = parse_field_element(&text);
        }
    }
}
