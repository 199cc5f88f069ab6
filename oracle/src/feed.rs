//! Feeds: one per traded circuit size and deadline bucket.
//!
//! A feed answers "what does a proof of this class cost if I need it within `deadline_secs`?".
//! Its id is `groth16-bn254:hash-chain:<size_log2>:<deadline_secs>`. An ask or a contract counts for
//! a feed when its prover could serve the feed's class: same circuit, size at least the feed's,
//! deadline at most the bucket's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use pcx_domain::{ProofClass, ProofSystem};

/// The deadline buckets, in seconds.
pub const DEADLINE_BUCKETS: [u32; 3] = [60, 600, 3600];

/// A feed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub struct Feed {
    /// `groth16-bn254:hash-chain:12:600`.
    pub feed_id: String,
    /// The class priced.
    pub proof_class: ProofClass,
}

impl Feed {
    /// The feed of a class.
    pub fn of(class: ProofClass) -> Feed {
        let system = class.system.as_str();
        Feed {
            feed_id: format!("{system}:{}:{}:{}", class.circuit, class.size_log2, class.deadline_secs),
            proof_class: class,
        }
    }

    /// True when a prover able to serve `offered` can serve this feed's class.
    pub fn served_by(&self, offered: &ProofClass) -> bool {
        offered.covers(&self.proof_class)
    }
}

/// Every feed of a circuit: each traded size in `sizes`, each deadline bucket.
pub fn all_feeds(system: ProofSystem, circuit: &str, sizes: impl IntoIterator<Item = u8>) -> Vec<Feed> {
    sizes
        .into_iter()
        .flat_map(|size_log2| {
            DEADLINE_BUCKETS.into_iter().map(move |deadline_secs| {
                Feed::of(ProofClass {
                    system,
                    circuit: circuit.to_owned(),
                    size_log2,
                    deadline_secs,
                })
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_class_and_bigger_faster_offers_serve_it() {
        let feeds = all_feeds(ProofSystem::Groth16Bn254, "hash-chain", 10..=11);
        assert_eq!(feeds.len(), 6);
        assert_eq!(feeds[1].feed_id, "groth16-bn254:hash-chain:10:600");
        let offer = ProofClass { system: ProofSystem::Groth16Bn254, circuit: "hash-chain".into(), size_log2: 12, deadline_secs: 300 };
        assert!(feeds[1].served_by(&offer));
        assert!(!feeds[0].served_by(&offer), "a 300 s prover cannot promise 60 s");
    }
}
