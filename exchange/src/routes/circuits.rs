//! Circuits users bring: registration (multipart upload), the catalogue, artifacts for agents,
//! verifying keys and Solidity verifiers.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use pcx_prover_pool::circom::Artifact;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::ApiPath;
use crate::service::circuits::{self, BlobWriter, CircuitView, Upload, WrittenBlob, MAX_NAME_CHARS};
use crate::service::setups::{builtin_size, BuiltinCircuitView};
use crate::{store, AppState};

/// The file parts, streamed into blobs.
const FILES: [Artifact; 3] = [Artifact::R1cs, Artifact::Wasm, Artifact::Zkey];

/// Largest `name` or `sample_input` part.
const MAX_SMALL_PART_BYTES: u64 = 1 << 20;

/// The multipart form of `POST /v1/circuits` (for the API description; it is streamed).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct CircuitUpload {
    /// A name for the circuit (1 to 100 characters).
    name: String,
    /// circom's constraint system (`circom --r1cs`).
    #[schema(value_type = String, format = Binary)]
    r1cs: Vec<u8>,
    /// circom's witness generator (`<circuit>_js/<circuit>.wasm`).
    #[schema(value_type = String, format = Binary)]
    wasm: Vec<u8>,
    /// snarkjs' Groth16 setup over bn128 (the final zkey).
    #[schema(value_type = String, format = Binary)]
    zkey: Vec<u8>,
    /// An input the circuit proves, as snarkjs' input.json.
    #[schema(value_type = Object)]
    sample_input: Value,
}

/// The circuits of the market.
#[derive(Debug, Serialize, ToSchema)]
pub struct CircuitsResponse {
    /// Oldest first.
    pub circuits: Vec<CircuitView>,
}

fn bad_upload(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidBody, message)
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the upload is larger than this exchange's limit of {limit} bytes (PCX_MAX_CIRCUIT_BYTES)"),
    )
}

fn multipart_error(err: multer::Error, limit: u64) -> ApiError {
    match err {
        multer::Error::StreamSizeExceeded { .. } => too_large(limit),
        multer::Error::FieldSizeExceeded { field_name, .. } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the `{}` part is larger than {MAX_SMALL_PART_BYTES} bytes", field_name.unwrap_or_default()),
        ),
        other => bad_upload(format!("the multipart/form-data body is malformed: {other}")),
    }
}

/// Registers a circom circuit (buyer or prover). `multipart/form-data` with the parts `name`,
/// `r1cs`, `wasm`, `zkey` (Groth16, bn128, as snarkjs writes it) and `sample_input`
/// (snarkjs' input.json). The files stream into the database; the exchange then checks them
/// (field and curve, matching counts, the witness generator's interface, the sample input
/// against every constraint) and proves the sample input with the zkey: it answers 201 once
/// that proof verified (the circuit is `ready`), 200 with the existing circuit for files
/// registered before, 422 `circuit_invalid` naming the `artifact` at fault, 413 over
/// `PCX_MAX_CIRCUIT_BYTES`. Nothing is kept of a refused upload.
#[utoipa::path(post, path = "/v1/circuits", tag = "circuits", operation_id = "register_circuit", security(("bearer" = [])),
    request_body(content = CircuitUpload, content_type = "multipart/form-data"),
    responses((status = 201, body = CircuitView), (status = 200, body = CircuitView, description = "already registered"),
              (status = 413, body = ErrorEnvelope), (status = 415, body = ErrorEnvelope),
              (status = 422, body = ErrorEnvelope, description = "circuit_invalid, invalid_body")))]
pub async fn register(State(state): State<AppState>, caller: Caller, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let owner = caller.account()?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the circuit as multipart/form-data with the parts name, r1cs, wasm, zkey and sample_input",
        )
    })?;
    let limit = state.settings.max_circuit_bytes;
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["name", "r1cs", "wasm", "zkey", "sample_input"])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(limit.saturating_add(64 << 10))
                .for_field("name", MAX_SMALL_PART_BYTES)
                .for_field("sample_input", MAX_SMALL_PART_BYTES),
        );
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let now = state.now();
    let mut tx = state.db.begin().await?;
    let (mut name, mut sample_input): (Option<String>, Option<Value>) = (None, None);
    let mut files: HashMap<Artifact, WrittenBlob> = HashMap::new();
    let mut total: u64 = 0;
    while let Some(mut field) = form.next_field().await.map_err(|e| match e {
        multer::Error::UnknownField { field_name } => bad_upload(format!(
            "unknown part `{}`; the parts are name, r1cs, wasm, zkey and sample_input",
            field_name.unwrap_or_default()
        )),
        other => multipart_error(other, limit),
    })? {
        let part = field.name().unwrap_or_default().to_owned();
        let file = FILES.into_iter().find(|artifact| artifact.as_str() == part);
        let duplicate = match (part.as_str(), file) {
            ("name", _) => name.is_some(),
            ("sample_input", _) => sample_input.is_some(),
            (_, Some(artifact)) => files.contains_key(&artifact),
            _ => false,
        };
        if duplicate {
            return Err(bad_upload(format!("the part `{part}` appears twice")));
        }
        match file {
            None => {
                let bytes = field.bytes().await.map_err(|e| multipart_error(e, limit))?;
                total += bytes.len() as u64;
                if part == "name" {
                    let text = std::str::from_utf8(&bytes).map_err(|_| bad_upload("name: must be UTF-8 text"))?.trim();
                    if text.is_empty() || text.chars().count() > MAX_NAME_CHARS {
                        return Err(ApiError::new(ErrorCode::InvalidBody, format!("name: 1 to {MAX_NAME_CHARS} characters"))
                            .with_artifact("name"));
                    }
                    name = Some(text.to_owned());
                } else {
                    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                        ApiError::new(ErrorCode::CircuitInvalid, format!("sample_input: not JSON: {e}"))
                            .with_artifact("sample_input")
                    })?;
                    if !value.is_object() {
                        return Err(ApiError::new(
                            ErrorCode::CircuitInvalid,
                            "sample_input: must be a JSON object of input signals, like snarkjs' input.json",
                        )
                        .with_artifact("sample_input"));
                    }
                    sample_input = Some(value);
                }
            }
            Some(artifact) => {
                let mut writer = BlobWriter::begin(&mut tx, now).await?;
                while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
                    total += chunk.len() as u64;
                    if total > limit {
                        return Err(too_large(limit));
                    }
                    writer.write(&mut tx, &chunk).await?;
                }
                if writer.bytes() == 0 {
                    return Err(ApiError::new(ErrorCode::CircuitInvalid, format!("{part}: the file is empty"))
                        .with_artifact(artifact.as_str()));
                }
                files.insert(artifact, writer.finish(&mut tx).await?);
            }
        }
    }
    let missing: Vec<&str> = [
        ("name", name.is_none()),
        ("r1cs", !files.contains_key(&Artifact::R1cs)),
        ("wasm", !files.contains_key(&Artifact::Wasm)),
        ("zkey", !files.contains_key(&Artifact::Zkey)),
        ("sample_input", sample_input.is_none()),
    ]
    .into_iter()
    .filter_map(|(part, absent)| absent.then_some(part))
    .collect();
    let (Some(name), Some(r1cs), Some(wasm), Some(zkey), Some(sample_input)) = (
        name,
        files.remove(&Artifact::R1cs),
        files.remove(&Artifact::Wasm),
        files.remove(&Artifact::Zkey),
        sample_input,
    ) else {
        return Err(bad_upload(format!("missing part(s): {}", missing.join(", "))));
    };
    let upload = Upload { name, r1cs, wasm, zkey, sample_input };
    let (view, created) = circuits::register(&mut tx, owner, &upload, now).await?;
    if created {
        tx.commit().await?;
        state.oracle.add_circuit(&view.circuit_id, view.size_log2);
        Ok((StatusCode::CREATED, Json(view)).into_response())
    } else {
        // Same files as a registered circuit: keep nothing of this upload.
        tx.rollback().await?;
        Ok((StatusCode::OK, Json(view)).into_response())
    }
}


/// Every registered circuit (public).
#[utoipa::path(get, path = "/v1/circuits", tag = "circuits", operation_id = "list_circuits", responses((status = 200, body = CircuitsResponse)))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<CircuitsResponse>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(CircuitsResponse { circuits: circuits::list(&mut conn).await? }))
}

/// One circuit (public): a registered circuit by its id, or the built-in circuit's setup of a
/// size as `hash-chain-<k>` (a `BuiltinCircuitView`: its proving key for agents, made on first
/// request; 503 with `Retry-After` while a large one is being made).
#[utoipa::path(get, path = "/v1/circuits/{id}", tag = "circuits", operation_id = "get_circuit",
    params(("id" = String, Path, description = "Circuit id, or hash-chain-<k>")),
    responses((status = 200, body = CircuitView, description = "a registered circuit (hash-chain-<k>: BuiltinCircuitView)"),
              (status = 404, body = ErrorEnvelope), (status = 503, body = ErrorEnvelope)))]
pub async fn get(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    if let Some(size) = builtin_size(&id) {
        let row = state.setups.ensure(size).await?;
        return Ok(Json(BuiltinCircuitView::of(&row)).into_response());
    }
    let mut conn = state.db.acquire().await?;
    Ok(Json(circuits::get(&mut conn, &id).await?).into_response())
}

/// Which file of a circuit.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// Constraints.
    R1cs,
    /// Witness generator.
    Wasm,
    /// Groth16 setup.
    Zkey,
    /// The built-in circuit's proving key (`hash-chain-<k>` only).
    Pk,
}

/// Downloads a circuit's artifact (any signed-in account; agents fetch what they prove with),
/// streamed; `x-content-sha256` carries its hex sha256 (also the `ETag`).
#[utoipa::path(get, path = "/v1/circuits/{id}/artifacts/{kind}", tag = "circuits", security(("bearer" = [])),
    params(("id" = String, Path, description = "Circuit id, or hash-chain-<k>"),
           ("kind" = ArtifactKind, Path, description = "r1cs, wasm or zkey; pk for hash-chain-<k>")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"), (status = 404, body = ErrorEnvelope)))]
pub async fn artifact(
    State(state): State<AppState>,
    _caller: Caller,
    ApiPath((id, kind)): ApiPath<(String, ArtifactKind)>,
) -> ApiResult<Response> {
    let no_such = || ApiError::new(ErrorCode::NotFound, format!("circuit {id} has no such artifact"));
    let (blob, filename) = match builtin_size(&id) {
        Some(size) => match kind {
            ArtifactKind::Pk => (state.setups.ensure(size).await?.pk, format!("{id}.pk")),
            _ => return Err(no_such()),
        },
        None => {
            let row = circuits::get_row(&mut *state.db.acquire().await?, &id).await?;
            let short = &row.id[..16];
            match kind {
                ArtifactKind::R1cs => (row.r1cs, format!("{short}.r1cs")),
                ArtifactKind::Wasm => (row.wasm, format!("{short}.wasm")),
                ArtifactKind::Zkey => (row.zkey, format!("{short}.zkey")),
                ArtifactKind::Pk => return Err(no_such()),
            }
        }
    };
    Ok(stream_blob(&state, blob, &filename))
}

/// Streams a stored blob, one chunk per query (each on a connection of its own: a slow
/// download holds no connection).
fn stream_blob(state: &AppState, blob: store::circuits::BlobRef, filename: &str) -> Response {
    let sha256 = hex::encode(&blob.sha256);
    let db = state.db.clone();
    let body = stream::try_unfold(0i32, move |seq| {
        let db = db.clone();
        async move {
            let mut conn = db.acquire().await?;
            Ok::<_, sqlx::Error>(store::circuits::chunk(&mut conn, blob.id, seq).await?.map(|data| (data, seq + 1)))
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(u64::try_from(blob.bytes).unwrap_or(0)));
    let disposition = format!("attachment; filename=\"{filename}\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&sha256) {
        headers.insert("x-content-sha256", value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("\"{sha256}\"")) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// A circuit's verifying key in snarkjs' vk.json shape (`snarkjs groth16 verify vk.json ...`).
#[utoipa::path(get, path = "/v1/circuits/{id}/verification_key", tag = "circuits",
    params(("id" = String, Path, description = "Circuit id")),
    responses((status = 200, description = "vk.json", body = Object), (status = 404, body = ErrorEnvelope)))]
pub async fn verification_key(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Value>> {
    Ok(Json(verifying_key_json(&state, &id).await?))
}

async fn verifying_key_json(state: &AppState, id: &str) -> ApiResult<Value> {
    match builtin_size(id) {
        Some(size) => Ok(state.setups.ensure(size).await?.verifying_key),
        None => Ok(circuits::get_row(&mut *state.db.acquire().await?, id).await?.verifying_key),
    }
}

/// A Solidity (0.8) Groth16 verifier for the circuit's key, written by pcx: `verifyProof(a, b,
/// c, publicSignals)` with the BN254 precompiles; a delivered proof's `calldata` is its
/// arguments.
#[utoipa::path(get, path = "/v1/circuits/{id}/verifier.sol", tag = "circuits",
    params(("id" = String, Path, description = "Circuit id")),
    responses((status = 200, description = "Solidity source", content_type = "text/plain"), (status = 404, body = ErrorEnvelope)))]
pub async fn verifier_sol(State(state): State<AppState>, ApiPath(id): ApiPath<String>) -> ApiResult<Response> {
    let vk = pcx_prover_pool::snarkjs::verifying_key_from_json(&verifying_key_json(&state, &id).await?)
        .map_err(ApiError::internal)?;
    let source = pcx_prover_pool::solidity::verifier_contract(&vk);
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], source).into_response())
}
