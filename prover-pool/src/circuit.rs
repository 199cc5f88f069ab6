//! One entry point to the circuits the exchange trades: parse a slot's input, get a class's
//! verifying key, verify a proof against a slot's public inputs. The exchange goes through here
//! and never names a circuit; a new kind of circuit is a new [`Circuit`] variant.
//!
//! - [`Circuit::for_class`] resolves a proof class against the [registry](crate::registry).
//! - [`Circuit::parse_input`] checks what a buyer posts as a slot's input and gives its canonical
//!   text (what is stored and handed to provers).
//! - [`Circuit::verify`] decodes a submitted proof and checks it against the slot's public inputs
//!   (derived from the stored input); it returns the public signals a buyer reads with the proof.
//! - [`Circuit::warm`] loads (or makes) the verifying key ahead of the first proof.

use std::sync::Arc;

use ark_bn254::{Bn254, Fr};
use ark_groth16::PreparedVerifyingKey;

use pcx_domain::ProofClass;

use crate::encoding::{decode_proof, proof_points, ProofPoints};
use crate::field::{field_to_decimal, parse_field_element, FieldError};
use crate::hash_chain::{hash_chain_output, CIRCUIT_NAME};
use crate::keys::{KeyError, KeyStore};
use crate::registry::{lookup, RegistryError};

/// A tradeable circuit, resolved from a proof class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Circuit {
    /// The built-in benchmark circuit of size 2^size_log2; its input is the seed.
    HashChain {
        /// Size.
        size_log2: u8,
    },
}

/// Why a slot input is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not a field element (hash-chain's seed).
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// The outcome of checking a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The proof verifies; the public signals it proves, in circuit order (decimal strings).
    Valid {
        /// Public inputs.
        public_signals: Vec<String>,
    },
    /// Malformed or false.
    Invalid,
}

impl Circuit {
    /// The circuit of a class, or why it is not traded.
    pub fn for_class(class: &ProofClass) -> Result<Circuit, RegistryError> {
        let spec = lookup(class)?;
        match spec.name {
            CIRCUIT_NAME => Ok(Circuit::HashChain { size_log2: class.size_log2 }),
            other => Err(RegistryError::UnknownCircuit(other.to_owned())),
        }
    }

    /// Checks a posted input; returns its canonical text.
    pub fn parse_input(&self, text: &str) -> Result<String, InputError> {
        match self {
            Circuit::HashChain { .. } => Ok(field_to_decimal(&parse_field_element(text)?)),
        }
    }

    /// The public inputs a proof for stored input `input` must verify against.
    pub fn public_inputs(&self, input: &str) -> Result<Vec<Fr>, InputError> {
        match *self {
            Circuit::HashChain { size_log2 } => {
                let seed = parse_field_element(input)?;
                Ok(vec![seed, hash_chain_output(seed, size_log2)])
            }
        }
    }

    /// The verifying key (loaded or made once per store).
    pub fn verifying_key(&self, keys: &KeyStore) -> Result<Arc<PreparedVerifyingKey<Bn254>>, KeyError> {
        match *self {
            Circuit::HashChain { size_log2 } => keys.verifying_key(size_log2),
        }
    }

    /// Loads or makes the verifying key now, so that the first proof does not wait for it.
    pub fn warm(&self, keys: &KeyStore) -> Result<(), KeyError> {
        self.verifying_key(keys).map(|_| ())
    }

    /// Verifies `proof` (its wire text) for stored input `input`. A proof that does not decode is
    /// [`Verdict::Invalid`]; only a missing key is an error.
    pub fn verify(&self, keys: &KeyStore, input: &str, proof: &str) -> Result<Verdict, VerifyError> {
        let inputs = self.public_inputs(input).map_err(VerifyError::StoredInput)?;
        let pvk = self.verifying_key(keys)?;
        let valid = decode_proof(proof).is_ok_and(|proof| crate::groth16::verify(&pvk, &inputs, &proof));
        Ok(match valid {
            true => Verdict::Valid { public_signals: inputs.iter().map(field_to_decimal).collect() },
            false => Verdict::Invalid,
        })
    }

    /// How a delivered proof is encoded, and its points as decimal coordinates.
    pub fn describe_proof(&self, proof: &str) -> Option<(&'static str, ProofPoints)> {
        let decoded = decode_proof(proof).ok()?;
        Some(("groth16-bn254-arkworks-compressed", proof_points(&decoded)))
    }
}

/// Why a proof could not be checked (the exchange's problem, not the prover's).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The verifying key is unavailable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The stored input no longer parses.
    #[error("the slot's stored input is not valid: {0}")]
    StoredInput(InputError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_support::TempDir;
    use pcx_domain::ProofSystem;

    fn class(size_log2: u8) -> ProofClass {
        ProofClass { system: ProofSystem::Groth16Bn254, circuit: CIRCUIT_NAME.into(), size_log2, deadline_secs: 60 }
    }

    #[test]
    fn inputs_are_checked_and_canonical() {
        let circuit = Circuit::for_class(&class(10)).unwrap();
        assert_eq!(circuit.parse_input("007").unwrap(), "7");
        assert!(circuit.parse_input("-1").is_err());
        assert!(Circuit::for_class(&class(9)).is_err());
        let unknown = ProofClass { circuit: "sha256".into(), ..class(10) };
        assert!(Circuit::for_class(&unknown).is_err());
    }

    #[test]
    fn a_proof_verifies_against_its_own_input_only() {
        let dir = TempDir::new("circuit");
        let keys = KeyStore::new(dir.path());
        let circuit = Circuit::for_class(&class(10)).unwrap();
        let (proof, _) = crate::groth16::prove_hash_chain(&keys, 10, Fr::from(5u64), &crate::msm::ArkworksMsm).unwrap();
        let text = crate::encoding::encode_proof(&proof);
        let Verdict::Valid { public_signals } = circuit.verify(&keys, "5", &text).unwrap() else { panic!("valid") };
        assert_eq!(public_signals[0], "5");
        assert_eq!(public_signals.len(), 2);
        assert_eq!(circuit.verify(&keys, "6", &text).unwrap(), Verdict::Invalid);
        assert_eq!(circuit.verify(&keys, "5", "0x00").unwrap(), Verdict::Invalid);
        assert!(circuit.describe_proof(&text).is_some());
    }
}
