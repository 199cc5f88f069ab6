//! The references settlement entries carry in the journal, defined once.
//!
//! A reference names what an entry settles. The journal holds each settlement reference once (a
//! unique index over payments, refunds, bonuses, slashes and releases), so a transition replayed
//! after a crash cannot move money twice: its second posting is refused.

use uuid::Uuid;

/// The payment of slot `n` of `contract` (delivered or unused).
pub fn slot_payment(contract: Uuid, n: u64) -> String {
    format!("slot:{contract}/{n}")
}

/// The refund of slot `n` of `contract` (missed).
pub fn refund(contract: Uuid, n: u64) -> String {
    format!("refund:{contract}/{n}")
}

/// The step-in bonus paid to whoever delivered slot `n` of `contract` after another failed.
pub fn step_in_bonus(contract: Uuid, n: u64) -> String {
    format!("bonus:{contract}/{n}")
}

/// The slash of a failed job.
pub fn slash(job: Uuid) -> String {
    format!("slash:{job}")
}

/// The release of what a completed contract's escrow still holds.
pub fn escrow_release(contract: Uuid) -> String {
    format!("release:{contract}")
}

/// The escrow locked when `contract` was bought (its first escrow window).
pub fn escrow_at_purchase(contract: Uuid) -> String {
    format!("contract:{contract}")
}

/// The escrow locked for slots `[from, to)` of `contract` as its window rolls.
pub fn escrow_top_up(contract: Uuid, from: u64, to: u64) -> String {
    format!("contract:{contract}:slots:{from}-{to}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_what_they_settle() {
        let c = Uuid::nil();
        assert_eq!(slot_payment(c, 7), "slot:00000000-0000-0000-0000-000000000000/7");
        assert_eq!(refund(c, 7), "refund:00000000-0000-0000-0000-000000000000/7");
        assert_eq!(escrow_top_up(c, 10, 20), "contract:00000000-0000-0000-0000-000000000000:slots:10-20");
        assert_ne!(slot_payment(c, 1), step_in_bonus(c, 1));
    }
}
