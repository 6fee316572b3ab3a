//! Child process of `tests/tests/warnings.rs`: meets a store failure or a bad global backend
//! with no logging set up, with a `log` logger, or with a `tracing` subscriber (both writing to
//! stdout), so that the test can tell what reached stderr.
//!
//! `warnings-worker store-failure none|log|tracing DIR`: three calls of a function whose file
//! store cannot open (its directory is under a regular file); prints each result.
//!
//! `warnings-worker bad-backend none|log|tracing`: three calls of a `#[cachier]` function on
//! the global backend (set by the parent's `CACHIER_BACKEND_URL`); prints how many times it
//! ran, then the errors of `_cache()` and `cachier::check()`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use cachier::cachier;

struct StdoutLogger;

impl log::Log for StdoutLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            println!("LOG {} {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

static RUNS: AtomicU64 = AtomicU64::new(0);

#[cachier]
fn counted(x: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    x * 2
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(2).map(String::as_str) {
        Some("none") => {}
        Some("log") => {
            log::set_logger(&StdoutLogger).expect("the only logger");
            log::set_max_level(log::LevelFilter::Warn);
        }
        Some("tracing") => tracing_subscriber::fmt()
            .with_writer(std::io::stdout)
            .with_ansi(false)
            .init(),
        _ => usage(),
    }
    match (args.get(1).map(String::as_str), args.get(3)) {
        (Some("store-failure"), Some(dir)) => store_failure(Path::new(dir)),
        (Some("bad-backend"), None) => bad_backend(),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: warnings-worker store-failure|bad-backend none|log|tracing [DIR]");
    std::process::exit(2);
}

fn store_failure(dir: &Path) {
    let blocker = dir.join("a-file");
    std::fs::write(&blocker, b"not a directory").expect("write blocker");
    let backend = cachier::backends::file::FileBackend::builder()
        .cache_dir(blocker.join("cache"))
        .build();
    let f = cachier::memoize("warnings::failing", |x: u64| x + 1)
        .backend(backend)
        .build()
        .expect("build");
    for x in 1..=3 {
        println!("{}", f.call(x));
    }
}

fn bad_backend() {
    for x in 1..=3 {
        assert_eq!(counted(x), x * 2);
    }
    println!("runs {}", RUNS.load(Ordering::SeqCst));
    let Err(error) = counted_cache() else {
        panic!("a cache on a bad backend");
    };
    println!("cache {:?}: {error}", error.kind());
    let Err(error) = cachier::check() else {
        panic!("check passed on a bad backend");
    };
    println!("check {:?}: {error}", error.kind());
}
