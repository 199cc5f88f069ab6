//! The built-in circuit's Groth16 setups: made once per exchange from the operating system's
//! randomness, kept in the database (so every replica verifies with the same key and agents
//! download the same proving key), and installed in the [`KeyStore`] that verifies proofs.
//!
//! Only an exchange started with `--dev-keys` (`PCX_DEV_KEYS`, tests and benchmarks) makes the
//! deterministic development setup instead; it says so loudly, and an exchange started without
//! the flag refuses such a setup rather than verify proofs anyone could forge.
//!
//! Invariants: a size has at most one setup (primary key; two processes racing both make one and
//! the second insert loses, then uses the first); a setup is made in a task of its own, so a
//! request that stops waiting does not stop it; one process makes a size at a time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

use pcx_prover_pool::hash_chain::CIRCUIT_NAME;
use pcx_prover_pool::keys::{self, KeyStore};
use pcx_prover_pool::snarkjs;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::service::circuits::BlobWriter;
use crate::store::{self, circuits::SetupRow};

/// How long a request waits for a setup being made before it answers 503 (retry).
pub const WAIT_FOR_SETUP: Duration = Duration::from_secs(20);

/// The setups of this process: which are installed, and one maker per size.
#[derive(Debug)]
pub struct Setups {
    db: PgPool,
    keys: Arc<KeyStore>,
    development: bool,
    installed: Mutex<HashSet<u8>>,
    makers: Mutex<HashMap<u8, Arc<tokio::sync::Mutex<()>>>>,
}

impl Setups {
    /// Setups on `db`, verified with `keys`; `development` only with `--dev-keys`.
    pub fn new(db: PgPool, keys: Arc<KeyStore>, development: bool) -> Setups {
        Setups { db, keys, development, installed: Mutex::default(), makers: Mutex::default() }
    }

    /// Whether this exchange makes development setups.
    pub fn development(&self) -> bool {
        self.development
    }

    /// Whether size 2^size_log2's verifying key is ready.
    pub fn is_installed(&self, size_log2: u8) -> bool {
        self.installed.lock().unwrap_or_else(PoisonError::into_inner).contains(&size_log2)
    }

    /// The setup of size 2^size_log2, made now if there is none, its verifying key installed.
    /// Waits at most [`WAIT_FOR_SETUP`] (then 503 with `Retry-After`; the setup goes on).
    pub async fn ensure(self: &Arc<Self>, size_log2: u8) -> ApiResult<SetupRow> {
        keys::check_traded_size(size_log2)
            .map_err(|e| ApiError::new(ErrorCode::NotFound, format!("no hash-chain setup of that size: {e}")))?;
        let this = Arc::clone(self);
        let task = tokio::spawn(async move { this.ensure_now(size_log2).await });
        match tokio::time::timeout(WAIT_FOR_SETUP, task).await {
            Ok(done) => done.map_err(ApiError::internal)?,
            Err(_) => Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("the hash-chain 2^{size_log2} setup is being made (minutes for large sizes); retry"),
            )
            .with_retry_after(5)),
        }
    }

    /// Starts making (or loading) size 2^size_log2's setup in the background.
    pub fn warm(self: &Arc<Self>, size_log2: u8) {
        if self.is_installed(size_log2) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(err) = this.ensure_now(size_log2).await {
                tracing::error!(size_log2, error = %err, "the hash-chain setup is unavailable; its proofs cannot be verified");
            }
        });
    }

    async fn ensure_now(&self, size_log2: u8) -> ApiResult<SetupRow> {
        let maker = Arc::clone(self.makers.lock().unwrap_or_else(PoisonError::into_inner).entry(size_log2).or_default());
        let _one_maker = maker.lock().await;
        let row = match self.load(size_log2).await? {
            Some(row) => row,
            None => self.make(size_log2).await?,
        };
        if row.development && !self.development {
            tracing::error!(
                size_log2,
                "the database holds the DEVELOPMENT (forgeable) hash-chain setup of this size, made by an exchange run \
                 with --dev-keys; this exchange runs without it and will not verify with forgeable keys: delete that \
                 setup (DELETE FROM builtin_setups WHERE development) before trading, or run with --dev-keys"
            );
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!("hash-chain 2^{size_log2} cannot be proved or verified on this exchange now; its operator is told why"),
            ));
        }
        if !self.is_installed(size_log2) {
            let vk = snarkjs::verifying_key_from_json(&row.verifying_key).map_err(ApiError::internal)?;
            self.keys.install_verifying_key(size_log2, &vk).map_err(ApiError::internal)?;
            self.installed.lock().unwrap_or_else(PoisonError::into_inner).insert(size_log2);
        }
        Ok(row)
    }

    async fn load(&self, size_log2: u8) -> ApiResult<Option<SetupRow>> {
        let mut conn = self.db.acquire().await?;
        Ok(store::circuits::setup(&mut conn, CIRCUIT_NAME, i16::from(size_log2)).await?)
    }

    /// Makes the setup (OS randomness, or the development one) and stores it; when another
    /// process stored one meanwhile, that one wins.
    async fn make(&self, size_log2: u8) -> ApiResult<SetupRow> {
        let development = self.development;
        let dev_keys = Arc::clone(&self.keys);
        tracing::info!(size_log2, development, "making the hash-chain setup");
        let (bytes, vk) = tokio::task::spawn_blocking(move || {
            let pk = match development {
                // The development store caches its deterministic keys on disk.
                true => dev_keys.proving_key(size_log2).map(|pk| (*pk).clone()),
                false => keys::random_setup(size_log2),
            }?;
            Ok::<_, keys::KeyError>((keys::proving_key_bytes(&pk), pk.vk))
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
        let now = Utc::now();
        let mut tx = self.db.begin().await?;
        let mut writer = BlobWriter::begin(&mut tx, now).await?;
        writer.write(&mut tx, &bytes).await?;
        let blob = writer.finish(&mut tx).await?;
        let vk_json = snarkjs::verifying_key_to_json(&vk);
        if store::circuits::insert_setup(&mut tx, CIRCUIT_NAME, i16::from(size_log2), development, blob.id, &vk_json, now)
            .await?
        {
            tx.commit().await?;
            tracing::info!(size_log2, development, pk_bytes = blob.bytes, "hash-chain setup stored");
        } else {
            tx.rollback().await?;
        }
        self.load(size_log2).await?.ok_or_else(|| ApiError::internal("a stored setup vanished"))
    }
}

/// The public view of a built-in setup (`GET /v1/circuits/hash-chain-<k>`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BuiltinCircuitView {
    /// `hash-chain-<k>`.
    pub circuit_id: String,
    /// `hash-chain`.
    pub name: String,
    /// Always ready (a setup exists once this answers).
    pub status: crate::service::circuits::CircuitStatus,
    /// Size.
    pub size_log2: u8,
    /// Public signals: `[seed, out]`.
    pub public_signals: u32,
    /// True for the deterministic, forgeable development setup (`--dev-keys`).
    pub development_keys: bool,
    /// The proving key (ark-serialize, uncompressed: the agents' `.pk` key-file format).
    pub artifacts: BuiltinArtifacts,
    /// The class to trade it with (any `deadline_secs`).
    pub proof_class: pcx_domain::ProofClass,
    /// When the setup was made.
    pub made_at: chrono::DateTime<Utc>,
}

/// The built-in setup's files.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BuiltinArtifacts {
    /// The proving key.
    pub pk: crate::service::circuits::ArtifactView,
}

/// The size of a built-in setup's id (`hash-chain-<k>`), if it is one.
pub fn builtin_size(id: &str) -> Option<u8> {
    id.strip_prefix(CIRCUIT_NAME)?.strip_prefix('-')?.parse().ok()
}

impl BuiltinCircuitView {
    /// The view of a stored setup.
    pub fn of(row: &SetupRow) -> BuiltinCircuitView {
        let size_log2 = u8::try_from(row.size_log2).unwrap_or(0);
        let id = format!("{CIRCUIT_NAME}-{size_log2}");
        BuiltinCircuitView {
            artifacts: BuiltinArtifacts { pk: crate::service::circuits::ArtifactView::of(&id, "pk", &row.pk) },
            circuit_id: id,
            name: CIRCUIT_NAME.to_owned(),
            status: crate::service::circuits::CircuitStatus::Ready,
            size_log2,
            public_signals: 2,
            development_keys: row.development,
            proof_class: pcx_domain::ProofClass {
                system: pcx_domain::ProofSystem::Groth16Bn254,
                circuit: CIRCUIT_NAME.to_owned(),
                size_log2,
                deadline_secs: 600,
            },
            made_at: row.created_at,
        }
    }
}
