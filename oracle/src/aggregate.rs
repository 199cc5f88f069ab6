//! From quotes to a price (methodology version [`crate::METHODOLOGY_VERSION`], `docs/ORACLE.md`).
//!
//! 1. Normalise: every quote is a price per proof (external price lists are turned into one by the
//!    exchange: hourly machine rate / measured proofs per hour).
//! 2. Drop stale quotes (older than their kind's max age) and insane ones (outside
//!    `[sanity_min, sanity_max]`).
//! 3. Weigh: executed prices weigh more than quotes; asks share their kind's weight in proportion
//!    to their [`Backing`] (the prover's bonded stake, at most a day of the offered capacity at
//!    the plain median price).
//! 4. Reject outliers with a MAD fence around the weighted median, the MAD weighted too:
//!    `|p − m| > max(k · 1.4826 · MAD, floor · m)`; then no owner (a prover, a provider) may carry
//!    more than `owner_cap` of the total weight.
//! 5. The price is the weighted median; `conf` is half the weighted inter-quartile range.
//! 6. Quantiles: `q_x` is the price that gets a proof delivered by the deadline with probability
//!    `x`. With `F` the weighted share of supply at or below a price and `r` the feed's observed
//!    on-time delivery rate (with a prior of 9 in 10), `q_x = F⁻¹(x / r)`, and the highest accepted
//!    price when `x / r ≥ 1` (no price buys more than `r`).

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a quote comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A resting ask in the book.
    Ask,
    /// The locked price of a contract bought recently.
    Executed,
    /// An external provider's price list.
    External,
}

/// One price observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Quote {
    /// What it is: `ask:<offer>`, `executed:<contract>`, `external:<provider>/<machine>`.
    pub source: String,
    /// Who stands behind it (weight cap): a prover id or a provider name.
    pub owner: String,
    /// Kind.
    pub kind: SourceKind,
    /// Price per proof.
    #[schema(value_type = String)]
    pub price: Decimal,
    /// When it was observed or last confirmed.
    pub observed_at: DateTime<Utc>,
    /// Until when the capacity behind it lasts, when known (forward curve).
    pub available_until: Option<DateTime<Utc>>,
    /// For an ask: what stands behind it (see [`Backing`]); asks weigh in proportion to it.
    /// `None` for other kinds.
    pub backing: Option<Backing>,
}

/// What stands behind an ask: its prover's bonded stake and the capacity it offers. Its weight
/// basis is `min(stake, a day of that capacity at the feed's median price)`: a swarm of asks
/// with nothing bonded weighs next to nothing, and a high price does not buy weight (the
/// capacity is valued at the market's price, not the ask's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Backing {
    /// The prover's bonded stake.
    #[schema(value_type = String)]
    pub stake: Decimal,
    /// Proofs per hour offered.
    pub proofs_per_hour: u32,
}

impl Backing {
    /// The weight basis at market price `price`.
    pub fn basis(&self, price: Decimal) -> Decimal {
        let day = price.checked_mul(Decimal::from(self.proofs_per_hour)).and_then(|v| v.checked_mul(Decimal::from(24)));
        day.map_or(self.stake, |day| day.min(self.stake)).max(Decimal::ZERO)
    }
}

/// Why a quote was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Older than its kind's max age.
    Stale,
    /// Outside the sanity bounds.
    Insane,
    /// Outside the MAD fence.
    Outlier,
}

/// A quote with its fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Assessed {
    /// The quote.
    pub quote: Quote,
    /// Its weight after the owner cap (0 when excluded).
    #[schema(value_type = String)]
    pub weight: Decimal,
    /// Why it was left out.
    pub excluded: Option<Exclusion>,
}

/// Settings of the aggregation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Max age of an ask (asks are re-read every round, so this is generous).
    pub ask_max_age: Duration,
    /// Max age of an executed price.
    pub executed_max_age: Duration,
    /// Max age of an external price.
    pub external_max_age: Duration,
    /// Lowest sane price.
    pub sanity_min: Decimal,
    /// Highest sane price.
    pub sanity_max: Decimal,
    /// MAD multiplier of the fence.
    pub mad_k: Decimal,
    /// The fence is never tighter than this share of the median.
    pub relative_floor: Decimal,
    /// Weight of an ask.
    pub ask_weight: Decimal,
    /// Weight of an executed price.
    pub executed_weight: Decimal,
    /// Weight of an external price.
    pub external_weight: Decimal,
    /// Largest share of the total weight one owner may carry.
    pub owner_cap: Decimal,
    /// Fewer distinct accepted owners than this: `insufficient_sources`.
    pub min_sources: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            ask_max_age: Duration::days(365),
            executed_max_age: Duration::days(7),
            external_max_age: Duration::minutes(10),
            sanity_min: Decimal::new(1, 6),
            sanity_max: Decimal::from(1_000_000),
            mad_k: Decimal::from(3),
            relative_floor: Decimal::new(5, 2),
            ask_weight: Decimal::ONE,
            executed_weight: Decimal::from(3),
            external_weight: Decimal::ONE,
            owner_cap: Decimal::new(25, 2),
            min_sources: 3,
        }
    }
}

/// Delivery outcomes observed for the feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deliveries {
    /// Slots delivered on time.
    pub delivered: u64,
    /// Slots missed.
    pub missed: u64,
}

impl Deliveries {
    /// On-time rate with a prior of 9 deliveries in 10.
    pub fn reliability(&self) -> Decimal {
        Decimal::from(self.delivered + 9) / Decimal::from(self.delivered + self.missed + 10)
    }
}

/// The result of one aggregation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Weighted median (None with too few sources).
    pub price: Option<Decimal>,
    /// Half the weighted inter-quartile range.
    pub conf: Option<Decimal>,
    /// q50, q80, q95, q99.
    pub quantiles: Option<[Decimal; 4]>,
    /// Distinct owners accepted.
    pub n_sources: usize,
    /// Every quote and its fate.
    pub assessed: Vec<Assessed>,
    /// On-time delivery rate used.
    pub reliability: Decimal,
}

/// The smallest price whose cumulative weight reaches `share` of the total.
fn weighted_quantile(points: &[(Decimal, Decimal)], share: Decimal) -> Decimal {
    let total: Decimal = points.iter().map(|(_, w)| *w).sum();
    let target = total * share;
    let mut cumulative = Decimal::ZERO;
    for (price, weight) in points {
        cumulative += *weight;
        if cumulative >= target {
            return *price;
        }
    }
    points.last().map_or(Decimal::ZERO, |(p, _)| *p)
}

/// Owner weights after the cap, so that no owner carries more than `cap` of the final total
/// (water-filling: the heaviest owners are lowered to `cap x total` until the rest fits). When the
/// cap cannot hold (fewer than `1 / cap` owners), every owner gets the same weight.
fn capped_weights(owners: &[(String, Decimal)], cap: Decimal) -> Vec<(String, Decimal)> {
    let mut sorted: Vec<(String, Decimal)> = owners.to_vec();
    sorted.sort_by_key(|(_, w)| std::cmp::Reverse(*w));
    for capped in 0..=sorted.len() {
        let share = cap * Decimal::from(capped);
        if share >= Decimal::ONE {
            break;
        }
        let uncapped: Decimal = sorted[capped..].iter().map(|(_, w)| *w).sum();
        let total = uncapped / (Decimal::ONE - share);
        if sorted.get(capped).is_none_or(|(_, w)| *w <= cap * total) {
            return sorted
                .into_iter()
                .enumerate()
                .map(|(i, (o, w))| if i < capped { (o, cap * total) } else { (o, w) })
                .collect();
        }
    }
    let equal = sorted.iter().map(|(_, w)| *w).min().unwrap_or(Decimal::ZERO);
    sorted.into_iter().map(|(o, _)| (o, equal)).collect()
}

/// Aggregates `quotes` at `now` (see the module docs).
pub fn estimate(quotes: Vec<Quote>, deliveries: Deliveries, now: DateTime<Utc>, params: &Params) -> Estimate {
    let mut assessed: Vec<Assessed> = quotes
        .into_iter()
        .map(|quote| {
            let max_age = match quote.kind {
                SourceKind::Ask => params.ask_max_age,
                SourceKind::Executed => params.executed_max_age,
                SourceKind::External => params.external_max_age,
            };
            let excluded = if now - quote.observed_at > max_age {
                Some(Exclusion::Stale)
            } else if quote.price < params.sanity_min || quote.price > params.sanity_max {
                Some(Exclusion::Insane)
            } else {
                None
            };
            Assessed { quote, weight: Decimal::ZERO, excluded }
        })
        .collect();

    // Base weights: by kind; asks share the weight asks have in all (ask_weight each) in
    // proportion to their backing, valued at the plain median price of what is left, so that many
    // thinly backed asks cannot outvote a few backed ones.
    let mut plain: Vec<Decimal> = assessed.iter().filter(|a| a.excluded.is_none()).map(|a| a.quote.price).collect();
    plain.sort();
    let market = plain.get(plain.len() / 2).copied().unwrap_or(Decimal::ZERO);
    let basis = |q: &Quote| q.backing.map_or(Decimal::ONE, |b| b.basis(market));
    let live_asks: Vec<Decimal> = assessed
        .iter()
        .filter(|a| a.excluded.is_none() && a.quote.kind == SourceKind::Ask)
        .map(|a| basis(&a.quote))
        .collect();
    let ask_total: Decimal = live_asks.iter().copied().sum();
    let ask_count = Decimal::from(live_asks.len());
    for a in assessed.iter_mut().filter(|a| a.excluded.is_none()) {
        a.weight = match a.quote.kind {
            SourceKind::Ask if ask_total > Decimal::ZERO => params.ask_weight * ask_count * basis(&a.quote) / ask_total,
            SourceKind::Ask => params.ask_weight,
            SourceKind::Executed => params.executed_weight,
            SourceKind::External => params.external_weight,
        };
    }

    // Outlier fence around the weighted median of what is left (weighted, so that a crowd of
    // weightless quotes cannot move the fence onto the honest ones).
    let mut points: Vec<(Decimal, Decimal)> =
        assessed.iter().filter(|a| a.excluded.is_none()).map(|a| (a.quote.price, a.weight)).collect();
    points.sort();
    let m = if points.iter().any(|(_, w)| *w > Decimal::ZERO) { weighted_quantile(&points, Decimal::new(5, 1)) } else { Decimal::ZERO };
    let mut deviations: Vec<(Decimal, Decimal)> = points.iter().map(|(p, w)| ((*p - m).abs(), *w)).collect();
    deviations.sort();
    let mad = if deviations.iter().any(|(_, w)| *w > Decimal::ZERO) {
        weighted_quantile(&deviations, Decimal::new(5, 1))
    } else {
        Decimal::ZERO
    };
    let fence = (params.mad_k * Decimal::new(14826, 4) * mad).max(params.relative_floor * m);
    for a in assessed.iter_mut().filter(|a| a.excluded.is_none()) {
        if (a.quote.price - m).abs() > fence {
            a.excluded = Some(Exclusion::Outlier);
            a.weight = Decimal::ZERO;
        }
    }

    // The owner cap.
    let mut owners: Vec<(String, Decimal)> = Vec::new();
    for a in assessed.iter().filter(|a| a.excluded.is_none()) {
        match owners.iter_mut().find(|(o, _)| *o == a.quote.owner) {
            Some((_, w)) => *w += a.weight,
            None => owners.push((a.quote.owner.clone(), a.weight)),
        }
    }
    for (owner, target) in capped_weights(&owners, params.owner_cap) {
        let current = owners.iter().find(|(o, _)| *o == owner).map_or(Decimal::ZERO, |(_, w)| *w);
        if !current.is_zero() && target < current {
            let scale = target / current;
            for a in assessed.iter_mut().filter(|a| a.excluded.is_none() && a.quote.owner == owner) {
                a.weight *= scale;
            }
        }
    }

    let n_sources = owners.len();
    let reliability = deliveries.reliability();
    let mut points: Vec<(Decimal, Decimal)> =
        assessed.iter().filter(|a| a.excluded.is_none()).map(|a| (a.quote.price, a.weight)).collect();
    points.sort();
    if n_sources < params.min_sources.max(1) || points.is_empty() {
        return Estimate { price: None, conf: None, quantiles: None, n_sources, assessed, reliability };
    }
    let round6 = |d: Decimal| d.round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointNearestEven);
    let price = weighted_quantile(&points, Decimal::new(5, 1));
    let conf = (weighted_quantile(&points, Decimal::new(75, 2)) - weighted_quantile(&points, Decimal::new(25, 2))) / Decimal::TWO;
    let highest = points.last().map_or(price, |(p, _)| *p);
    let quantile = |x: Decimal| {
        let share = x / reliability;
        if share >= Decimal::ONE { highest } else { weighted_quantile(&points, share) }
    };
    let quantiles = [
        quantile(Decimal::new(50, 2)),
        quantile(Decimal::new(80, 2)),
        quantile(Decimal::new(95, 2)),
        quantile(Decimal::new(99, 2)),
    ]
    .map(round6);
    Estimate {
        price: Some(round6(price)),
        conf: Some(round6(conf)),
        quantiles: Some(quantiles),
        n_sources,
        assessed,
        reliability,
    }
}

/// A point of the forward curve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CurvePoint {
    /// `spot`, `1w`, `1m`, `3m`, `1y`.
    pub tenor: String,
    /// Term in seconds.
    pub term_secs: i64,
    /// Price per proof for an hourly contract of that term, after the published discount.
    #[schema(value_type = Option<String>)]
    pub price: Option<Decimal>,
    /// Discount applied.
    pub discount_bps: u32,
    /// Distinct owners whose capacity lasts the term.
    pub n_sources: usize,
}

/// The tenors of the curve.
pub const TENORS: [(&str, i64); 5] = [("spot", 0), ("1w", 7), ("1m", 30), ("3m", 90), ("1y", 365)];

/// The forward curve: for each tenor, the estimate over the quotes whose capacity lasts the term,
/// discounted as an hourly contract of that term would be: `discount_bps(proofs, term_secs)` is
/// the exchange's published discount.
pub fn curve(
    quotes: &[Quote],
    deliveries: Deliveries,
    now: DateTime<Utc>,
    params: &Params,
    discount_bps: &dyn Fn(u64, i64) -> u32,
) -> Vec<CurvePoint> {
    TENORS
        .iter()
        .map(|(tenor, days)| {
            let term = Duration::days(*days);
            let lasting: Vec<Quote> = quotes
                .iter()
                .filter(|q| q.available_until.is_none_or(|until| until >= now + term))
                .cloned()
                .collect();
            let estimate = estimate(lasting, deliveries, now, params);
            let term_secs = term.num_seconds();
            let proofs = u64::try_from(days * 24).unwrap_or(0);
            let discount_bps = if *days == 0 { 0 } else { discount_bps(proofs, term_secs) };
            let price = estimate.price.map(|p| {
                (p * Decimal::from(10_000 - discount_bps) / Decimal::from(10_000))
                    .round_dp_with_strategy(6, rust_decimal::RoundingStrategy::MidpointNearestEven)
            });
            CurvePoint { tenor: (*tenor).to_owned(), term_secs, price, discount_bps, n_sources: estimate.n_sources }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn quote(owner: &str, kind: SourceKind, price: &str, age_secs: i64, now: DateTime<Utc>) -> Quote {
        Quote {
            source: format!("{owner}-{price}"),
            owner: owner.into(),
            kind,
            price: price.parse().unwrap(),
            observed_at: now - Duration::seconds(age_secs),
            available_until: None,
            backing: None,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000, 0).unwrap()
    }

    #[test]
    fn absurd_quotes_do_not_move_the_price_out_of_the_honest_range() {
        let t = now();
        let mut quotes: Vec<Quote> =
            ["1.00", "1.02", "1.05", "1.08", "1.10"].iter().enumerate().map(|(i, p)| quote(&format!("p{i}"), SourceKind::Ask, p, 0, t)).collect();
        quotes.push(quote("evil-low", SourceKind::Ask, "0.0001", 0, t));
        quotes.push(quote("evil-high", SourceKind::Ask, "5000", 0, t));
        quotes.push(quote("evil-many", SourceKind::Ask, "0.2", 0, t));
        let e = estimate(quotes, Deliveries::default(), t, &Params::default());
        let price = e.price.unwrap();
        assert!(price >= "1.00".parse().unwrap() && price <= "1.10".parse().unwrap(), "{price}");
        let outliers = e.assessed.iter().filter(|a| a.excluded == Some(Exclusion::Outlier)).count();
        assert_eq!(outliers, 3);
    }

    #[test]
    fn stale_and_insane_quotes_are_excluded_with_a_reason() {
        let t = now();
        let quotes = vec![
            quote("a", SourceKind::External, "1", 3600, t),
            quote("b", SourceKind::Ask, "0", 0, t),
            quote("c", SourceKind::Ask, "1", 0, t),
        ];
        let e = estimate(quotes, Deliveries::default(), t, &Params::default());
        assert_eq!(e.assessed[0].excluded, Some(Exclusion::Stale));
        assert_eq!(e.assessed[1].excluded, Some(Exclusion::Insane));
        assert_eq!(e.price, None, "one source is not enough");
        assert_eq!(e.n_sources, 1);
    }

    #[test]
    fn one_owner_cannot_outweigh_the_cap() {
        let t = now();
        let mut quotes: Vec<Quote> = (0..20).map(|i| quote("whale", SourceKind::Ask, &format!("1.{i:02}"), 0, t)).collect();
        for (i, p) in ["1.30", "1.31", "1.32"].iter().enumerate() {
            quotes.push(quote(&format!("o{i}"), SourceKind::Executed, p, 0, t));
        }
        let e = estimate(quotes, Deliveries::default(), t, &Params::default());
        let whale: Decimal = e.assessed.iter().filter(|a| a.quote.owner == "whale").map(|a| a.weight).sum();
        let total: Decimal = e.assessed.iter().map(|a| a.weight).sum();
        assert!(whale <= total * Decimal::new(26, 2), "whale {whale} of {total}");
    }

    #[test]
    fn quantiles_rise_with_the_probability_asked_and_unreliable_feeds_cost_more() {
        let t = now();
        let quotes: Vec<Quote> =
            (0..10).map(|i| quote(&format!("p{i}"), SourceKind::Ask, &format!("1.{i}"), 0, t)).collect();
        let good = estimate(quotes.clone(), Deliveries { delivered: 1000, missed: 0 }, t, &Params::default());
        let q = good.quantiles.unwrap();
        assert!(q[0] <= q[1] && q[1] <= q[2] && q[2] <= q[3]);
        let bad = estimate(quotes, Deliveries { delivered: 10, missed: 10 }, t, &Params::default());
        assert!(bad.quantiles.unwrap()[0] >= q[0]);
        assert_eq!(bad.quantiles.unwrap()[3], "1.9".parse().unwrap(), "no price buys more than the feed delivers");
    }

    proptest! {
        #[test]
        fn the_price_is_always_an_accepted_quote_between_the_extremes(prices in prop::collection::vec(1u32..1_000_000, 3..40)) {
            let t = now();
            let quotes: Vec<Quote> = prices.iter().enumerate()
                .map(|(i, p)| quote(&format!("o{i}"), SourceKind::Ask, &Decimal::new(i64::from(*p), 4).to_string(), 0, t))
                .collect();
            let e = estimate(quotes, Deliveries::default(), t, &Params::default());
            if let Some(price) = e.price {
                let accepted: Vec<Decimal> = e.assessed.iter().filter(|a| a.excluded.is_none()).map(|a| a.quote.price).collect();
                prop_assert!(accepted.contains(&price));
                let q = e.quantiles.unwrap();
                prop_assert!(q.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }
}
