//! A prover's reputation for a circuit: its delivered and missed jobs, and the score matching uses.

use rust_decimal::Decimal;

/// The score of a prover without history.
pub const NO_HISTORY: Decimal = Decimal::from_parts(5, 0, 0, false, 1);

/// The score matching uses: `(delivered + 1) / (delivered + missed + 2)`, so a prover without
/// history has 0.5 and each outcome moves it less than the one before.
pub fn score(delivered: u64, missed: u64) -> Decimal {
    let delivered = Decimal::from(delivered);
    (delivered + Decimal::ONE) / (delivered + Decimal::from(missed) + Decimal::TWO)
}

/// `delivered / (delivered + missed)`; `None` without history.
pub fn on_time_ratio(delivered: u64, missed: u64) -> Option<Decimal> {
    let total = delivered.checked_add(missed).filter(|t| *t > 0)?;
    Some(Decimal::from(delivered) / Decimal::from(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_history_is_one_half_and_outcomes_move_the_score() {
        assert_eq!(score(0, 0), NO_HISTORY);
        assert_eq!(score(0, 0), Decimal::new(5, 1));
        assert!(score(9, 0) > score(1, 0));
        assert!(score(1, 1) < NO_HISTORY + Decimal::new(1, 2));
        assert_eq!(on_time_ratio(3, 1), Some(Decimal::new(75, 2)));
        assert_eq!(on_time_ratio(0, 0), None);
    }
}
