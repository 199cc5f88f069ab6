//! Registered circuits and their artifacts (migration `0006_circuits.sql`): blobs written in
//! chunks as uploads stream in, circuits that name three blobs.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use pcx_domain::AccountId;

/// Starts a blob; its chunks follow, then [`finish_blob`] records its hash and size.
pub async fn begin_blob(conn: &mut PgConnection, id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO artifact_blobs (id, sha256, bytes, created_at) VALUES ($1, $2, 0, $3)")
        .bind(id)
        .bind(&[0u8; 32][..])
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Appends chunk `seq` of a blob.
pub async fn insert_chunk(conn: &mut PgConnection, blob: Uuid, seq: i32, data: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO artifact_chunks (blob_id, seq, data) VALUES ($1, $2, $3)")
        .bind(blob)
        .bind(seq)
        .bind(data)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a blob's sha256 and size once its last chunk is in.
pub async fn finish_blob(conn: &mut PgConnection, blob: Uuid, sha256: &[u8], bytes: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE artifact_blobs SET sha256 = $2, bytes = $3 WHERE id = $1")
        .bind(blob)
        .bind(sha256)
        .bind(bytes)
        .execute(conn)
        .await?;
    Ok(())
}

/// A blob's whole content, for parsing (the caller bounds blob sizes).
pub async fn read_blob(conn: &mut PgConnection, blob: Uuid) -> Result<Vec<u8>, sqlx::Error> {
    let chunks: Vec<(Vec<u8>,)> =
        sqlx::query_as("SELECT data FROM artifact_chunks WHERE blob_id = $1 ORDER BY seq").bind(blob).fetch_all(conn).await?;
    let mut out = Vec::with_capacity(chunks.iter().map(|(c,)| c.len()).sum());
    for (chunk,) in chunks {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Chunk `seq` of a blob, `None` past the last one.
pub async fn chunk(conn: &mut PgConnection, blob: Uuid, seq: i32) -> Result<Option<Vec<u8>>, sqlx::Error> {
    let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT data FROM artifact_chunks WHERE blob_id = $1 AND seq = $2")
        .bind(blob)
        .bind(seq)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(data,)| data))
}

/// An artifact of a circuit: the blob and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// The blob.
    pub id: Uuid,
    /// Its sha256.
    pub sha256: Vec<u8>,
    /// Its size.
    pub bytes: i64,
}

/// A registered circuit as stored.
#[derive(Debug, Clone)]
pub struct CircuitRow {
    /// Content address.
    pub id: String,
    /// Name its owner gave it.
    pub name: String,
    /// Who registered it.
    pub owner_id: AccountId,
    /// Constraints.
    pub constraints: i64,
    /// Wires.
    pub wires: i64,
    /// Public signals (outputs, then public inputs).
    pub public_signals: i32,
    /// Public outputs.
    pub public_outputs: i32,
    /// Private inputs.
    pub private_inputs: i32,
    /// log2 of the domain.
    pub size_log2: i16,
    /// circom that compiled it.
    pub circom_version: String,
    /// snarkjs vk.json.
    pub verifying_key: serde_json::Value,
    /// The sample input.
    pub sample_input: serde_json::Value,
    /// The three artifacts.
    pub r1cs: BlobRef,
    /// The witness generator.
    pub wasm: BlobRef,
    /// The setup.
    pub zkey: BlobRef,
    /// Registration's check time.
    pub check_ms: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RawCircuit {
    id: String,
    name: String,
    owner_id: Uuid,
    constraints: i64,
    wires: i64,
    public_signals: i32,
    public_outputs: i32,
    private_inputs: i32,
    size_log2: i16,
    circom_version: String,
    verifying_key: serde_json::Value,
    sample_input: serde_json::Value,
    r1cs_blob: Uuid,
    r1cs_sha256: Vec<u8>,
    r1cs_bytes: i64,
    wasm_blob: Uuid,
    wasm_sha256: Vec<u8>,
    wasm_bytes: i64,
    zkey_blob: Uuid,
    zkey_sha256: Vec<u8>,
    zkey_bytes: i64,
    check_ms: i64,
    created_at: DateTime<Utc>,
}

impl From<RawCircuit> for CircuitRow {
    fn from(r: RawCircuit) -> Self {
        CircuitRow {
            id: r.id,
            name: r.name,
            owner_id: AccountId(r.owner_id),
            constraints: r.constraints,
            wires: r.wires,
            public_signals: r.public_signals,
            public_outputs: r.public_outputs,
            private_inputs: r.private_inputs,
            size_log2: r.size_log2,
            circom_version: r.circom_version,
            verifying_key: r.verifying_key,
            sample_input: r.sample_input,
            r1cs: BlobRef { id: r.r1cs_blob, sha256: r.r1cs_sha256, bytes: r.r1cs_bytes },
            wasm: BlobRef { id: r.wasm_blob, sha256: r.wasm_sha256, bytes: r.wasm_bytes },
            zkey: BlobRef { id: r.zkey_blob, sha256: r.zkey_sha256, bytes: r.zkey_bytes },
            check_ms: r.check_ms,
            created_at: r.created_at,
        }
    }
}

const SELECT: &str = "SELECT c.id, c.name, c.owner_id, c.constraints, c.wires, c.public_signals, c.public_outputs,
        c.private_inputs, c.size_log2, c.circom_version, c.verifying_key, c.sample_input,
        c.r1cs_blob, r.sha256 AS r1cs_sha256, r.bytes AS r1cs_bytes,
        c.wasm_blob, w.sha256 AS wasm_sha256, w.bytes AS wasm_bytes,
        c.zkey_blob, z.sha256 AS zkey_sha256, z.bytes AS zkey_bytes, c.check_ms, c.created_at
   FROM circuits c
   JOIN artifact_blobs r ON r.id = c.r1cs_blob
   JOIN artifact_blobs w ON w.id = c.wasm_blob
   JOIN artifact_blobs z ON z.id = c.zkey_blob";

/// Every registered circuit's id and size, oldest first (what the oracle needs for its feeds).
pub async fn sizes(conn: &mut PgConnection) -> Result<Vec<(String, i16)>, sqlx::Error> {
    sqlx::query_as("SELECT id, size_log2 FROM circuits ORDER BY created_at, id").fetch_all(conn).await
}

/// One circuit.
pub async fn get(conn: &mut PgConnection, id: &str) -> Result<Option<CircuitRow>, sqlx::Error> {
    let raw: Option<RawCircuit> =
        sqlx::query_as(&format!("{SELECT} WHERE c.id = $1")).bind(id).fetch_optional(conn).await?;
    Ok(raw.map(Into::into))
}

/// Every circuit, oldest first (the market is small enough to list; issue pagination when not).
pub async fn list(conn: &mut PgConnection) -> Result<Vec<CircuitRow>, sqlx::Error> {
    let raw: Vec<RawCircuit> = sqlx::query_as(&format!("{SELECT} ORDER BY c.created_at, c.id")).fetch_all(conn).await?;
    Ok(raw.into_iter().map(Into::into).collect())
}

/// A circuit to insert (its blobs are already in).
#[derive(Debug, Clone)]
pub struct NewCircuit<'a> {
    /// Content address.
    pub id: &'a str,
    /// Name.
    pub name: &'a str,
    /// Owner.
    pub owner_id: AccountId,
    /// Constraints.
    pub constraints: i64,
    /// Wires.
    pub wires: i64,
    /// Public signals.
    pub public_signals: i32,
    /// Public outputs.
    pub public_outputs: i32,
    /// Private inputs.
    pub private_inputs: i32,
    /// log2 of the domain.
    pub size_log2: i16,
    /// circom version.
    pub circom_version: &'a str,
    /// vk.json.
    pub verifying_key: &'a serde_json::Value,
    /// Sample input.
    pub sample_input: &'a serde_json::Value,
    /// Blobs.
    pub r1cs_blob: Uuid,
    /// Blobs.
    pub wasm_blob: Uuid,
    /// Blobs.
    pub zkey_blob: Uuid,
    /// Check time.
    pub check_ms: i64,
    /// Now.
    pub created_at: DateTime<Utc>,
}

/// Inserts a ready circuit; `false` when one with this id exists already (a concurrent
/// registration of the same files).
pub async fn insert(conn: &mut PgConnection, c: &NewCircuit<'_>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO circuits (id, name, owner_id, status, constraints, wires, public_signals, public_outputs,
                               private_inputs, size_log2, circom_version, verifying_key, sample_input,
                               r1cs_blob, wasm_blob, zkey_blob, check_ms, created_at)
         VALUES ($1, $2, $3, 'ready', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(c.id)
    .bind(c.name)
    .bind(c.owner_id.0)
    .bind(c.constraints)
    .bind(c.wires)
    .bind(c.public_signals)
    .bind(c.public_outputs)
    .bind(c.private_inputs)
    .bind(c.size_log2)
    .bind(c.circom_version)
    .bind(c.verifying_key)
    .bind(c.sample_input)
    .bind(c.r1cs_blob)
    .bind(c.wasm_blob)
    .bind(c.zkey_blob)
    .bind(c.check_ms)
    .bind(c.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A built-in circuit's setup as stored (migration `0007_builtin_setups.sql`).
#[derive(Debug, Clone)]
pub struct SetupRow {
    /// Size.
    pub size_log2: i16,
    /// The deterministic development setup.
    pub development: bool,
    /// The proving key's blob.
    pub pk: BlobRef,
    /// vk.json.
    pub verifying_key: serde_json::Value,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// size, development, blob, sha256, bytes, vk, created_at.
type RawSetup = (i16, bool, Uuid, Vec<u8>, i64, serde_json::Value, DateTime<Utc>);

/// The setup of `circuit` at `size_log2`, if made.
pub async fn setup(conn: &mut PgConnection, circuit: &str, size_log2: i16) -> Result<Option<SetupRow>, sqlx::Error> {
    let row: Option<RawSetup> = sqlx::query_as(
        "SELECT s.size_log2, s.development, s.pk_blob, b.sha256, b.bytes, s.verifying_key, s.created_at
           FROM builtin_setups s JOIN artifact_blobs b ON b.id = s.pk_blob
          WHERE s.circuit = $1 AND s.size_log2 = $2",
    )
    .bind(circuit)
    .bind(size_log2)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(size_log2, development, id, sha256, bytes, verifying_key, created_at)| SetupRow {
        size_log2,
        development,
        pk: BlobRef { id, sha256, bytes },
        verifying_key,
        created_at,
    }))
}

/// Inserts a setup whose blob is written; `false` when another process stored one first.
pub async fn insert_setup(
    conn: &mut PgConnection,
    circuit: &str,
    size_log2: i16,
    development: bool,
    pk_blob: Uuid,
    verifying_key: &serde_json::Value,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO builtin_setups (circuit, size_log2, development, pk_blob, verifying_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (circuit, size_log2) DO NOTHING",
    )
    .bind(circuit)
    .bind(size_log2)
    .bind(development)
    .bind(pk_blob)
    .bind(verifying_key)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
