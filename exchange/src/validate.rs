//! Validation of request fields into domain values, with messages that say what to fix.

use pcx_domain::Money;

use crate::error::{ApiError, ApiResult, ErrorCode};

/// The largest amount one request may move (balances hold up to 10^14: many such movements fit).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

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
