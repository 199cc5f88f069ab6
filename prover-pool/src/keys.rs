//! Groth16 keys for the `hash-chain` circuit: loaded from files, or (development stores only)
//! generated deterministically and cached there.
//!
//! # Where real keys come from
//! An exchange makes each size's setup once from the operating system's randomness
//! ([`random_setup`]) and keeps it with the market's data; agents download the proving key from
//! it into their key directory. Such stores are [`KeyOrigin::Provided`]: they load files and
//! keys installed in memory ([`KeyStore::install_verifying_key`]) and never generate anything.
//!
//! # DEVELOPMENT KEYS — NOT FOR PRODUCTION
//! When no key file exists, the keys are made by a *deterministic* setup: ChaCha20 seeded with
//! [`setup_seed`], which is derived from a public domain-separation string and the size. Anyone
//! can therefore recompute the setup's toxic waste (tau, alpha, beta, gamma, delta) and forge
//! proofs of false statements. That is fine for development, tests and benchmarks, where it makes
//! every machine agree on the keys without exchanging files; it is **not** fine for real value.
//! Production puts keys from a trusted-setup ceremony into the same files before first use; they
//! are then loaded and nothing is generated.
//!
//! # Files
//! `<dir>/hash-chain-<k>.pk` and `<dir>/hash-chain-<k>.vk`, for size 2^k: an arkworks
//! `ProvingKey<Bn254>` / `VerifyingKey<Bn254>` in ark-serialize **uncompressed** form (no square
//! roots to take when loading large keys; about twice the size of compressed). Loading validates
//! every point (on the curve, in the right subgroup), refuses trailing bytes, checks that the key
//! has the shape of the circuit of that size, and, when both files exist, that the `.pk`'s
//! embedded verifying key equals the `.vk`. Files are written to a temporary name, synced and
//! then renamed, so a crash never leaves a half-written key behind.
//!
//! # Caching
//! A [`KeyStore`] keeps what it loaded or generated in memory, so each size is set up or read at
//! most once per store; share one store per process (it is `Send + Sync`). Concurrent calls for
//! the same size wait for one another rather than generating twice; different sizes proceed in
//! parallel. Verifying needs only the small `.vk` file: [`KeyStore::verifying_key`] never loads a
//! proving key when the `.vk` exists.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use ark_bn254::Bn254;
use ark_groth16::{Groth16, PreparedVerifyingKey, ProvingKey, VerifyingKey};
use ark_relations::r1cs::SynthesisError;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, SerializationError, Validate};
use ark_snark::SNARK;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::hash_chain::{self, HashChainCircuit, CIRCUIT_NAME, INSTANCE_VARIABLES};
use crate::registry::{RegistryError, CIRCUITS};

/// Domain separation of the development setup's randomness; see [`setup_seed`].
pub const DEV_SETUP_DOMAIN: &[u8] = b"pcx/hash-chain/dev-setup/v1";

/// Why keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The size is not traded (see [`crate::registry`]).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A key file exists but is not a valid key for this circuit and size.
    #[error(
        "key file {path} is not a valid hash-chain key: {reason}; replace it with the right key \
         (or delete it to regenerate development keys)"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The `.pk` and `.vk` files of a size belong to different setups.
    #[error(
        "{pk} and {vk} do not belong together (the proving key embeds a different verifying key); \
         put both files of the same setup there"
    )]
    Mismatch {
        /// The proving key file.
        pk: PathBuf,
        /// The verifying key file.
        vk: PathBuf,
    },
    /// A store that never generates keys has none for this size.
    #[error(
        "no hash-chain 2^{size_log2} key at {path}: this store does not generate keys (the exchange makes \
         the setup and agents download it)"
    )]
    NotProvided {
        /// The size.
        size_log2: u8,
        /// Where the key was looked for.
        path: PathBuf,
    },
    /// The setup itself failed.
    #[error("Groth16 setup for hash-chain 2^{size_log2} failed: {source}")]
    Setup {
        /// The size.
        size_log2: u8,
        /// What arkworks said.
        source: SynthesisError,
    },
}

/// Checks that `size_log2` is a traded size of `hash-chain` (2^10 ..= 2^20 today).
pub fn check_traded_size(size_log2: u8) -> Result<(), RegistryError> {
    let spec = CIRCUITS
        .iter()
        .find(|c| c.name == CIRCUIT_NAME)
        .ok_or_else(|| RegistryError::UnknownCircuit(CIRCUIT_NAME.into()))?;
    if (spec.min_size_log2..=spec.max_size_log2).contains(&size_log2) {
        Ok(())
    } else {
        Err(RegistryError::UnsupportedSize {
            circuit: CIRCUIT_NAME.into(),
            got: size_log2,
            min: spec.min_size_log2,
            max: spec.max_size_log2,
        })
    }
}

/// The ChaCha20 seed of the development setup for size 2^size_log2: [`DEV_SETUP_DOMAIN`],
/// zero-padded to 31 bytes, then the size byte. Public on purpose: see the module docs.
pub fn setup_seed(size_log2: u8) -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..DEV_SETUP_DOMAIN.len()].copy_from_slice(DEV_SETUP_DOMAIN);
    seed[31] = size_log2;
    seed
}

/// What a store holds for one size.
#[derive(Default)]
struct SizeSlot {
    proving: Option<Arc<ProvingKey<Bn254>>>,
    verifying: Option<Arc<PreparedVerifyingKey<Bn254>>>,
}

/// Where a store's keys come from when it has no file for a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Generated by the deterministic DEVELOPMENT setup and cached (tests and benchmarks only:
    /// anyone can forge proofs for these keys).
    Development,
    /// Only files and installed keys; a missing key is an error ([`KeyError::NotProvided`]).
    Provided,
}

/// Keys of every size, from files in one directory; see the module docs.
pub struct KeyStore {
    dir: PathBuf,
    origin: KeyOrigin,
    /// One slot per size, each behind its own lock so that sizes load independently.
    slots: Mutex<HashMap<u8, Arc<Mutex<SizeSlot>>>>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys themselves are megabytes of points: show where they live, not what they are.
        f.debug_struct("KeyStore").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A DEVELOPMENT store over `dir` (created when a key is first written): missing keys are
    /// generated deterministically. Nothing is read yet.
    pub fn new(dir: impl Into<PathBuf>) -> KeyStore {
        Self::with_origin(dir, KeyOrigin::Development)
    }

    /// A store over `dir` whose missing keys come from `origin`.
    pub fn with_origin(dir: impl Into<PathBuf>, origin: KeyOrigin) -> KeyStore {
        KeyStore { dir: dir.into(), origin, slots: Mutex::new(HashMap::new()) }
    }

    /// Where missing keys come from.
    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }

    /// Puts a verifying key of size 2^size_log2 in memory (an exchange's, from its database);
    /// it replaces whatever the store held for that size.
    pub fn install_verifying_key(&self, size_log2: u8, vk: &VerifyingKey<Bn254>) -> Result<(), KeyError> {
        check_traded_size(size_log2)?;
        check_verifying_key_shape(vk)
            .map_err(|reason| KeyError::Invalid { path: self.verifying_key_path(size_log2), reason })?;
        let slot = self.slot(size_log2);
        let mut slot = lock(&slot);
        if slot.proving.as_ref().is_some_and(|pk| pk.vk != *vk) {
            slot.proving = None;
        }
        slot.verifying = Some(Arc::new(ark_groth16::prepare_verifying_key(vk)));
        Ok(())
    }

    /// Forgets what the store holds in memory for size 2^size_log2 (after its files changed).
    pub fn forget(&self, size_log2: u8) {
        lock(&self.slots).remove(&size_log2);
    }

    /// The directory holding the key files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The proving key file of size 2^size_log2.
    pub fn proving_key_path(&self, size_log2: u8) -> PathBuf {
        self.dir.join(format!("{CIRCUIT_NAME}-{size_log2}.pk"))
    }

    /// The verifying key file of size 2^size_log2.
    pub fn verifying_key_path(&self, size_log2: u8) -> PathBuf {
        self.dir.join(format!("{CIRCUIT_NAME}-{size_log2}.vk"))
    }

    /// The proving key of size 2^size_log2: from memory, else from its file, else generated
    /// (development keys, written to both files).
    pub fn proving_key(&self, size_log2: u8) -> Result<Arc<ProvingKey<Bn254>>, KeyError> {
        check_traded_size(size_log2)?;
        let slot = self.slot(size_log2);
        let mut slot = lock(&slot);
        self.ensure_proving_key(size_log2, &mut slot)
    }

    /// The (prepared) verifying key of size 2^size_log2: from memory, else from its `.vk` file,
    /// else taken from the proving key (loaded or generated as by [`KeyStore::proving_key`]).
    pub fn verifying_key(&self, size_log2: u8) -> Result<Arc<PreparedVerifyingKey<Bn254>>, KeyError> {
        check_traded_size(size_log2)?;
        let slot = self.slot(size_log2);
        let mut slot = lock(&slot);
        if let Some(pvk) = &slot.verifying {
            return Ok(Arc::clone(pvk));
        }
        let vk_path = self.verifying_key_path(size_log2);
        let vk = if vk_path.exists() {
            load_verifying_key(&vk_path)?
        } else if self.origin == KeyOrigin::Provided && !self.proving_key_path(size_log2).exists() {
            return Err(KeyError::NotProvided { size_log2, path: vk_path });
        } else {
            self.ensure_proving_key(size_log2, &mut slot)?.vk.clone()
        };
        let pvk = Arc::new(ark_groth16::prepare_verifying_key(&vk));
        slot.verifying = Some(Arc::clone(&pvk));
        Ok(pvk)
    }

    /// A short fingerprint of the verifying key of size 2^size_log2, for logs and capabilities:
    /// 16 hex digits of FNV-1a (64 bit) over the key's compressed ark-serialize bytes. It tells
    /// keys apart; it is not a cryptographic commitment (compare the key bytes for that).
    pub fn verifying_key_id(&self, size_log2: u8) -> Result<String, KeyError> {
        let pvk = self.verifying_key(size_log2)?;
        let mut bytes = Vec::new();
        pvk.vk.serialize_compressed(&mut bytes).map_err(|e| KeyError::Invalid {
            path: self.verifying_key_path(size_log2),
            reason: format!("could not serialize the verifying key: {e}"),
        })?;
        Ok(format!("{:016x}", fnv1a64(&bytes)))
    }

    /// Whether the proving key of size 2^size_log2 is already in memory (so that
    /// [`KeyStore::proving_key`] returns at once); `false` while another thread is loading it.
    pub fn has_proving_key_in_memory(&self, size_log2: u8) -> bool {
        // Clone the slot out first so the map lock is not held while looking inside it.
        let Some(slot) = lock(&self.slots).get(&size_log2).cloned() else { return false };
        let in_memory = match slot.try_lock() {
            Ok(slot) => slot.proving.is_some(),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().proving.is_some(),
            Err(TryLockError::WouldBlock) => false,
        };
        in_memory
    }

    fn slot(&self, size_log2: u8) -> Arc<Mutex<SizeSlot>> {
        Arc::clone(lock(&self.slots).entry(size_log2).or_default())
    }

    /// Loads or generates the proving key into `slot` (whose lock the caller holds).
    fn ensure_proving_key(&self, size_log2: u8, slot: &mut SizeSlot) -> Result<Arc<ProvingKey<Bn254>>, KeyError> {
        if let Some(pk) = &slot.proving {
            return Ok(Arc::clone(pk));
        }
        let (pk_path, vk_path) = (self.proving_key_path(size_log2), self.verifying_key_path(size_log2));
        let pk = if pk_path.exists() {
            let pk = load_proving_key(&pk_path, size_log2)?;
            if vk_path.exists() {
                if load_verifying_key(&vk_path)? != pk.vk {
                    return Err(KeyError::Mismatch { pk: pk_path, vk: vk_path });
                }
            } else {
                // A `.pk` alone (e.g. copied without its `.vk`): complete the pair.
                write_atomically(&vk_path, &pk.vk)?;
            }
            pk
        } else if self.origin == KeyOrigin::Provided {
            return Err(KeyError::NotProvided { size_log2, path: pk_path });
        } else {
            let pk = generate_development_keys(size_log2)?;
            // A `.vk` without its `.pk` is fine only if it is the development key.
            if vk_path.exists() && load_verifying_key(&vk_path)? != pk.vk {
                return Err(KeyError::Mismatch { pk: pk_path, vk: vk_path });
            }
            // The `.pk` first: a crash before the `.vk` is written is repaired by the branch above.
            write_atomically(&pk_path, &pk)?;
            write_atomically(&vk_path, &pk.vk)?;
            pk
        };
        let pk = Arc::new(pk);
        slot.proving = Some(Arc::clone(&pk));
        Ok(pk)
    }
}

/// A setup of size 2^size_log2 from the operating system's randomness: its toxic waste exists
/// only inside this call. Seconds for small sizes, minutes for 2^20.
pub fn random_setup(size_log2: u8) -> Result<ProvingKey<Bn254>, KeyError> {
    check_traded_size(size_log2)?;
    let started = Instant::now();
    let (pk, _vk) =
        Groth16::<Bn254>::circuit_specific_setup(HashChainCircuit { seed: None, size_log2 }, &mut rand::rngs::OsRng)
            .map_err(|source| KeyError::Setup { size_log2, source })?;
    tracing::info!(size_log2, elapsed_ms = started.elapsed().as_millis(), "made a hash-chain setup from OS randomness");
    Ok(pk)
}

/// The development setup of size 2^size_log2 (deterministic, forgeable; see the module docs).
pub fn development_setup(size_log2: u8) -> Result<ProvingKey<Bn254>, KeyError> {
    check_traded_size(size_log2)?;
    generate_development_keys(size_log2)
}

/// A proving key as key files hold it: ark-serialize, uncompressed.
pub fn proving_key_bytes(pk: &ProvingKey<Bn254>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(pk.uncompressed_size());
    if let Err(e) = pk.serialize_uncompressed(&mut bytes) {
        unreachable!("serializing a proving key into memory failed: {e}");
    }
    bytes
}

/// Reads and checks a proving key of size 2^size_log2 from key-file bytes.
pub fn proving_key_from_bytes(bytes: &[u8], size_log2: u8) -> Result<ProvingKey<Bn254>, String> {
    let pk = ProvingKey::<Bn254>::deserialize_with_mode(bytes, Compress::No, Validate::Yes).map_err(|e| e.to_string())?;
    check_verifying_key_shape(&pk.vk).and_then(|()| check_proving_key_shape(&pk, size_log2))?;
    Ok(pk)
}

/// The deterministic development setup; see the module docs.
fn generate_development_keys(size_log2: u8) -> Result<ProvingKey<Bn254>, KeyError> {
    tracing::info!(
        size_log2,
        "generating DEVELOPMENT Groth16 keys for hash-chain (deterministic, not for production); \
         this takes seconds to minutes for large sizes"
    );
    let started = Instant::now();
    let mut rng = ChaCha20Rng::from_seed(setup_seed(size_log2));
    let (pk, _vk) = Groth16::<Bn254>::circuit_specific_setup(HashChainCircuit { seed: None, size_log2 }, &mut rng)
        .map_err(|source| KeyError::Setup { size_log2, source })?;
    tracing::info!(size_log2, elapsed_ms = started.elapsed().as_millis(), "generated hash-chain development keys");
    Ok(pk)
}

fn load_proving_key(path: &Path, size_log2: u8) -> Result<ProvingKey<Bn254>, KeyError> {
    let started = Instant::now();
    let pk: ProvingKey<Bn254> = load(path)?;
    check_verifying_key_shape(&pk.vk)
        .and_then(|()| check_proving_key_shape(&pk, size_log2))
        .map_err(|reason| KeyError::Invalid { path: path.to_owned(), reason })?;
    let elapsed_ms = started.elapsed().as_millis();
    tracing::info!(size_log2, path = %path.display(), elapsed_ms, "loaded hash-chain proving key");
    Ok(pk)
}

fn load_verifying_key(path: &Path) -> Result<VerifyingKey<Bn254>, KeyError> {
    let vk: VerifyingKey<Bn254> = load(path)?;
    check_verifying_key_shape(&vk).map_err(|reason| KeyError::Invalid { path: path.to_owned(), reason })?;
    Ok(vk)
}

/// A verifying key of this circuit has one `gamma_abc` point per instance variable.
fn check_verifying_key_shape(vk: &VerifyingKey<Bn254>) -> Result<(), String> {
    if vk.gamma_abc_g1.len() == INSTANCE_VARIABLES {
        Ok(())
    } else {
        Err(format!(
            "its verifying key has {} public-input points, hash-chain needs {INSTANCE_VARIABLES} (one, seed, out)",
            vk.gamma_abc_g1.len()
        ))
    }
}

/// The query lengths a proving key of the circuit of size 2^size_log2 must have.
fn check_proving_key_shape(pk: &ProvingKey<Bn254>, size_log2: u8) -> Result<(), String> {
    let rounds = hash_chain::rounds(size_log2).ok_or_else(|| format!("no circuit of size 2^{size_log2}"))?;
    // Witnesses are x_1 .. x_{rounds-1}; the domain is 2^size_log2 and h has one point less.
    let witnesses = rounds - 1;
    let variables = INSTANCE_VARIABLES + witnesses;
    let domain = 1usize << size_log2;
    let expected = [
        ("a_query", pk.a_query.len(), variables),
        ("b_g1_query", pk.b_g1_query.len(), variables),
        ("b_g2_query", pk.b_g2_query.len(), variables),
        ("l_query", pk.l_query.len(), witnesses),
        ("h_query", pk.h_query.len(), domain - 1),
    ];
    match expected.iter().find(|(_, got, want)| got != want) {
        None => Ok(()),
        Some((query, got, want)) => Err(format!(
            "its {query} has {got} points, the circuit of size 2^{size_log2} needs {want} (a key for another size?)"
        )),
    }
}

/// Reads a whole file as one uncompressed, validated arkworks value.
fn load<T: CanonicalDeserialize>(path: &Path) -> Result<T, KeyError> {
    let file = File::open(path).map_err(|source| KeyError::Io { path: path.to_owned(), source })?;
    let mut reader = BufReader::new(file);
    let invalid = |reason: String| KeyError::Invalid { path: path.to_owned(), reason };
    let value = T::deserialize_with_mode(&mut reader, Compress::No, Validate::Yes)
        .map_err(|e| invalid(format!("not an uncompressed arkworks BN254 Groth16 key ({})", describe(&e))))?;
    let mut trailing = [0u8; 1];
    match reader.read(&mut trailing) {
        Ok(0) => Ok(value),
        Ok(_) => Err(invalid("it has trailing bytes after the key".into())),
        Err(source) => Err(KeyError::Io { path: path.to_owned(), source }),
    }
}

fn describe(error: &SerializationError) -> String {
    match error {
        SerializationError::InvalidData => "a point is not on the curve or not in the subgroup".into(),
        SerializationError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => "it is truncated".into(),
        other => other.to_string(),
    }
}

/// Writes `value` uncompressed to `path` via a synced temporary file and a rename.
fn write_atomically<T: CanonicalSerialize>(path: &Path, value: &T) -> Result<(), KeyError> {
    let io_error = |source| KeyError::Io { path: path.to_owned(), source };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique per process and call, in the same directory so that the rename is atomic.
    let temp = dir.join(format!(".{file_name}.tmp-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let file = File::create(&temp)?;
        let mut writer = BufWriter::new(file);
        value.serialize_uncompressed(&mut writer).map_err(std::io::Error::other)?;
        writer.flush()?;
        writer.get_ref().sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        // Best effort: a leftover temp file is harmless (never read), just untidy.
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(io_error)
}

/// FNV-1a, 64 bit: a stable, dependency-free fingerprint (not collision-resistant).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Locks a mutex even if a panicking thread poisoned it: the data behind our locks is only ever
/// replaced whole (an `Option<Arc<_>>` set after success), so it is never half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Temporary key directories for tests.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::{Path, PathBuf};

    /// A unique directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(label: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "pcx-prover-pool-{label}-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::TempDir;
    use super::*;

    fn vk_file(store: &KeyStore, size_log2: u8) -> Vec<u8> {
        std::fs::read(store.verifying_key_path(size_log2)).unwrap()
    }

    #[test]
    fn keys_are_generated_once_cached_on_disk_and_deterministic() {
        let first_dir = TempDir::new("keys-a");
        let first = KeyStore::new(first_dir.path());
        let pk = first.proving_key(10).unwrap();
        assert!(first.proving_key_path(10).exists());
        assert!(first.verifying_key_path(10).exists());
        // Cached in memory: the very same allocation.
        assert!(first.has_proving_key_in_memory(10) && !first.has_proving_key_in_memory(11));
        assert!(Arc::ptr_eq(&pk, &first.proving_key(10).unwrap()));
        assert_eq!(first.verifying_key(10).unwrap().vk, pk.vk);

        // A second store on the same directory loads the files and agrees.
        let reloaded = KeyStore::new(first_dir.path());
        assert_eq!(reloaded.verifying_key(10).unwrap().vk, pk.vk);
        assert_eq!(*reloaded.proving_key(10).unwrap(), *pk);

        // A fresh directory regenerates byte-identical keys: the setup is deterministic.
        let second_dir = TempDir::new("keys-b");
        let second = KeyStore::new(second_dir.path());
        assert_eq!(second.verifying_key(10).unwrap().vk, pk.vk);
        assert_eq!(vk_file(&second, 10), vk_file(&first, 10));
        assert_eq!(
            std::fs::read(second.proving_key_path(10)).unwrap(),
            std::fs::read(first.proving_key_path(10)).unwrap()
        );
        assert_eq!(first.verifying_key_id(10).unwrap(), second.verifying_key_id(10).unwrap());
        assert_eq!(first.verifying_key_id(10).unwrap().len(), 16);

        // No temporary files are left behind.
        let names: Vec<String> = std::fs::read_dir(first_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_lone_verifying_key_file_is_enough_to_verify() {
        let source_dir = TempDir::new("keys-source");
        let source = KeyStore::new(source_dir.path());
        let vk = source.verifying_key(10).unwrap().vk.clone();

        let verifier_dir = TempDir::new("keys-vk-only");
        std::fs::copy(source.verifying_key_path(10), verifier_dir.path().join("hash-chain-10.vk")).unwrap();
        let verifier = KeyStore::new(verifier_dir.path());
        assert_eq!(verifier.verifying_key(10).unwrap().vk, vk);
        assert!(!verifier.proving_key_path(10).exists(), "verifying must not generate a proving key");
    }

    #[test]
    fn untraded_sizes_are_refused() {
        let dir = TempDir::new("keys-size");
        let store = KeyStore::new(dir.path());
        let err = store.proving_key(9).unwrap_err();
        assert_eq!(err.to_string(), "size_log2 9 is not traded for `hash-chain`; use 10 to 20");
        assert!(matches!(store.verifying_key(21), Err(KeyError::Registry(_))));
        assert!(check_traded_size(10).is_ok() && check_traded_size(20).is_ok());
    }

    #[test]
    fn corrupt_truncated_and_foreign_key_files_are_refused() {
        let dir = TempDir::new("keys-corrupt");
        let store = KeyStore::new(dir.path());

        std::fs::write(store.verifying_key_path(10), b"not a key").unwrap();
        let err = store.verifying_key(10).unwrap_err();
        assert!(matches!(err, KeyError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("is not a valid hash-chain key"), "{err}");

        // A valid key of another size in the 2^10 files.
        let other_dir = TempDir::new("keys-other");
        let other = KeyStore::new(other_dir.path());
        other.proving_key(11).unwrap();
        std::fs::copy(other.proving_key_path(11), store.proving_key_path(10)).unwrap();
        std::fs::remove_file(store.verifying_key_path(10)).unwrap();
        let err = store.proving_key(10).unwrap_err();
        assert!(err.to_string().contains("a key for another size?"), "{err}");

        // Truncated and trailing bytes.
        let good = std::fs::read(other.verifying_key_path(11)).unwrap();
        std::fs::write(store.verifying_key_path(10), &good[..good.len() - 1]).unwrap();
        assert!(store.verifying_key(10).unwrap_err().to_string().contains("truncated"));
        std::fs::write(store.verifying_key_path(10), [&good[..], &[0]].concat()).unwrap();
        assert!(store.verifying_key(10).unwrap_err().to_string().contains("trailing bytes"));
    }

    #[test]
    fn a_verifying_key_from_another_setup_is_a_mismatch() {
        let dir = TempDir::new("keys-mismatch");
        let store = KeyStore::new(dir.path());
        // Keys of a different (random) setup of the same circuit and size.
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let (_, foreign_vk) =
            Groth16::<Bn254>::circuit_specific_setup(HashChainCircuit { seed: None, size_log2: 10 }, &mut rng).unwrap();
        write_atomically(&store.verifying_key_path(10), &foreign_vk).unwrap();
        let err = store.proving_key(10).unwrap_err();
        assert!(matches!(err, KeyError::Mismatch { .. }), "{err:?}");
    }

    #[test]
    fn setup_seeds_differ_per_size_and_start_with_the_domain() {
        assert_ne!(setup_seed(10), setup_seed(11));
        assert!(setup_seed(12).starts_with(DEV_SETUP_DOMAIN));
        assert_eq!(setup_seed(12)[31], 12);
    }

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
