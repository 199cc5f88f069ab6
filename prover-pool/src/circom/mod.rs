//! Circuits users bring: circom 2 circuits with snarkjs Groth16 setups over BN254.
//!
//! A circuit is three artifacts: the `.r1cs` (constraints, [`r1cs`]), the witness generator
//! `.wasm` ([`witness`]) and the `.zkey` (proving and verifying key, [`zkey`]). From an input
//! (snarkjs' `input.json`) the witness generator computes every wire; [`CircomCircuit::witness`]
//! also checks every constraint against the r1cs, so an input that cannot be proved is known
//! before anyone tries. [`prove`] maps the witness onto snarkjs' QAP ([`qap`]) and runs the same
//! Groth16 group computations as the built-in circuit, every MSM through an
//! [`MsmBackend`](crate::msm::MsmBackend); proofs verify with ark-groth16 against the zkey's
//! verifying key, and with snarkjs.
//!
//! [`CircomSetup::check`] is what registration checks between the artifacts: one field (BN254),
//! the same wire and public-signal counts in r1cs and zkey, a domain that fits the constraints,
//! and a witness generator for the same circuit (its witness and input sizes).

pub mod bench;
pub mod binfile;
pub mod qap;
pub mod r1cs;
pub mod witness;
pub mod zkey;

use std::fmt;

use ark_bn254::{Bn254, Fr};
use ark_ff::UniformRand;
use ark_groth16::Proof;
use rand::{CryptoRng, RngCore};
use serde::Serialize;
use serde_json::Value;

use crate::groth16::{assemble_proof, ProveError};
use crate::msm::MsmBackend;
use r1cs::R1cs;
use witness::{WitnessError, WitnessGenerator};
use zkey::Zkey;

/// One of the files a circuit is registered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Artifact {
    /// The constraint system.
    R1cs,
    /// The witness generator.
    Wasm,
    /// The Groth16 setup.
    Zkey,
    /// The sample input.
    SampleInput,
}

impl Artifact {
    /// The name used in the API (the multipart part and the artifact route).
    pub fn as_str(self) -> &'static str {
        match self {
            Artifact::R1cs => "r1cs",
            Artifact::Wasm => "wasm",
            Artifact::Zkey => "zkey",
            Artifact::SampleInput => "sample_input",
        }
    }
}

impl fmt::Display for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An artifact that is not what it must be, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{artifact}: {reason}")]
pub struct ArtifactError {
    /// Which file.
    pub artifact: Artifact,
    /// What is wrong, in words that say what to fix.
    pub reason: String,
}

impl ArtifactError {
    fn new(artifact: Artifact, reason: impl fmt::Display) -> Self {
        ArtifactError { artifact, reason: reason.to_string() }
    }
}

/// Why an input cannot be proved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The witness generator refused it (shape, unknown signal, a failing assert, ...).
    #[error(transparent)]
    Witness(#[from] WitnessError),
    /// The witness it gives breaks a constraint of the r1cs.
    #[error("the witness from this input breaks constraint {constraint} of the circuit's {constraints}")]
    Unsatisfied {
        /// Index of the first constraint broken.
        constraint: usize,
        /// Constraints in all.
        constraints: usize,
    },
}

/// A circuit's constraint system and witness generator: enough to turn an input into a checked
/// witness (what the exchange needs to accept a slot's input).
#[derive(Debug, Clone)]
pub struct CircomCircuit {
    /// The constraints.
    pub r1cs: R1cs,
    /// The witness generator.
    pub generator: WitnessGenerator,
}

/// What a circuit's artifacts say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CircuitShape {
    /// Constraints.
    pub constraints: u64,
    /// Wires (including the one).
    pub wires: u32,
    /// Public signals: outputs, then public inputs.
    pub public_signals: u32,
    /// Public outputs among them.
    pub public_outputs: u32,
    /// Private inputs.
    pub private_inputs: u32,
    /// log2 of the QAP domain (the proof class's size).
    pub size_log2: u8,
}

impl CircomCircuit {
    /// Parses the r1cs and compiles the witness generator, checking that they are one circuit.
    pub fn load(r1cs: &[u8], wasm: &[u8]) -> Result<CircomCircuit, ArtifactError> {
        let r1cs = R1cs::parse(r1cs).map_err(|e| ArtifactError::new(Artifact::R1cs, e))?;
        let generator = WitnessGenerator::new(wasm).map_err(|e| ArtifactError::new(Artifact::Wasm, e))?;
        if generator.witness_size != r1cs.wires {
            return Err(ArtifactError::new(
                Artifact::Wasm,
                format!(
                    "the witness generator computes {} wires but the r1cs has {}: both must come from the same \
                     circom compilation",
                    generator.witness_size, r1cs.wires
                ),
            ));
        }
        let inputs = r1cs.public_inputs + r1cs.private_inputs;
        if generator.input_size != inputs {
            return Err(ArtifactError::new(
                Artifact::Wasm,
                format!(
                    "the witness generator takes {} input values but the r1cs has {inputs}: both must come from the \
                     same circom compilation",
                    generator.input_size
                ),
            ));
        }
        Ok(CircomCircuit { r1cs, generator })
    }

    /// The size of the smallest domain snarkjs sets this circuit up on.
    pub fn domain_size(&self) -> u64 {
        (self.r1cs.constraints.len() as u64 + u64::from(self.r1cs.public_signals()) + 1).next_power_of_two()
    }

    /// The circuit's counts.
    pub fn shape(&self) -> CircuitShape {
        CircuitShape {
            constraints: self.r1cs.constraints.len() as u64,
            wires: self.r1cs.wires,
            public_signals: self.r1cs.public_signals(),
            public_outputs: self.r1cs.public_outputs,
            private_inputs: self.r1cs.private_inputs,
            size_log2: self.domain_size().trailing_zeros() as u8,
        }
    }

    /// The witness of `input`, checked against every constraint.
    pub fn witness(&self, input: &Value) -> Result<Vec<Fr>, InputError> {
        let witness = self.generator.compute(input)?;
        match self.r1cs.first_unsatisfied(&witness) {
            Some(constraint) => {
                Err(InputError::Unsatisfied { constraint, constraints: self.r1cs.constraints.len() })
            }
            None => Ok(witness),
        }
    }

    /// The public signals of a witness (outputs, then public inputs), what a proof is verified
    /// against.
    pub fn public_signals(&self, witness: &[Fr]) -> Vec<Fr> {
        witness.iter().skip(1).take(self.r1cs.public_signals() as usize).copied().collect()
    }
}

/// Checks between a circuit and a setup.
pub struct CircomSetup;

impl CircomSetup {
    /// Whether `zkey` was made for `circuit`'s shape (the sample proof checks the rest).
    pub fn check(circuit: &CircomCircuit, zkey: &Zkey) -> Result<(), ArtifactError> {
        let header = zkey.header;
        let mismatch = |what: &str, zkey_value: u64, r1cs_value: u64| {
            ArtifactError::new(
                Artifact::Zkey,
                format!(
                    "the zkey has {zkey_value} {what} but the r1cs has {r1cs_value}: set up the zkey from this r1cs \
                     (`snarkjs groth16 setup circuit.r1cs ...`)"
                ),
            )
        };
        if header.vars != circuit.r1cs.wires {
            return Err(mismatch("wires", header.vars.into(), circuit.r1cs.wires.into()));
        }
        if header.public != circuit.r1cs.public_signals() {
            return Err(mismatch("public signals", header.public.into(), circuit.r1cs.public_signals().into()));
        }
        if u64::from(header.domain_size) != circuit.domain_size() {
            return Err(mismatch("domain points", header.domain_size.into(), circuit.domain_size()));
        }
        Ok(())
    }
}

/// Proves `witness` (from [`CircomCircuit::witness`]) with the zkey's proving key, every MSM
/// through `backend`, blinded with fresh randomness from `rng`.
pub fn prove<R: RngCore + CryptoRng>(
    circuit: &CircomCircuit,
    zkey: &Zkey,
    witness: &[Fr],
    backend: &dyn MsmBackend,
    rng: &mut R,
) -> Result<Proof<Bn254>, ProveError> {
    let r = Fr::rand(rng);
    let s = Fr::rand(rng);
    prove_with_blinding(circuit, zkey, witness, backend, r, s)
}

fn prove_with_blinding(
    circuit: &CircomCircuit,
    zkey: &Zkey,
    witness: &[Fr],
    backend: &dyn MsmBackend,
    r: Fr,
    s: Fr,
) -> Result<Proof<Bn254>, ProveError> {
    if circuit.r1cs.first_unsatisfied(witness).is_some() {
        return Err(ProveError::Unsatisfied);
    }
    let h = qap::witness_map(&circuit.r1cs, witness, zkey.header.domain_size as usize)
        .map_err(|e| ProveError::Witness(e.to_string()))?;
    let public = circuit.r1cs.public_signals() as usize;
    assemble_proof(&zkey.proving_key, &witness[1..], public, &h, backend, r, s)
}
