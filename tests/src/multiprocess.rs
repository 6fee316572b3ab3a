//! Multi-process cases: real processes (the `conformance-worker` binary) sharing one store.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::eventually;
use crate::{backend_from_spec, fresh_dir, unique_name};

/// Records one computation of `x` in `count_file` (a line `x pid` per computation, any
/// process; appends of one short line are atomic).
fn record_computation(count_file: &Path, x: u64) {
    use std::io::Write;
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(count_file)
        .expect("count file");
    let line = format!("{x} {}\n", std::process::id());
    log.write_all(line.as_bytes()).expect("write count file"); // one write: one line
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
        record_computation(&count_file, x);
        thread::sleep(pause);
        worker_value(x)
    })
    .shared_backend(backend_from_spec(spec))
    .lease(lease)
    .build()
    .expect("build worker function")
}

/// A `HashMap` argument of `size` entries. Each process's `HashMap` iterates in its own
/// random order.
pub fn map_argument(size: u64) -> HashMap<String, u64> {
    (0..size).map(|i| (format!("key{i}"), i * i)).collect()
}

/// The worker's memoized function of a `HashMap` argument (`call-map`); its value names the
/// process that computed it, like [`worker_function`]'s.
pub fn map_worker_function(
    spec: &str,
    namespace: &str,
    count_file: &Path,
) -> cachier::Memoized<HashMap<String, u64>, u64> {
    let count_file = count_file.to_owned();
    cachier::memoize(namespace, move |map: HashMap<String, u64>| {
        let x = map.len() as u64;
        record_computation(&count_file, x);
        worker_value(x)
    })
    .shared_backend(backend_from_spec(spec))
    .build()
    .expect("build map worker function")
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
            record_computation(&count_file, x);
            tokio::time::sleep(pause).await;
            worker_value(x)
        }
    })
    .shared_backend(backend_from_spec(spec))
    .lease(lease)
    .build()
    .expect("build async worker function")
}

/// How often the stress cases bring in a new key.
const STRESS_NEW_KEY_EVERY: Duration = Duration::from_millis(5);
/// The stress callers pick among the keys brought in during this long.
const STRESS_WINDOW: u64 = 20;

/// The stress load of one process: `threads` threads, from `start_at` (Unix ms) for
/// `duration`, call `f` on the keys brought in lately (one every `STRESS_NEW_KEY_EVERY`,
/// on the same schedule in every process), in a random order. Panics on a wrong value;
/// returns how many calls were made.
pub fn stress_calls(
    f: &cachier::Memoized<u64, u64>,
    threads: u64,
    start_at: u128,
    duration: Duration,
) -> u64 {
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let f = f.clone();
            thread::spawn(move || {
                let now = unix_ms();
                if start_at > now {
                    thread::sleep(Duration::from_millis((start_at - now) as u64));
                }
                let every = STRESS_NEW_KEY_EVERY.as_millis();
                let end = start_at + duration.as_millis();
                let mut random = (u64::from(std::process::id()) << 16 | thread) | 1;
                let mut calls = 0;
                loop {
                    let now = unix_ms();
                    if now >= end {
                        return calls;
                    }
                    random ^= random << 13; // xorshift64
                    random ^= random >> 7;
                    random ^= random << 17;
                    let newest = ((now - start_at) / every) as u64;
                    let x = newest.saturating_sub(random % STRESS_WINDOW);
                    let value = f.call(x);
                    assert_eq!(value / 1_000_000, x, "a value of another key for {x}");
                    calls += 1;
                    thread::sleep(Duration::from_micros(500));
                }
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("stress thread"))
        .sum()
}

/// Exactly one computation per key under a sustained race: four processes of four threads
/// (one process of sixteen for a store of one process) calling new keys, 200 a second, in
/// random order, for five seconds. Each computation takes 10 ms.
pub fn stress_no_duplicate_computations(spec: &str, worker: &str) {
    let dir = fresh_dir("mp_stress");
    let count_file = dir.join("calls");
    let namespace = unique_name("mp_stress");
    let duration = Duration::from_secs(5);
    let pause = Duration::from_millis(10);
    let start_at_ms = unix_ms() + 2_000;
    let calls: u64 = if crate::spec_is_shared(spec) {
        let children: Vec<_> = (0..4)
            .map(|_| {
                let run = Run {
                    worker,
                    mode: "stress",
                    spec,
                    namespace: &namespace,
                    count_file: &count_file,
                    threads: 4,
                    pause_ms: pause.as_millis() as u64,
                    lease_ms: 10_000,
                    start_at_ms,
                };
                let mut cmd = run.command();
                cmd.arg(duration.as_millis().to_string());
                cmd.spawn().expect("spawn worker")
            })
            .collect();
        children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().expect("wait worker");
                assert!(out.status.success(), "worker failed: {out:?}");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse::<u64>()
                    .expect("calls made")
            })
            .sum()
    } else {
        let f = worker_function(
            spec,
            &namespace,
            &count_file,
            pause,
            Duration::from_secs(10),
        );
        stress_calls(&f, 16, start_at_ms, duration)
    };
    let mut per_key = std::collections::BTreeMap::<u64, usize>::new();
    for line in lines(&count_file) {
        let x = line.split(' ').next().and_then(|x| x.parse().ok());
        *per_key.entry(x.expect("count line")).or_default() += 1;
    }
    let twice: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "stress on {}: {calls} calls, {} keys, {} computations, {} keys computed more than once",
        spec.split(':').next().unwrap_or(spec),
        per_key.len(),
        per_key.values().sum::<usize>(),
        twice.len()
    );
    assert!(
        per_key.len() >= 50, // the MongoDB-wire test server reaches a few hundred in 5 s
        "the load reached {} keys only",
        per_key.len()
    );
    assert!(twice.is_empty(), "keys computed more than once: {twice:?}");
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

/// A value computed by one process is a hit in another.
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

/// A `HashMap` argument has one key in every process, although each process's map iterates
/// in another order: a value computed by one process is a hit in another.
pub fn hash_map_argument_is_a_hit_in_another_process(spec: &str, worker: &str) {
    let dir = fresh_dir("mp_map");
    let count_file = dir.join("calls");
    let namespace = unique_name("mp_map");
    let run = Run {
        worker,
        mode: "call-map",
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines_out = stdout.lines();
    let child_value: u64 = lines_out
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("worker value");
    let child_order = lines_out.next().expect("worker's iteration order");
    let map = map_argument(MAP_ARGUMENT_SIZE);
    let order = map.keys().cloned().collect::<Vec<_>>().join(",");
    assert_ne!(
        order, child_order,
        "the two processes' maps iterate in different orders"
    );
    let f = map_worker_function(spec, &namespace, &count_file);
    assert_eq!(f.call(map), child_value, "the child's value is served here");
    assert_eq!(lines(&count_file).len(), 1, "computed once, by the child");
}

/// Entries of the `HashMap` argument of the `call-map` worker: enough that two processes'
/// random orders never agree.
pub const MAP_ARGUMENT_SIZE: u64 = 32;

/// An invalidation in one process is seen by the others: the next process computes the key
/// again. Made while another process computes the key, it leaves that computation alone:
/// callers arriving after it wait for that computation and get its value.
pub fn invalidation_reaches_other_processes(spec: &str, worker: &str) {
    let dir = fresh_dir("mp_invalidate");
    let count_file = dir.join("calls");
    let namespace = unique_name("mp_invalidate");
    let f = worker_function(
        spec,
        &namespace,
        &count_file,
        Duration::ZERO,
        Duration::from_secs(10),
    );
    let mine = f.call(7);
    assert!(f.invalidate(&7).unwrap(), "the value was stored");
    let run = |threads: usize, pause_ms: u64| Run {
        worker,
        mode: "call",
        spec,
        namespace: &namespace,
        count_file: &count_file,
        threads,
        pause_ms,
        lease_ms: 10_000,
        start_at_ms: 0,
    };
    let values = |out: std::process::Output| -> Vec<u64> {
        assert!(out.status.success(), "worker failed: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().parse::<u64>().expect("value"))
            .collect()
    };
    let recomputed = values(run(1, 0).command().output().expect("run worker"));
    assert_ne!(
        recomputed[0], mine,
        "another process computed the key again"
    );
    assert_eq!(lines(&count_file).len(), 2);
    assert_eq!(f.call(7), recomputed[0], "and stored it for everyone");

    assert!(f.invalidate(&7).unwrap());
    let computing = run(1, 1500).command().spawn().expect("spawn worker");
    eventually(|| (lines(&count_file).len() == 3).then_some(()));
    assert!(
        !f.invalidate(&7).unwrap(),
        "being computed by the child: nothing stored to invalidate"
    );
    let waiting = run(4, 0).command().spawn().expect("spawn worker");
    let computed = values(computing.wait_with_output().expect("wait worker"));
    let waited = values(waiting.wait_with_output().expect("wait worker"));
    assert_eq!(waited.len(), 4);
    assert!(
        waited.iter().all(|v| *v == computed[0]),
        "the callers after the invalidation got the computation in flight: {waited:?} vs {computed:?}"
    );
    assert_eq!(lines(&count_file).len(), 3, "no second computation");
}

/// Eight processes of four threads miss one key at once; exactly one computes.
pub fn processes_compute_once(spec: &str, worker: &str) {
    compute_once_across_processes(spec, worker, "call");
}

/// The same with async callers (four tasks per process).
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

/// `kill -9` of the computing process: a waiter takes over within the lease, with no manual
/// `clear_being_calculated()`.
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

/// What the worker's `write overwrite` stores.
pub const OVERWRITTEN: u64 = 777_777;

/// How long after another process's change a near cache may still serve the old value, at
/// most, on any backend: a store that cannot tell of changes serves near entries for one
/// second (`NearCache::unwatched_ttl`); the others are told within milliseconds.
pub const NEAR_COHERENCE_BOUND: Duration = Duration::from_secs(3);

/// A near cache in this process hears of another process's overwrite, invalidation and
/// clear: within [`NEAR_COHERENCE_BOUND`] it stops serving the old value (and serves the
/// overwritten one).
pub fn near_cache_sees_other_processes_changes(spec: &str, worker: &str) {
    let namespace = unique_name("mp_near");
    let calls = crate::Counter::new();
    let counted = calls.clone();
    let f = cachier::memoize(&namespace, move |x: u64| x * 1000 + counted.bump() as u64)
        .shared_backend(backend_from_spec(spec))
        .near_cache(cachier::NearCache::default())
        .build()
        .expect("build");
    for op in ["overwrite", "invalidate", "clear"] {
        let old = f.call(1);
        // The second call reads the store and keeps the value; the third is a near hit.
        assert_eq!(f.call(1), old);
        assert_eq!(f.call(1), old);
        let out = Command::new(worker)
            .args(["write", spec, &namespace, op, "1"])
            .stderr(Stdio::inherit())
            .output()
            .expect("run worker");
        assert!(out.status.success(), "worker failed: {out:?}");
        let changed = Instant::now();
        let seen = loop {
            let value = f.call(1);
            if value != old {
                break value;
            }
            assert!(
                changed.elapsed() < NEAR_COHERENCE_BOUND,
                "{op} by another process not seen after {:?}",
                changed.elapsed()
            );
            thread::sleep(Duration::from_millis(1));
        };
        if op == "overwrite" {
            assert_eq!(seen, OVERWRITTEN);
        }
        println!(
            "near cache on {spec}: {op} seen after {:?}",
            changed.elapsed()
        );
    }
}
