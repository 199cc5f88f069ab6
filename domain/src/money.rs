//! [`Money`]: an exact amount of the settlement asset (a USD stablecoin with 6 decimals).
//!
//! Invariants:
//! - never a float: the value is a [`rust_decimal::Decimal`];
//! - at most [`Money::DECIMALS`] decimal places and at most [`Money::MAX_INTEGER_DIGITS`] integer digits,
//!   so it always fits the database's `NUMERIC(20,6)`;
//! - on the wire it is a JSON string (`"10.5"`); input with more than 6 decimals is refused, never rounded
//!   silently; results of arithmetic that can produce more decimals are rounded explicitly with banker's
//!   rounding ([`Money::round_stored`]).

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// An exact amount of the settlement asset. May be negative (a posting, the `external` account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

/// Why a text or a computation is not valid [`Money`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a decimal number at all.
    #[error("`{0}` is not a decimal number; write amounts as decimal strings such as \"10.50\"")]
    NotANumber(String),
    /// More decimals than the asset has.
    #[error("`{0}` has more than 6 decimal places; the settlement asset has 6 decimals")]
    TooManyDecimals(String),
    /// Does not fit NUMERIC(20,6).
    #[error("`{0}` is too large; amounts must be below 10^14")]
    TooLarge(String),
    /// Arithmetic overflowed.
    #[error("amount arithmetic overflowed")]
    Overflow,
}

impl Money {
    /// Decimal places of the settlement asset.
    pub const DECIMALS: u32 = 6;
    /// Integer digits that fit `NUMERIC(20,6)`.
    pub const MAX_INTEGER_DIGITS: u32 = 14;
    /// Zero.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Wraps a decimal, refusing more than 6 decimals (after dropping trailing zeros) or more than 14
    /// integer digits.
    pub fn from_decimal(value: Decimal) -> Result<Self, MoneyError> {
        let normalized = value.normalize();
        if normalized.scale() > Self::DECIMALS {
            return Err(MoneyError::TooManyDecimals(value.to_string()));
        }
        if normalized.abs() >= Self::limit() {
            return Err(MoneyError::TooLarge(value.to_string()));
        }
        Ok(Money(normalized))
    }

    /// Parses a decimal string such as `"10.50"`. Exponents, signs other than a leading `-`, and
    /// whitespace are refused.
    pub fn parse(text: &str) -> Result<Self, MoneyError> {
        let well_formed = !text.is_empty()
            && text
                .strip_prefix('-')
                .unwrap_or(text)
                .split_once('.')
                .map_or_else(
                    || is_digits(text.strip_prefix('-').unwrap_or(text)),
                    |(int, frac)| is_digits(int) && is_digits(frac),
                );
        if !well_formed {
            return Err(MoneyError::NotANumber(text.to_owned()));
        }
        let value =
            Decimal::from_str(text).map_err(|_| MoneyError::TooLarge(text.to_owned()))?;
        Self::from_decimal(value)
    }

    /// The exact decimal value.
    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    /// True when strictly greater than zero.
    pub fn is_positive(self) -> bool {
        self.0 > Decimal::ZERO
    }

    /// True when strictly below zero.
    pub fn is_negative(self) -> bool {
        self.0 < Decimal::ZERO
    }

    /// `self + other`, or an error on overflow or when the result leaves the storable range.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        let sum = self.0.checked_add(other.0).ok_or(MoneyError::Overflow)?;
        Self::from_decimal(sum).map_err(|_| MoneyError::Overflow)
    }

    /// `self - other`, or an error on overflow or when the result leaves the storable range.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        let diff = self.0.checked_sub(other.0).ok_or(MoneyError::Overflow)?;
        Self::from_decimal(diff).map_err(|_| MoneyError::Overflow)
    }

    /// `-self`.
    pub fn negated(self) -> Money {
        Money(-self.0)
    }

    /// Rounds any decimal to a storable amount with banker's rounding (half to even) at 6 places:
    /// the one rounding rule for results of multiplication and division.
    pub fn round_stored(value: Decimal) -> Result<Money, MoneyError> {
        let rounded =
            value.round_dp_with_strategy(Self::DECIMALS, RoundingStrategy::MidpointNearestEven);
        Self::from_decimal(rounded).map_err(|_| MoneyError::Overflow)
    }

    fn limit() -> Decimal {
        Decimal::from(10_i64.pow(Self::MAX_INTEGER_DIGITS))
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `normalize` drops trailing zeros, so "10.500000" from the database prints as "10.5".
        fmt::Display::fmt(&self.0.normalize(), f)
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Money::parse(s)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal string with at most 6 decimals, such as \"10.50\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Money, E> {
                Money::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::String))
            .pattern(Some(r"^-?[0-9]{1,14}(\.[0-9]{1,6})?$"))
            .description(Some(
                "An amount of the settlement asset (USD stablecoin, 6 decimals) as a decimal string.",
            ))
            .examples(["10.5"])
            .into()
    }
}

impl ToSchema for Money {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_plain_decimals() {
        assert_eq!(Money::parse("10.5").unwrap().to_string(), "10.5");
        assert_eq!(Money::parse("10.500000").unwrap().to_string(), "10.5");
        assert_eq!(Money::parse("0.000001").unwrap().to_string(), "0.000001");
        assert_eq!(Money::parse("-3").unwrap().to_string(), "-3");
    }

    #[test]
    fn refuses_more_than_six_decimals_instead_of_rounding() {
        assert!(matches!(Money::parse("1.0000001"), Err(MoneyError::TooManyDecimals(_))));
        // trailing zeros beyond the sixth place carry no value and are accepted
        assert!(Money::parse("1.0000000").is_ok());
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in ["", "abc", "1e5", " 1", "1,5", "+1", "1.", ".5", "--1", "NaN"] {
            assert!(matches!(Money::parse(bad), Err(MoneyError::NotANumber(_))), "{bad}");
        }
    }

    #[test]
    fn refuses_amounts_that_do_not_fit_numeric_20_6() {
        assert!(Money::parse("99999999999999.999999").is_ok());
        assert!(matches!(Money::parse("100000000000000"), Err(MoneyError::TooLarge(_))));
    }

    #[test]
    fn json_is_a_string_and_numbers_are_refused() {
        let m: Money = serde_json::from_str("\"7.25\"").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"7.25\"");
        assert!(serde_json::from_str::<Money>("7.25").is_err());
    }

    #[test]
    fn banker_rounding_on_stored_results() {
        let half_up = Decimal::from_str("0.0000025").unwrap();
        assert_eq!(Money::round_stored(half_up).unwrap().to_string(), "0.000002");
        let half_odd = Decimal::from_str("0.0000035").unwrap();
        assert_eq!(Money::round_stored(half_odd).unwrap().to_string(), "0.000004");
    }

    proptest! {
        #[test]
        fn add_then_sub_is_identity(a in -1_000_000_000_000i64..1_000_000_000_000, b in -1_000_000_000_000i64..1_000_000_000_000) {
            let a = Money::from_decimal(Decimal::new(a, 6)).unwrap();
            let b = Money::from_decimal(Decimal::new(b, 6)).unwrap();
            prop_assert_eq!(a.checked_add(b).unwrap().checked_sub(b).unwrap(), a);
        }

        #[test]
        fn display_parses_back(units in any::<i64>().prop_map(|v| v % 100_000_000_000_000_000)) {
            let m = Money::from_decimal(Decimal::new(units, 6)).unwrap();
            prop_assert_eq!(Money::parse(&m.to_string()).unwrap(), m);
        }
    }
}
