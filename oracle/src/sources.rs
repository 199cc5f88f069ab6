//! Which market observations price a feed, and how each becomes a [`Quote`].
//!
//! - An **ask** (a resting offer) counts for a feed when its prover could serve the feed's class
//!   ([`Feed::served_by`]: same system and circuit, size at least the feed's, deadline at most the
//!   bucket). It was observed when posted, but it is re-confirmed by every round it stays in the
//!   book: its `observed_at` is its posting time, no earlier than an hour ago (so a year-old ask
//!   is not stale while it rests), never in the future.
//!   It weighs by its [`Backing`] (the prover's bonded stake, at most a day of the offered
//!   capacity at the market's price), so sybil asks with nothing behind them weigh next to nothing.
//! - An **executed** price (a contract bought recently) counts the same way, observed when bought,
//!   unless its buyer and prover trade only with each other ([`isolated_pairs`]: a wash trade
//!   looks exactly like that).
//! - An **external** price list counts per machine: see [`crate::external`].
//! - **Deliveries** of the feed's circuit and size within its deadline bucket give its on-time
//!   rate; misses that were the exchange's own fault are left out by the exchange.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

use pcx_domain::ProofClass;

use crate::aggregate::{Backing, Deliveries, Quote, SourceKind};
use crate::feed::Feed;

/// An ask still open at the time of the round is re-confirmed; it counts as observed at most
/// this long ago.
pub const ASK_CONFIRMED_WITHIN: Duration = Duration::hours(1);

/// A resting offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// Offer id.
    pub id: i64,
    /// Its prover (the owner of the quote).
    pub prover: String,
    /// What it serves.
    pub class: ProofClass,
    /// Price per proof.
    pub price: Decimal,
    /// When it was posted.
    pub posted_at: DateTime<Utc>,
    /// End of its window.
    pub window_end: DateTime<Utc>,
    /// Proofs per hour it offers.
    pub proofs_per_hour: u32,
    /// Its prover's bonded stake.
    pub bonded: Decimal,
}

/// A contract bought recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executed {
    /// Contract id.
    pub id: String,
    /// Its (first) primary prover.
    pub prover: String,
    /// Who bought it.
    pub buyer: String,
    /// What it buys.
    pub class: ProofClass,
    /// Its locked price per proof.
    pub price: Decimal,
    /// When it was bought.
    pub bought_at: DateTime<Utc>,
    /// End of its term.
    pub ends_at: DateTime<Utc>,
}

/// Delivered and missed slots of one class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcomes {
    /// The class.
    pub class: ProofClass,
    /// Delivered slots.
    pub delivered: u64,
    /// Missed slots (the provers' misses only).
    pub missed: u64,
}

/// The quotes of `asks` and `executed` that price `feed`, at `now`.
pub fn market_quotes(feed: &Feed, asks: &[Ask], executed: &[Executed], now: DateTime<Utc>) -> Vec<Quote> {
    let asks = asks.iter().filter(|a| feed.served_by(&a.class)).map(|a| Quote {
        source: format!("ask:{}", a.id),
        owner: format!("prover:{}", a.prover),
        kind: SourceKind::Ask,
        price: a.price,
        observed_at: now.min(a.posted_at.max(now - ASK_CONFIRMED_WITHIN)),
        available_until: Some(a.window_end),
        backing: Some(Backing { stake: a.bonded, proofs_per_hour: a.proofs_per_hour }),
    });
    let isolated = isolated_pairs(executed);
    let executed = executed
        .iter()
        .filter(|c| feed.served_by(&c.class))
        .filter(|c| !isolated.contains(&(c.buyer.as_str(), c.prover.as_str())))
        .map(|c| Quote {
        source: format!("executed:{}", c.id),
        owner: format!("prover:{}", c.prover),
        kind: SourceKind::Executed,
        price: c.price,
        observed_at: c.bought_at,
        available_until: Some(c.ends_at),
        backing: None,
    });
    asks.chain(executed).collect()
}

/// Buyer-prover pairs that trade only with each other among `executed` (the buyer bought from
/// no other prover, the prover sold to no other buyer): their prices say nothing about the
/// market (they may be one owner on both sides), so they do not count as executed.
pub fn isolated_pairs(executed: &[Executed]) -> std::collections::HashSet<(&str, &str)> {
    use std::collections::{HashMap, HashSet};
    let mut provers_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut buyers_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    for c in executed {
        provers_of.entry(c.buyer.as_str()).or_default().insert(c.prover.as_str());
        buyers_of.entry(c.prover.as_str()).or_default().insert(c.buyer.as_str());
    }
    executed
        .iter()
        .map(|c| (c.buyer.as_str(), c.prover.as_str()))
        .filter(|(buyer, prover)| {
            provers_of.get(buyer).is_some_and(|p| p.len() == 1) && buyers_of.get(prover).is_some_and(|b| b.len() == 1)
        })
        .collect()
}

/// The delivery record of `feed`: outcomes of its system, circuit and size whose deadline fits
/// its bucket.
pub fn deliveries(feed: &Feed, outcomes: &[Outcomes]) -> Deliveries {
    let class = &feed.proof_class;
    outcomes
        .iter()
        .filter(|o| {
            o.class.system == class.system
                && o.class.circuit == class.circuit
                && o.class.size_log2 == class.size_log2
                && o.class.deadline_secs <= class.deadline_secs
        })
        .fold(Deliveries::default(), |acc, o| Deliveries {
            delivered: acc.delivered.saturating_add(o.delivered),
            missed: acc.missed.saturating_add(o.missed),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcx_domain::ProofSystem;

    fn class(size_log2: u8, deadline_secs: u32) -> ProofClass {
        ProofClass { system: ProofSystem::Groth16Bn254, circuit: "hash-chain".into(), size_log2, deadline_secs }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + secs, 0).unwrap()
    }

    fn ask(id: i64, class: ProofClass, posted: i64) -> Ask {
        Ask {
            id,
            prover: format!("p{id}"),
            class,
            price: Decimal::ONE,
            posted_at: at(posted),
            window_end: at(100_000),
            proofs_per_hour: 10,
            bonded: Decimal::from(1000),
        }
    }

    fn executed(id: &str, buyer: &str, prover: &str, price: i64) -> Executed {
        Executed {
            id: id.into(),
            prover: prover.into(),
            buyer: buyer.into(),
            class: class(12, 600),
            price: Decimal::from(price),
            bought_at: at(-60),
            ends_at: at(100_000),
        }
    }

    #[test]
    fn a_swarm_of_unbacked_asks_does_not_move_the_price() {
        use crate::aggregate::{estimate, Params};
        let feed = Feed::of(class(12, 600));
        // Five honest provers with stake behind their asks around 1.00...
        let mut asks: Vec<Ask> = (0..5)
            .map(|i| Ask { price: Decimal::new(100 + i, 2), prover: format!("honest{i}"), ..ask(i, class(12, 600), -60) })
            .collect();
        // ...and twenty sybils at 0.90 (inside the outlier fence) with almost nothing bonded.
        asks.extend((0..20).map(|i| Ask {
            price: Decimal::new(90, 2),
            prover: format!("sybil{i}"),
            bonded: Decimal::new(1, 2),
            ..ask(100 + i, class(12, 600), -60)
        }));
        let quotes = market_quotes(&feed, &asks, &[], at(0));
        let price = estimate(quotes, Default::default(), at(0), &Params { min_sources: 1, ..Params::default() }).price;
        let price = price.expect("a price");
        assert!(price >= Decimal::ONE, "the sybils moved the price to {price}");
    }

    #[test]
    fn an_expensive_ask_does_not_buy_weight_with_its_own_price() {
        use crate::aggregate::{estimate, Params};
        let feed = Feed::of(class(12, 600));
        let mut asks: Vec<Ask> = (0..4)
            .map(|i| Ask { price: Decimal::new(100 + 2 * i, 2), prover: format!("honest{i}"), ..ask(i, class(12, 600), -60) })
            .collect();
        asks.push(Ask { price: Decimal::from(900), prover: "greedy".into(), bonded: Decimal::from(1_000_000), ..ask(9, class(12, 600), -60) });
        let quotes = market_quotes(&feed, &asks, &[], at(0));
        let estimate = estimate(quotes, Default::default(), at(0), &Params { min_sources: 1, ..Params::default() });
        let price = estimate.price.expect("a price");
        assert!(price < Decimal::new(110, 2), "a stake-heavy ask at 900 captured the price: {price}");
    }

    #[test]
    fn pairs_that_trade_only_with_each_other_are_not_executed_prices() {
        let feed = Feed::of(class(12, 600));
        let trades = [
            executed("wash", "buyer-x", "prover-x", 5),
            executed("a", "buyer-1", "prover-1", 1),
            executed("b", "buyer-2", "prover-1", 1),
        ];
        let quotes = market_quotes(&feed, &[], &trades, at(0));
        let sources: Vec<&str> = quotes.iter().map(|q| q.source.as_str()).collect();
        assert_eq!(sources, ["executed:a", "executed:b"], "the isolated pair is left out; a prover with two buyers counts");
    }

    #[test]
    fn asks_that_can_serve_the_feed_count_confirmed_within_the_hour() {
        let feed = Feed::of(class(12, 600));
        let asks = [
            ask(1, class(14, 300), -86_400),
            ask(2, class(12, 600), -60),
            ask(3, class(10, 600), 0),
            ask(4, ProofClass { circuit: "other".into(), ..class(14, 60) }, 0),
        ];
        let quotes = market_quotes(&feed, &asks, &[], at(0));
        let sources: Vec<&str> = quotes.iter().map(|q| q.source.as_str()).collect();
        assert_eq!(sources, ["ask:1", "ask:2"], "too small and another circuit are left out");
        assert_eq!(quotes[0].observed_at, at(-3600), "a day-old ask is confirmed by this round");
        assert_eq!(quotes[1].observed_at, at(-60));
    }

    #[test]
    fn deliveries_of_the_feeds_size_within_its_bucket_count() {
        let feed = Feed::of(class(12, 600));
        let outcomes = [
            Outcomes { class: class(12, 60), delivered: 3, missed: 1 },
            Outcomes { class: class(12, 3600), delivered: 100, missed: 100 },
            Outcomes { class: class(14, 60), delivered: 50, missed: 0 },
        ];
        assert_eq!(deliveries(&feed, &outcomes), Deliveries { delivered: 3, missed: 1 });
    }
}
