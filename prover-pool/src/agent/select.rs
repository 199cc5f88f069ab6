//! Choosing the MSM backend for `--backend auto|cpu|icicle`, for the agent and `pcx prover bench`.
//!
//! - `cpu`: arkworks on all cores.
//! - `icicle`: ICICLE on the device of `ICICLE_DEVICE` (default `CUDA`), which must load and pass
//!   its self-test against arkworks; anything else is an error naming ICICLE (the agent and the
//!   benchmark then exit non-zero).
//! - `auto`: ICICLE when the device is a GPU, is registered and passes the self-test; otherwise
//!   arkworks, with the reason logged and carried in the heartbeat's `backend` text, e.g.
//!   `cpu (icicle: ICICLE is not installed: no libicicle_device.so in /opt/icicle/lib (...))`.
//!   `auto` never picks ICICLE's CPU backend (`ICICLE_DEVICE=CPU`): it is for tests, not speed.
//!
//! Invariant: a backend is returned as ICICLE only after [`IcicleMsm::open_verified`] succeeded
//! in this process; in the `pcx` binary ([`enable_child_probe`]) the same self-test first ran in a
//! child process (`pcx prover icicle-self-test`), so an ICICLE that aborts (C++ exceptions reach
//! Rust as an abort) takes down only that child, and the parent reports it and goes on.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::anyhow;

use super::cli::BackendChoice;
use super::TARGET;
use crate::icicle::{IcicleError, IcicleMsm, IcicleSettings, ENV_DEVICE};
use crate::msm::{ArkworksMsm, MsmBackend};

/// How long the child self-test may take (loading CUDA can take a while the first time, e.g. when
/// the driver compiles the backend's PTX for this GPU).
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest fallback reason carried in the heartbeat's `backend` text.
const MAX_REASON_CHARS: usize = 160;
/// The subcommand of `pcx prover` the probe runs.
pub(crate) const PROBE_SUBCOMMAND: &str = "icicle-self-test";

/// The backend chosen, and how to describe it.
pub struct SelectedBackend {
    /// The backend every proof's MSMs go through.
    pub backend: Arc<dyn MsmBackend>,
    /// For heartbeats and logs: the backend's name, or `cpu (icicle: <why not>)` when `auto`
    /// fell back.
    pub label: String,
    /// Whether the backend is ICICLE (verified against arkworks).
    pub is_icicle: bool,
    /// Why `auto` did not use ICICLE, if it did not.
    pub fallback_reason: Option<String>,
}

impl std::fmt::Debug for SelectedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelectedBackend")
            .field("backend", &self.backend.name())
            .field("label", &self.label)
            .field("is_icicle", &self.is_icicle)
            .field("fallback_reason", &self.fallback_reason)
            .finish()
    }
}

/// How ICICLE's self-test is isolated before ICICLE is loaded into this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// No isolation: load and self-test in this process (tests, agents run in-process).
    InProcess,
    /// Run `program args... icicle-self-test` first; only if it exits 0 is ICICLE loaded here.
    Child {
        /// The executable (the `pcx` binary).
        program: PathBuf,
        /// The arguments up to and including `prover`.
        args: Vec<OsString>,
    },
}

static CHILD_PROBE: OnceLock<Probe> = OnceLock::new();

/// Makes [`select_backend`] run ICICLE's self-test in a child process first. Called by
/// [`super::main`], i.e. when this process is `<exe> ... prover ...`; the child is the same
/// command line cut after `prover`, plus `icicle-self-test`. Without a `prover` argument (or the
/// executable's path) nothing changes.
pub(crate) fn enable_child_probe() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let Some(prover) = args.iter().position(|arg| arg == "prover") else { return };
    let Ok(program) = std::env::current_exe() else { return };
    let _ = CHILD_PROBE.set(Probe::Child { program, args: args[1..=prover].to_vec() });
}

fn process_probe() -> Probe {
    CHILD_PROBE.get().cloned().unwrap_or(Probe::InProcess)
}

/// The backend for `choice`, with ICICLE's settings from the environment. Blocking: loading
/// ICICLE and its self-test take from milliseconds to seconds.
pub fn select_backend(choice: BackendChoice) -> anyhow::Result<SelectedBackend> {
    select_backend_with(choice, IcicleSettings::from_env(), &process_probe())
}

/// [`select_backend`] with explicit ICICLE settings and probe.
pub fn select_backend_with(
    choice: BackendChoice,
    settings: Result<IcicleSettings, IcicleError>,
    probe: &Probe,
) -> anyhow::Result<SelectedBackend> {
    match choice {
        BackendChoice::Cpu => Ok(cpu("cpu".to_owned(), None)),
        BackendChoice::Icicle => {
            let icicle =
                settings.map_err(|err| err.to_string()).and_then(|settings| open_icicle(&settings, probe)).map_err(
                    |reason| anyhow!("--backend icicle: {reason}; use --backend cpu (or auto) to prove on the CPU"),
                )?;
            Ok(chosen_icicle(icicle))
        }
        BackendChoice::Auto => {
            let opened = settings.map_err(|err| err.to_string()).and_then(|settings| {
                if settings.is_gpu() {
                    open_icicle(&settings, probe)
                } else {
                    Err(format!(
                        "{ENV_DEVICE}={} is ICICLE's CPU backend, which auto does not use; use --backend icicle for it",
                        settings.device
                    ))
                }
            });
            match opened {
                Ok(icicle) => Ok(chosen_icicle(icicle)),
                Err(reason) => {
                    tracing::info!(
                        target: TARGET,
                        reason = %reason,
                        "--backend auto: ICICLE is not used, so proofs use the CPU backend (arkworks, all cores)"
                    );
                    Ok(cpu(format!("cpu (icicle: {})", shorten(&reason)), Some(reason)))
                }
            }
        }
    }
}

fn cpu(label: String, fallback_reason: Option<String>) -> SelectedBackend {
    SelectedBackend { backend: Arc::new(ArkworksMsm), label, is_icicle: false, fallback_reason }
}

fn chosen_icicle(icicle: IcicleMsm) -> SelectedBackend {
    tracing::info!(
        target: TARGET,
        backend = icicle.name(),
        device = %icicle.device(),
        frontend_dir = %icicle.frontend_dir().display(),
        "MSMs run on ICICLE (self-test against arkworks passed)"
    );
    let label = icicle.name().to_owned();
    SelectedBackend { backend: Arc::new(icicle), label, is_icicle: true, fallback_reason: None }
}

/// Loads ICICLE as `settings` say and checks it against arkworks; the reason when that fails
/// (always naming ICICLE).
fn open_icicle(settings: &IcicleSettings, probe: &Probe) -> Result<IcicleMsm, String> {
    settings.check_installed().map_err(|err| err.to_string())?;
    if let Probe::Child { program, args } = probe {
        run_probe(program, args, PROBE_TIMEOUT)?;
    }
    let (icicle, report) = IcicleMsm::open_verified(settings).map_err(|err| err.to_string())?;
    tracing::info!(
        target: TARGET,
        backend = icicle.name(),
        g1_sizes = ?report.g1_sizes,
        g2_sizes = ?report.g2_sizes,
        icicle_ms = report.icicle_time.as_millis() as u64,
        "ICICLE self-test: MSMs equal arkworks'"
    );
    Ok(icicle)
}

/// Runs `program args... icicle-self-test` and waits up to `timeout`; `Err` with the reason
/// (naming ICICLE) unless it exits 0.
pub(crate) fn run_probe(program: &PathBuf, args: &[OsString], timeout: Duration) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .arg(PROBE_SUBCOMMAND)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("ICICLE self-test: cannot start the probe process {}: {err}", program.display()))?;
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => std::thread::sleep(Duration::from_millis(25)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "ICICLE self-test did not finish within {} s (probe process killed)",
                    timeout.as_secs()
                ));
            }
            Err(err) => return Err(format!("ICICLE self-test: waiting for the probe process failed: {err}")),
        }
    };
    let stderr = stderr.and_then(|reader| reader.join().ok()).unwrap_or_default();
    let stdout = stdout.and_then(|reader| reader.join().ok()).unwrap_or_default();
    if status.success() {
        tracing::debug!(target: TARGET, output = %stdout.trim(), "ICICLE probe process passed");
        return Ok(());
    }
    let said = last_error_line(&stderr).or_else(|| last_error_line(&stdout));
    match status.code() {
        // The child's own error already names ICICLE and says what is wrong.
        Some(code) => Err(match said {
            Some(said) if said.starts_with("ICICLE") => format!("{said} (self-test probe process, exit status {code})"),
            Some(said) => format!("ICICLE self-test failed in the probe process (exit status {code}): {said}"),
            None => format!("ICICLE self-test failed in the probe process (exit status {code}) with no message"),
        }),
        None => {
            #[cfg(unix)]
            let signal = std::os::unix::process::ExitStatusExt::signal(&status)
                .map_or_else(|| "a signal".to_owned(), |signal| format!("signal {signal}"));
            #[cfg(not(unix))]
            let signal = "a signal".to_owned();
            Err(format!(
                "ICICLE crashed the probe process ({signal}; an exception inside ICICLE aborts the process): {}",
                said.unwrap_or_else(|| "no message".to_owned())
            ))
        }
    }
}

/// Reads a pipe to its end on a thread (so a chatty child cannot block on a full pipe).
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The most telling line of a failed probe's output: its last `error: ...` line (how `pcx`
/// reports an error), else its last non-empty line; at most 400 characters.
fn last_error_line(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    let line = lines.iter().rev().find_map(|line| line.strip_prefix("error: ")).or_else(|| lines.last().copied())?;
    Some(line.chars().take(400).collect())
}

/// At most [`MAX_REASON_CHARS`] characters, with "..." when cut.
fn shorten(reason: &str) -> String {
    if reason.chars().count() <= MAX_REASON_CHARS {
        reason.to_owned()
    } else {
        let cut: String = reason.chars().take(MAX_REASON_CHARS - 3).collect();
        format!("{cut}...")
    }
}

/// `pcx prover icicle-self-test`: loads ICICLE as the environment says, checks it against
/// arkworks in this process and prints the outcome; an error (naming ICICLE) otherwise.
pub fn icicle_self_test() -> anyhow::Result<()> {
    let settings = IcicleSettings::from_env()?;
    let (icicle, report) = IcicleMsm::open_verified(&settings)?;
    println!(
        "ICICLE {} on {} (frontend {}): G1 MSMs of {:?} points{} equal arkworks' ({} ms on ICICLE)",
        icicle.name(),
        icicle.device(),
        icicle.frontend_dir().display(),
        report.g1_sizes,
        if report.g2_sizes.is_empty() {
            " (G2 on arkworks)".to_owned()
        } else {
            format!(" and G2 MSMs of {:?} points", report.g2_sizes)
        },
        report.icicle_time.as_millis()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn not_installed() -> Result<IcicleSettings, IcicleError> {
        let mut settings = IcicleSettings::from_lookup(|_| None)?;
        settings.frontend_dir = PathBuf::from("/nonexistent/icicle/lib");
        settings.frontend_dir_from_env = true;
        Ok(settings)
    }

    #[test]
    fn cpu_is_arkworks() {
        let selected = select_backend_with(BackendChoice::Cpu, not_installed(), &Probe::InProcess).unwrap();
        assert_eq!((selected.label.as_str(), selected.backend.name()), ("cpu", "cpu"));
        assert!(!selected.is_icicle && selected.fallback_reason.is_none());
    }

    #[test]
    fn icicle_without_icicle_is_an_error_naming_icicle() {
        let err = select_backend_with(BackendChoice::Icicle, not_installed(), &Probe::InProcess).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--backend icicle: ICICLE is not installed: no libicicle_device.so in /nonexistent/icicle/lib \
             (from ICICLE_FRONTEND_DIR); use --backend cpu (or auto) to prove on the CPU"
        );
        let bad = IcicleSettings::from_lookup(|name| (name == ENV_DEVICE).then(|| "CUDA:x".to_owned()));
        let err = select_backend_with(BackendChoice::Icicle, bad, &Probe::InProcess).unwrap_err().to_string();
        assert!(err.starts_with("--backend icicle: ICICLE setting ICICLE_DEVICE="), "{err}");
    }

    #[test]
    fn auto_falls_back_to_the_cpu_and_says_why() {
        let selected = select_backend_with(BackendChoice::Auto, not_installed(), &Probe::InProcess).unwrap();
        assert!(!selected.is_icicle);
        assert_eq!(selected.backend.name(), "cpu");
        let reason = selected.fallback_reason.clone().unwrap();
        assert!(reason.starts_with("ICICLE is not installed"), "{reason}");
        assert_eq!(selected.label, format!("cpu (icicle: {reason})"));

        let cpu_device = IcicleSettings::cpu_device("/nonexistent/icicle/lib");
        let selected = select_backend_with(BackendChoice::Auto, Ok(cpu_device), &Probe::InProcess).unwrap();
        assert!(
            selected.label.starts_with("cpu (icicle: ICICLE_DEVICE=CPU is ICICLE's CPU backend"),
            "{}",
            selected.label
        );
    }

    #[test]
    fn long_reasons_are_shortened_in_the_label() {
        let long = "ICICLE ".repeat(100);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_REASON_CHARS);
        assert!(short.ends_with("..."));
        assert_eq!(shorten("ICICLE x"), "ICICLE x");
    }

    #[test]
    fn the_probe_reports_exit_codes_crashes_and_timeouts() {
        let sh = Path::new("/bin/sh").to_path_buf();
        let script = |text: &str| vec![OsString::from("-c"), OsString::from(text), OsString::from("probe")];
        // `sh -c SCRIPT probe icicle-self-test`: $0 = probe, $1 = icicle-self-test.
        run_probe(&sh, &script(r#"test "$1" = icicle-self-test"#), Duration::from_secs(10)).unwrap();
        let err = run_probe(
            &sh,
            &script("echo noise >&2; echo 'error: ICICLE went wrong' >&2; exit 3"),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert_eq!(err, "ICICLE went wrong (self-test probe process, exit status 3)");
        let err =
            run_probe(&sh, &script("echo 'error: something else' >&2; exit 1"), Duration::from_secs(10)).unwrap_err();
        assert_eq!(err, "ICICLE self-test failed in the probe process (exit status 1): something else");
        let err = run_probe(&sh, &script("exit 2"), Duration::from_secs(10)).unwrap_err();
        assert_eq!(err, "ICICLE self-test failed in the probe process (exit status 2) with no message");
        let err =
            run_probe(&sh, &script("echo terminate called >&2; kill -ABRT $$"), Duration::from_secs(10)).unwrap_err();
        assert!(err.starts_with("ICICLE crashed the probe process (signal 6;"), "{err}");
        assert!(err.ends_with("terminate called"), "{err}");
        let started = Instant::now();
        let err = run_probe(&sh, &script("sleep 30"), Duration::from_millis(300)).unwrap_err();
        assert!(err.starts_with("ICICLE self-test did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let err = run_probe(&PathBuf::from("/nonexistent/pcx"), &[], Duration::from_secs(1)).unwrap_err();
        assert!(err.starts_with("ICICLE self-test: cannot start the probe process"), "{err}");
    }

    #[test]
    fn a_probe_failure_stops_icicle_before_it_is_loaded() {
        // Installed-looking files make check_installed pass; the probe then refuses.
        let dir = crate::keys::test_support::TempDir::new("select-probe");
        for library in ["libicicle_device.so", "libicicle_field_bn254.so", "libicicle_curve_bn254.so"] {
            std::fs::write(dir.path().join(library), b"").unwrap();
        }
        let settings = IcicleSettings::cpu_device(dir.path());
        let probe = Probe::Child {
            program: PathBuf::from("/bin/sh"),
            args: vec![OsString::from("-c"), OsString::from("kill -ABRT $$")],
        };
        let err = select_backend_with(BackendChoice::Icicle, Ok(settings), &probe).unwrap_err().to_string();
        assert!(err.starts_with("--backend icicle: ICICLE crashed the probe process"), "{err}");
    }

    #[test]
    fn the_last_error_line_is_picked() {
        assert_eq!(last_error_line("a\nerror: b\nc\n").as_deref(), Some("b"));
        assert_eq!(last_error_line("a\n\nc\n\n").as_deref(), Some("c"));
        assert_eq!(last_error_line("  \n"), None);
    }
}
