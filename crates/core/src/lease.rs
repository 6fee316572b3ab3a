//! Keeps the leases of claims alive while their computations run: one thread schedules the
//! renewal of every registered claim at a third of its lease, so a live computation never
//! loses its claim and a dead one loses it within one lease. Each renewal runs on a thread
//! of its own, so a store that hangs delays only its own claims' renewals.

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
    /// A renewal of this claim is running: the next is scheduled when it returns.
    running: bool,
}

#[derive(Default)]
struct Keeper {
    renewals: Mutex<HashMap<u64, Renewal>>,
    wake: Condvar,
}

static KEEPER: LazyLock<&'static Keeper> = LazyLock::new(|| {
    let keeper: &'static Keeper = Box::leak(Box::default());
    std::thread::Builder::new()
        .name("cachier-lease".into())
        .spawn(move || keeper.run())
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
                running: false,
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
    fn run(&'static self) {
        let mut renewals = self.renewals.lock();
        loop {
            let now = Instant::now();
            for (id, renewal) in renewals.iter_mut() {
                if renewal.running || renewal.due > now {
                    continue;
                }
                renewal.running = true;
                let (id, renewal) = (*id, renewal.clone());
                let spawned = std::thread::Builder::new()
                    .name("cachier-renew".into())
                    .spawn(move || self.renew(id, renewal));
                if let Err(error) = spawned {
                    tracing::warn!(%error, "cachier: cannot start a lease renewal");
                }
            }
            let next = renewals
                .values()
                .filter(|r| !r.running)
                .map(|r| r.due)
                .min();
            match next {
                Some(at) => {
                    self.wake.wait_until(&mut renewals, at);
                }
                None => self.wake.wait(&mut renewals),
            }
        }
    }

    /// Renews one claim, then schedules its next renewal.
    fn renew(&self, id: u64, renewal: Renewal) {
        let Renewal {
            core,
            key,
            token,
            lease,
            ..
        } = renewal;
        let outcome = core.renew(&key, &token, lease);
        if let Some(r) = self.renewals.lock().get_mut(&id) {
            r.due = Instant::now() + lease / 3;
            r.running = false;
        }
        self.wake.notify_one();
        match outcome {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(%key, "cachier: claim lost while computing (cleared or taken over)")
            }
            Err(error) => tracing::warn!(%key, %error, "cachier: could not renew a claim"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Inert;

    #[test]
    fn a_hung_store_does_not_delay_other_renewals() {
        let store = |renew_pause| {
            Arc::new(Inert {
                renew_pause,
                ..Inert::default()
            })
        };
        let (hung, healthy) = (store(Duration::from_secs(3)), store(Duration::ZERO));
        let key = Key::of(&1u8).unwrap();
        let lease = Duration::from_millis(150); // renewed every 50 ms
        let _hung = Heartbeat::start(hung.clone(), key, ClaimToken::new(), lease);
        let _healthy = Heartbeat::start(healthy.clone(), key, ClaimToken::new(), lease);
        std::thread::sleep(Duration::from_millis(600));
        let renewed = healthy.renewals.load(Ordering::SeqCst);
        assert!(
            renewed >= 5,
            "the healthy claim was renewed {renewed} times in 600 ms beside a hung store"
        );
        assert_eq!(hung.renewals.load(Ordering::SeqCst), 0, "still hung");
    }
}
