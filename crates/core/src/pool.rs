//! The background pool: `next_time` refreshes and stale cleanups run here, never on the
//! caller's thread. Shared by every memoized function, sized by `CACHIER_MAX_WORKERS` (8).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use crossbeam_channel::{unbounded, Sender};

type Job = Box<dyn FnOnce() + Send + 'static>;

static POOL: OnceLock<Sender<Job>> = OnceLock::new();

/// Runs `job` on the background pool, starting the pool on first use.
pub(crate) fn submit(job: impl FnOnce() + Send + 'static) {
    let sender = POOL.get_or_init(start);
    if let Err(rejected) = sender.send(Box::new(job)) {
        // The pool cannot have stopped (its receivers live forever); run inline rather than drop.
        (rejected.into_inner())();
    }
}

fn start() -> Sender<Job> {
    let workers = cachier_settings::global_params().max_workers.max(1);
    let (sender, receiver) = unbounded::<Job>();
    for i in 0..workers {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("cachier-bg-{i}"))
            .spawn(move || {
                for job in receiver {
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(job)) {
                        tracing::warn!(panic = %panic_message(&panic), "cachier: background job panicked");
                    }
                }
            })
            .expect("cachier: cannot start a background worker thread");
    }
    sender
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
