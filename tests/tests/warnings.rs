//! What a program sees of cachier's warnings without any logging set up (the first of each
//! function, once, on stderr), with a `log` logger (every warning, through tracing's `log`
//! compatibility, and nothing on stderr), and with a `tracing` subscriber; and that a bad
//! global backend never turns into another store. Each case is a real child process
//! (`warnings-worker`), since logging and the global backend are set once per process.
#![cfg(all(feature = "file", feature = "macros"))]

use std::process::{Command, Output};

use cachier_conformance::fresh_dir;

fn worker(args: &[&str], backend_url: Option<&str>) -> (String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_warnings-worker"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env("CACHIER_CACHE_DIR", fresh_dir("warnings_cache"));
    match backend_url {
        Some(url) => command.env("CACHIER_BACKEND_URL", url),
        None => command.env_remove("CACHIER_BACKEND_URL"),
    };
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run warnings-worker");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    assert!(status.success(), "worker failed: {stdout}\n{stderr}");
    (stdout, stderr)
}

fn store_failure(setup: &str) -> (String, String) {
    let dir = fresh_dir("warnings");
    let (stdout, stderr) = worker(&["store-failure", setup, dir.to_str().unwrap()], None);
    let results: Vec<&str> = stdout.lines().filter(|l| !l.contains("cachier")).collect();
    assert_eq!(results, ["2", "3", "4"], "computed uncached:\n{stdout}");
    (stdout, stderr)
}

#[test]
fn first_store_failure_reaches_stderr_without_setup() {
    let (_, stderr) = store_failure("none");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line for three failures:\n{stderr}");
    assert!(
        lines[0].starts_with("cachier: cache unavailable for warnings::failing (file backend)")
            && lines[0].contains("a-file"),
        "says which function, which store and why: {}",
        lines[0]
    );
}

#[test]
fn store_failures_reach_a_log_logger() {
    let (stdout, stderr) = store_failure("log");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("LOG WARN") && l.contains("cache unavailable")),
        "the `log` logger got the warning:\n{stdout}"
    );
    assert!(!stderr.contains("cachier"), "nothing on stderr: {stderr}");
}

#[test]
fn store_failures_reach_a_tracing_subscriber() {
    let (stdout, stderr) = store_failure("tracing");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("WARN") && l.contains("cache unavailable")),
        "the subscriber got the warning:\n{stdout}"
    );
    assert!(!stderr.contains("cachier"), "nothing on stderr: {stderr}");
}

/// Runs the `#[cachier]` function on a global backend that cannot be used: it runs uncached
/// every time, `_cache()` and `check()` return a configuration error, and stderr says so
/// once.
fn bad_backend(url: &str, expected: &str) {
    let (stdout, stderr) = worker(&["bad-backend", "none"], Some(url));
    assert!(stdout.contains("runs 3"), "every call computed:\n{stdout}");
    for what in ["cache", "check"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(what))
            .unwrap_or_else(|| panic!("no {what} line:\n{stdout}"));
        assert!(
            line.starts_with(&format!("{what} Configuration:")) && line.contains(expected),
            "{line}"
        );
        assert!(!line.contains("s3cret"), "no password: {line}");
    }
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "said once:\n{stderr}");
    assert!(
        lines[0].starts_with("cachier: cannot build the cache of warnings_worker::counted")
            && lines[0].contains(expected)
            && !lines[0].contains("s3cret"),
        "{}",
        lines[0]
    );
    let dir = fresh_dir("unused");
    assert!(
        std::fs::read_dir(dir).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn misspelt_backend_url_is_a_configuration_error() {
    bad_backend(
        "redsi://user:s3cret@127.0.0.1:6379/0",
        "CACHIER_BACKEND_URL is not a backend",
    );
}
