//! snarkjs interop and the generated Solidity verifier, end to end.
//!
//! For each circom/snarkjs fixture in `tests/fixtures/circom/<name>/` (`vk.json`, `proof.json`,
//! `public.json`, made by snarkjs):
//! 1. [`pcx_prover_pool::snarkjs`] parses the files, ark-groth16 accepts snarkjs' proof, and
//!    writing the parsed key back gives the file's JSON (`vk_alphabeta_12` included);
//! 2. [`pcx_prover_pool::solidity::verifier_contract`] is compiled with the npm `solc` in the
//!    fixtures' `node_modules` (standard JSON, through `node`), deployed in revm (in-memory
//!    database; BN254 precompiles by substrate-bn, not arkworks), and `verifyProof` returns true
//!    for the real proof and false, without reverting, for tampered ones.
//!
//! The same contract test runs on keys and proofs made by arkworks (two public inputs, and none),
//! so pcx's own proofs verify on chain too. Needs `node` and `npm ci` in
//! `prover-pool/tests/fixtures/circom`; without them the tests fail and say so.

// Test code: a failed unwrap is a failed test (clippy only sees `#[test]` functions as tests).
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ark_bn254::{Bn254, Fq, Fr, G1Affine};
use ark_ec::{AffineRepr, CurveGroup};
use ark_ff::{One, PrimeField};
use ark_groth16::{Groth16, Proof, VerifyingKey};
use ark_relations::lc;
use ark_relations::r1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};
use ark_snark::SNARK;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use revm::context::result::{ExecutionResult, Output};
use revm::context::TxEnv;
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::{keccak256, Address, Bytes, U256};
use revm::{Context, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext};
use serde_json::Value;

use pcx_prover_pool::snarkjs::{
    proof_from_json, proof_to_json, public_signals_from_json, public_signals_to_json, verifying_key_from_json, verifying_key_to_json,
};
use pcx_prover_pool::solidity::{calldata, function_signature, verifier_contract};

/// The circom fixtures (one folder each).
const FIXTURES: [&str; 2] = ["multiplier", "poseidon_chain"];

/// Gas for each transaction: plenty (a verification takes about 0.2 M), and under the 2^24
/// per-transaction cap of recent forks.
const GAS_LIMIT: u64 = 10_000_000;

fn circom_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/circom")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e} (see tests/fixtures/circom)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {} is not JSON: {e}", path.display()))
}

/// A fixture's three files, raw and parsed.
struct Fixture {
    name: &'static str,
    vk_json: Value,
    proof_json: Value,
    vk: VerifyingKey<Bn254>,
    proof: Proof<Bn254>,
    signals: Vec<Fr>,
}

fn fixture(name: &'static str) -> Fixture {
    let dir = circom_dir().join(name);
    let vk_json = read_json(&dir.join("vk.json"));
    let proof_json = read_json(&dir.join("proof.json"));
    let public_json = read_json(&dir.join("public.json"));
    let vk = verifying_key_from_json(&vk_json).unwrap_or_else(|e| panic!("{name}/vk.json: {e}"));
    let proof = proof_from_json(&proof_json).unwrap_or_else(|e| panic!("{name}/proof.json: {e}"));
    let signals = public_signals_from_json(&public_json).unwrap_or_else(|e| panic!("{name}/public.json: {e}"));
    Fixture { name, vk_json, proof_json, vk, proof, signals }
}

#[test]
fn snarkjs_fixtures_parse_verify_in_arkworks_and_write_back_identically() {
    for name in FIXTURES {
        let f = fixture(name);
        assert_eq!(f.signals.len() + 1, f.vk.gamma_abc_g1.len(), "{name}: one IC point per signal, plus one");
        let pvk = ark_groth16::prepare_verifying_key(&f.vk);
        assert!(
            Groth16::<Bn254>::verify_proof(&pvk, &f.proof, &f.signals).unwrap(),
            "{name}: snarkjs' proof is refused"
        );
        let mut wrong = f.signals.clone();
        wrong[0] += Fr::one();
        assert!(!Groth16::<Bn254>::verify_proof(&pvk, &f.proof, &wrong).unwrap(), "{name}: a wrong signal is accepted");

        // Same numbers as snarkjs wrote, vk_alphabeta_12 (our pairing, in our layout) included.
        assert_eq!(verifying_key_to_json(&f.vk), f.vk_json, "{name}/vk.json");
        assert_eq!(proof_to_json(&f.proof), f.proof_json, "{name}/proof.json");
    }
}

// ----- compiling with solc (npm) -----

/// Compiles `source` with the fixtures' npm `solc` (standard JSON, optimizer on) and returns the
/// creation bytecode. Fails on any error or warning.
fn compile(source: &str) -> Vec<u8> {
    let dir = circom_dir();
    assert!(
        dir.join("node_modules/solc").is_dir(),
        "{} has no node_modules/solc: run `npm ci` in prover-pool/tests/fixtures/circom",
        dir.display()
    );
    const SCRIPT: &str = r#"
        const solc = require("solc");
        const source = require("fs").readFileSync(0, "utf8");
        const input = {
            language: "Solidity",
            sources: { "Groth16Verifier.sol": { content: source } },
            settings: {
                optimizer: { enabled: true, runs: 200 },
                outputSelection: { "*": { "*": ["evm.bytecode.object"] } },
            },
        };
        const output = JSON.parse(solc.compile(JSON.stringify(input)));
        const messages = (output.errors || []).map((e) => e.formattedMessage);
        if (messages.length > 0) {
            process.stderr.write(messages.join("\n"));
            process.exit(1);
        }
        const contract = output.contracts["Groth16Verifier.sol"]["Groth16Verifier"];
        process.stdout.write(solc.version() + "\n" + contract.evm.bytecode.object);
    "#;
    let mut child = Command::new("node")
        .arg("-e")
        .arg(SCRIPT)
        .current_dir(&dir)
        .env("NODE_PATH", dir.join("node_modules"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` (needed to compile Solidity with npm solc): {e}"));
    child.stdin.take().unwrap().write_all(source.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "solc refused the generated contract (errors or warnings):\n{stderr}\n\n{source}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (version, bytecode) = stdout.split_once('\n').unwrap();
    assert!(version.starts_with("0.8."), "unexpected solc {version}");
    hex::decode(bytecode.trim()).unwrap()
}

// ----- the EVM -----

type Evm = revm::MainnetEvm<revm::handler::MainnetContext<CacheDB<EmptyDB>>>;

const DEPLOYER: Address = Address::repeat_byte(0x11);

/// A fresh in-memory chain with the contract deployed; returns it and the contract's address.
fn deploy(bytecode: Vec<u8>) -> (Evm, Address) {
    let mut evm = Context::mainnet().with_db(CacheDB::<EmptyDB>::default()).build_mainnet();
    let tx = TxEnv::builder()
        .caller(DEPLOYER)
        .create()
        .data(Bytes::from(bytecode))
        .gas_limit(GAS_LIMIT)
        .nonce(0)
        .build()
        .unwrap();
    let result = evm.transact_commit(tx).unwrap();
    let address = match &result {
        ExecutionResult::Success { output: Output::Create(_, Some(address)), .. } => *address,
        other => panic!("deploying the verifier failed: {other:?}"),
    };
    (evm, address)
}

/// What a call of `verifyProof` did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// It returned this bool; with the gas the transaction used.
    Returned(bool, u64),
    /// It reverted or halted (never acceptable for this contract).
    Failed(String),
}

/// Calls the contract with `input` (not committed, so every call sees the freshly deployed state).
fn call(evm: &mut Evm, contract: Address, input: Vec<u8>) -> Outcome {
    let tx = TxEnv::builder()
        .caller(DEPLOYER)
        .call(contract)
        .data(Bytes::from(input))
        .gas_limit(GAS_LIMIT)
        .nonce(1)
        .build()
        .unwrap();
    match evm.transact(tx).unwrap().result {
        ExecutionResult::Success { output: Output::Call(bytes), gas, .. } => {
            assert_eq!(bytes.len(), 32, "verifyProof must return one ABI word: {bytes:?}");
            let word = U256::from_be_slice(&bytes);
            assert!(word <= U256::from(1u8), "not an ABI bool: {word}");
            Outcome::Returned(word == U256::from(1u8), gas.tx_gas_used())
        }
        other => Outcome::Failed(format!("{other:?}")),
    }
}

/// The ABI encoding of a `verifyProof` call from [`calldata`]'s JSON: the selector, then every
/// argument's words in order (all the arguments are static, so there are no offsets).
fn encode_call(args: &Value, n_public: usize) -> Vec<u8> {
    fn words(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Array(items) => items.iter().for_each(|item| words(item, out)),
            Value::String(text) => {
                let digits = text.strip_prefix("0x").unwrap();
                assert_eq!(digits.len(), 64, "not a 32-byte word: {text}");
                out.extend(hex::decode(digits).unwrap());
            }
            other => panic!("not a hex word: {other}"),
        }
    }
    let mut out = keccak256(function_signature(n_public).as_bytes())[..4].to_vec();
    words(args, &mut out);
    assert_eq!(out.len(), 4 + 32 * (8 + n_public));
    out
}

/// Replaces one argument word (a JSON pointer into the calldata JSON) by `value`.
fn with_word(args: &Value, pointer: &str, value: U256) -> Value {
    let mut args = args.clone();
    *args.pointer_mut(pointer).unwrap() = Value::String(format!("0x{}", hex::encode(value.to_be_bytes::<32>())));
    args
}

fn word_at(args: &Value, pointer: &str) -> U256 {
    let text = args.pointer(pointer).unwrap().as_str().unwrap();
    U256::from_str_radix(text.strip_prefix("0x").unwrap(), 16).unwrap()
}

fn modulus<F: PrimeField>() -> U256 {
    U256::from_be_slice(&ark_ff::BigInteger::to_bytes_be(&F::MODULUS))
}

/// Deploys the contract for `vk` and checks that `proof` verifies and tampered versions do not;
/// returns the gas of the successful verification transaction.
fn check_contract(label: &str, vk: &VerifyingKey<Bn254>, proof: &Proof<Bn254>, signals: &[Fr]) -> u64 {
    let source = verifier_contract(vk);
    let bytecode = compile(&source);
    let (mut evm, contract) = deploy(bytecode);
    let n = signals.len();
    let args = calldata(proof, signals);
    let verify = |evm: &mut Evm, args: &Value| call(evm, contract, encode_call(args, n));

    let gas = match verify(&mut evm, &args) {
        Outcome::Returned(true, gas) => gas,
        other => panic!("{label}: the real proof must verify in the EVM: {other:?}"),
    };
    let refused = |evm: &mut Evm, args: &Value, what: &str| match verify(evm, args) {
        Outcome::Returned(false, _) => {}
        other => panic!("{label}: {what}: expected verifyProof to return false, got {other:?}"),
    };

    let q = modulus::<Fq>();
    let r = modulus::<Fr>();
    // Another valid curve point for A (A + G).
    let other_a = (proof.a.into_group() + G1Affine::generator()).into_affine();
    refused(&mut evm, &calldata(&Proof { a: other_a, ..proof.clone() }, signals), "pi_a replaced by another point");
    // A off the curve: the pairing precompile fails, and the contract returns false.
    refused(&mut evm, &with_word(&args, "/0/1", word_at(&args, "/0/1") ^ U256::from(1u8)), "pi_a off the curve");
    // The same coordinates plus q: the same point modulo q, but never reduced.
    refused(&mut evm, &with_word(&args, "/0/1", word_at(&args, "/0/1") + q), "pi_a.y + q");
    refused(&mut evm, &with_word(&args, "/1/0/0", word_at(&args, "/1/0/0") + q), "pi_b.x.c1 + q");
    refused(&mut evm, &with_word(&args, "/2/0", word_at(&args, "/2/0") + q), "pi_c.x + q");
    refused(&mut evm, &with_word(&args, "/0/0", U256::MAX), "pi_a.x = 2^256 - 1");
    // B with its coordinates in arkworks' (real first) order: not the point (and off the curve).
    let mut swapped = args.clone();
    for i in 0..2 {
        let pair = swapped[1][i].as_array_mut().unwrap();
        pair.swap(0, 1);
    }
    refused(&mut evm, &swapped, "pi_b real part first");
    // C replaced by A.
    refused(&mut evm, &calldata(&Proof { c: proof.a, ..proof.clone() }, signals), "pi_c replaced by pi_a");
    for i in 0..n {
        let mut plus_one = signals.to_vec();
        plus_one[i] += Fr::one();
        refused(&mut evm, &calldata(proof, &plus_one), &format!("public signal {i} + 1"));
        let pointer = format!("/3/{i}");
        // s + r: the same field element, but not below r.
        refused(&mut evm, &with_word(&args, &pointer, word_at(&args, &pointer) + r), &format!("public signal {i} + r"));
        refused(&mut evm, &with_word(&args, &pointer, r), &format!("public signal {i} = r"));
    }
    // A call with the wrong selector or length is not a verification: it reverts (no fallback).
    let mut short = encode_call(&args, n);
    short.truncate(short.len() - 1);
    assert!(matches!(call(&mut evm, contract, short), Outcome::Failed(_)), "{label}: truncated calldata must revert");
    // And the real proof still verifies on the same chain.
    assert!(matches!(verify(&mut evm, &args), Outcome::Returned(true, _)));
    // Intrinsic gas: 21 000 per transaction, 16 per non-zero and 4 per zero calldata byte (EIP-2028).
    let input = encode_call(&args, n);
    let intrinsic = 21_000 + input.iter().map(|&b| if b == 0 { 4 } else { 16 }).sum::<u64>();
    println!(
        "{label}: verifyProof with {n} public signal(s) accepted; transaction gas {gas} \
         (execution {}, intrinsic {intrinsic})",
        gas - intrinsic
    );
    gas
}

#[test]
fn the_generated_verifier_accepts_snarkjs_proofs_and_refuses_tampered_ones() {
    for name in FIXTURES {
        let f = fixture(name);
        let gas = check_contract(f.name, &f.vk, &f.proof, &f.signals);
        // The pairing of four pairs alone costs 45 000 + 4 * 34 000 = 181 000 gas (EIP-1108).
        assert!((181_000..400_000).contains(&gas), "{name}: gas {gas}");
    }
}

// ----- arkworks-made keys and proofs -----

/// Knowledge of a, b with a * b = c and a + b = d, with `public` of c, d public (the rest are
/// witnesses, constrained alike).
#[derive(Clone)]
struct MulAdd {
    a: Option<Fr>,
    b: Option<Fr>,
    public: bool,
}

impl ConstraintSynthesizer<Fr> for MulAdd {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let missing = || SynthesisError::AssignmentMissing;
        let (a, b) = (self.a, self.b);
        let product = || Ok(a.ok_or_else(missing)? * b.ok_or_else(missing)?);
        let sum = || Ok(a.ok_or_else(missing)? + b.ok_or_else(missing)?);
        let (c, d) = if self.public {
            (cs.new_input_variable(product)?, cs.new_input_variable(sum)?)
        } else {
            (cs.new_witness_variable(product)?, cs.new_witness_variable(sum)?)
        };
        let a = cs.new_witness_variable(|| a.ok_or_else(missing))?;
        let b = cs.new_witness_variable(|| b.ok_or_else(missing))?;
        cs.enforce_constraint(lc!() + a, lc!() + b, lc!() + c)?;
        cs.enforce_constraint(lc!() + a + b, lc!() + ark_relations::r1cs::Variable::One, lc!() + d)?;
        Ok(())
    }
}

#[test]
fn the_generated_verifier_accepts_arkworks_proofs() {
    for public in [true, false] {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let (pk, vk) = Groth16::<Bn254>::circuit_specific_setup(MulAdd { a: None, b: None, public }, &mut rng).unwrap();
        let (a, b) = (Fr::from(6u64), -Fr::from(7u64));
        let proof = Groth16::<Bn254>::prove(&pk, MulAdd { a: Some(a), b: Some(b), public }, &mut rng).unwrap();
        let signals = if public { vec![a * b, a + b] } else { vec![] };
        let label = if public { "arkworks, 2 public inputs" } else { "arkworks, no public inputs" };
        check_contract(label, &vk, &proof, &signals);

        // The same key through snarkjs' JSON gives the same contract.
        let through_json = verifying_key_from_json(&verifying_key_to_json(&vk)).unwrap();
        assert_eq!(verifier_contract(&through_json), verifier_contract(&vk));
    }
}

#[test]
fn a_key_without_ic_points_gives_a_contract_that_refuses_everything() {
    let f = fixture("multiplier");
    let vk = VerifyingKey { gamma_abc_g1: vec![], ..f.vk };
    let (mut evm, contract) = deploy(compile(&verifier_contract(&vk)));
    let outcome = call(&mut evm, contract, encode_call(&calldata(&f.proof, &[]), 0));
    assert!(matches!(outcome, Outcome::Returned(false, _)), "{outcome:?}");
}

// ----- proofs made by pcx's circom prover -----

#[test]
fn proofs_made_by_pcx_for_circom_circuits_pass_the_generated_verifier_and_snarkjs() {
    use pcx_prover_pool::circom::{self, zkey::Zkey, CircomCircuit};
    for name in FIXTURES {
        let dir = circom_dir().join(name);
        let read = |file: String| std::fs::read(dir.join(file)).unwrap();
        let loaded = CircomCircuit::load(&read(format!("{name}.r1cs")), &read(format!("{name}.wasm"))).unwrap();
        let zkey = Zkey::parse(&read(format!("{name}.zkey"))).unwrap();
        let witness = loaded.witness(&read_json(&dir.join("input.json"))).unwrap();
        let signals = loaded.public_signals(&witness);
        let proof =
            circom::prove(&loaded, &zkey, &witness, &pcx_prover_pool::msm::ArkworksMsm, &mut rand::rngs::OsRng).unwrap();
        check_contract(&format!("{name}, proved by pcx"), &zkey.proving_key.vk, &proof, &signals);

        // snarkjs' own verifier says OK to pcx's proof, with snarkjs' own vk.json.
        let scratch = std::env::temp_dir().join(format!("pcx-snarkjs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(scratch.join("proof.json"), proof_to_json(&proof).to_string()).unwrap();
        std::fs::write(scratch.join("public.json"), public_signals_to_json(&signals).to_string()).unwrap();
        let cli = circom_dir().join("node_modules/snarkjs/build/cli.cjs");
        assert!(cli.exists(), "snarkjs is missing: run `npm ci` in prover-pool/tests/fixtures/circom (.ci/run does)");
        let out = std::process::Command::new("node")
            .arg(&cli)
            .args(["groth16", "verify"])
            .arg(dir.join("vk.json"))
            .arg(scratch.join("public.json"))
            .arg(scratch.join("proof.json"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.contains("OK"), "{name}: snarkjs said {said}");
        std::fs::remove_dir_all(&scratch).ok();
    }
}
