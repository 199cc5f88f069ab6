//! The built-in circuit registry: which circuits the exchange trades, in which sizes.
//!
//! The first circuit is `hash-chain` over BN254: 2^size_log2 − 3 squaring rounds (one constraint
//! each, so constraints plus its 3 instance variables fill a 2^size_log2 domain), public inputs
//! `[seed, out]` where the buyer supplies the seed and `out` follows from it
//! (see [`crate::hash_chain`]). Sizes 2^10 ..= 2^20 are traded. Offers and quotes for a
//! circuit or size not listed here are refused.

use pcx_domain::{ProofClass, ProofSystem};

/// A circuit the exchange knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSpec {
    /// Registry name, as in a proof class.
    pub name: &'static str,
    /// Proof system it is proved with.
    pub system: ProofSystem,
    /// Smallest traded size (log2 of the constraint count).
    pub min_size_log2: u8,
    /// Largest traded size.
    pub max_size_log2: u8,
    /// What its public input is.
    pub public_input: &'static str,
}

/// Every circuit of the registry.
pub const CIRCUITS: &[CircuitSpec] = &[CircuitSpec {
    name: "hash-chain",
    system: ProofSystem::Groth16Bn254,
    min_size_log2: 10,
    max_size_log2: 20,
    public_input: "the seed: one BN254 scalar field element, as a decimal string",
}];

/// Why a proof class is not tradeable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No such circuit.
    #[error("unknown circuit `{0}`; known circuits: {known}", known = known_names())]
    UnknownCircuit(String),
    /// Circuit exists, not with this proof system.
    #[error("circuit `{circuit}` is not proved with {system:?}")]
    WrongSystem {
        /// Circuit name.
        circuit: String,
        /// System asked for.
        system: ProofSystem,
    },
    /// Size outside the traded range.
    #[error("size_log2 {got} is not traded for `{circuit}`; use {min} to {max}")]
    UnsupportedSize {
        /// Circuit name.
        circuit: String,
        /// Size asked for.
        got: u8,
        /// Smallest traded.
        min: u8,
        /// Largest traded.
        max: u8,
    },
}

fn known_names() -> String {
    CIRCUITS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// The registry entry for a proof class, or why it is not tradeable.
pub fn lookup(class: &ProofClass) -> Result<&'static CircuitSpec, RegistryError> {
    let spec = CIRCUITS
        .iter()
        .find(|c| c.name == class.circuit)
        .ok_or_else(|| RegistryError::UnknownCircuit(class.circuit.clone()))?;
    if spec.system != class.system {
        return Err(RegistryError::WrongSystem { circuit: class.circuit.clone(), system: class.system });
    }
    if !(spec.min_size_log2..=spec.max_size_log2).contains(&class.size_log2) {
        return Err(RegistryError::UnsupportedSize {
            circuit: class.circuit.clone(),
            got: class.size_log2,
            min: spec.min_size_log2,
            max: spec.max_size_log2,
        });
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(circuit: &str, size_log2: u8) -> ProofClass {
        ProofClass { system: ProofSystem::Groth16Bn254, circuit: circuit.into(), size_log2, deadline_secs: 600 }
    }

    #[test]
    fn hash_chain_is_traded_from_2_pow_10_to_2_pow_20() {
        assert!(lookup(&class("hash-chain", 10)).is_ok());
        assert!(lookup(&class("hash-chain", 20)).is_ok());
        assert!(matches!(lookup(&class("hash-chain", 9)), Err(RegistryError::UnsupportedSize { .. })));
        assert!(matches!(lookup(&class("hash-chain", 21)), Err(RegistryError::UnsupportedSize { .. })));
    }

    #[test]
    fn unknown_circuits_name_the_known_ones() {
        let err = lookup(&class("sha256", 12)).unwrap_err();
        assert_eq!(err.to_string(), "unknown circuit `sha256`; known circuits: hash-chain");
    }
}
