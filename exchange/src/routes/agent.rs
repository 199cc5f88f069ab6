//! The prover agents' routes: heartbeat, claiming jobs (long-poll), submitting proofs, releasing.

use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use pcx_prover_pool::circuit::StoredCircomInput;

use pcx_domain::{ProofClass, Role};
use pcx_settlement::state::JobRole;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{ApiJson, ApiPath, IdempotencyKey};
use crate::idempotency;
use crate::service::settlement::{self, SubmitOutcome};
use crate::store;
use crate::AppState;

/// Most jobs a claim may say it has in hand.
const MAX_IN_HAND: usize = 1024;
/// Most registered circuits one claim may name.
const MAX_CIRCUITS: usize = 256;

/// One measured capability of an agent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Capability {
    /// Proof system.
    pub system: String,
    /// Circuit.
    pub circuit: String,
    /// Size it benchmarked.
    pub size_log2: u8,
    /// Measured prove time, milliseconds.
    pub prove_ms: u64,
    /// Proofs per hour of the whole agent.
    pub proofs_per_hour: u64,
}

/// A heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The agent's id, chosen by it at start.
    pub agent_id: Uuid,
    /// Workers proving in parallel (1..=1024).
    #[schema(minimum = 1, maximum = 1024)]
    pub workers: u32,
    /// MSM backend (`cpu`, `icicle`).
    pub backend: String,
    /// What it measured.
    pub capabilities: Vec<Capability>,
}

/// Heartbeat answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeartbeatResponse {
    /// The agent's id.
    pub agent_id: Uuid,
    /// The exchange's clock.
    pub server_time: DateTime<Utc>,
    /// Send the next heartbeat within this many seconds.
    pub heartbeat_secs: u32,
}

/// Registers or refreshes an agent and its measured capabilities.
#[utoipa::path(post, path = "/v1/agent/heartbeat", tag = "agents", security(("bearer" = [])), request_body = HeartbeatRequest,
    responses((status = 200, body = HeartbeatResponse), (status = 403, body = ErrorEnvelope)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    let prover = caller.account_with_role(Role::Prover)?;
    if req.workers == 0 || req.workers > 1024 {
        return Err(ApiError::new(ErrorCode::InvalidInput, "workers: must be between 1 and 1024"));
    }
    let capabilities = serde_json::to_value(&req.capabilities).map_err(ApiError::internal)?;
    let mut conn = state.db.acquire().await?;
    let workers = i32::try_from(req.workers).map_err(ApiError::internal)?;
    if !store::agents::heartbeat(&mut conn, req.agent_id, prover, workers, &req.backend, &capabilities, state.now()).await? {
        return Err(ApiError::new(ErrorCode::Forbidden, "this agent_id belongs to another prover; pick a new one"));
    }
    Ok(Json(HeartbeatResponse { agent_id: req.agent_id, server_time: state.now(), heartbeat_secs: 10 }))
}

/// A claim.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The claiming agent.
    pub agent_id: Uuid,
    /// Hold the request up to this many seconds waiting for a job (0..=30).
    #[schema(maximum = 30)]
    pub wait_secs: Option<u32>,
    /// Sizes (log2) of the built-in circuit the agent can prove.
    pub sizes: Vec<u8>,
    /// Registered circuits (ids) the agent can prove.
    #[serde(default)]
    pub circuits: Vec<String>,
    /// Jobs this agent is working on now. A job it claimed but does not list (the answer to its
    /// claim was lost) is handed back to it before any new one.
    #[serde(default)]
    pub in_hand: Vec<Uuid>,
}

/// A job to prove.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    /// Job id (use it as the Idempotency-Key of the submission).
    pub job_id: Uuid,
    /// Contract.
    pub contract_id: Uuid,
    /// Slot number.
    pub slot: i64,
    /// What to prove.
    pub proof_class: ProofClass,
    /// hash-chain: the slot's public input (decimal field element).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_input: Option<String>,
    /// A registered circuit: the slot's input signals (snarkjs' input.json).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
    /// Who it was offered to.
    pub role: JobRole,
    /// When the slot opened.
    pub opens_at: DateTime<Utc>,
    /// The proof must be verified by then.
    pub deadline: DateTime<Utc>,
    /// Submit before this, or the job goes to the next prover (and you are slashed).
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// Claim answer: a job, or none after the wait.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClaimResponse {
    /// The job, if one was available.
    pub job: Option<JobView>,
}

/// Claims a job, waiting up to `wait_secs`: a job this agent already holds but does not list in
/// `in_hand` first (a claim retried after a lost answer), then its own, then the open market. At
/// most `PCX_MAX_CLAIM_WAITERS` claims wait at once; one more with `wait_secs` > 0 is answered 503
/// `too_many_waiting_claims` with `Retry-After`.
#[utoipa::path(post, path = "/v1/agent/jobs/claim", tag = "agents", security(("bearer" = [])), request_body = ClaimRequest,
    responses((status = 200, body = ClaimResponse), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope),
              (status = 503, body = ErrorEnvelope, description = "too_many_waiting_claims (with Retry-After)")))]
pub async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> ApiResult<Json<ClaimResponse>> {
    let prover = caller.account_with_role(Role::Prover)?;
    let wait = req.wait_secs.unwrap_or(0);
    if wait > 30 {
        return Err(ApiError::new(ErrorCode::InvalidInput, "wait_secs: at most 30"));
    }
    if req.in_hand.len() > MAX_IN_HAND {
        return Err(ApiError::new(ErrorCode::InvalidInput, format!("in_hand: at most {MAX_IN_HAND} jobs")));
    }
    if req.circuits.len() > MAX_CIRCUITS {
        return Err(ApiError::new(ErrorCode::InvalidInput, format!("circuits: at most {MAX_CIRCUITS}")));
    }
    let sizes: Vec<i16> = req.sizes.iter().map(|s| i16::from(*s)).collect();
    // A waiting claim holds a permit until it answers (or is dropped); one that does not wait is an
    // ordinary request and takes none.
    let _waiting = match wait {
        0 => None,
        _ => Some(state.caps.claim_waiter()?),
    };
    let give_up = tokio::time::Instant::now() + std::time::Duration::from_secs(u64::from(wait));
    loop {
        let wanted = settlement::Wanted { sizes: &sizes, circuits: &req.circuits };
        if let Some(ticket) = settlement::claim(&state, prover, req.agent_id, wanted, &req.in_hand, state.now()).await? {
            let stored = ticket.input.unwrap_or_default();
            let (public_input, input) = match StoredCircomInput::parse(&stored) {
                Some(circom) => (None, Some(circom.input)),
                None => (Some(stored), None),
            };
            return Ok(Json(ClaimResponse {
                job: Some(JobView {
                    job_id: ticket.job.id,
                    contract_id: ticket.contract_id,
                    slot: i64::try_from(ticket.n).map_err(ApiError::internal)?,
                    proof_class: ticket.class,
                    public_input,
                    input,
                    role: ticket.job.role,
                    opens_at: ticket.opens_at,
                    deadline: ticket.deadline,
                    lease_expires_at: ticket.job.lease_expires_at,
                }),
            }));
        }
        if tokio::time::Instant::now() >= give_up {
            return Ok(Json(ClaimResponse { job: None }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A proof.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofSubmission {
    /// `0x` + hex of the compressed Groth16 proof (A, B, C; 128 bytes for BN254).
    pub proof: String,
}

/// Submits the proof of a claimed job; it is verified against the slot's public input at once.
/// Honours `Idempotency-Key` (agents use the job id), so a retry after a lost answer is safe.
#[utoipa::path(post, path = "/v1/agent/jobs/{id}/proof", tag = "agents", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id"), ("Idempotency-Key" = Option<String>, Header, description = "The job id")),
    request_body = ProofSubmission,
    responses((status = 200, body = SubmitOutcome), (status = 404, body = ErrorEnvelope),
              (status = 409, body = ErrorEnvelope, description = "lease_lost")))]
pub async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(job_id): ApiPath<Uuid>,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(req): ApiJson<ProofSubmission>,
) -> ApiResult<Response> {
    let prover = caller.account_with_role(Role::Prover)?;
    let hash = idempotency::request_hash(&format!("POST /v1/agent/jobs/{job_id}/proof"), &req);
    let replied = settlement::submit(&state, caller.principal, key, hash, prover, job_id, req.proof).await?;
    Ok(idempotency::respond(replied))
}

/// Release answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseResponse {
    /// The job.
    pub job_id: Uuid,
    /// Always true.
    pub released: bool,
}

/// Gives a claimed job back before its lease ends; the next prover gets it at once (the release
/// counts as a miss and is slashed like one).
#[utoipa::path(post, path = "/v1/agent/jobs/{id}/release", tag = "agents", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = ReleaseResponse), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(job_id): ApiPath<Uuid>,
) -> ApiResult<Json<ReleaseResponse>> {
    let prover = caller.account_with_role(Role::Prover)?;
    settlement::release(&state, prover, job_id).await?;
    Ok(Json(ReleaseResponse { job_id, released: true }))
}
