//! The ICICLE MSM backend: BN254 MSMs on ICICLE (a CUDA GPU, or ICICLE's own CPU backend for
//! testing), loaded at run time with `dlopen`. Nothing of ICICLE or CUDA is needed to build or
//! test this crate; without ICICLE every entry point returns an [`IcicleError`] that names ICICLE.
//!
//! # Where ICICLE is found (environment, read by [`IcicleSettings::from_env`])
//! - `ICICLE_FRONTEND_DIR`: the directory holding the frontend libraries `libicicle_device.so`,
//!   `libicicle_field_bn254.so`, `libicicle_curve_bn254.so` (ICICLE's CPU backend is inside them).
//!   Default [`DEFAULT_FRONTEND_DIR`] (`/opt/icicle/lib`, where ICICLE's packages install).
//! - `ICICLE_BACKEND_INSTALL_DIR`: the backends (e.g. `cuda/libicicle_backend_cuda_device.so`,
//!   `bn254/cuda/libicicle_backend_cuda_curve_bn254.so`), searched recursively, as ICICLE does.
//!   Default: `<frontend dir>/backend` (`/opt/icicle/lib/backend`, ICICLE's own default).
//! - `ICICLE_DEVICE`: `CUDA` (default) or `CUDA:<index>`; `CPU` selects ICICLE's CPU backend,
//!   which is how this backend is tested on machines without a GPU. No backend directory is
//!   needed for `CPU`.
//! - `PCX_ICICLE_G2`: `icicle` (default: G2 MSMs on ICICLE too, when the frontend exports
//!   `bn254_g2_msm`) or `cpu` (G2 MSMs on arkworks; [`IcicleMsm`]'s name then says
//!   "(g2 on cpu)").
//!
//! # Invariants
//! - ICICLE is loaded at most once per process and never unloaded (`ffi` module docs); a second
//!   request for another frontend directory is an error ([`IcicleError::AlreadyLoaded`]). A failed
//!   load is not remembered, so it can be retried.
//! - An [`IcicleMsm`] exists only for a device that is registered, activatable and has a BN254
//!   MSM; [`IcicleMsm::open_verified`] additionally made it pass [`IcicleMsm::self_test`]
//!   against arkworks. Callers that advertise ICICLE (the agent, `pcx prover bench`) only use
//!   verified backends.
//! - MSMs on one ICICLE runtime are serialised (one lock per process): one GPU runs one MSM at a
//!   time, and concurrent calls would only compete for its memory.
//! - Every result is checked before it is returned (canonical limbs, on the curve, in the
//!   subgroup; see [`marshal`]); a bad point is an [`MsmError::Backend`], never a wrong proof.
//!
//! # Residual risk
//! ICICLE reports some failures by throwing C++ exceptions, which abort the process. The FFI
//! wrappers avoid every throw we know of (see the `ffi` module). One remains undetectable from the C API:
//! a CUDA backend built *without* G2 behind a frontend built *with* it would throw on the first
//! G2 MSM. The `pcx` binary therefore runs the self-test in a child process first
//! (`pcx prover icicle-self-test`, see `crate::agent`), so such a crash only fails that child;
//! `PCX_ICICLE_G2=cpu` avoids the G2 call altogether.

#[allow(unsafe_code)]
mod ffi;
pub mod marshal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ark_bn254::{Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::CurveGroup;
use ark_ff::{One, UniformRand, Zero};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::msm::{check_lengths, ArkworksMsm, MsmBackend, MsmError};

/// Where ICICLE's packages install the frontend libraries.
pub const DEFAULT_FRONTEND_DIR: &str = "/opt/icicle/lib";
/// Environment variable: the frontend library directory.
pub const ENV_FRONTEND_DIR: &str = "ICICLE_FRONTEND_DIR";
/// Environment variable: the backend directory (ICICLE's own name for it).
pub const ENV_BACKEND_DIR: &str = "ICICLE_BACKEND_INSTALL_DIR";
/// Environment variable: the device, `CUDA` (default), `CUDA:<index>` or `CPU`.
pub const ENV_DEVICE: &str = "ICICLE_DEVICE";
/// Environment variable: where G2 MSMs run, `icicle` (default) or `cpu`.
pub const ENV_G2: &str = "PCX_ICICLE_G2";
/// G1 MSM sizes of the self-test (the largest one has random bases and scalars).
pub const SELF_TEST_G1_SIZES: [usize; 3] = [1, 3, 1024];
/// G2 MSM sizes of the self-test.
pub const SELF_TEST_G2_SIZES: [usize; 2] = [1, 256];

/// Why ICICLE cannot be used. Every message starts with "ICICLE".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcicleError {
    /// The frontend directory has no ICICLE libraries.
    #[error("ICICLE is not installed: no {library} in {dir} ({source_hint})")]
    NotInstalled {
        /// The directory looked in.
        dir: PathBuf,
        /// The first library missing.
        library: String,
        /// Where the directory came from, e.g. "ICICLE_FRONTEND_DIR is not set; default".
        source_hint: String,
    },
    /// A library exists but `dlopen` refused it.
    #[error("ICICLE library {} could not be loaded: {detail}", library.display())]
    Load {
        /// The library file.
        library: PathBuf,
        /// `dlerror()`.
        detail: String,
    },
    /// A library lacks a C function this backend needs.
    #[error("ICICLE function {symbol} is missing from {} (not an ICICLE v3/v4 build?): {detail}", library.display())]
    Symbol {
        /// The function.
        symbol: String,
        /// The library file.
        library: PathBuf,
        /// `dlerror()`.
        detail: String,
    },
    /// An ICICLE call returned an error code.
    #[error("ICICLE call {function} failed: {name} ({code})")]
    Call {
        /// The C function.
        function: &'static str,
        /// The `eIcicleError` value.
        code: i32,
        /// Its name in `icicle/errors.h`.
        name: &'static str,
    },
    /// The backend directory of a GPU device does not exist.
    #[error("ICICLE backend directory {} does not exist; the {device} backend is loaded from there (set ICICLE_BACKEND_INSTALL_DIR)", dir.display())]
    NoBackendDir {
        /// The device type.
        device: String,
        /// The directory.
        dir: PathBuf,
    },
    /// No device of the requested type is registered (backend missing or failed to load).
    #[error(
        "ICICLE has no {device} device registered (registered: {}); is its backend built for this ICICLE version and its driver installed?",
        if registered.is_empty() { "none".to_owned() } else { registered.join(", ") }
    )]
    DeviceNotRegistered {
        /// The device type asked for.
        device: String,
        /// The device types ICICLE has.
        registered: Vec<String>,
    },
    /// The device type is registered but this device cannot be made active.
    #[error("ICICLE cannot use {device} device {id}: icicle_set_device returned {name} (no such device, or its driver is missing?)")]
    CannotActivate {
        /// The device type.
        device: String,
        /// The index asked for.
        id: i32,
        /// The `eIcicleError` name.
        name: &'static str,
    },
    /// The device type exists but not this index (e.g. no GPU present).
    #[error("ICICLE {device} device {id} does not exist ({count} found)")]
    NoSuchDevice {
        /// The device type.
        device: String,
        /// The index asked for.
        id: i32,
        /// How many ICICLE found.
        count: i32,
    },
    /// The device's BN254 curve backend (which holds its MSM) is missing or did not load.
    #[error("ICICLE {device} backend has no BN254 MSM (backend directory {}): {detail}", dir.display())]
    NoCurveBackend {
        /// The device type.
        device: String,
        /// The backend directory.
        dir: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// G2 was asked of a frontend built without it.
    #[error("ICICLE was built without G2 MSMs (no bn254_g2_msm)")]
    NoG2,
    /// More points than ICICLE's `int` MSM size.
    #[error("ICICLE cannot take an MSM of {size} points (its size is an int)")]
    TooLarge {
        /// The number of points.
        size: usize,
    },
    /// ICICLE returned a value that is not a valid point.
    #[error(transparent)]
    Marshal(#[from] marshal::MarshalError),
    /// ICICLE computed something else than arkworks.
    #[error("ICICLE self-test failed: its {group} MSM of {size} points differs from arkworks'{hint}")]
    SelfTestMismatch {
        /// "G1" or "G2".
        group: &'static str,
        /// The MSM size.
        size: usize,
        /// A suggestion, if any.
        hint: &'static str,
    },
    /// This process already loaded ICICLE from elsewhere.
    #[error("ICICLE is already loaded from {} in this process; cannot also load {}", loaded.display(), requested.display())]
    AlreadyLoaded {
        /// Where it was loaded from.
        loaded: PathBuf,
        /// Where it was asked to load from now.
        requested: PathBuf,
    },
    /// An environment setting cannot be used.
    #[error("ICICLE setting {variable}={value:?} is invalid: {detail}")]
    BadSetting {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        detail: String,
    },
    /// A bug on our side of the FFI.
    #[error("ICICLE backend internal error: {0}")]
    Internal(String),
}

/// Where and how to load ICICLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcicleSettings {
    /// The directory of the frontend libraries.
    pub frontend_dir: PathBuf,
    /// Whether `frontend_dir` came from `ICICLE_FRONTEND_DIR` (for messages).
    pub frontend_dir_from_env: bool,
    /// The backend directory (searched recursively).
    pub backend_dir: PathBuf,
    /// The device type, e.g. "CUDA" or "CPU".
    pub device: String,
    /// The device index.
    pub device_id: i32,
    /// Whether G2 MSMs run on ICICLE (when it has them) rather than arkworks.
    pub g2_on_icicle: bool,
}

impl IcicleSettings {
    /// The settings from the environment (see the module docs).
    pub fn from_env() -> Result<IcicleSettings, IcicleError> {
        IcicleSettings::from_lookup(|name| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned()))
    }

    /// [`IcicleSettings::from_env`] over any variable lookup; empty values count as unset.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<IcicleSettings, IcicleError> {
        let var = |name: &str| var(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());
        let (frontend_dir, frontend_dir_from_env) = match var(ENV_FRONTEND_DIR) {
            Some(dir) => (PathBuf::from(dir), true),
            None => (PathBuf::from(DEFAULT_FRONTEND_DIR), false),
        };
        let backend_dir = var(ENV_BACKEND_DIR).map_or_else(|| frontend_dir.join("backend"), PathBuf::from);
        let (device, device_id) = match var(ENV_DEVICE) {
            None => ("CUDA".to_owned(), 0),
            Some(value) => parse_device(&value)?,
        };
        let g2_on_icicle = match var(ENV_G2).map(|value| value.to_ascii_lowercase()).as_deref() {
            None | Some("icicle") => true,
            Some("cpu") => false,
            Some(other) => {
                return Err(IcicleError::BadSetting {
                    variable: ENV_G2,
                    value: other.to_owned(),
                    detail: "use `icicle` or `cpu`".to_owned(),
                })
            }
        };
        Ok(IcicleSettings { frontend_dir, frontend_dir_from_env, backend_dir, device, device_id, g2_on_icicle })
    }

    /// ICICLE's CPU backend from the frontend in `frontend_dir` (tests, machines without a GPU).
    pub fn cpu_device(frontend_dir: impl Into<PathBuf>) -> IcicleSettings {
        let frontend_dir = frontend_dir.into();
        IcicleSettings {
            backend_dir: frontend_dir.join("backend"),
            frontend_dir,
            frontend_dir_from_env: true,
            device: "CPU".to_owned(),
            device_id: 0,
            g2_on_icicle: true,
        }
    }

    /// Whether the device is a GPU (anything but ICICLE's CPU backend).
    pub fn is_gpu(&self) -> bool {
        self.device != "CPU"
    }

    /// Checks, without loading anything, that the frontend libraries are there and, for a GPU,
    /// that the backend directory exists.
    pub fn check_installed(&self) -> Result<(), IcicleError> {
        for library in ffi::FRONTEND_LIBRARIES {
            let file = ffi::library_file(library);
            if !self.frontend_dir.join(&file).is_file() {
                let source_hint = if self.frontend_dir_from_env {
                    format!("from {ENV_FRONTEND_DIR}")
                } else {
                    format!("{ENV_FRONTEND_DIR} is not set; {DEFAULT_FRONTEND_DIR} is the default")
                };
                return Err(IcicleError::NotInstalled { dir: self.frontend_dir.clone(), library: file, source_hint });
            }
        }
        if self.is_gpu() && !self.backend_dir.is_dir() {
            return Err(IcicleError::NoBackendDir { device: self.device.clone(), dir: self.backend_dir.clone() });
        }
        Ok(())
    }
}

/// `CUDA`, `CUDA:1`, `CPU`, ... (ICICLE's type names are upper case).
fn parse_device(value: &str) -> Result<(String, i32), IcicleError> {
    let bad = |detail: &str| IcicleError::BadSetting {
        variable: ENV_DEVICE,
        value: value.to_owned(),
        detail: detail.to_owned(),
    };
    let (kind, id) = match value.split_once(':') {
        Some((kind, id)) => (kind, id.parse::<i32>().map_err(|_| bad("the index after `:` must be a number"))?),
        None => (value, 0),
    };
    let kind = kind.trim().to_ascii_uppercase();
    if id < 0 {
        return Err(bad("the index must not be negative"));
    }
    if ffi::Device::new(&kind, id).is_none() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad("expected a device type such as CUDA or CPU, optionally with :<index>"));
    }
    Ok((kind, id))
}

/// ICICLE as loaded in this process.
#[derive(Debug)]
struct Runtime {
    api: ffi::Api,
    /// Backend directories already handed to `icicle_load_backend`.
    backend_dirs: Mutex<Vec<PathBuf>>,
    /// Serialises MSMs (see the module invariants).
    msm_lock: Mutex<()>,
}

/// The process's ICICLE, once loaded.
static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

impl Runtime {
    /// The runtime for `frontend_dir`, loading it on first use.
    fn get(settings: &IcicleSettings) -> Result<Arc<Runtime>, IcicleError> {
        settings.check_installed()?;
        let requested = settings.frontend_dir.canonicalize().unwrap_or_else(|_| settings.frontend_dir.clone());
        let mut slot = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(runtime) = slot.as_ref() {
            return if runtime.api.frontend_dir() == requested {
                Ok(Arc::clone(runtime))
            } else {
                Err(IcicleError::AlreadyLoaded { loaded: runtime.api.frontend_dir().to_path_buf(), requested })
            };
        }
        let runtime = Arc::new(Runtime {
            api: ffi::Api::load(&requested)?,
            backend_dirs: Mutex::default(),
            msm_lock: Mutex::default(),
        });
        *slot = Some(Arc::clone(&runtime));
        Ok(runtime)
    }

    /// Loads the backends under `dir` once.
    fn load_backend(&self, dir: &Path) -> Result<(), IcicleError> {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mut loaded = self.backend_dirs.lock().unwrap_or_else(PoisonError::into_inner);
        if !loaded.contains(&dir) {
            self.api.load_backend(&dir)?;
            loaded.push(dir);
        }
        Ok(())
    }
}

/// What [`IcicleMsm::self_test`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTestReport {
    /// G1 MSM sizes that matched arkworks.
    pub g1_sizes: Vec<usize>,
    /// G2 MSM sizes that matched arkworks (empty when G2 runs on arkworks).
    pub g2_sizes: Vec<usize>,
    /// How long the ICICLE MSMs took, all together.
    pub icicle_time: Duration,
}

/// The ICICLE MSM backend: G1 (and normally G2) MSMs on one ICICLE device.
pub struct IcicleMsm {
    runtime: Arc<Runtime>,
    device: ffi::MsmDevice,
    g2_on_icicle: bool,
    name: String,
}

impl std::fmt::Debug for IcicleMsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IcicleMsm").field("name", &self.name).field("device", self.device.device()).finish()
    }
}

impl IcicleMsm {
    /// Loads ICICLE (once per process), its backends for a GPU device, and prepares the device.
    /// No MSM is made; see [`IcicleMsm::open_verified`] for the version that checks results.
    pub fn open(settings: &IcicleSettings) -> Result<IcicleMsm, IcicleError> {
        let runtime = Runtime::get(settings)?;
        let device = ffi::Device::new(&settings.device, settings.device_id).ok_or_else(|| IcicleError::BadSetting {
            variable: ENV_DEVICE,
            value: settings.device.clone(),
            detail: "not a device type name".to_owned(),
        })?;
        let backend_dir = if settings.is_gpu() {
            runtime.load_backend(&settings.backend_dir)?;
            Some(settings.backend_dir.as_path())
        } else {
            None
        };
        let device = runtime.api.msm_device(device, backend_dir).map_err(|err| match err {
            IcicleError::DeviceNotRegistered { device, registered } if backend_dir.is_some() => {
                // ICICLE reports success for a backend directory it loaded nothing from; say where
                // we looked and what we found.
                let why = ffi::diagnose_backend(&settings.backend_dir, &device);
                IcicleError::NoCurveBackend {
                    detail: format!(
                        "no {device} device was registered after loading the backends there (registered: {}): {why}",
                        if registered.is_empty() { "none".to_owned() } else { registered.join(", ") },
                    ),
                    device,
                    dir: settings.backend_dir.clone(),
                }
            }
            other => other,
        })?;
        let g2_on_icicle = settings.g2_on_icicle && runtime.api.has_g2();
        let kind = settings.device.to_ascii_lowercase();
        let mut name = if settings.device_id == 0 {
            format!("icicle-{kind}")
        } else {
            format!("icicle-{kind}:{}", settings.device_id)
        };
        if !g2_on_icicle {
            name.push_str(" (g2 on cpu)");
        }
        Ok(IcicleMsm { runtime, device, g2_on_icicle, name })
    }

    /// [`IcicleMsm::open`], then [`IcicleMsm::self_test`]: the backend is returned only if its
    /// results equal arkworks'.
    pub fn open_verified(settings: &IcicleSettings) -> Result<(IcicleMsm, SelfTestReport), IcicleError> {
        let msm = IcicleMsm::open(settings)?;
        let report = msm.self_test()?;
        Ok((msm, report))
    }

    /// Whether G2 MSMs run on ICICLE (else on arkworks).
    pub fn g2_on_icicle(&self) -> bool {
        self.g2_on_icicle
    }

    /// The device, e.g. "CUDA:0".
    pub fn device(&self) -> String {
        format!("{:?}", self.device.device())
    }

    /// The frontend directory ICICLE was loaded from.
    pub fn frontend_dir(&self) -> &Path {
        self.runtime.api.frontend_dir()
    }

    /// Compares ICICLE with arkworks on MSMs of [`SELF_TEST_G1_SIZES`] (and
    /// [`SELF_TEST_G2_SIZES`] when G2 runs on ICICLE) with fresh random bases and scalars, plus
    /// the edge cases a backend gets wrong most easily: scalars 0, 1 and -1, a base at infinity,
    /// a repeated base and terms that cancel.
    pub fn self_test(&self) -> Result<SelfTestReport, IcicleError> {
        let mut rng = ChaCha20Rng::from_rng(rand::rngs::OsRng)
            .map_err(|err| IcicleError::Internal(format!("seeding the self-test: {err}")))?;
        let mut report = SelfTestReport { g1_sizes: Vec::new(), g2_sizes: Vec::new(), icicle_time: Duration::ZERO };
        for size in SELF_TEST_G1_SIZES {
            let (bases, scalars) = test_vectors::<G1Projective>(size, &mut rng);
            let started = Instant::now();
            let got = self.icicle_g1(&bases, &scalars)?;
            report.icicle_time += started.elapsed();
            let expected =
                ArkworksMsm.msm_g1(&bases, &scalars).map_err(|err| IcicleError::Internal(err.to_string()))?;
            if got != expected {
                return Err(IcicleError::SelfTestMismatch { group: "G1", size, hint: "" });
            }
            report.g1_sizes.push(size);
        }
        if self.g2_on_icicle {
            for size in SELF_TEST_G2_SIZES {
                let (bases, scalars) = test_vectors::<G2Projective>(size, &mut rng);
                let started = Instant::now();
                let got = self.icicle_g2(&bases, &scalars)?;
                report.icicle_time += started.elapsed();
                let expected =
                    ArkworksMsm.msm_g2(&bases, &scalars).map_err(|err| IcicleError::Internal(err.to_string()))?;
                if got != expected {
                    return Err(IcicleError::SelfTestMismatch {
                        group: "G2",
                        size,
                        hint: "; PCX_ICICLE_G2=cpu keeps G2 MSMs on arkworks",
                    });
                }
                report.g2_sizes.push(size);
            }
        }
        Ok(report)
    }

    fn icicle_g1(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1Projective, IcicleError> {
        let packed = marshal::pack_g1(bases, scalars);
        if packed.is_empty() {
            return Ok(G1Projective::zero());
        }
        let raw = {
            let _one_at_a_time = self.runtime.msm_lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.runtime.api.msm_g1(&self.device, &packed.scalars, &packed.bases)?
        };
        Ok(marshal::g1_from_icicle(&raw)?)
    }

    fn icicle_g2(&self, bases: &[G2Affine], scalars: &[Fr]) -> Result<G2Projective, IcicleError> {
        let packed = marshal::pack_g2(bases, scalars);
        if packed.is_empty() {
            return Ok(G2Projective::zero());
        }
        let raw = {
            let _one_at_a_time = self.runtime.msm_lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.runtime.api.msm_g2(&self.device, &packed.scalars, &packed.bases)?
        };
        Ok(marshal::g2_from_icicle(&raw)?)
    }
}

impl MsmBackend for IcicleMsm {
    fn name(&self) -> &str {
        &self.name
    }

    fn msm_g1(&self, bases: &[G1Affine], scalars: &[Fr]) -> Result<G1Projective, MsmError> {
        check_lengths(bases.len(), scalars.len())?;
        self.icicle_g1(bases, scalars).map_err(|err| MsmError::Backend(err.to_string()))
    }

    fn msm_g2(&self, bases: &[G2Affine], scalars: &[Fr]) -> Result<G2Projective, MsmError> {
        check_lengths(bases.len(), scalars.len())?;
        if self.g2_on_icicle {
            self.icicle_g2(bases, scalars).map_err(|err| MsmError::Backend(err.to_string()))
        } else {
            ArkworksMsm.msm_g2(bases, scalars)
        }
    }
}

/// `size` random bases and scalars, with edge cases in the first slots when there is room:
/// scalar 0, a base at infinity, scalars 1 and -1, a base repeated with opposite scalars (the
/// two terms cancel).
fn test_vectors<G>(size: usize, rng: &mut ChaCha20Rng) -> (Vec<G::Affine>, Vec<Fr>)
where
    G: CurveGroup<ScalarField = Fr> + UniformRand,
{
    let mut points: Vec<G> = (0..size).map(|_| G::rand(rng)).collect();
    let mut scalars: Vec<Fr> = (0..size).map(|_| Fr::rand(rng)).collect();
    if size >= 8 {
        scalars[0] = Fr::zero();
        points[1] = G::zero();
        scalars[2] = Fr::one();
        scalars[3] = -Fr::one();
        points[5] = points[4];
        scalars[5] = -scalars[4];
        points[7] = points[6];
    }
    (G::normalize_batch(&points), scalars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_ec::AffineRepr;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<IcicleSettings, IcicleError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        IcicleSettings::from_lookup(move |name| map.get(name).cloned())
    }

    #[test]
    fn settings_default_to_cuda_under_opt_icicle() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.frontend_dir, PathBuf::from("/opt/icicle/lib"));
        assert!(!s.frontend_dir_from_env);
        assert_eq!(s.backend_dir, PathBuf::from("/opt/icicle/lib/backend"));
        assert_eq!((s.device.as_str(), s.device_id), ("CUDA", 0));
        assert!(s.g2_on_icicle && s.is_gpu());
    }

    #[test]
    fn settings_from_the_environment() {
        let s = settings(&[(ENV_FRONTEND_DIR, "/x/lib"), (ENV_DEVICE, "cuda:1"), (ENV_G2, "CPU")]).unwrap();
        assert_eq!(s.frontend_dir, PathBuf::from("/x/lib"));
        assert!(s.frontend_dir_from_env);
        assert_eq!(s.backend_dir, PathBuf::from("/x/lib/backend"));
        assert_eq!((s.device.as_str(), s.device_id), ("CUDA", 1));
        assert!(!s.g2_on_icicle);
        let s = settings(&[(ENV_FRONTEND_DIR, " "), (ENV_BACKEND_DIR, "/b"), (ENV_DEVICE, "CPU")]).unwrap();
        assert_eq!(s.frontend_dir, PathBuf::from(DEFAULT_FRONTEND_DIR));
        assert_eq!(s.backend_dir, PathBuf::from("/b"));
        assert!(!s.is_gpu());
        for (variable, value) in
            [(ENV_DEVICE, "CUDA:x"), (ENV_DEVICE, "CUDA:-1"), (ENV_DEVICE, "CU DA"), (ENV_G2, "gpu")]
        {
            let err = settings(&[(variable, value)]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("ICICLE setting {variable}=")), "{err}");
        }
    }

    #[test]
    fn a_missing_installation_is_reported_without_loading_anything() {
        let err = settings(&[]).unwrap().check_installed();
        // /opt/icicle/lib may exist on a machine with ICICLE installed.
        if let Err(err) = err {
            let text = err.to_string();
            assert!(text.starts_with("ICICLE"), "{text}");
        }
        let dir = crate::keys::test_support::TempDir::new("icicle-missing");
        let s = settings(&[(ENV_FRONTEND_DIR, dir.path().to_str().unwrap())]).unwrap();
        let err = s.check_installed().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "ICICLE is not installed: no libicicle_device.so in {} (from ICICLE_FRONTEND_DIR)",
                dir.path().display()
            )
        );
        let err = IcicleMsm::open(&s).unwrap_err();
        assert!(matches!(err, IcicleError::NotInstalled { .. }), "{err}");
        let unset = IcicleSettings { frontend_dir_from_env: false, ..s };
        let text = unset.check_installed().unwrap_err().to_string();
        assert!(text.ends_with("(ICICLE_FRONTEND_DIR is not set; /opt/icicle/lib is the default)"), "{text}");
    }

    #[test]
    fn a_gpu_needs_its_backend_directory() {
        let dir = crate::keys::test_support::TempDir::new("icicle-fake-frontend");
        for library in ffi::FRONTEND_LIBRARIES {
            std::fs::write(dir.path().join(ffi::library_file(library)), b"").unwrap();
        }
        let s = settings(&[(ENV_FRONTEND_DIR, dir.path().to_str().unwrap())]).unwrap();
        let err = s.check_installed().unwrap_err();
        assert!(matches!(err, IcicleError::NoBackendDir { .. }), "{err}");
        assert!(err.to_string().contains("ICICLE_BACKEND_INSTALL_DIR"), "{err}");
        // ICICLE's CPU device needs none; the empty files then fail to load, as an error.
        let cpu = IcicleSettings::cpu_device(dir.path());
        cpu.check_installed().unwrap();
        let err = IcicleMsm::open(&cpu).unwrap_err();
        assert!(matches!(err, IcicleError::Load { .. } | IcicleError::AlreadyLoaded { .. }), "{err}");
        assert!(err.to_string().starts_with("ICICLE"), "{err}");
    }

    #[test]
    fn test_vectors_hold_the_edge_cases() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (bases, scalars) = test_vectors::<G1Projective>(16, &mut rng);
        assert_eq!((bases.len(), scalars.len()), (16, 16));
        assert!(scalars[0].is_zero() && bases[1].is_zero());
        assert_eq!((scalars[2], scalars[3]), (Fr::one(), -Fr::one()));
        assert_eq!((bases[4], scalars[4] + scalars[5]), (bases[5], Fr::zero()));
        assert_eq!(bases[6], bases[7]);
        let (bases, _) = test_vectors::<G2Projective>(3, &mut rng);
        assert!(bases.iter().all(|b| !b.is_zero()));
    }
}
