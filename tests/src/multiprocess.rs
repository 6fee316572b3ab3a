//! Multi-process cases: real processes (the `conformance-worker` binary) sharing one store.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cases::eventually;
use crate::{backend_from_spec, fresh_dir, unique_name};

/// Records one computation in `count_file` (one line per computation, any process).
fn record_computation(count_file: &Path) {
    use std::io::Write;
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(count_file)
        .expect("count file");
    writeln!(log, "{}", std::process::id()).expect("write count file");
}

/// The worker's result for `x`: it names the process that computed it.
fn worker_value(x: u64) -> u64 {
    x * 1_000_000 + u64::from(std::process::id())
}

/// What the worker's memoized function does; shared with the worker binary.
pub fn worker_function(
    spec: &str,
    namespace: &str,
    count_file: &Path,
    pause: Duration,
    lease: Duration,
) -> cachier::Memoized<u64, u64> {
    let count_file = count_file.to_owned();
    cachier::memoize(namespace, move |x: u64| {
        record_computation(&count_file);
        thread::sleep(pause);
        worker_value(x)
    })
    .shared_backend(backend_from_spec(spec))
    .lease(lease)
    .build()
    .expect("build worker function")
}

/// [`worker_function`] as an async function, for the async workers.
#[cfg(feature = "async")]
pub fn async_worker_function(
    spec: &str,
    namespace: &str,
    count_file: &Path,
    pause: Duration,
    lease: Duration,
) -> cachier::AsyncMemoized<u64, u64> {
    let count_file = std::sync::Arc::new(count_file.to_owned());
    cachier::memoize_async(namespace, move |x: u64| {
        let count_file = count_file.clone();
        async move {
            record_computation(&count_file);
            tokio::time::sleep(pause).await;
            worker_value(x)
        }
    })
    .shared_backend(backend_from_spec(spec))
    .lease(lease)
    .build()
    .expect("build async worker function")
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis()
}

struct Run<'a> {
    worker: &'a str,
    mode: &'a str,
    spec: &'a str,
    namespace: &'a str,
    count_file: &'a Path,
    threads: usize,
    pause_ms: u64,
    lease_ms: u64,
    start_at_ms: u128,
}

impl Run<'_> {
    fn command(&self) -> Command {
        let mut cmd = Command::new(self.worker);
        cmd.arg(self.mode)
            .arg(self.spec)
            .arg(self.namespace)
            .arg("7")
            .arg(self.threads.to_string())
            .arg(self.pause_ms.to_string())
            .arg(self.count_file)
            .arg(self.lease_ms.to_string())
            .arg(self.start_at_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        cmd
    }
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// §8 `test_separate_processes`: a value computed by one process is a hit in another.
pub fn value_from_one_process_is_a_hit_in_another(spec: &str, worker: &str) {
    let dir = fresh_dir("mp_hit");
    let count_file = dir.join("calls");
    let namespace = unique_name("mp_hit");
    let run = Run {
        worker,
        mode: "call",
        spec,
        namespace: &namespace,
        count_file: &count_file,
        threads: 1,
        pause_ms: 0,
        lease_ms: 10_000,
        start_at_ms: 0,
    };
    let out = run.command().output().expect("run worker");
    assert!(out.status.success(), "worker failed: {out:?}");
    let child_value: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("worker output");
    let f = worker_function(
        spec,
        &namespace,
        &count_file,
        Duration::ZERO,
        Duration::from_secs(10),
    );
    assert_eq!(f.call(7), child_value, "the child's value is served here");
    assert_eq!(lines(&count_file).len(), 1, "computed once, by the child");
}

/// DESIGN §4.1: eight processes of four threads miss one key at once; exactly one computes.
pub fn processes_compute_once(spec: &str, worker: &str) {
    compute_once_across_processes(spec, worker, "call");
}

/// Issue 7: the same with async callers (four tasks per process).
#[cfg(feature = "async")]
pub fn async_processes_compute_once(spec: &str, worker: &str) {
    compute_once_across_processes(spec, worker, "call-async");
}

fn compute_once_across_processes(spec: &str, worker: &str, mode: &str) {
    let dir = fresh_dir("mp_once");
    let count_file = dir.join("calls");
    let namespace = unique_name("mp_once");
    let start_at_ms = unix_ms() + 2_000;
    let children: Vec<_> = (0..8)
        .map(|_| {
            let run = Run {
                worker,
                mode,
                spec,
                namespace: &namespace,
                count_file: &count_file,
                threads: 4,
                pause_ms: 500,
                lease_ms: 10_000,
                start_at_ms,
            };
            run.command().spawn().expect("spawn worker")
        })
        .collect();
    let mut values = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait worker");
        assert!(out.status.success(), "worker failed: {out:?}");
        values.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| l.trim().parse::<u64>().expect("value")),
        );
    }
    assert_eq!(values.len(), 32);
    assert!(
        values.iter().all(|v| *v == values[0]),
        "all callers got one value: {values:?}"
    );
    assert_eq!(
        lines(&count_file).len(),
        1,
        "exactly one computation among 32 callers"
    );
}

/// DESIGN §4.2: `kill -9` of the computing process; a waiter takes over within the lease, with
/// no manual `clear_being_calculated()`.
pub fn killed_computation_is_taken_over(spec: &str, worker: &str) {
    let dir = fresh_dir("mp_kill");
    let count_file = dir.join("calls");
    let namespace = unique_name("mp_kill");
    let lease = Duration::from_millis(1500);
    let run = Run {
        worker,
        mode: "call",
        spec,
        namespace: &namespace,
        count_file: &count_file,
        threads: 1,
        pause_ms: 60_000,
        lease_ms: lease.as_millis() as u64,
        start_at_ms: 0,
    };
    let mut child = run.command().spawn().expect("spawn worker");
    eventually(|| (!lines(&count_file).is_empty()).then_some(()));
    child.kill().expect("kill -9 the computing process");
    child.wait().expect("reap");
    let f = worker_function(spec, &namespace, &count_file, Duration::ZERO, lease);
    let started = Instant::now();
    let value = f.call(7);
    let took = started.elapsed();
    assert_eq!(
        value,
        7_000_000 + u64::from(std::process::id()),
        "this process computed it"
    );
    assert!(
        took < lease * 2 + Duration::from_secs(2),
        "took over after {took:?} (lease {lease:?})"
    );
    assert_eq!(lines(&count_file).len(), 2);
}
