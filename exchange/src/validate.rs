//! Validation of request fields into domain values, with messages that say what to fix.

use pcx_domain::Money;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::error::{ApiError, ApiResult, ErrorCode};

/// The largest amount one request may move (balances hold up to 10^14: many such movements fit).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// What [`positive_amount`] accepts, as a regular expression for the OpenAPI document: an
/// integer part below [`MAX_AMOUNT`] without leading zeros, at most 6 decimals, not zero.
pub const POSITIVE_AMOUNT_PATTERN: &str = concat!(
    r"^([1-9][0-9]{0,11}(\.[0-9]{1,6})?",
    r"|0\.([1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))$"
);

/// The schema of an amount a client sends (a price, a deposit, a withdrawal, a stake): a
/// positive decimal string. Amounts the server answers with are [`Money`] (which may be zero or
/// negative, e.g. a ledger line).
#[derive(Debug, Clone, Copy)]
pub struct PositiveAmount;

impl PartialSchema for PositiveAmount {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some(POSITIVE_AMOUNT_PATTERN))
            .description(Some(
                "A positive amount of the settlement asset as a decimal string: at most 6 decimals, below 10^12.",
            ))
            .examples(["10.5"])
            .into()
    }
}

impl ToSchema for PositiveAmount {}

/// A positive amount with at most 6 decimals, at most [`MAX_AMOUNT`], from its decimal-string form.
pub fn positive_amount(field: &str, text: &str) -> ApiResult<Money> {
    let amount = Money::parse(text)
        .map_err(|err| ApiError::new(ErrorCode::InvalidAmount, format!("{field}: {err}")))?;
    if !amount.is_positive() {
        return Err(ApiError::new(
            ErrorCode::InvalidAmount,
            format!("{field}: must be greater than zero, got {text}"),
        ));
    }
    if amount.as_decimal() > rust_decimal::Decimal::from(MAX_AMOUNT) {
        return Err(ApiError::new(ErrorCode::InvalidAmount, format!("{field}: must be at most {MAX_AMOUNT}, got {text}")));
    }
    Ok(amount)
}

/// A display name: 1 to 100 characters after trimming, no control characters.
pub fn display_name(text: &str) -> ApiResult<String> {
    let name = text.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidInput,
            "name: must be 1 to 100 printable characters",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Every amount the document's pattern allows, the server accepts.
        #[test]
        fn amounts_matching_the_documented_pattern_are_accepted(
            // proptest generates from the pattern without its anchors (whole strings anyway).
            text in proptest::string::string_regex(POSITIVE_AMOUNT_PATTERN.trim_start_matches('^').trim_end_matches('$')).unwrap()
        ) {
            proptest::prop_assert!(positive_amount("amount", &text).is_ok(), "{text}");
        }
    }

    #[test]
    fn amounts_must_be_positive_with_six_decimals_at_most() {
        assert_eq!(positive_amount("amount", "10.5").unwrap().to_string(), "10.5");
        for bad in ["0", "-1", "1.1234567", "ten", ""] {
            let err = positive_amount("amount", bad).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidAmount, "{bad}");
            assert!(err.message.starts_with("amount: "), "{}", err.message);
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(display_name("  rollup-a ").unwrap(), "rollup-a");
        assert!(display_name("   ").is_err());
        assert!(display_name(&"x".repeat(101)).is_err());
        assert!(display_name("a\u{0}b").is_err());
    }
}
