//! The only code that touches ICICLE's C API: `dlopen`, the `#[repr(C)]` mirrors of its structs,
//! and safe wrappers around each call. `unsafe` is allowed in this module alone.
//!
//! Target: ICICLE v4.0.0 as distributed by `ingonyama-zk/open-icicle` (MIT; its `icicle/include`
//! headers: `icicle/device.h`, `icicle/msm.h`, `icicle/runtime.h`, `icicle/errors.h`,
//! `src/msm.cpp`). ICICLE v3.x has the same C symbols and struct layouts used here.
//!
//! # Invariants
//! - Libraries are opened once per process and never closed: the handles are leaked
//!   ([`Library::into_raw`]), so every function pointer in [`Api`] stays valid for the life of
//!   the process. (ICICLE registers devices and backends from static initialisers into registries
//!   inside the frontend; unloading any of them would leave dangling registrations.)
//! - The frontend is opened with `RTLD_NOW | RTLD_GLOBAL`, device library first, so the backend
//!   libraries ICICLE loads later resolve their symbols against it, and missing symbols fail at
//!   load time with a message instead of later with a crash.
//! - ICICLE throws C++ exceptions in a few places, which abort the process when they reach Rust.
//!   The wrappers never make a call that can throw for the reasons we know of:
//!   `icicle_set_device` (throws for an unregistered device type) is only called after
//!   `icicle_is_device_available` said yes; an MSM (its dispatcher throws when the active device
//!   type has no MSM registered) is only made through an [`MsmDevice`], which exists only after
//!   the device was activated and, for a non-CPU device, its `curve_bn254` backend library was
//!   found loaded; and every MSM first re-activates the device on the calling thread (ICICLE's
//!   active device is thread-local, and a thread with none would throw).
//! - Inputs are host slices whose lengths were checked against each other and `i32`, the config
//!   says host memory, canonical form, batch size 1, synchronous; the result is one host value.

use std::ffi::{c_char, c_int, c_void, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_LAZY, RTLD_LOCAL, RTLD_NOW};

use super::marshal::{IcicleG1Affine, IcicleG1Projective, IcicleG2Affine, IcicleG2Projective, Limbs};
use super::IcicleError;

/// `MAX_TYPE_LEN` of `icicle/device.h`.
const MAX_TYPE_LEN: usize = 64;

/// `icicle::Device` (`icicle/device.h`): `char type[64]; int id;`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Device {
    kind: [c_char; MAX_TYPE_LEN],
    id: c_int,
}

const _: () = assert!(std::mem::size_of::<Device>() == 68);
const _: () = assert!(std::mem::align_of::<Device>() == 4);
const _: () = assert!(std::mem::offset_of!(Device, id) == 64);

impl Device {
    /// A device of type `kind` (e.g. "CUDA", "CPU") and index `id`; `None` when the name does not
    /// fit ICICLE's 63 characters or contains a NUL.
    pub(crate) fn new(kind: &str, id: i32) -> Option<Device> {
        if kind.is_empty() || kind.len() >= MAX_TYPE_LEN || kind.bytes().any(|b| b == 0) {
            return None;
        }
        let mut name = [0 as c_char; MAX_TYPE_LEN];
        for (slot, byte) in name.iter_mut().zip(kind.bytes()) {
            *slot = byte as c_char;
        }
        Some(Device { kind: name, id })
    }

    /// The type name, e.g. "CUDA".
    pub(crate) fn kind(&self) -> String {
        let bytes: Vec<u8> = self.kind.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The device index.
    pub(crate) fn id(&self) -> i32 {
        self.id
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind(), self.id)
    }
}

/// `icicle::MSMConfig` (`icicle/msm.h`), field for field.
#[repr(C)]
struct MsmConfig {
    stream: *mut c_void,
    precompute_factor: c_int,
    c: c_int,
    bitsize: c_int,
    batch_size: c_int,
    are_points_shared_in_batch: bool,
    are_scalars_on_device: bool,
    are_scalars_montgomery_form: bool,
    are_points_on_device: bool,
    are_points_montgomery_form: bool,
    are_results_on_device: bool,
    is_async: bool,
    ext: *mut c_void,
}

const _: () = assert!(std::mem::size_of::<MsmConfig>() == 40);
const _: () = assert!(std::mem::align_of::<MsmConfig>() == 8);
const _: () = assert!(std::mem::offset_of!(MsmConfig, precompute_factor) == 8);
const _: () = assert!(std::mem::offset_of!(MsmConfig, batch_size) == 20);
const _: () = assert!(std::mem::offset_of!(MsmConfig, are_points_shared_in_batch) == 24);
const _: () = assert!(std::mem::offset_of!(MsmConfig, is_async) == 30);
const _: () = assert!(std::mem::offset_of!(MsmConfig, ext) == 32);
// `bool` is C++'s one-byte bool on every platform ICICLE supports.
const _: () = assert!(std::mem::size_of::<bool>() == 1);

impl MsmConfig {
    /// ICICLE's `default_msm_config()`, with canonical (non-Montgomery) scalars and points stated
    /// explicitly: host memory in and out, one MSM, synchronous, no precomputation, automatic c.
    fn canonical_host() -> MsmConfig {
        MsmConfig {
            stream: std::ptr::null_mut(),
            precompute_factor: 1,
            c: 0,
            bitsize: 0,
            batch_size: 1,
            are_points_shared_in_batch: true,
            are_scalars_on_device: false,
            are_scalars_montgomery_form: false,
            are_points_on_device: false,
            are_points_montgomery_form: false,
            are_results_on_device: false,
            is_async: false,
            ext: std::ptr::null_mut(),
        }
    }
}

/// `eIcicleError` (`icicle/errors.h`), an `enum class` with `int` as its underlying type.
pub(crate) type ErrorCode = c_int;
const SUCCESS: ErrorCode = 0;
const OUT_OF_MEMORY: ErrorCode = 2;

/// The name ICICLE gives an error code.
pub(crate) fn error_name(code: ErrorCode) -> &'static str {
    match code {
        0 => "SUCCESS",
        1 => "INVALID_DEVICE",
        2 => "OUT_OF_MEMORY",
        3 => "INVALID_POINTER",
        4 => "ALLOCATION_FAILED",
        5 => "DEALLOCATION_FAILED",
        6 => "COPY_FAILED",
        7 => "SYNCHRONIZATION_FAILED",
        8 => "STREAM_CREATION_FAILED",
        9 => "STREAM_DESTRUCTION_FAILED",
        10 => "API_NOT_IMPLEMENTED",
        11 => "INVALID_ARGUMENT",
        12 => "BACKEND_LOAD_FAILED",
        13 => "LICENSE_CHECK_ERROR",
        _ => "UNKNOWN_ERROR",
    }
}

fn check(function: &'static str, code: ErrorCode) -> Result<(), IcicleError> {
    if code == SUCCESS {
        Ok(())
    } else {
        Err(IcicleError::Call { function, code, name: error_name(code) })
    }
}

// The C signatures (C++ `const T&` parameters are pointers in the ABI).
type LoadBackendFn = unsafe extern "C" fn(path: *const c_char, is_recursive: bool) -> ErrorCode;
type DeviceFn = unsafe extern "C" fn(device: *const Device) -> ErrorCode;
type RegisteredDevicesFn = unsafe extern "C" fn(output: *mut c_char, output_size: usize) -> ErrorCode;
type DeviceCountFn = unsafe extern "C" fn(count: *mut c_int) -> ErrorCode;
type MsmG1Fn = unsafe extern "C" fn(
    scalars: *const Limbs,
    bases: *const IcicleG1Affine,
    msm_size: c_int,
    config: *const MsmConfig,
    result: *mut IcicleG1Projective,
) -> ErrorCode;
type MsmG2Fn = unsafe extern "C" fn(
    scalars: *const Limbs,
    bases: *const IcicleG2Affine,
    msm_size: c_int,
    config: *const MsmConfig,
    result: *mut IcicleG2Projective,
) -> ErrorCode;

/// The frontend libraries, in the order they must be opened.
pub(crate) const FRONTEND_LIBRARIES: [&str; 3] = ["icicle_device", "icicle_field_bn254", "icicle_curve_bn254"];

/// The file name of library `name` on this platform, e.g. `libicicle_device.so`.
pub(crate) fn library_file(name: &str) -> String {
    format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

/// ICICLE's C API, resolved from the frontend libraries (which stay loaded for good).
pub(crate) struct Api {
    frontend_dir: PathBuf,
    load_backend: LoadBackendFn,
    set_device: DeviceFn,
    is_device_available: DeviceFn,
    registered_devices: RegisteredDevicesFn,
    device_count: DeviceCountFn,
    msm_g1: MsmG1Fn,
    msm_g2: Option<MsmG2Fn>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("frontend_dir", &self.frontend_dir)
            .field("g2", &self.msm_g2.is_some())
            .finish_non_exhaustive()
    }
}

/// Opens a library file with `flags`, or says why not.
fn open(path: &Path, flags: c_int) -> Result<Library, IcicleError> {
    // SAFETY: dlopen runs the library's static initialisers. The only libraries opened here are
    // the ICICLE libraries the operator pointed us at (frontend dir, backend dir), whose
    // initialisers register ICICLE's devices and MSM implementations and have no preconditions on
    // us. They are never unloaded (see the module invariants), so no termination routine runs
    // while we hold pointers into them.
    unsafe { Library::open(Some(path.as_os_str()), flags) }
        .map_err(|err| IcicleError::Load { library: path.to_path_buf(), detail: err.to_string() })
}

/// Copies the function pointer named `name` (NUL-terminated) out of `library`.
///
/// # Safety
/// `T` must be the function pointer type of the C function `name` as ICICLE declares it.
unsafe fn symbol<T: Copy>(library: &Library, path: &Path, name: &'static [u8]) -> Result<T, IcicleError> {
    // SAFETY: the caller guarantees `T` is the symbol's type; the copied pointer outlives the
    // `Symbol` because the library is never unloaded.
    unsafe { library.get::<T>(name) }.map(|symbol| *symbol).map_err(|err| IcicleError::Symbol {
        symbol: String::from_utf8_lossy(name.strip_suffix(b"\0").unwrap_or(name)).into_owned(),
        library: path.to_path_buf(),
        detail: err.to_string(),
    })
}

impl Api {
    /// Opens the three frontend libraries in `frontend_dir` (device, field, curve; globally) and
    /// resolves the C API. `bn254_g2_msm` is optional (absent when ICICLE was built without G2).
    pub(crate) fn load(frontend_dir: &Path) -> Result<Api, IcicleError> {
        let [device_name, field_name, curve_name] = FRONTEND_LIBRARIES;
        let device_path = frontend_dir.join(library_file(device_name));
        let device = open(&device_path, RTLD_NOW | RTLD_GLOBAL)?;
        let field_path = frontend_dir.join(library_file(field_name));
        let field = open(&field_path, RTLD_NOW | RTLD_GLOBAL)?;
        let curve_path = frontend_dir.join(library_file(curve_name));
        let curve = open(&curve_path, RTLD_NOW | RTLD_GLOBAL)?;

        // SAFETY: each type alias above is the C signature of the symbol it is used for, as
        // declared in `icicle/runtime.h` and defined in `src/msm.cpp` of ICICLE v4.0.0.
        let api = unsafe {
            Api {
                frontend_dir: frontend_dir.to_path_buf(),
                load_backend: symbol::<LoadBackendFn>(&device, &device_path, b"icicle_load_backend\0")?,
                set_device: symbol::<DeviceFn>(&device, &device_path, b"icicle_set_device\0")?,
                is_device_available: symbol::<DeviceFn>(&device, &device_path, b"icicle_is_device_available\0")?,
                registered_devices: symbol::<RegisteredDevicesFn>(
                    &device,
                    &device_path,
                    b"icicle_get_registered_devices\0",
                )?,
                device_count: symbol::<DeviceCountFn>(&device, &device_path, b"icicle_get_device_count\0")?,
                msm_g1: symbol::<MsmG1Fn>(&curve, &curve_path, b"bn254_msm\0")?,
                msm_g2: symbol::<MsmG2Fn>(&curve, &curve_path, b"bn254_g2_msm\0").ok(),
            }
        };
        // Leak the handles: the libraries stay loaded for the life of the process.
        let _ = (device.into_raw(), field.into_raw(), curve.into_raw());
        Ok(api)
    }

    /// The directory the frontend was loaded from.
    pub(crate) fn frontend_dir(&self) -> &Path {
        &self.frontend_dir
    }

    /// Whether the frontend exports `bn254_g2_msm`.
    pub(crate) fn has_g2(&self) -> bool {
        self.msm_g2.is_some()
    }

    /// `icicle_load_backend(dir, recursive)`. ICICLE says SUCCESS even when it loaded nothing
    /// (a library that fails to open is only logged at debug level), so callers check
    /// [`Api::is_device_available`] afterwards.
    pub(crate) fn load_backend(&self, dir: &Path) -> Result<(), IcicleError> {
        let path = c_path(dir)?;
        // SAFETY: `path` is a valid NUL-terminated string that outlives the call; the function
        // only reads it. Loading runs the backends' initialisers (see `open`).
        check("icicle_load_backend", unsafe { (self.load_backend)(path.as_ptr(), true) })
    }

    /// Whether a device of `device`'s type is registered (never throws).
    pub(crate) fn is_device_available(&self, device: &Device) -> bool {
        // SAFETY: `device` is a valid `icicle::Device` for the duration of the call; ICICLE only
        // reads its type name, which `Device::new` NUL-terminated.
        unsafe { (self.is_device_available)(device) == SUCCESS }
    }

    /// The registered device types, e.g. `["CPU", "CUDA"]`.
    pub(crate) fn registered_devices(&self) -> Result<Vec<String>, IcicleError> {
        let mut size = 1024usize;
        loop {
            let mut buffer = vec![0 as c_char; size];
            // SAFETY: `buffer` is writable for `size` bytes; ICICLE writes at most `size` bytes
            // including the terminating NUL (it refuses with OUT_OF_MEMORY otherwise).
            let code = unsafe { (self.registered_devices)(buffer.as_mut_ptr(), size) };
            if code == OUT_OF_MEMORY && size < (1 << 20) {
                size *= 8;
                continue;
            }
            check("icicle_get_registered_devices", code)?;
            // The last byte is always NUL: we zeroed the buffer and ICICLE writes fewer bytes.
            let listed = CStr::from_bytes_until_nul(bytemuck_chars(&buffer))
                .map(|text| text.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(listed.split(',').filter(|name| !name.is_empty()).map(str::to_owned).collect());
        }
    }

    /// Makes `device` the calling thread's active device and returns how many devices of its
    /// type exist. Checks availability first, so an unregistered type is an error, not an abort.
    fn activate(&self, device: &Device) -> Result<i32, IcicleError> {
        if !self.is_device_available(device) {
            return Err(IcicleError::DeviceNotRegistered {
                device: device.kind(),
                registered: self.registered_devices().unwrap_or_default(),
            });
        }
        // SAFETY: `device` is valid for the call; its type is registered (checked just above),
        // which is the condition under which ICICLE's `set_thread_local_device` does not throw.
        check("icicle_set_device", unsafe { (self.set_device)(device) })?;
        let mut count: c_int = 0;
        // SAFETY: `count` is a valid out-parameter; the calling thread has an active device (set
        // just above), so ICICLE does not throw for the lack of one.
        check("icicle_get_device_count", unsafe { (self.device_count)(&mut count) })?;
        Ok(count)
    }

    /// Prepares `device` for MSMs: registered, activatable, index below the device count and,
    /// for a device other than ICICLE's built-in CPU, with its `curve_bn254` backend library
    /// loaded from `backend_dir` (else ICICLE would have no MSM for it and throw).
    pub(crate) fn msm_device(&self, device: Device, backend_dir: Option<&Path>) -> Result<MsmDevice, IcicleError> {
        let count = self.activate(&device).map_err(|err| match err {
            IcicleError::Call { function: "icicle_set_device", name, .. } => {
                IcicleError::CannotActivate { device: device.kind(), id: device.id(), name }
            }
            other => other,
        })?;
        if device.id() < 0 || device.id() >= count {
            return Err(IcicleError::NoSuchDevice { device: device.kind(), id: device.id(), count });
        }
        if device.kind() != "CPU" {
            let dir = backend_dir.ok_or_else(|| IcicleError::NoCurveBackend {
                device: device.kind(),
                dir: PathBuf::new(),
                detail: "no backend directory was given".to_owned(),
            })?;
            let curve = find_backend_library(dir, &device.kind(), "curve_bn254").ok_or_else(|| {
                IcicleError::NoCurveBackend {
                    device: device.kind(),
                    dir: dir.to_path_buf(),
                    detail: format!(
                        "no libicicle_backend_{}_curve_bn254 library there",
                        device.kind().to_ascii_lowercase()
                    ),
                }
            })?;
            // ICICLE opened it (or tried to) with these flags; opening it again only takes a
            // reference, or reports why ICICLE could not load it.
            let library = open(&curve, RTLD_LAZY | RTLD_LOCAL).map_err(|err| IcicleError::NoCurveBackend {
                device: device.kind(),
                dir: dir.to_path_buf(),
                detail: err.to_string(),
            })?;
            let _ = library.into_raw();
        }
        Ok(MsmDevice { device })
    }

    /// `bn254_msm` of the packed inputs on `device`, made active on the calling thread first.
    pub(crate) fn msm_g1(
        &self,
        device: &MsmDevice,
        scalars: &[Limbs],
        bases: &[IcicleG1Affine],
    ) -> Result<IcicleG1Projective, IcicleError> {
        let size = msm_size(scalars.len(), bases.len())?;
        self.activate(&device.device)?;
        let config = MsmConfig::canonical_host();
        let mut result = IcicleG1Projective::default();
        // SAFETY: `scalars` and `bases` are host slices of exactly `size` elements each, laid out
        // as ICICLE's `scalar_t` / `affine_t` (compile-time size checks in `marshal`); `config`
        // says host memory, canonical form, batch size 1, synchronous, so ICICLE reads `size`
        // elements from each and writes one `projective_t` into `result` before returning. The
        // calling thread's active device is an `MsmDevice`, which has a G1 MSM registered.
        let code = unsafe { (self.msm_g1)(scalars.as_ptr(), bases.as_ptr(), size, &config, &mut result) };
        check("bn254_msm", code)?;
        Ok(result)
    }

    /// `bn254_g2_msm` of the packed inputs on `device`; an error when the frontend has no G2.
    pub(crate) fn msm_g2(
        &self,
        device: &MsmDevice,
        scalars: &[Limbs],
        bases: &[IcicleG2Affine],
    ) -> Result<IcicleG2Projective, IcicleError> {
        let msm = self.msm_g2.ok_or(IcicleError::NoG2)?;
        let size = msm_size(scalars.len(), bases.len())?;
        self.activate(&device.device)?;
        let config = MsmConfig::canonical_host();
        let mut result = IcicleG2Projective::default();
        // SAFETY: as in `msm_g1`, with `g2_affine_t` / `g2_projective_t`. A frontend built with
        // G2 registers its CPU G2 MSM, and ICICLE's CUDA backend is built with G2 alongside it
        // (the residual risk of a backend built without G2 is documented in the module docs of
        // `crate::icicle`, and `PCX_ICICLE_G2=cpu` avoids this call).
        let code = unsafe { msm(scalars.as_ptr(), bases.as_ptr(), size, &config, &mut result) };
        check("bn254_g2_msm", code)?;
        Ok(result)
    }
}

/// A device that passed [`Api::msm_device`]'s checks; the only way to make an MSM.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MsmDevice {
    device: Device,
}

impl MsmDevice {
    /// The device.
    pub(crate) fn device(&self) -> &Device {
        &self.device
    }
}

/// ICICLE takes the MSM size as an `int`.
fn msm_size(scalars: usize, bases: usize) -> Result<c_int, IcicleError> {
    if scalars != bases {
        return Err(IcicleError::Internal(format!("{scalars} scalars but {bases} bases reached the FFI")));
    }
    c_int::try_from(scalars).map_err(|_| IcicleError::TooLarge { size: scalars })
}

fn c_path(path: &Path) -> Result<CString, IcicleError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| IcicleError::Internal(format!("path {} contains a NUL byte", path.display())))
}

/// Views a `c_char` buffer as bytes (`c_char` is `i8` or `u8` depending on the platform).
fn bytemuck_chars(buffer: &[c_char]) -> &[u8] {
    // SAFETY: `c_char` and `u8` have the same size and alignment, every bit pattern is valid for
    // both, and the returned slice borrows `buffer` with the same length.
    unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), buffer.len()) }
}

/// `libicicle_backend_<device>_<part>.so` under `dir` (searched recursively, as ICICLE loads
/// backends), if there is one; `part` is e.g. `device` or `curve_bn254`.
pub(crate) fn find_backend_library(dir: &Path, device_kind: &str, part: &str) -> Option<PathBuf> {
    let wanted = library_file(&format!("icicle_backend_{}_{part}", device_kind.to_ascii_lowercase()));
    let mut pending = vec![dir.to_path_buf()];
    let mut visited = 0usize;
    while let Some(next) = pending.pop() {
        visited += 1;
        if visited > 4096 {
            return None;
        }
        let Ok(entries) = std::fs::read_dir(&next) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if entry.file_name() == OsStr::new(&wanted) {
                return Some(path);
            }
        }
    }
    None
}

/// Why `icicle_load_backend(dir)` registered no device of type `device_kind`, as far as we can
/// tell: its device library is missing, or `dlopen` refuses it (ICICLE only logs that at its
/// debug level). Opening it here uses ICICLE's own flags for device libraries.
pub(crate) fn diagnose_backend(dir: &Path, device_kind: &str) -> String {
    let Some(library) = find_backend_library(dir, device_kind, "device") else {
        return format!(
            "there is no {} under it",
            library_file(&format!("icicle_backend_{}_device", device_kind.to_ascii_lowercase()))
        );
    };
    match open(&library, RTLD_LAZY | RTLD_GLOBAL) {
        Err(err) => err.to_string(),
        Ok(opened) => {
            let _ = opened.into_raw();
            format!(
                "{} loads, but registered no {device_kind} device (a backend built for another ICICLE version?)",
                library.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_are_nul_terminated_and_bounded() {
        let cuda = Device::new("CUDA", 1).unwrap();
        assert_eq!((cuda.kind(), cuda.id()), ("CUDA".to_owned(), 1));
        assert_eq!(cuda.kind[4], 0);
        assert_eq!(format!("{cuda:?}"), "CUDA:1");
        assert!(Device::new(&"X".repeat(63), 0).is_some());
        assert!(Device::new(&"X".repeat(64), 0).is_none());
        assert!(Device::new("", 0).is_none());
        assert!(Device::new("CU\0DA", 0).is_none());
    }

    #[test]
    fn the_config_says_canonical_host_memory_synchronous() {
        let config = MsmConfig::canonical_host();
        assert!(!config.are_scalars_montgomery_form && !config.are_points_montgomery_form);
        assert!(!config.are_scalars_on_device && !config.are_points_on_device && !config.are_results_on_device);
        assert!(!config.is_async && config.are_points_shared_in_batch);
        assert_eq!((config.batch_size, config.precompute_factor, config.c, config.bitsize), (1, 1, 0, 0));
        assert!(config.stream.is_null() && config.ext.is_null());
    }

    #[test]
    fn error_codes_have_icicles_names() {
        assert_eq!(error_name(0), "SUCCESS");
        assert_eq!(error_name(1), "INVALID_DEVICE");
        assert_eq!(error_name(12), "BACKEND_LOAD_FAILED");
        assert_eq!(error_name(99), "UNKNOWN_ERROR");
        let err = check("bn254_msm", 4).unwrap_err();
        assert_eq!(err.to_string(), "ICICLE call bn254_msm failed: ALLOCATION_FAILED (4)");
        assert!(check("x", 0).is_ok());
    }

    #[test]
    fn sizes_must_match_and_fit_an_int() {
        assert_eq!(msm_size(3, 3).unwrap(), 3);
        assert!(matches!(msm_size(3, 2), Err(IcicleError::Internal(_))));
        let too_many = usize::try_from(i32::MAX).unwrap() + 1;
        assert!(matches!(msm_size(too_many, too_many), Err(IcicleError::TooLarge { .. })));
    }

    #[test]
    fn a_missing_library_is_an_error_naming_icicle() {
        let err = Api::load(Path::new("/nonexistent/icicle/lib")).unwrap_err().to_string();
        assert!(err.starts_with("ICICLE"), "{err}");
        assert!(err.contains("libicicle_device"), "{err}");
    }

    #[test]
    fn backend_libraries_are_found_recursively_and_diagnosed() {
        let dir = crate::keys::test_support::TempDir::new("icicle-backend-dir");
        let nested = dir.path().join("bn254").join("cuda");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(find_backend_library(dir.path(), "CUDA", "curve_bn254"), None);
        std::fs::write(nested.join(library_file("icicle_backend_cuda_curve_bn254")), b"").unwrap();
        assert_eq!(
            find_backend_library(dir.path(), "CUDA", "curve_bn254"),
            Some(nested.join(library_file("icicle_backend_cuda_curve_bn254")))
        );
        assert_eq!(find_backend_library(dir.path(), "METAL", "curve_bn254"), None);

        assert_eq!(diagnose_backend(dir.path(), "CUDA"), "there is no libicicle_backend_cuda_device.so under it");
        // Not a shared library: dlopen's own reason.
        std::fs::create_dir_all(dir.path().join("cuda")).unwrap();
        std::fs::write(dir.path().join("cuda").join("libicicle_backend_cuda_device.so"), b"not an ELF file").unwrap();
        let why = diagnose_backend(dir.path(), "CUDA");
        assert!(why.starts_with("ICICLE library ") && why.contains("could not be loaded"), "{why}");
    }
}
