//! `pcx prover ...` end to end, ICICLE's child-process self-test included, without building the
//! `pcx` binary: this test binary (no libtest harness) is its own stand-in. Run with `prover ...`
//! arguments it behaves like `pcx prover ...` (same parsing, same `agent::main`, errors printed
//! as `error: ...` with exit status 1); run without, it is the test, and runs itself as that
//! command line in child processes.
//!
//! The ICICLE cases need `ICICLE_FRONTEND_DIR` (ICICLE's CPU device is used: no GPU needed);
//! without it they print why they are skipped.

// Test code: a failed unwrap is a failed test (clippy only sees `#[test]` functions as tests).
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "pcx")]
struct Pcx {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, clap::Subcommand)]
enum Top {
    Prover(pcx_prover_pool::agent::ProverCli),
}

fn main() -> ExitCode {
    if std::env::args().any(|arg| arg == "prover") {
        return as_pcx();
    }
    let mut failed = 0;
    for (name, test) in TESTS {
        let started = std::time::Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => println!("test {name} ... ok ({:.1} s)", started.elapsed().as_secs_f64()),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!(
        "\ntest result: {}. {} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        TESTS.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What the `pcx` binary does with `pcx prover ...`.
fn as_pcx() -> ExitCode {
    let Top::Prover(cli) = Pcx::parse().command;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(pcx_prover_pool::agent::main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

type Test = fn();

const TESTS: [(&str, Test); 5] = [
    ("icicle_backend_without_icicle_fails_naming_icicle", icicle_backend_without_icicle_fails_naming_icicle),
    ("auto_without_icicle_benchmarks_the_cpu_and_says_why", auto_without_icicle_benchmarks_the_cpu_and_says_why),
    ("icicle_self_test_command_passes_on_icicles_cpu_device", icicle_self_test_command_passes_on_icicles_cpu_device),
    ("icicle_bench_compares_with_the_cpu_and_agrees", icicle_bench_compares_with_the_cpu_and_agrees),
    ("auto_falls_back_when_the_gpu_backend_is_missing", auto_falls_back_when_the_gpu_backend_is_missing),
];

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("pcx-cli-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `<this binary> prover <args>` with ICICLE's variables cleared, then `env` set.
fn pcx_prover(args: &[&str], env: &[(&str, &Path)], device: Option<&str>) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.arg("prover").args(args);
    for variable in ["ICICLE_FRONTEND_DIR", "ICICLE_BACKEND_INSTALL_DIR", "ICICLE_DEVICE", "PCX_ICICLE_G2"] {
        command.env_remove(variable);
    }
    for (variable, value) in env {
        command.env(variable, value);
    }
    if let Some(device) = device {
        command.env("ICICLE_DEVICE", device);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn icicle_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("ICICLE_FRONTEND_DIR").filter(|dir| !dir.is_empty()).map(PathBuf::from);
    if dir.is_none() {
        let _ = writeln!(std::io::stderr(), "skipped {test}: ICICLE_FRONTEND_DIR is not set");
    }
    dir
}

fn icicle_backend_without_icicle_fails_naming_icicle() {
    let empty = TempDir::new("no-icicle");
    let keys = TempDir::new("keys");
    let keys_dir = keys.0.to_str().unwrap();
    let output = pcx_prover(
        &["bench", "--backend", "icicle", "--size-log2", "10", "--keys-dir", keys_dir],
        &[("ICICLE_FRONTEND_DIR", &empty.0)],
        None,
    );
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("error: --backend icicle: ICICLE is not installed: no libicicle_device.so in"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    let output = pcx_prover(&["icicle-self-test"], &[("ICICLE_FRONTEND_DIR", &empty.0)], None);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: ICICLE is not installed"), "{stderr}");
}

fn auto_without_icicle_benchmarks_the_cpu_and_says_why() {
    let empty = TempDir::new("no-icicle-auto");
    let keys = TempDir::new("keys-auto");
    let output = pcx_prover(
        &["bench", "--size-log2", "10", "--repetitions", "1", "--keys-dir", keys.0.to_str().unwrap()],
        &[("ICICLE_FRONTEND_DIR", &empty.0)],
        None,
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("backend: cpu (icicle: ICICLE is not installed"), "{stdout}");
    assert!(stdout.lines().any(|line| line.starts_with("2^10")), "{stdout}");
}

fn icicle_self_test_command_passes_on_icicles_cpu_device() {
    let Some(dir) = icicle_dir("icicle_self_test_command_passes_on_icicles_cpu_device") else { return };
    let output = pcx_prover(&["icicle-self-test"], &[("ICICLE_FRONTEND_DIR", &dir)], Some("CPU"));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("ICICLE icicle-cpu on CPU:0"), "{stdout}");
    assert!(stdout.contains("equal arkworks'"), "{stdout}");
}

fn icicle_bench_compares_with_the_cpu_and_agrees() {
    let Some(dir) = icicle_dir("icicle_bench_compares_with_the_cpu_and_agrees") else { return };
    let keys = TempDir::new("keys-icicle");
    // The parent runs `... prover icicle-self-test` as a child first, then ICICLE in-process.
    let output = pcx_prover(
        &[
            "bench",
            "--backend",
            "icicle",
            "--size-log2",
            "10",
            "--repetitions",
            "1",
            "--keys-dir",
            keys.0.to_str().unwrap(),
        ],
        &[("ICICLE_FRONTEND_DIR", &dir)],
        Some("CPU"),
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("MSM backend `icicle-cpu` against `cpu`"), "{stdout}");
    assert!(stdout.lines().any(|line| line.starts_with("2^10")), "{stdout}");
}

fn auto_falls_back_when_the_gpu_backend_is_missing() {
    let Some(dir) = icicle_dir("auto_falls_back_when_the_gpu_backend_is_missing") else { return };
    let empty_backends = TempDir::new("no-backends");
    let keys = TempDir::new("keys-fallback");
    let output = pcx_prover(
        &["bench", "--size-log2", "10", "--repetitions", "1", "--keys-dir", keys.0.to_str().unwrap()],
        &[("ICICLE_FRONTEND_DIR", &dir), ("ICICLE_BACKEND_INSTALL_DIR", &empty_backends.0)],
        None,
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("backend: cpu (icicle: ICICLE CUDA backend has no BN254 MSM"), "{stdout}");
    // And `--backend icicle` refuses, naming ICICLE.
    let output = pcx_prover(
        &["bench", "--backend", "icicle", "--size-log2", "10", "--keys-dir", keys.0.to_str().unwrap()],
        &[("ICICLE_FRONTEND_DIR", &dir), ("ICICLE_BACKEND_INSTALL_DIR", &empty_backends.0)],
        None,
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: --backend icicle: ICICLE CUDA backend has no BN254 MSM"), "{stderr}");
}
