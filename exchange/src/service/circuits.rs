//! Circuits users bring (circom 2 + snarkjs Groth16 over BN254): registration, the views of the
//! public catalogue, and [`Catalog`], which resolves any proof class to the circuit that checks
//! its inputs and proofs.
//!
//! Registration, in one transaction: each artifact streams into chunked rows as it arrives
//! ([`BlobWriter`]) while its sha256 is computed; the circuit id is the sha256 over the three
//! artifacts' sha256s, so the same files give the same circuit (a second registration answers
//! with the first and writes nothing). Then the exchange checks the artifacts ([`check`]: they
//! parse, they agree, the sample input satisfies every constraint, and a proof made from them
//! verifies against the zkey's verifying key) and only then inserts the circuit as `ready`.
//! Any failure rolls the whole upload back: nothing half-written stays.
//!
//! Invariants: a stored circuit's artifacts are exactly the bytes whose sha256s make its id; a
//! circuit in the table is ready (its proof checked); its verifying key is stored in snarkjs'
//! `vk.json` shape, the one every verifier (ours, snarkjs, the generated Solidity) reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use pcx_domain::{AccountId, ProofClass, ProofSystem};
use pcx_prover_pool::circom::zkey::Zkey;
use pcx_prover_pool::circom::{self, Artifact, ArtifactError, CircomCircuit, CircomSetup};
use pcx_prover_pool::circuit::{Circuit, RegisteredCircuit};
use pcx_prover_pool::snarkjs;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::store::{self, circuits::CircuitRow};

/// Rows of at most this many bytes hold an artifact.
pub const CHUNK_BYTES: usize = 4 << 20;
/// The largest QAP domain a registered circuit may have (2^26 points; snarkjs' own tools stop
/// near there, and the witness map needs a 2n-th root of unity, which BN254 has up to 2^28).
pub const MAX_SIZE_LOG2: u8 = 26;
/// Longest circuit name.
pub const MAX_NAME_CHARS: usize = 100;

/// Whether `circuit` has the shape of a registered circuit's id.
pub fn is_circuit_id(circuit: &str) -> bool {
    circuit.len() == 64 && circuit.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A registered circuit's status. Registration answers only once the sample proof verified, so
/// every stored circuit is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitStatus {
    /// Tradeable: a proof from its artifacts and sample input verified.
    Ready,
}

/// One stored artifact.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArtifactView {
    /// Hex sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Where to download it.
    pub url: String,
}

impl ArtifactView {
    /// The view of `blob`, circuit `circuit_id`'s artifact `kind`.
    pub fn of(circuit_id: &str, kind: &str, blob: &store::circuits::BlobRef) -> ArtifactView {
        ArtifactView {
            sha256: hex::encode(&blob.sha256),
            bytes: u64::try_from(blob.bytes).unwrap_or(0),
            url: format!("/v1/circuits/{circuit_id}/artifacts/{kind}"),
        }
    }
}

/// The three artifacts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ArtifactsView {
    /// Constraints.
    pub r1cs: ArtifactView,
    /// Witness generator.
    pub wasm: ArtifactView,
    /// Groth16 setup.
    pub zkey: ArtifactView,
}

/// A registered circuit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CircuitView {
    /// Content address: sha256 over the artifacts' sha256s; the `circuit` of its proof classes.
    pub circuit_id: String,
    /// Its owner's name for it.
    pub name: String,
    /// Status.
    pub status: CircuitStatus,
    /// Who registered it.
    pub owner_id: AccountId,
    /// Constraints.
    pub constraints: u64,
    /// Wires (including the constant one).
    pub wires: u64,
    /// Public signals (outputs first, then public inputs: the order of snarkjs' public.json).
    pub public_signals: u32,
    /// Public outputs among them.
    pub public_outputs: u32,
    /// Private inputs.
    pub private_inputs: u32,
    /// Size class: log2 of the QAP domain.
    pub size_log2: u8,
    /// The circom version that compiled the witness generator.
    pub circom_version: String,
    /// The proof class to trade it with (any `deadline_secs`).
    pub proof_class: ProofClass,
    /// An input the circuit proves (what agents benchmark it with).
    #[schema(value_type = Object)]
    pub sample_input: Value,
    /// The files.
    pub artifacts: ArtifactsView,
    /// How long registration's checks took (parse, witness, proof, verification), ms.
    pub check_ms: u64,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
}

impl CircuitView {
    fn from_row(row: &CircuitRow) -> CircuitView {
        let artifact = |kind: &str, blob: &store::circuits::BlobRef| ArtifactView::of(&row.id, kind, blob);
        let size_log2 = u8::try_from(row.size_log2).unwrap_or(0);
        CircuitView {
            circuit_id: row.id.clone(),
            name: row.name.clone(),
            status: CircuitStatus::Ready,
            owner_id: row.owner_id,
            constraints: u64::try_from(row.constraints).unwrap_or(0),
            wires: u64::try_from(row.wires).unwrap_or(0),
            public_signals: u32::try_from(row.public_signals).unwrap_or(0),
            public_outputs: u32::try_from(row.public_outputs).unwrap_or(0),
            private_inputs: u32::try_from(row.private_inputs).unwrap_or(0),
            size_log2,
            circom_version: row.circom_version.clone(),
            proof_class: ProofClass {
                system: ProofSystem::Groth16Bn254,
                circuit: row.id.clone(),
                size_log2,
                deadline_secs: 600,
            },
            sample_input: row.sample_input.clone(),
            artifacts: ArtifactsView {
                r1cs: artifact("r1cs", &row.r1cs),
                wasm: artifact("wasm", &row.wasm),
                zkey: artifact("zkey", &row.zkey),
            },
            check_ms: u64::try_from(row.check_ms).unwrap_or(0),
            registered_at: row.created_at,
        }
    }
}

/// Writes one artifact into chunk rows as its bytes arrive, hashing them.
#[derive(Debug)]
pub struct BlobWriter {
    id: Uuid,
    hasher: Sha256,
    buffer: Vec<u8>,
    seq: i32,
    bytes: u64,
}

/// A written artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenBlob {
    /// Its row.
    pub id: Uuid,
    /// Its sha256.
    pub sha256: [u8; 32],
    /// Its size.
    pub bytes: u64,
}

impl BlobWriter {
    /// Starts a blob in the transaction `conn`.
    pub async fn begin(conn: &mut PgConnection, now: DateTime<Utc>) -> ApiResult<BlobWriter> {
        let id = Uuid::new_v4();
        store::circuits::begin_blob(conn, id, now).await?;
        Ok(BlobWriter { id, hasher: Sha256::new(), buffer: Vec::with_capacity(CHUNK_BYTES), seq: 0, bytes: 0 })
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `data`, writing full chunks as they fill.
    pub async fn write(&mut self, conn: &mut PgConnection, mut data: &[u8]) -> ApiResult<()> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        while !data.is_empty() {
            let take = (CHUNK_BYTES - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() == CHUNK_BYTES {
                self.flush(conn).await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> ApiResult<()> {
        if !self.buffer.is_empty() {
            store::circuits::insert_chunk(conn, self.id, self.seq, &self.buffer).await?;
            self.seq += 1;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes the last chunk and records the blob's hash and size.
    pub async fn finish(mut self, conn: &mut PgConnection) -> ApiResult<WrittenBlob> {
        self.flush(conn).await?;
        let sha256: [u8; 32] = self.hasher.finalize().into();
        let bytes = i64::try_from(self.bytes).map_err(ApiError::internal)?;
        store::circuits::finish_blob(conn, self.id, &sha256, bytes).await?;
        Ok(WrittenBlob { id: self.id, sha256, bytes: self.bytes })
    }
}

/// Everything a registration uploaded, its artifacts already written.
#[derive(Debug, Clone)]
pub struct Upload {
    /// The circuit's name.
    pub name: String,
    /// The constraints.
    pub r1cs: WrittenBlob,
    /// The witness generator.
    pub wasm: WrittenBlob,
    /// The setup.
    pub zkey: WrittenBlob,
    /// The sample input.
    pub sample_input: Value,
}

/// The circuit id of three artifacts: hex sha256 of `pcx-circuit-v1\n` and their hex sha256s,
/// one per line.
pub fn circuit_id(r1cs: &[u8; 32], wasm: &[u8; 32], zkey: &[u8; 32]) -> String {
    let text = format!("pcx-circuit-v1\n{}\n{}\n{}\n", hex::encode(r1cs), hex::encode(wasm), hex::encode(zkey));
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What [`check`] learned about a circuit.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Counts.
    pub shape: circom::CircuitShape,
    /// circom's version.
    pub circom_version: String,
    /// The verifying key, snarkjs' vk.json.
    pub verifying_key: Value,
    /// How long the checks took.
    pub took_ms: u64,
}

fn invalid(err: ArtifactError) -> ApiError {
    ApiError::new(ErrorCode::CircuitInvalid, err.to_string()).with_artifact(err.artifact.as_str())
}

/// Checks that the artifacts are one circuit and proves its sample input: parse, agree, the
/// sample input satisfies every constraint, and a proof made with the zkey verifies against the
/// zkey's own verifying key. CPU-bound (a whole proof): call it off the async runtime.
pub fn check(r1cs: &[u8], wasm: &[u8], zkey: &[u8], sample_input: &Value) -> Result<Checked, ApiError> {
    let started = Instant::now();
    let circuit = CircomCircuit::load(r1cs, wasm).map_err(invalid)?;
    if circuit.shape().size_log2 > MAX_SIZE_LOG2 {
        return Err(invalid(ArtifactError {
            artifact: Artifact::R1cs,
            reason: format!(
                "the circuit needs a 2^{} domain; the exchange trades circuits up to 2^{MAX_SIZE_LOG2}",
                circuit.shape().size_log2
            ),
        }));
    }
    let setup = Zkey::parse(zkey).map_err(|e| invalid(ArtifactError { artifact: Artifact::Zkey, reason: e.to_string() }))?;
    CircomSetup::check(&circuit, &setup).map_err(invalid)?;
    let witness = circuit.witness(sample_input).map_err(|e| {
        invalid(ArtifactError { artifact: Artifact::SampleInput, reason: format!("the circuit cannot prove it: {e}") })
    })?;
    let proof = circom::prove(&circuit, &setup, &witness, &pcx_prover_pool::msm::ArkworksMsm, &mut rand::rngs::OsRng)
        .map_err(|e| invalid(ArtifactError { artifact: Artifact::Zkey, reason: format!("proving failed: {e}") }))?;
    let vk = &setup.proving_key.vk;
    let pvk = ark_groth16::prepare_verifying_key(vk);
    if !pcx_prover_pool::groth16::verify(&pvk, &circuit.public_signals(&witness), &proof) {
        return Err(invalid(ArtifactError {
            artifact: Artifact::Zkey,
            reason: "a proof made with this zkey from the sample input does not verify against the zkey's own \
                     verifying key: the zkey was not set up for this r1cs, or it is corrupt"
                .into(),
        }));
    }
    Ok(Checked {
        shape: circuit.shape(),
        circom_version: circuit.generator.circom_version_full.clone(),
        verifying_key: snarkjs::verifying_key_to_json(vk),
        took_ms: started.elapsed().as_millis() as u64,
    })
}

/// Registers an upload whose blobs are written in `tx`: returns the circuit and whether it is
/// new. The same files registered before give the existing circuit (the caller rolls back).
pub async fn register(
    tx: &mut PgConnection,
    owner: AccountId,
    upload: &Upload,
    now: DateTime<Utc>,
) -> ApiResult<(CircuitView, bool)> {
    let id = circuit_id(&upload.r1cs.sha256, &upload.wasm.sha256, &upload.zkey.sha256);
    if let Some(existing) = store::circuits::get(tx, &id).await? {
        return Ok((CircuitView::from_row(&existing), false));
    }
    let r1cs = store::circuits::read_blob(tx, upload.r1cs.id).await?;
    let wasm = store::circuits::read_blob(tx, upload.wasm.id).await?;
    let zkey = store::circuits::read_blob(tx, upload.zkey.id).await?;
    let sample = upload.sample_input.clone();
    let checked = tokio::task::spawn_blocking(move || check(&r1cs, &wasm, &zkey, &sample))
        .await
        .map_err(ApiError::internal)??;
    let shape = checked.shape;
    let inserted = store::circuits::insert(
        tx,
        &store::circuits::NewCircuit {
            id: &id,
            name: &upload.name,
            owner_id: owner,
            constraints: i64::try_from(shape.constraints).map_err(ApiError::internal)?,
            wires: i64::from(shape.wires),
            public_signals: i32::try_from(shape.public_signals).map_err(ApiError::internal)?,
            public_outputs: i32::try_from(shape.public_outputs).map_err(ApiError::internal)?,
            private_inputs: i32::try_from(shape.private_inputs).map_err(ApiError::internal)?,
            size_log2: i16::from(shape.size_log2),
            circom_version: &checked.circom_version,
            verifying_key: &checked.verifying_key,
            sample_input: &upload.sample_input,
            r1cs_blob: upload.r1cs.id,
            wasm_blob: upload.wasm.id,
            zkey_blob: upload.zkey.id,
            check_ms: i64::try_from(checked.took_ms).unwrap_or(i64::MAX),
            created_at: now,
        },
    )
    .await?;
    let row = store::circuits::get(tx, &id).await?.ok_or_else(|| ApiError::internal("a circuit vanished"))?;
    if inserted {
        tracing::info!(circuit = %id, name = %upload.name, constraints = shape.constraints, size_log2 = shape.size_log2,
            check_ms = checked.took_ms, "circuit registered");
    }
    Ok((CircuitView::from_row(&row), inserted))
}

/// Every registered circuit.
pub async fn list(conn: &mut PgConnection) -> ApiResult<Vec<CircuitView>> {
    Ok(store::circuits::list(conn).await?.iter().map(CircuitView::from_row).collect())
}

/// One circuit, or 404.
pub async fn get_row(conn: &mut PgConnection, id: &str) -> ApiResult<CircuitRow> {
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("no circuit {id}; GET /v1/circuits lists them"));
    if !is_circuit_id(id) {
        return Err(not_found());
    }
    store::circuits::get(conn, id).await?.ok_or_else(not_found)
}

/// One circuit's view, or 404.
pub async fn get(conn: &mut PgConnection, id: &str) -> ApiResult<CircuitView> {
    Ok(CircuitView::from_row(&get_row(conn, id).await?))
}

/// Checks a registered circuit's class: it exists and the size is its own (filled in when
/// omitted). Returns the class to store.
pub async fn checked_registered_class(conn: &mut PgConnection, class: &ProofClass) -> ApiResult<ProofClass> {
    let row = store::circuits::get(conn, &class.circuit).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidProofClass,
            format!("proof_class: no registered circuit {}; GET /v1/circuits lists them", class.circuit),
        )
    })?;
    let size_log2 = u8::try_from(row.size_log2).map_err(ApiError::internal)?;
    if class.size_log2 != 0 && class.size_log2 != size_log2 {
        return Err(ApiError::new(
            ErrorCode::InvalidProofClass,
            format!(
                "proof_class: size_log2 {} is not circuit {}'s: its {} constraints and {} public signals need a 2^{size_log2} \
                 domain; use {size_log2} or leave size_log2 out",
                class.size_log2, row.id, row.constraints, row.public_signals
            ),
        ));
    }
    Ok(ProofClass { size_log2, ..class.clone() })
}

/// Resolves proof classes to circuits, loading registered ones from the database once per
/// process (their constraints and witness generator check inputs; their key checks proofs).
#[derive(Debug, Default)]
pub struct Catalog {
    loaded: Mutex<HashMap<String, Arc<RegisteredCircuit>>>,
    /// One load at a time, so concurrent first uses do not each parse the same artifacts.
    loading: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// The circuit of a stored class (a contract's, a job's). A class that resolves nowhere is
    /// the exchange's fault (it was checked when traded).
    pub async fn resolve(&self, db: &PgPool, class: &ProofClass) -> ApiResult<Circuit> {
        if !is_circuit_id(&class.circuit) {
            return Circuit::for_class(class).map_err(ApiError::internal);
        }
        if let Some(found) = self.cached(&class.circuit) {
            return Ok(Circuit::Circom(found));
        }
        let _one_at_a_time = self.loading.lock().await;
        if let Some(found) = self.cached(&class.circuit) {
            return Ok(Circuit::Circom(found));
        }
        let mut conn = db.acquire().await?;
        let row = store::circuits::get(&mut conn, &class.circuit)
            .await?
            .ok_or_else(|| ApiError::internal(format!("circuit {} of a traded class is not registered", class.circuit)))?;
        let r1cs = store::circuits::read_blob(&mut conn, row.r1cs.id).await?;
        let wasm = store::circuits::read_blob(&mut conn, row.wasm.id).await?;
        drop(conn);
        let started = Instant::now();
        let (id, vk_json) = (row.id.clone(), row.verifying_key.clone());
        let registered = tokio::task::spawn_blocking(move || -> Result<RegisteredCircuit, String> {
            let circuit = CircomCircuit::load(&r1cs, &wasm).map_err(|e| e.to_string())?;
            let vk = snarkjs::verifying_key_from_json(&vk_json).map_err(|e| e.to_string())?;
            Ok(RegisteredCircuit { id, circuit, verifying_key: Arc::new(ark_groth16::prepare_verifying_key(&vk)) })
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        tracing::info!(circuit = %row.id, load_ms = started.elapsed().as_millis() as u64, "registered circuit loaded");
        let registered = Arc::new(registered);
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(row.id, Arc::clone(&registered));
        Ok(Circuit::Circom(registered))
    }

    fn cached(&self, id: &str) -> Option<Arc<RegisteredCircuit>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_ids_are_content_addresses() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let id = circuit_id(&a, &b, &b);
        assert!(is_circuit_id(&id));
        assert_eq!(id, circuit_id(&a, &b, &b));
        assert_ne!(id, circuit_id(&b, &a, &b));
        assert!(!is_circuit_id("hash-chain"));
        assert!(!is_circuit_id(&id.to_uppercase()));
    }
}
