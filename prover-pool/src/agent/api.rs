//! Bodies of the exchange's agent API, as the agent sends and reads them.
//!
//! Requests carry exactly the documented fields. Responses are read leniently: unknown fields are
//! ignored and fields the agent does not need are optional, so the exchange can add to its answers
//! without breaking deployed agents. The job's proof class is the domain's [`ProofClass`], the same
//! type the exchange serves.

use chrono::{DateTime, Utc};
use pcx_domain::ProofClass;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// `POST /v1/auth/token`.
#[derive(Debug, Serialize)]
pub(crate) struct TokenRequest<'a> {
    pub api_key: &'a str,
}

/// Answer to `POST /v1/auth/token`.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    pub token: String,
}

/// One proof class the agent serves, with its measured speed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Capability {
    pub system: &'static str,
    /// `hash-chain`, or a registered circuit's id.
    pub circuit: String,
    pub size_log2: u8,
    /// One proof on one worker, in milliseconds.
    pub prove_ms: u64,
    /// The whole agent: workers × the per-worker rate.
    pub proofs_per_hour: u64,
}

/// `POST /v1/agent/heartbeat`.
#[derive(Debug, Serialize)]
pub(crate) struct HeartbeatRequest<'a> {
    pub agent_id: Uuid,
    pub workers: usize,
    pub backend: &'a str,
    pub capabilities: &'a [Capability],
}

/// Answer to a heartbeat.
#[derive(Debug, Deserialize)]
pub(crate) struct HeartbeatResponse {
    #[serde(default)]
    pub server_time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub heartbeat_secs: Option<u64>,
}

/// `POST /v1/agent/jobs/claim`.
#[derive(Debug, Serialize)]
pub(crate) struct ClaimRequest<'a> {
    pub agent_id: Uuid,
    pub wait_secs: u32,
    pub sizes: &'a [u8],
    /// The registered circuits (ids) this agent serves, sorted; empty when it serves only
    /// `hash-chain`.
    pub circuits: &'a [String],
    /// The jobs this agent is working on: any other it holds is one whose claim answer was lost,
    /// and the exchange hands it back.
    pub in_hand: Vec<Uuid>,
}

/// Answer to a claim: a job, or `null` when none came within the wait.
#[derive(Debug, Deserialize)]
pub(crate) struct ClaimResponse {
    pub job: Option<Job>,
}

/// Why this agent holds the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JobRole {
    /// The contract's prover.
    Primary,
    /// A backup the contract named.
    Backup,
    /// Anyone: the slot was opened to the market.
    Open,
    /// A role this agent does not know yet; served like any other.
    #[serde(other)]
    Other,
}

impl JobRole {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            JobRole::Primary => "primary",
            JobRole::Backup => "backup",
            JobRole::Open => "open",
            JobRole::Other => "other",
        }
    }
}

/// A claimed job: prove its input (`public_input` for `hash-chain`, `input` for a registered
/// circuit) for `proof_class` before the lease expires.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Job {
    pub job_id: Uuid,
    pub contract_id: Uuid,
    pub slot: u64,
    /// For a registered circuit, `circuit` is its id.
    pub proof_class: ProofClass,
    /// `hash-chain` jobs: a decimal BN254 scalar field element, the seed of the hash chain.
    #[serde(default)]
    pub public_input: Option<String>,
    /// Registered-circuit jobs: the slot's input, an object shaped like snarkjs' `input.json`.
    #[serde(default)]
    pub input: Option<Value>,
    pub role: JobRole,
    /// The slot's proof must be verified by then.
    pub deadline: DateTime<Utc>,
    /// The job stays this agent's until then; after it, the exchange may hand it to another.
    pub lease_expires_at: DateTime<Utc>,
}

/// `POST /v1/agent/jobs/{job_id}/proof`.
#[derive(Debug, Serialize)]
pub(crate) struct SubmitRequest<'a> {
    pub proof: &'a str,
}

/// Answer to a proof submission.
#[derive(Debug, Deserialize)]
pub(crate) struct SubmitResponse {
    pub accepted: bool,
    #[serde(default)]
    pub slot_state: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Answer to `GET /v1/circuits`.
#[derive(Debug, Deserialize)]
pub(crate) struct CircuitList {
    pub circuits: Vec<CircuitView>,
}

/// A registered circuit, as `GET /v1/circuits[/{circuit_id}]` describes it. Only `circuit_id` and
/// `status` are required: a circuit that is not ready yet may lack the rest, and one such circuit
/// must not make the whole list unreadable. What serving needs is checked when a ready circuit
/// is prepared (`super::circuits`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CircuitView {
    /// 64 lowercase hex digits (checked before it names a directory).
    pub circuit_id: String,
    #[serde(default)]
    pub name: String,
    /// Only `ready` circuits are served.
    pub status: String,
    #[serde(default)]
    pub constraints: Option<u64>,
    #[serde(default)]
    pub public_signals: Option<u32>,
    /// log2 of the QAP domain: the proof class's size.
    #[serde(default)]
    pub size_log2: Option<u8>,
    /// An input the circuit proves (snarkjs' `input.json` shape): what the agent benchmarks.
    #[serde(default)]
    pub sample_input: Option<Value>,
    /// `None` also when the exchange lists artifacts of another shape (the built-in
    /// `hash-chain-<k>` views have a `pk` only): such an entry is skipped, not an unreadable list.
    #[serde(default, deserialize_with = "artifacts_or_none")]
    pub artifacts: Option<CircuitArtifacts>,
}

/// Reads `artifacts` as [`CircuitArtifacts`] when it has that shape, else as `None`.
fn artifacts_or_none<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<CircuitArtifacts>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// The files of a registered circuit.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CircuitArtifacts {
    pub r1cs: ArtifactView,
    pub wasm: ArtifactView,
    pub zkey: ArtifactView,
}

/// One artifact's digest and size.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ArtifactView {
    /// Hex of the file's SHA-256.
    pub sha256: String,
    pub bytes: u64,
}

/// The built-in circuit at one size, as `GET /v1/circuits/hash-chain-<k>` describes it: where the
/// exchange's proving key of that size is. Read leniently: only `circuit_id` is required; what
/// the agent needs is checked by `super::exchange_keys`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HashChainView {
    /// `hash-chain-<k>`.
    pub circuit_id: String,
    /// `ready` once the setup is made (`None`: read as ready).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub size_log2: Option<u8>,
    /// Whether the exchange serves the deterministic (forgeable) development setup.
    #[serde(default)]
    pub development_keys: Option<bool>,
    #[serde(default)]
    pub artifacts: Option<HashChainArtifacts>,
}

/// The files of the built-in circuit at one size.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HashChainArtifacts {
    /// The proving key, in the key-file format of [`crate::keys`].
    pub pk: ArtifactView,
}

/// `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_reads_as_documented_and_tolerates_new_fields() {
        let body = r#"{"job": {"job_id": "6c1b0a4e-8f0e-4f43-9a57-0a4f0f3f5e11",
            "contract_id": "0d8c58a4-3c1e-4d55-b1a5-4a4b5a2a7f10", "slot": 17,
            "proof_class": {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 12, "deadline_secs": 600},
            "public_input": "42", "role": "backup", "opens_at": "2025-01-01T00:00:00Z",
            "deadline": "2025-01-01T00:10:00Z", "lease_expires_at": "2025-01-01T00:05:00Z", "new_field": 1}}"#;
        let job = serde_json::from_str::<ClaimResponse>(body).unwrap().job.unwrap();
        assert_eq!(job.slot, 17);
        assert_eq!(job.proof_class.size_log2, 12);
        assert_eq!(job.role, JobRole::Backup);
        assert_eq!(job.public_input.as_deref(), Some("42"));
        assert!(job.input.is_none());
        assert!(serde_json::from_str::<ClaimResponse>(r#"{"job": null}"#).unwrap().job.is_none());
    }

    #[test]
    fn a_registered_circuit_job_carries_its_input_object() {
        let id = "ab".repeat(32);
        let body = format!(
            r#"{{"job": {{"job_id": "6c1b0a4e-8f0e-4f43-9a57-0a4f0f3f5e11",
            "contract_id": "0d8c58a4-3c1e-4d55-b1a5-4a4b5a2a7f10", "slot": 3,
            "proof_class": {{"system": "groth16-bn254", "circuit": "{id}", "size_log2": 4, "deadline_secs": 600}},
            "public_input": null, "input": {{"a": "3", "b": ["1", "2"]}}, "role": "primary",
            "deadline": "2025-01-01T00:10:00Z", "lease_expires_at": "2025-01-01T00:05:00Z"}}}}"#
        );
        let job = serde_json::from_str::<ClaimResponse>(&body).unwrap().job.unwrap();
        assert_eq!(job.proof_class.circuit, id);
        assert!(job.public_input.is_none());
        assert_eq!(job.input, Some(serde_json::json!({"a": "3", "b": ["1", "2"]})));
        // `public_input` may also be left out.
        let body = body.replace(r#""public_input": null, "#, "");
        assert!(serde_json::from_str::<ClaimResponse>(&body).unwrap().job.unwrap().public_input.is_none());
    }

    #[test]
    fn a_claim_lists_the_served_circuits() {
        let agent_id = Uuid::nil();
        let circuits = ["cd".repeat(32)];
        let body = serde_json::to_value(ClaimRequest {
            agent_id,
            wait_secs: 20,
            sizes: &[10, 12],
            circuits: &circuits,
            in_hand: vec![],
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"agent_id": agent_id, "wait_secs": 20, "sizes": [10, 12], "circuits": [circuits[0]],
                "in_hand": []})
        );
        let none = ClaimRequest { agent_id, wait_secs: 0, sizes: &[10], circuits: &[], in_hand: vec![] };
        let body = serde_json::to_value(none).unwrap();
        assert_eq!(body["circuits"], serde_json::json!([]), "sent even when empty");
    }

    #[test]
    fn circuit_views_read_leniently() {
        let id = "0f".repeat(32);
        let body = format!(
            r#"{{"circuits": [
            {{"circuit_id": "{id}", "name": "multiplier", "status": "ready", "constraints": 7, "public_signals": 2,
              "size_log2": 4, "sample_input": {{"a": "3"}}, "owner": "x", "created_at": "2025-01-01T00:00:00Z",
              "artifacts": {{"r1cs": {{"sha256": "aa", "bytes": 1112, "extra": true}},
                            "wasm": {{"sha256": "bb", "bytes": 2}}, "zkey": {{"sha256": "cc", "bytes": 3}}}}}},
            {{"circuit_id": "{id}", "status": "checking"}}]}}"#
        );
        let list = serde_json::from_str::<CircuitList>(&body).unwrap();
        assert_eq!(list.circuits.len(), 2);
        let ready = &list.circuits[0];
        assert_eq!((ready.status.as_str(), ready.size_log2, ready.constraints), ("ready", Some(4), Some(7)));
        let artifacts = ready.artifacts.as_ref().unwrap();
        assert_eq!((artifacts.r1cs.sha256.as_str(), artifacts.r1cs.bytes), ("aa", 1112));
        assert!(list.circuits[1].artifacts.is_none() && list.circuits[1].sample_input.is_none());
    }

    #[test]
    fn a_listed_hash_chain_view_does_not_make_the_list_unreadable() {
        let body = r#"{"circuits": [{"circuit_id": "hash-chain-10", "name": "hash-chain", "status": "ready",
            "size_log2": 10, "development_keys": false,
            "artifacts": {"pk": {"sha256": "aa", "bytes": 5, "url": "/v1/circuits/hash-chain-10/artifacts/pk"}}}]}"#;
        let list = serde_json::from_str::<CircuitList>(body).unwrap();
        assert_eq!(list.circuits[0].circuit_id, "hash-chain-10");
        assert!(list.circuits[0].artifacts.is_none());
        let view = serde_json::from_str::<HashChainView>(
            &serde_json::to_string(&serde_json::from_str::<Value>(body).unwrap()["circuits"][0]).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (view.size_log2, view.development_keys, view.status.as_deref()),
            (Some(10), Some(false), Some("ready"))
        );
        let pk = view.artifacts.unwrap().pk;
        assert_eq!((pk.sha256.as_str(), pk.bytes), ("aa", 5));
        let bare = serde_json::from_str::<HashChainView>(r#"{"circuit_id": "hash-chain-12"}"#).unwrap();
        assert!(bare.status.is_none() && bare.artifacts.is_none() && bare.development_keys.is_none());
    }

    #[test]
    fn a_heartbeat_is_sent_as_documented() {
        let id = "12".repeat(32);
        let capabilities = [
            Capability {
                system: "groth16-bn254",
                circuit: "hash-chain".into(),
                size_log2: 12,
                prove_ms: 850,
                proofs_per_hour: 4235,
            },
            Capability {
                system: "groth16-bn254",
                circuit: id.clone(),
                size_log2: 4,
                prove_ms: 3,
                proofs_per_hour: 1_200_000,
            },
        ];
        let agent_id = Uuid::nil();
        let body = serde_json::to_value(HeartbeatRequest {
            agent_id,
            workers: 1,
            backend: "cpu",
            capabilities: &capabilities,
        })
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({"agent_id": agent_id, "workers": 1, "backend": "cpu", "capabilities": [
                {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 12, "prove_ms": 850,
                 "proofs_per_hour": 4235},
                {"system": "groth16-bn254", "circuit": id, "size_log2": 4, "prove_ms": 3, "proofs_per_hour": 1_200_000}
            ]})
        );
    }
}
