//! [`ProofClass`]: what is traded. A proof system, a named circuit of a given size, and a latency SLA.
//!
//! Which circuits and sizes exist is decided by the circuit registry (in `prover-pool`); this module
//! only holds the vocabulary and the checks that need no registry.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A proof system the exchange can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
pub enum ProofSystem {
    /// Groth16 over the BN254 curve.
    #[serde(rename = "groth16-bn254")]
    Groth16Bn254,
}

impl ProofSystem {
    /// Stable name, as on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ProofSystem::Groth16Bn254 => "groth16-bn254",
        }
    }

    /// Parses the stable name.
    pub fn parse(name: &str) -> Option<Self> {
        [ProofSystem::Groth16Bn254].into_iter().find(|s| s.as_str() == name)
    }
}

/// A class of proofs: `{"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 12, "deadline_secs": 600}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofClass {
    /// The proof system.
    pub system: ProofSystem,
    /// A circuit of the built-in registry (`hash-chain`), or a registered circuit's id (64 hex
    /// digits, see `POST /v1/circuits`).
    #[schema(example = "hash-chain", pattern = "^(hash-chain|[0-9a-f]{64})$")]
    pub circuit: String,
    /// The circuit's QAP domain has 2^size_log2 points (about as many constraints). May be
    /// omitted (0) for a registered circuit, whose size follows from its constraints.
    #[schema(example = 12, maximum = 28)]
    #[serde(default)]
    pub size_log2: u8,
    /// Latency SLA: the proof must be verified at most this many seconds after its slot opens.
    #[schema(example = 600, minimum = 1, maximum = 604800)]
    pub deadline_secs: u32,
}

/// The longest latency SLA a class may have: a week (a proof promised later than that is not a
/// forward of proving capacity anyone prices).
pub const MAX_DEADLINE_SECS: u32 = 7 * 24 * 3600;

/// Why a proof class is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofClassError {
    /// The deadline is zero.
    #[error("deadline_secs must be at least 1")]
    ZeroDeadline,
    /// The deadline is longer than [`MAX_DEADLINE_SECS`].
    #[error("deadline_secs must be at most {MAX_DEADLINE_SECS} (7 days); got {0}")]
    DeadlineTooLong(u32),
    /// The circuit name is empty.
    #[error("circuit must name a circuit of the registry, e.g. \"hash-chain\", or a registered circuit's id")]
    EmptyCircuit,
}

impl ProofClass {
    /// Checks what needs no registry.
    pub fn validate_shape(&self) -> Result<(), ProofClassError> {
        if self.deadline_secs == 0 {
            return Err(ProofClassError::ZeroDeadline);
        }
        if self.deadline_secs > MAX_DEADLINE_SECS {
            return Err(ProofClassError::DeadlineTooLong(self.deadline_secs));
        }
        if self.circuit.trim().is_empty() {
            return Err(ProofClassError::EmptyCircuit);
        }
        Ok(())
    }

    /// A prover able to serve `self` can also serve `other`: same system and circuit, no larger
    /// size, no tighter deadline.
    pub fn covers(&self, other: &ProofClass) -> bool {
        self.system == other.system
            && self.circuit == other.circuit
            && self.size_log2 >= other.size_log2
            && self.deadline_secs <= other.deadline_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(size_log2: u8, deadline_secs: u32) -> ProofClass {
        ProofClass {
            system: ProofSystem::Groth16Bn254,
            circuit: "hash-chain".into(),
            size_log2,
            deadline_secs,
        }
    }

    #[test]
    fn wire_format_matches_the_public_api() {
        let json = r#"{"system":"groth16-bn254","circuit":"hash-chain","size_log2":12,"deadline_secs":600}"#;
        let parsed: ProofClass = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, class(12, 600));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
        assert!(serde_json::from_str::<ProofClass>(&json.replace("groth16-bn254", "plonk")).is_err());
    }

    #[test]
    fn system_names_round_trip_like_the_wire_format() {
        let name = ProofSystem::Groth16Bn254.as_str();
        assert_eq!(serde_json::to_value(ProofSystem::Groth16Bn254).unwrap(), name);
        assert_eq!(ProofSystem::parse(name), Some(ProofSystem::Groth16Bn254));
        assert_eq!(ProofSystem::parse("plonk"), None);
    }

    #[test]
    fn bigger_and_faster_covers_smaller_and_slower() {
        assert!(class(14, 300).covers(&class(12, 600)));
        assert!(!class(12, 600).covers(&class(14, 600)));
        assert!(!class(14, 600).covers(&class(14, 300)));
    }

    #[test]
    fn zero_deadline_is_refused() {
        assert_eq!(class(12, 0).validate_shape(), Err(ProofClassError::ZeroDeadline));
    }
}
