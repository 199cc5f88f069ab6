//! External price lists: machines with an hourly rate and what they prove per hour.
//!
//! A provider's list (fetched over HTTP by the exchange, or configured as is) is checked whole: a
//! machine whose rate is not a positive decimal or whose proofs per hour are zero makes the list
//! `malformed` and the provider is excluded with that reason. Each machine of an accepted list
//! prices a feed at `hourly_usd / proofs_per_hour[size]` when it benchmarked the feed's size and
//! its tightest deadline fits the bucket.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::aggregate::{Quote, SourceKind};
use crate::feed::Feed;

/// Tightest deadline a machine serves when its list does not say (seconds).
pub const DEFAULT_MIN_DEADLINE_SECS: u32 = 60;

/// A machine of a provider's price list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Machine id, e.g. `h100`.
    pub id: String,
    /// Free text, e.g. "1x H100 80GB".
    pub hardware: Option<String>,
    /// Rate in USD per hour (decimal string).
    pub hourly_usd: String,
    /// Measured proofs per hour, by size_log2 (as a string key).
    pub proofs_per_hour: HashMap<String, u64>,
    /// Tightest deadline it serves, in seconds (default 60).
    pub min_deadline_secs: Option<u32>,
}

/// A price list as a provider serves it: `{"machines": [...]}`.
#[derive(Debug, Clone, Deserialize)]
pub struct PriceList {
    /// Its machines.
    pub machines: Vec<Machine>,
}

/// Checks a list; `Err` is the reason the provider is excluded (`malformed: ...`).
pub fn check(machines: Vec<Machine>) -> Result<Vec<Machine>, String> {
    for m in &machines {
        let rate: Decimal = m.hourly_usd.parse().map_err(|_| format!("malformed: machine {}: hourly_usd is not a decimal", m.id))?;
        if rate <= Decimal::ZERO || m.proofs_per_hour.values().any(|n| *n == 0) {
            return Err(format!("malformed: machine {}: rates and proofs per hour must be positive", m.id));
        }
    }
    Ok(machines)
}

/// The quotes `provider`'s checked `machines` (fetched at `fetched_at`) give `feed`.
pub fn quotes(feed: &Feed, provider: &str, machines: &[Machine], fetched_at: DateTime<Utc>) -> Vec<Quote> {
    let class = &feed.proof_class;
    machines
        .iter()
        .filter(|m| m.min_deadline_secs.unwrap_or(DEFAULT_MIN_DEADLINE_SECS) <= class.deadline_secs)
        .filter_map(|m| {
            let per_hour = *m.proofs_per_hour.get(&class.size_log2.to_string()).filter(|n| **n > 0)?;
            let rate: Decimal = m.hourly_usd.parse().ok()?;
            Some(Quote {
                source: format!("external:{provider}/{}", m.id),
                owner: format!("provider:{provider}"),
                kind: SourceKind::External,
                price: rate / Decimal::from(per_hour),
                observed_at: fetched_at,
                available_until: None,
                backing: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcx_domain::{ProofClass, ProofSystem};

    fn machine(rate: &str, size: &str, per_hour: u64, min_deadline: Option<u32>) -> Machine {
        Machine {
            id: "m".into(),
            hardware: None,
            hourly_usd: rate.into(),
            proofs_per_hour: [(size.to_owned(), per_hour)].into_iter().collect(),
            min_deadline_secs: min_deadline,
        }
    }

    fn feed(deadline_secs: u32) -> Feed {
        Feed::of(ProofClass { system: ProofSystem::Groth16Bn254, circuit: "hash-chain".into(), size_log2: 12, deadline_secs })
    }

    #[test]
    fn a_machine_prices_the_sizes_and_deadlines_it_serves() {
        let t = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        let quotes = quotes(&feed(600), "cloud", &[machine("3.60", "12", 3600, None)], t);
        assert_eq!(quotes.len(), 1);
        assert_eq!(quotes[0].price, Decimal::new(1, 3));
        assert_eq!(quotes[0].owner, "provider:cloud");
        assert!(super::quotes(&feed(600), "cloud", &[machine("3.60", "14", 3600, None)], t).is_empty());
        assert!(super::quotes(&feed(60), "cloud", &[machine("3.60", "12", 3600, Some(600))], t).is_empty());
    }

    #[test]
    fn a_bad_machine_makes_the_list_malformed() {
        assert!(check(vec![machine("3.60", "12", 10, None)]).is_ok());
        assert!(check(vec![machine("free", "12", 10, None)]).unwrap_err().starts_with("malformed"));
        assert!(check(vec![machine("3.60", "12", 0, None)]).is_err());
        assert!(check(vec![machine("-1", "12", 10, None)]).is_err());
    }
}
