//! Child process of the multi-process tests: calls a memoized function from several threads
//! and prints each result on its own line.
//!
//! `conformance-worker call|call-async SPEC NAMESPACE ARG THREADS PAUSE_MS COUNT_FILE LEASE_MS START_AT_UNIX_MS`
//!
//! `conformance-worker call-map ...` (the same arguments, ARG unused) calls the function of a
//! `HashMap` argument once and prints its result, then the map's keys in its iteration order.
//!
//! `conformance-worker stress ... DURATION_MS` (the same arguments, ARG unused) runs the
//! stress load instead and prints how many calls it made.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cachier_conformance::multiprocess::{
    map_argument, map_worker_function, stress_calls, worker_function, MAP_ARGUMENT_SIZE,
    OVERWRITTEN,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 6 && args[1] == "write" {
        return write(&args[2], &args[3], &args[4], &args[5]);
    }
    let calls = args.len() == 10 && ["call", "call-async", "call-map"].contains(&args[1].as_str());
    let stress = args.len() == 11 && args[1] == "stress";
    if !calls && !stress {
        eprintln!("usage: conformance-worker call|call-async|call-map SPEC NAMESPACE ARG THREADS PAUSE_MS COUNT_FILE LEASE_MS START_AT_UNIX_MS [stress: DURATION_MS]");
        eprintln!("       conformance-worker write SPEC NAMESPACE overwrite|invalidate|clear ARG");
        std::process::exit(2);
    }
    let number = |i: usize| -> u64 {
        args[i]
            .parse()
            .unwrap_or_else(|_| panic!("argument {i} is not a number: {}", args[i]))
    };
    let (spec, namespace) = (&args[2], &args[3]);
    let (arg, threads, pause_ms, lease_ms) = (number(4), number(5), number(6), number(8));
    let start_at = Duration::from_millis(number(9));
    let (count_file, pause, lease) = (
        PathBuf::from(&args[7]),
        Duration::from_millis(pause_ms),
        Duration::from_millis(lease_ms),
    );
    let sleep_until_start = || {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
        if start_at > now {
            std::thread::sleep(start_at - now);
        }
    };
    if stress {
        let f = worker_function(spec, namespace, &count_file, pause, lease);
        let duration = Duration::from_millis(number(10));
        println!(
            "{}",
            stress_calls(&f, threads, start_at.as_millis(), duration)
        );
        return;
    }
    if args[1] == "call-map" {
        let f = map_worker_function(spec, namespace, &count_file);
        let map = map_argument(MAP_ARGUMENT_SIZE);
        let order = map.keys().cloned().collect::<Vec<_>>().join(",");
        println!("{}", f.call(map));
        println!("{order}");
        return;
    }
    let results: Vec<u64> = if args[1] == "call" {
        let f = worker_function(spec, namespace, &count_file, pause, lease);
        sleep_until_start();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let f = f.clone();
                std::thread::spawn(move || f.call(arg))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread"))
            .collect()
    } else {
        call_async(
            spec,
            namespace,
            &count_file,
            pause,
            lease,
            arg,
            threads,
            sleep_until_start,
        )
    };
    for value in results {
        println!("{value}");
    }
}

/// `call-async`: the same calls as tasks on a tokio runtime.
#[cfg(feature = "async")]
#[allow(clippy::too_many_arguments)]
fn call_async(
    spec: &str,
    namespace: &str,
    count_file: &std::path::Path,
    pause: Duration,
    lease: Duration,
    arg: u64,
    tasks: u64,
    sleep_until_start: impl FnOnce(),
) -> Vec<u64> {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let f = cachier_conformance::multiprocess::async_worker_function(
            spec, namespace, count_file, pause, lease,
        );
        sleep_until_start();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let f = f.clone();
                tokio::spawn(async move { f.call(arg).await })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.expect("worker task"));
        }
        out
    })
}

#[cfg(not(feature = "async"))]
#[allow(clippy::too_many_arguments)]
fn call_async(
    _: &str,
    _: &str,
    _: &std::path::Path,
    _: Duration,
    _: Duration,
    _: u64,
    _: u64,
    _: impl FnOnce(),
) -> Vec<u64> {
    eprintln!("call-async needs the `async` feature of cachier-conformance");
    std::process::exit(2);
}

/// `write`: one change to the entry of `arg` (`overwrite` stores [`OVERWRITTEN`]) or to every
/// entry (`clear`) of the worker function, made by this process.
fn write(spec: &str, namespace: &str, op: &str, arg: &str) {
    let arg: u64 = arg.parse().expect("ARG is a number");
    let f = worker_function(
        spec,
        namespace,
        &std::env::temp_dir().join("cachier-write-worker-unused"),
        Duration::ZERO,
        Duration::from_secs(10),
    );
    match op {
        "overwrite" => drop(f.precache_value(&arg, OVERWRITTEN).expect("overwrite")),
        "invalidate" => drop(f.invalidate(&arg).expect("invalidate")),
        "clear" => f.clear_cache().expect("clear"),
        other => panic!("unknown write {other}"),
    }
}
