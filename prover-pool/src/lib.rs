//! The prover pool: the built-in circuit registry, the `hash-chain` circuit and its Groth16
//! prover with pluggable MSM backends, key management, the proof wire encoding and the prover
//! benchmark (and, with the settlement and GPU issues, the `pcx prover` agent).
//!
//! # Layout
//! - [`registry`]: the circuits and sizes the exchange trades; used by offers, quotes and settlement.
//! - [`circuit`]: the one entry point the exchange uses for any traded circuit: parse a slot input,
//!   get the verifying key, verify a proof against the slot's public inputs.
//! - [`circom`]: circuits users bring (circom 2 + snarkjs Groth16): r1cs and zkey readers, the
//!   witness generator (wasm, interpreted), snarkjs' witness map and the prover over our MSMs.
//! - [`hash_chain`]: the `hash-chain` circuit (R1CS, 2^k - 3 squaring rounds) and its native output.
//! - [`field`]: BN254 scalar field elements as strict decimal text (public inputs in the API).
//! - [`msm`]: the [`msm::MsmBackend`] trait every prover MSM goes through, the CPU backend and a
//!   counting diagnostics wrapper.
//! - [`icicle`]: the ICICLE backend (GPU MSMs), loaded at run time with `dlopen`; checked against
//!   arkworks before use.
//! - [`keys`]: Groth16 keys per size from files, or deterministic DEVELOPMENT keys generated and
//!   cached there (not for production).
//! - [`groth16`]: our Groth16 prover over the MSM backend, ark-groth16's verifier, and the
//!   `prove_hash_chain` / `verify_hash_chain` conveniences.
//! - [`encoding`]: the wire encoding of proofs (0x + hex of 128 compressed bytes) and their decimal
//!   affine coordinates.
//! - [`snarkjs`]: keys, proofs and public signals in snarkjs' JSON shapes (`vk.json`, `proof.json`,
//!   `public.json`), strictly validated.
//! - [`solidity`]: a Solidity verifier contract for a verifying key (snarkjs' `verifyProof` ABI,
//!   EVM precompiles 0x06-0x08) and the call's arguments for a proof.
//! - [`bench`](mod@bench): timing proofs per size for `pcx prover bench`.
//! - [`agent`]: the `pcx prover` agent (claims slot jobs, proves, submits; retries, shutdown) and
//!   the `pcx prover bench` command.

pub mod agent;
pub mod batch_verify;
pub mod bench;
pub mod circuit;
pub mod circom;
pub mod encoding;
pub mod field;
pub mod groth16;
pub mod hash_chain;
pub mod icicle;
pub mod keys;
pub mod msm;
pub mod registry;
pub mod snarkjs;
pub mod solidity;
