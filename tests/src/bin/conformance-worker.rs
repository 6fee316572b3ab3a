//! Child process of the multi-process tests: calls a memoized function from several threads
//! and prints each result on its own line.
//!
//! `conformance-worker call SPEC NAMESPACE ARG THREADS PAUSE_MS COUNT_FILE LEASE_MS START_AT_UNIX_MS`

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 10 || args[1] != "call" {
        eprintln!("usage: conformance-worker call SPEC NAMESPACE ARG THREADS PAUSE_MS COUNT_FILE LEASE_MS START_AT_UNIX_MS");
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
    let f = cachier_conformance::multiprocess::worker_function(
        spec,
        namespace,
        &PathBuf::from(&args[7]),
        Duration::from_millis(pause_ms),
        Duration::from_millis(lease_ms),
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    if start_at > now {
        std::thread::sleep(start_at - now);
    }
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let f = f.clone();
            std::thread::spawn(move || f.call(arg))
        })
        .collect();
    for h in handles {
        println!("{}", h.join().expect("worker thread"));
    }
}
