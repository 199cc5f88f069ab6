//! Bodies of the exchange's agent API, as the agent sends and reads them.
//!
//! Requests carry exactly the documented fields. Responses are read leniently: unknown fields are
//! ignored and fields the agent does not need are optional, so the exchange can add to its answers
//! without breaking deployed agents. The job's proof class is the domain's [`ProofClass`], the same
//! type the exchange serves.

use chrono::{DateTime, Utc};
use pcx_domain::ProofClass;
use serde::{Deserialize, Serialize};
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
    pub circuit: &'static str,
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

/// A claimed job: prove `public_input` for `proof_class` before the lease expires.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Job {
    pub job_id: Uuid,
    pub contract_id: Uuid,
    pub slot: u64,
    pub proof_class: ProofClass,
    /// Decimal BN254 scalar field element: the seed of the hash chain.
    pub public_input: String,
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
        assert!(serde_json::from_str::<ClaimResponse>(r#"{"job": null}"#).unwrap().job.is_none());
    }

    #[test]
    fn a_heartbeat_is_sent_as_documented() {
        let capabilities = [Capability {
            system: "groth16-bn254",
            circuit: "hash-chain",
            size_log2: 12,
            prove_ms: 850,
            proofs_per_hour: 4235,
        }];
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
                {"system": "groth16-bn254", "circuit": "hash-chain", "size_log2": 12, "prove_ms": 850, "proofs_per_hour": 4235}
            ]})
        );
    }
}
