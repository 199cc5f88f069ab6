//! circom circuits end to end against the committed fixtures (compiled with circom 2 and set up
//! with snarkjs, see `tests/fixtures/circom/README.md`): artifacts load and agree, inputs give
//! the witness snarkjs computes, unprovable inputs are refused, our proofs verify against the
//! snarkjs key, and broken artifacts are refused with the artifact named.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use ark_bn254::Fr;
use ark_ff::One;
use ark_groth16::{prepare_verifying_key, Groth16};
use pcx_prover_pool::circom::witness::WitnessError;
use pcx_prover_pool::circom::zkey::Zkey;
use pcx_prover_pool::circom::{self, Artifact, CircomCircuit, CircomSetup, InputError};
use pcx_prover_pool::field::parse_field_element;
use pcx_prover_pool::msm::{ArkworksMsm, CountingMsm};
use serde_json::{json, Value};

fn fixture(circuit: &str, file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/circom").join(circuit).join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_fixture(circuit: &str, file: &str) -> Value {
    serde_json::from_slice(&fixture(circuit, file)).expect("fixture JSON")
}

fn load(circuit: &str) -> (CircomCircuit, Zkey) {
    let loaded = CircomCircuit::load(
        &fixture(circuit, &format!("{circuit}.r1cs")),
        &fixture(circuit, &format!("{circuit}.wasm")),
    )
    .expect("fixture loads");
    let zkey = Zkey::parse(&fixture(circuit, &format!("{circuit}.zkey"))).expect("fixture zkey");
    CircomSetup::check(&loaded, &zkey).expect("fixture artifacts agree");
    (loaded, zkey)
}

fn public_json(circuit: &str) -> Vec<Fr> {
    let values = json_fixture(circuit, "public.json");
    values.as_array().expect("array").iter().map(|v| parse_field_element(v.as_str().expect("string")).unwrap()).collect()
}

#[test]
fn fixtures_have_the_shapes_snarkjs_reports() {
    let (multiplier, zkey) = load("multiplier");
    let shape = multiplier.shape();
    assert_eq!((shape.constraints, shape.wires, shape.public_signals, shape.private_inputs), (7, 11, 2, 2));
    assert_eq!(shape.size_log2, 4);
    assert_eq!(zkey.header.domain_size, 16);
    let (poseidon, zkey) = load("poseidon_chain");
    let shape = poseidon.shape();
    assert_eq!((shape.constraints, shape.wires, shape.public_signals, shape.private_inputs), (2068, 2072, 3, 1));
    assert_eq!((shape.size_log2, zkey.header.domain_size), (12, 4096));
    assert!(poseidon.generator.circom_version >= 2);
    assert_eq!(poseidon.generator.circom_version_full, "2.2.2", "circom2 0.2.22 is circom 2.2.2");
}

#[test]
fn witnesses_match_snarkjs_and_proofs_verify_against_its_key() {
    for circuit in ["multiplier", "poseidon_chain"] {
        let (loaded, zkey) = load(circuit);
        let witness = loaded.witness(&json_fixture(circuit, "input.json")).expect("sample input is provable");
        assert_eq!(witness[0], Fr::one(), "{circuit}: wire 0 is the one");
        let public = loaded.public_signals(&witness);
        assert_eq!(public, public_json(circuit), "{circuit}: the public signals snarkjs computed");

        let counting = CountingMsm::new(ArkworksMsm);
        let proof = circom::prove(&loaded, &zkey, &witness, &counting, &mut rand::rngs::OsRng).expect("proof");
        assert!(counting.g1_calls() >= 4 && counting.g2_calls() >= 1, "every MSM goes through the backend");
        let pvk = prepare_verifying_key(&zkey.proving_key.vk);
        assert!(Groth16::<ark_bn254::Bn254>::verify_proof(&pvk, &proof, &public).unwrap(), "{circuit}: proof verifies");
        let mut wrong = public.clone();
        wrong[0] += Fr::one();
        assert!(!Groth16::<ark_bn254::Bn254>::verify_proof(&pvk, &proof, &wrong).unwrap(), "{circuit}: bound to its signals");
    }
}

#[test]
fn unprovable_inputs_are_refused_with_the_reason() {
    let (multiplier, _) = load("multiplier");
    let err = multiplier.witness(&json_fixture("multiplier", "unprovable_input.json")).unwrap_err();
    let InputError::Witness(WitnessError::Rejected(reason)) = &err else { panic!("{err:?}") };
    assert!(reason.contains("Multiplier") && reason.contains("line"), "names the template and line: {reason}");

    let (poseidon, _) = load("poseidon_chain");
    let err = poseidon.witness(&json_fixture("poseidon_chain", "wrong_shape_input.json")).unwrap_err();
    assert!(matches!(err, InputError::Witness(WitnessError::MissingInputs { given: 2, needed: 3 })), "{err:?}");
    let err = poseidon.witness(&json!({"in": ["1"], "salt": "1"})).unwrap_err();
    assert!(matches!(err, InputError::Witness(WitnessError::WrongLength { expected: 2, got: 1, .. })), "{err:?}");
    let err = poseidon.witness(&json!({"in": ["1", "2"], "salt": "1", "pepper": "2"})).unwrap_err();
    assert_eq!(err.to_string(), "the circuit has no input signal `pepper`");
    let err = poseidon.witness(&json!({"in": ["1", "x"], "salt": "1"})).unwrap_err();
    assert!(err.to_string().contains("`in`"), "{err}");
}

#[test]
fn a_witness_that_breaks_a_constraint_is_never_proved() {
    let (multiplier, zkey) = load("multiplier");
    let mut witness = multiplier.witness(&json_fixture("multiplier", "input.json")).unwrap();
    // Claim another output: the constraint out = ab + c no longer holds.
    witness[1] += Fr::one();
    assert!(multiplier.r1cs.first_unsatisfied(&witness).is_some());
    let counting = CountingMsm::new(ArkworksMsm);
    assert!(circom::prove(&multiplier, &zkey, &witness, &counting, &mut rand::rngs::OsRng).is_err());
    assert_eq!(counting.g1_calls() + counting.g2_calls(), 0);
}

#[test]
fn broken_artifacts_are_refused_naming_the_artifact() {
    let r1cs = fixture("multiplier", "multiplier.r1cs");
    let wasm = fixture("multiplier", "multiplier.wasm");
    let zkey = fixture("multiplier", "multiplier.zkey");

    let truncated = CircomCircuit::load(&r1cs[..r1cs.len() - 5], &wasm).unwrap_err();
    assert_eq!(truncated.artifact, Artifact::R1cs, "{truncated}");
    let swapped = CircomCircuit::load(&wasm, &r1cs).unwrap_err();
    assert_eq!(swapped.artifact, Artifact::R1cs, "{swapped}");
    let not_wasm = CircomCircuit::load(&r1cs, &r1cs).unwrap_err();
    assert_eq!(not_wasm.artifact, Artifact::Wasm, "{not_wasm}");
    assert!(Zkey::parse(&zkey[..zkey.len() - 1]).is_err());
    assert!(Zkey::parse(&r1cs).is_err());

    // A wasm of another circuit.
    let other_wasm = fixture("poseidon_chain", "poseidon_chain.wasm");
    let err = CircomCircuit::load(&r1cs, &other_wasm).unwrap_err();
    assert_eq!(err.artifact, Artifact::Wasm);
    assert!(err.reason.contains("same circom compilation"), "{err}");

    // A zkey of another circuit.
    let (poseidon, _) = load("poseidon_chain");
    let err = CircomSetup::check(&poseidon, &Zkey::parse(&zkey).unwrap()).unwrap_err();
    assert_eq!(err.artifact, Artifact::Zkey);
    assert!(err.reason.contains("wires"), "{err}");

    // A point moved off the curve: flip a byte inside alpha1 (the header, after the two primes
    // and three counts), which is checked on load.
    let mut bad = zkey.clone();
    let at = find(&bad, &[2, 0, 0, 0]) + 12 + 4 + 32 + 4 + 32 + 12 + 3;
    bad[at] ^= 0x55;
    let err = Zkey::parse(&bad).unwrap_err();
    assert!(err.to_string().contains("alpha1") || err.to_string().contains("modulus"), "{err}");
}

/// Offset of the first section header of type `id` (4 bytes type, 8 bytes size) in a binfile.
fn find(file: &[u8], id: &[u8; 4]) -> usize {
    let mut at = 12;
    loop {
        let size = u64::from_le_bytes(file[at + 4..at + 12].try_into().unwrap()) as usize;
        if &file[at..at + 4] == id {
            return at;
        }
        at += 12 + size;
    }
}
