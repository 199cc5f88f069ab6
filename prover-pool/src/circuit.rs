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
//!
//! Two kinds of circuit: the built-in `hash-chain` (resolved from the class alone, keys from the
//! [`KeyStore`]) and circuits users registered ([`RegisteredCircuit`]: circom + snarkjs, whose
//! artifacts the exchange loads from its database). A slot's input is posted as [`PostedInput`]
//! and stored as the canonical text [`Circuit::parse_input`] returns; for a registered circuit
//! that text is [`StoredCircomInput`], which keeps the public signals the input fixes, so
//! verifying a delivered proof never re-runs the witness generator.

use std::sync::Arc;

use ark_bn254::{Bn254, Fr};
use ark_groth16::PreparedVerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use pcx_domain::ProofClass;

use crate::circom::CircomCircuit;
use crate::encoding::{decode_proof, proof_points, ProofPoints};
use crate::field::{field_to_decimal, parse_field_element, FieldError};
use crate::hash_chain::{hash_chain_output, CIRCUIT_NAME};
use crate::keys::{KeyError, KeyStore};
use crate::registry::{lookup, RegistryError};

/// A tradeable circuit, resolved from a proof class.
#[derive(Debug, Clone)]
pub enum Circuit {
    /// The built-in benchmark circuit of size 2^size_log2; its input is the seed.
    HashChain {
        /// Size.
        size_log2: u8,
    },
    /// A circuit a user registered; its input is a circom input object.
    Circom(Arc<RegisteredCircuit>),
}

/// A registered circuit as the exchange needs it: the constraints and witness generator (to
/// check inputs) and the verifying key (to check proofs).
#[derive(Debug)]
pub struct RegisteredCircuit {
    /// Its content address (64 lowercase hex digits), the class's `circuit`.
    pub id: String,
    /// Constraints and witness generator.
    pub circuit: CircomCircuit,
    /// The zkey's verifying key, prepared.
    pub verifying_key: Arc<PreparedVerifyingKey<Bn254>>,
}

/// What a buyer posts as a slot's input.
#[derive(Debug, Clone, PartialEq)]
pub enum PostedInput {
    /// hash-chain: the seed as decimal text (`{"public_input": "..."}`).
    PublicInput(String),
    /// A registered circuit: its input signals (`{"input": {...}}`, snarkjs' input.json).
    Signals(Value),
}

/// How a registered circuit's slot input is stored: the input as posted and the public
/// signals its witness has (outputs, then public inputs), decimal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCircomInput {
    /// The input signals.
    pub input: Value,
    /// The public signals the proof must verify against.
    pub public_signals: Vec<String>,
}

impl StoredCircomInput {
    /// Reads stored text back; `None` when it is not a registered circuit's input.
    pub fn parse(text: &str) -> Option<StoredCircomInput> {
        serde_json::from_str(text).ok()
    }
}

/// Why a slot input is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not a field element (hash-chain's seed).
    #[error("public_input: {0}")]
    Field(#[from] FieldError),
    /// The other kind of input for this circuit.
    #[error("{0}")]
    WrongKind(&'static str),
    /// The registered circuit cannot prove this input.
    #[error("input: {0}")]
    Unprovable(#[from] crate::circom::InputError),
    /// A stored input that does not read back (the exchange's fault).
    #[error("the stored input does not parse")]
    Stored,
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

/// A submitted proof, decoded ([`Circuit::claim`]).
#[derive(Debug, Clone)]
pub enum Claimed {
    /// It decodes; whether it is valid is still to be checked.
    Checkable(ProofClaim),
    /// It does not decode: invalid.
    Malformed,
}

/// A decoded proof with the statement it must prove and the key to check it with.
#[derive(Debug, Clone)]
pub struct ProofClaim {
    /// The circuit's verifying key.
    pub verifying_key: Arc<PreparedVerifyingKey<Bn254>>,
    /// The slot's public inputs.
    pub public_inputs: Vec<Fr>,
    /// The proof.
    pub proof: ark_groth16::Proof<Bn254>,
}

impl ProofClaim {
    /// The verdict once checked: valid with its public signals, or invalid.
    pub fn verdict(&self, valid: bool) -> Verdict {
        match valid {
            true => Verdict::Valid { public_signals: self.public_inputs.iter().map(field_to_decimal).collect() },
            false => Verdict::Invalid,
        }
    }
}

impl Circuit {
    /// The built-in circuit of a class, or why it is not one (registered circuits are resolved
    /// by the exchange, which holds their artifacts).
    pub fn for_class(class: &ProofClass) -> Result<Circuit, RegistryError> {
        let spec = lookup(class)?;
        match spec.name {
            CIRCUIT_NAME => Ok(Circuit::HashChain { size_log2: class.size_log2 }),
            other => Err(RegistryError::UnknownCircuit(other.to_owned())),
        }
    }

    /// Checks a posted input; returns its canonical text (what is stored and handed to provers).
    /// For a registered circuit this computes the witness and checks every constraint, which
    /// takes as long as the circuit's witness generation: call it off the async runtime.
    pub fn parse_input(&self, posted: &PostedInput) -> Result<String, InputError> {
        match (self, posted) {
            (Circuit::HashChain { .. }, PostedInput::PublicInput(text)) => {
                Ok(field_to_decimal(&parse_field_element(text)?))
            }
            (Circuit::HashChain { .. }, PostedInput::Signals(_)) => Err(InputError::WrongKind(
                "hash-chain takes `public_input` (the seed as a decimal string), not `input`",
            )),
            (Circuit::Circom(_), PostedInput::PublicInput(_)) => Err(InputError::WrongKind(
                "a registered circuit takes `input` (its input signals as an object, like snarkjs' input.json), \
                 not `public_input`",
            )),
            (Circuit::Circom(registered), PostedInput::Signals(input)) => {
                let witness = registered.circuit.witness(input)?;
                let public_signals =
                    registered.circuit.public_signals(&witness).iter().map(field_to_decimal).collect();
                let stored = StoredCircomInput { input: input.clone(), public_signals };
                serde_json::to_string(&stored).map_err(|_| InputError::Stored)
            }
        }
    }

    /// The public inputs a proof for stored input `input` must verify against.
    pub fn public_inputs(&self, input: &str) -> Result<Vec<Fr>, InputError> {
        match self {
            Circuit::HashChain { size_log2 } => {
                let seed = parse_field_element(input)?;
                Ok(vec![seed, hash_chain_output(seed, *size_log2)])
            }
            Circuit::Circom(_) => {
                let stored = StoredCircomInput::parse(input).ok_or(InputError::Stored)?;
                stored
                    .public_signals
                    .iter()
                    .map(|signal| parse_field_element(signal).map_err(|_| InputError::Stored))
                    .collect()
            }
        }
    }

    /// The verifying key (loaded or made once per store; a registered circuit carries its own).
    pub fn verifying_key(&self, keys: &KeyStore) -> Result<Arc<PreparedVerifyingKey<Bn254>>, KeyError> {
        match self {
            Circuit::HashChain { size_log2 } => keys.verifying_key(*size_log2),
            Circuit::Circom(registered) => Ok(Arc::clone(&registered.verifying_key)),
        }
    }

    /// Loads or makes the verifying key now, so that the first proof does not wait for it.
    pub fn warm(&self, keys: &KeyStore) -> Result<(), KeyError> {
        self.verifying_key(keys).map(|_| ())
    }

    /// Verifies `proof` (its wire text) for stored input `input`. A proof that does not decode is
    /// [`Verdict::Invalid`]; only a missing key is an error.
    pub fn verify(&self, keys: &KeyStore, input: &str, proof: &str) -> Result<Verdict, VerifyError> {
        Ok(match self.claim(keys, input, proof)? {
            Claimed::Checkable(claim) => {
                let valid = crate::groth16::verify(&claim.verifying_key, &claim.public_inputs, &claim.proof);
                claim.verdict(valid)
            }
            Claimed::Malformed => Verdict::Invalid,
        })
    }

    /// What a submitted proof claims, decoded, ready to be verified alone or in a batch
    /// ([`crate::batch_verify`]) with other claims under the same key. Decoding checks that the
    /// points are on the curve and in the right subgroup; a proof that does not decode is
    /// [`Claimed::Malformed`]; only a missing key is an error.
    pub fn claim(&self, keys: &KeyStore, input: &str, proof: &str) -> Result<Claimed, VerifyError> {
        let public_inputs = self.public_inputs(input).map_err(VerifyError::StoredInput)?;
        let verifying_key = self.verifying_key(keys)?;
        Ok(match decode_proof(proof) {
            Ok(proof) => Claimed::Checkable(ProofClaim { verifying_key, public_inputs, proof }),
            Err(_) => Claimed::Malformed,
        })
    }

    /// How a delivered proof is encoded, and its points as decimal coordinates (the same for
    /// every circuit: all are Groth16 over BN254).
    pub fn describe_proof(proof: &ark_groth16::Proof<Bn254>) -> (&'static str, ProofPoints) {
        ("groth16-bn254-arkworks-compressed", proof_points(proof))
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
        let posted = |text: &str| PostedInput::PublicInput(text.into());
        assert_eq!(circuit.parse_input(&posted("007")).unwrap(), "7");
        assert!(circuit.parse_input(&posted("-1")).is_err());
        assert!(matches!(
            circuit.parse_input(&PostedInput::Signals(serde_json::json!({"a": 1}))),
            Err(InputError::WrongKind(_))
        ));
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
        let (encoding, _) = Circuit::describe_proof(&decode_proof(&text).unwrap());
        assert_eq!(encoding, "groth16-bn254-arkworks-compressed");
    }

    #[test]
    fn a_registered_circuit_checks_inputs_and_verifies_against_the_stored_signals() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/circom/multiplier");
        let read = |file: &str| std::fs::read(dir.join(file)).unwrap();
        let loaded = CircomCircuit::load(&read("multiplier.r1cs"), &read("multiplier.wasm")).unwrap();
        let zkey = crate::circom::zkey::Zkey::parse(&read("multiplier.zkey")).unwrap();
        let registered = RegisteredCircuit {
            id: "ab".repeat(32),
            circuit: loaded.clone(),
            verifying_key: Arc::new(ark_groth16::prepare_verifying_key(&zkey.proving_key.vk)),
        };
        let circuit = Circuit::Circom(Arc::new(registered));
        let input = serde_json::json!({"a": "3", "b": "11", "c": "7"});
        let stored = circuit.parse_input(&PostedInput::Signals(input.clone())).unwrap();
        assert_eq!(StoredCircomInput::parse(&stored).unwrap().public_signals, ["40", "7"]);
        let unprovable = circuit.parse_input(&PostedInput::Signals(serde_json::json!({"a": "0", "b": "1", "c": "1"})));
        assert!(matches!(unprovable, Err(InputError::Unprovable(_))), "{unprovable:?}");
        assert!(matches!(circuit.parse_input(&PostedInput::PublicInput("5".into())), Err(InputError::WrongKind(_))));

        let witness = loaded.witness(&input).unwrap();
        let proof = crate::circom::prove(&loaded, &zkey, &witness, &crate::msm::ArkworksMsm, &mut rand::rngs::OsRng).unwrap();
        let text = crate::encoding::encode_proof(&proof);
        let keys = KeyStore::new(std::env::temp_dir());
        let Verdict::Valid { public_signals } = circuit.verify(&keys, &stored, &text).unwrap() else { panic!("valid") };
        assert_eq!(public_signals, ["40", "7"]);
        let other = circuit.parse_input(&PostedInput::Signals(serde_json::json!({"a": "3", "b": "12", "c": "7"}))).unwrap();
        assert_eq!(circuit.verify(&keys, &other, &text).unwrap(), Verdict::Invalid);
    }
}
