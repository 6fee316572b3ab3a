//! Keeps the leases of claims alive while their computations run: one thread renews every
//! registered claim at a third of its lease, so a live computation never loses its claim and
//! a dead one loses it within one lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::{ClaimToken, Core, Key};

#[derive(Clone)]
struct Renewal {
    core: Arc<dyn Core>,
    key: Key,
    token: ClaimToken,
    lease: Duration,
    due: Instant,
}

#[derive(Default)]
struct Keeper {
    renewals: Mutex<HashMap<u64, Renewal>>,
    wake: Condvar,
}

static KEEPER: LazyLock<Arc<Keeper>> = LazyLock::new(|| {
    let keeper = Arc::new(Keeper::default());
    let worker = keeper.clone();
    std::thread::Builder::new()
        .name("cachier-lease".into())
        .spawn(move || worker.run())
        .expect("cachier: cannot start the lease thread");
    keeper
});

/// Renews a claim until dropped.
pub(crate) struct Heartbeat(u64);

impl Heartbeat {
    pub(crate) fn start(
        core: Arc<dyn Core>,
        key: Key,
        token: ClaimToken,
        lease: Duration,
    ) -> Heartbeat {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let due = Instant::now() + lease / 3;
        KEEPER.renewals.lock().insert(
            id,
            Renewal {
                core,
                key,
                token,
                lease,
                due,
            },
        );
        KEEPER.wake.notify_one();
        Heartbeat(id)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        KEEPER.renewals.lock().remove(&self.0);
    }
}

impl Keeper {
    fn run(&self) {
        let mut renewals = self.renewals.lock();
        loop {
            let now = Instant::now();
            let due: Vec<(u64, Renewal)> = renewals
                .iter()
                .filter(|(_, r)| r.due <= now)
                .map(|(id, r)| (*id, r.clone()))
                .collect();
            if !due.is_empty() {
                drop(renewals);
                for (
                    id,
                    Renewal {
                        core,
                        key,
                        token,
                        lease,
                        ..
                    },
                ) in due
                {
                    let outcome = core.renew(&key, &token, lease);
                    let mut guard = self.renewals.lock();
                    if let Some(r) = guard.get_mut(&id) {
                        r.due = Instant::now() + lease / 3;
                    }
                    drop(guard);
                    match outcome {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(%key, "cachier: claim lost while computing (cleared or taken over)")
                        }
                        Err(error) => {
                            tracing::warn!(%key, %error, "cachier: could not renew a claim")
                        }
                    }
                }
                renewals = self.renewals.lock();
                continue;
            }
            let next = renewals.values().map(|r| r.due).min();
            match next {
                Some(at) => {
                    self.wake.wait_until(&mut renewals, at);
                }
                None => self.wake.wait(&mut renewals),
            }
        }
    }
}
