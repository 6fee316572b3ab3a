//! Cases of stores that push their changes ([`Watch::Pushed`]): what one backend instance
//! writes reaches the near caches and waiters of another instance (another process, as far as
//! the store can tell) within [`PUSH_BOUND`], and a near cache stops serving when its channel
//! is cut and follows the store again once it is back.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cachier_core::watch::{ChangeSink, Watch};
use cachier_core::{Backend, Claim, Core, Key, NearCache};
use parking_lot::{Condvar, Mutex};

use super::{key, namespace, Open, LEASE};

/// How soon a change made through one instance must reach another's sink, near cache or
/// waiter: a message's trip through the server, with room for a loaded machine.
pub const PUSH_BOUND: Duration = Duration::from_millis(100);

/// How long a channel may take to come up the first time (a connection and a subscription).
const FIRST_UP: Duration = Duration::from_secs(10);

/// What a sink heard, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// `changed(key)`
    Changed(Key),
    /// `changed_all()`
    All,
    /// `connected(up)`
    Connected(bool),
}

/// A sink that records what it hears, with when.
#[derive(Default)]
pub struct Recorder {
    heard: Mutex<Vec<(Instant, Heard)>>,
    more: Condvar,
}

impl Recorder {
    fn push(&self, heard: Heard) {
        self.heard.lock().push((Instant::now(), heard));
        self.more.notify_all();
    }

    /// Waits up to `within` for the first event after the `from`-th that `wanted` accepts;
    /// its index and when it came.
    pub fn wait_for(
        &self,
        from: usize,
        within: Duration,
        wanted: impl Fn(&Heard) -> bool,
    ) -> Option<(usize, Instant)> {
        let deadline = Instant::now() + within;
        let mut heard = self.heard.lock();
        loop {
            if let Some(i) = (from..heard.len()).find(|&i| wanted(&heard[i].1)) {
                return Some((i, heard[i].0));
            }
            if self.more.wait_until(&mut heard, deadline).timed_out() {
                return None;
            }
        }
    }

    /// How many events so far.
    pub fn len(&self) -> usize {
        self.heard.lock().len()
    }

    /// Whether nothing was heard yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events from the `from`-th on.
    pub fn since(&self, from: usize) -> Vec<Heard> {
        self.heard.lock()[from..]
            .iter()
            .map(|(_, h)| h.clone())
            .collect()
    }
}

impl ChangeSink for Recorder {
    fn changed(&self, key: &Key) {
        self.push(Heard::Changed(*key));
    }
    fn changed_all(&self) {
        self.push(Heard::All);
    }
    fn connected(&self, up: bool) {
        self.push(Heard::Connected(up));
    }
}

/// Subscribes a [`Recorder`] to `core`'s changes and waits for its channel to come up. Panics
/// when the store does not push.
pub fn watching(core: &dyn Core) -> (Arc<Recorder>, cachier_core::watch::Subscription) {
    let recorder = Arc::new(Recorder::default());
    let subscription = match core.watch(recorder.clone()).expect("watch") {
        Watch::Pushed(subscription) => subscription,
        other => panic!("the store does not push its changes: {other:?}"),
    };
    recorder
        .wait_for(0, FIRST_UP, |h| *h == Heard::Connected(true))
        .expect("the change channel came up");
    (recorder, subscription)
}

/// Runs `write` through the other instance and waits for `expected` on `recorder`: how long
/// it took, asserted within [`PUSH_BOUND`].
fn heard_after(recorder: &Recorder, what: &str, expected: Heard, write: impl FnOnce()) -> Duration {
    let from = recorder.len();
    let started = Instant::now();
    write();
    let done = Instant::now();
    let Some((_, at)) = recorder.wait_for(from, Duration::from_secs(5), |h| *h == expected) else {
        panic!(
            "{what}: {expected:?} not heard (heard {:?})",
            recorder.since(from)
        )
    };
    // A namespace-wide write announces each batch as it goes: measured from its start, bounded
    // from its end.
    let took = at.saturating_duration_since(started);
    let late = at.saturating_duration_since(done);
    println!("{what}: heard {took:?} after the write began ({late:?} after it returned)");
    assert!(
        late <= PUSH_BOUND,
        "{what}: heard {late:?} after the write, more than {PUSH_BOUND:?}"
    );
    took
}

/// What a store's messages say of a deleted entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletes {
    /// The entry's key, to its namespace only (like every other change).
    Named,
    /// That any entry of any namespace may have changed: the store's messages cannot name a
    /// deleted entry (MongoDB's change stream without pre-images).
    Everywhere,
}

/// Each write of one instance (a put, an overwrite, a removal, a released claim, a cleared
/// function, a stale cleanup) reaches the sink of another instance, for its namespace only
/// (a deletion, to every namespace where the store's messages cannot name it).
pub fn pushed_changes_reach_another_instance(open: Open, deletes: Deletes) {
    let dir = crate::fresh_dir("push-changes");
    let (Some(a), Some(b)) = (open(&dir), open(&dir)) else {
        return;
    };
    let ns = namespace("pushed_changes_reach_another_instance");
    let (ours, theirs) = (a.core(&ns).expect("core"), b.core(&ns).expect("core"));
    let sibling = b
        .core(&namespace("pushed_changes_reach_another_instance-sibling"))
        .expect("core");
    let (recorder, _subscription) = watching(&*ours);
    let k = key(1);
    heard_after(&recorder, "put", Heard::Changed(k), || {
        theirs.put(&k, b"one", None).expect("put")
    });
    heard_after(&recorder, "overwrite", Heard::Changed(k), || {
        theirs.put(&k, b"two", None).expect("put")
    });
    let removed = match deletes {
        Deletes::Named => Heard::Changed(k),
        Deletes::Everywhere => Heard::All,
    };
    heard_after(&recorder, "remove", removed, || {
        assert!(theirs.remove(&k).expect("remove"))
    });
    let claimed = match theirs.claim(&key(2), LEASE).expect("claim") {
        Claim::Claimed(token) => token,
        Claim::Busy => panic!("a free key is busy"),
    };
    heard_after(&recorder, "release", Heard::Changed(key(2)), || {
        theirs.release(&key(2), &claimed).expect("release")
    });
    theirs.put(&key(3), b"three", None).expect("put");
    heard_after(&recorder, "clear_cache", Heard::All, || {
        theirs.clear_cache().expect("clear")
    });
    theirs.put(&key(4), b"four", None).expect("put");
    thread::sleep(Duration::from_millis(20));
    heard_after(&recorder, "delete_stale_entries", Heard::All, || {
        assert_eq!(
            theirs
                .delete_stale_entries(Duration::from_millis(5))
                .expect("cleanup"),
            1
        )
    });
    // Another namespace's writes are not this one's: the next message is our put's.
    let from = recorder.len();
    sibling.put(&k, b"elsewhere", None).expect("put");
    sibling.clear_cache().expect("clear");
    heard_after(
        &recorder,
        "put after a sibling's writes",
        Heard::Changed(key(5)),
        || theirs.put(&key(5), b"five", None).expect("put"),
    );
    let heard = recorder.since(from);
    match deletes {
        Deletes::Named => assert_eq!(
            heard,
            [Heard::Changed(key(5))],
            "only this namespace's changes"
        ),
        Deletes::Everywhere => {
            // The sibling's clear deleted an entry, which reaches every namespace (as do the
            // deletions of other tests sharing the store meanwhile); its put did not.
            let named: Vec<_> = heard.iter().filter(|h| **h != Heard::All).collect();
            assert_eq!(
                named,
                [&Heard::Changed(key(5))],
                "only this namespace's keys: {heard:?}"
            );
            assert_eq!(
                heard.first(),
                Some(&Heard::All),
                "the sibling's deletion: {heard:?}"
            );
        }
    }
    theirs.clear_cache().expect("clear");
}

/// A caller of one instance waiting for a claim of another wakes within [`PUSH_BOUND`] of the
/// holder's put. `open` should make the store's fallback poll long (seconds), so that only the
/// pushed message can wake it that soon.
pub fn a_waiter_wakes_on_another_instances_put(open: Open) {
    let dir = crate::fresh_dir("push-wait");
    let (Some(a), Some(b)) = (open(&dir), open(&dir)) else {
        return;
    };
    let ns = namespace("a_waiter_wakes_on_another_instances_put");
    let (waiter, holder) = (a.core(&ns).expect("core"), b.core(&ns).expect("core"));
    let (_recorder, _subscription) = watching(&*waiter);
    let k = key(1);
    let token = match holder.claim(&k, LEASE).expect("claim") {
        Claim::Claimed(token) => token,
        Claim::Busy => panic!("a free key is busy"),
    };
    let finisher = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        holder.put(&k, b"done", Some(&token)).expect("put");
        (Instant::now(), holder)
    });
    assert!(waiter.wait(&k, Duration::from_secs(20)).expect("wait"));
    let woke = Instant::now();
    let (put_at, holder) = finisher.join().expect("finisher");
    let late = woke.saturating_duration_since(put_at);
    println!("waiter woke {late:?} after the put");
    assert!(
        late <= PUSH_BOUND,
        "the waiter woke {late:?} after the put, more than {PUSH_BOUND:?}"
    );
    holder.clear_cache().expect("clear");
}

/// [`a_waiter_wakes_on_another_instances_put`] for an async caller: the backend's
/// [`AsyncCore`](cachier_core::AsyncCore) of one instance waits, on a tokio runtime, for a
/// claim of another.
#[cfg(feature = "async")]
pub fn an_async_waiter_wakes_on_another_instances_put(open: Open) {
    let dir = crate::fresh_dir("push-async-wait");
    let (Some(a), Some(b)) = (open(&dir), open(&dir)) else {
        return;
    };
    let ns = namespace("an_async_waiter_wakes_on_another_instances_put");
    let (core, holder) = (a.core(&ns).expect("core"), b.core(&ns).expect("core"));
    let waiter = a.async_core(&ns, &core).expect("async core");
    let (_recorder, _subscription) = watching(&*core);
    let k = key(1);
    let token = match holder.claim(&k, LEASE).expect("claim") {
        Claim::Claimed(token) => token,
        Claim::Busy => panic!("a free key is busy"),
    };
    let finisher = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        holder.put(&k, b"done", Some(&token)).expect("put");
        (Instant::now(), holder)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let released = runtime
        .block_on(waiter.wait(&k, Duration::from_secs(20)))
        .expect("wait");
    assert!(released);
    let woke = Instant::now();
    let (put_at, holder) = finisher.join().expect("finisher");
    let late = woke.saturating_duration_since(put_at);
    println!("async waiter woke {late:?} after the put");
    assert!(
        late <= PUSH_BOUND,
        "the async waiter woke {late:?} after the put, more than {PUSH_BOUND:?}"
    );
    holder.clear_cache().expect("clear");
}

/// A near cache of one instance (whose entries would otherwise be served for a minute) sees
/// another instance's overwrite, invalidation and `clear_cache` within [`PUSH_BOUND`].
pub fn near_cache_sees_another_instances_writes(open: Open) {
    let dir = crate::fresh_dir("push-near");
    let (Some(a), Some(b)) = (open(&dir), open(&dir)) else {
        return;
    };
    let ns = namespace("near_cache_sees_another_instances_writes");
    let (_recorder, _subscription) = watching(&*a.core(&ns).expect("core"));
    let calls = crate::Counter::new();
    let counted = calls.clone();
    let f = cachier_core::memoize(ns.as_str(), move |x: u64| x * 1000 + counted.bump() as u64)
        .shared_backend(a)
        .near_cache(NearCache::default().unwatched_ttl(Duration::from_secs(60)))
        .build()
        .expect("build");
    let g = cachier_core::memoize(ns.as_str(), |x: u64| x)
        .shared_backend(b)
        .build()
        .expect("build");
    type Write<'a> = Box<dyn Fn() + 'a>;
    let writes: [(&str, Write<'_>); 3] = [
        (
            "overwrite",
            Box::new(|| {
                g.precache_value(&1, 777).expect("overwrite");
            }),
        ),
        (
            "invalidate",
            Box::new(|| assert!(g.invalidate(&1).expect("invalidate"))),
        ),
        ("clear_cache", Box::new(|| g.clear_cache().expect("clear"))),
    ];
    for (what, write) in writes {
        let old = f.call(1);
        assert_eq!(f.call(1), old, "{what}: read back and kept");
        assert_eq!(f.call(1), old, "{what}: a near hit");
        let started = Instant::now();
        write();
        // A namespace-wide write is announced batch by batch: bounded from its end.
        let done = Instant::now();
        loop {
            let now = f.call(1);
            if now != old {
                println!(
                    "{what} by the other instance: seen {:?} after the write began ({:?} after it returned)",
                    started.elapsed(),
                    done.elapsed()
                );
                break;
            }
            assert!(
                done.elapsed() <= PUSH_BOUND,
                "{what} by the other instance: still {old} {:?} after the write",
                done.elapsed()
            );
            thread::sleep(Duration::from_millis(1));
        }
    }
    f.clear_cache().expect("clear");
}

/// How a test cuts a store's change channel and restores it, for
/// [`near_cache_follows_a_cut_channel`].
pub struct Cut<'a> {
    /// Cuts the channel of instance `a` (kills or freezes the server, ends the listener's
    /// connection...).
    pub cut: &'a mut dyn FnMut(),
    /// Restores it (the server back; for a killed listener, nothing).
    pub restore: &'a mut dyn FnMut(),
    /// Whether the store still takes writes while the channel is cut (only the listener's
    /// connection was ended).
    pub store_up: bool,
    /// How soon after the cut the near cache must have stopped serving.
    pub bound: Duration,
}

/// A near cache of instance `a` (entries otherwise served for a minute) sees `b`'s overwrite
/// within [`PUSH_BOUND`]; once its channel is cut, it serves nothing it kept after
/// `cut.bound`; once the channel is back, it follows `b`'s writes again.
pub fn near_cache_follows_a_cut_channel(a: Arc<dyn Backend>, b: Arc<dyn Backend>, cut: Cut<'_>) {
    let ns = namespace("near_cache_follows_a_cut_channel");
    let (recorder, _subscription) = watching(&*a.core(&ns).expect("core"));
    let calls = crate::Counter::new();
    let counted = calls.clone();
    let f = cachier_core::memoize(ns.as_str(), move |x: u64| x * 1000 + counted.bump() as u64)
        .shared_backend(a)
        .near_cache(NearCache::default().unwatched_ttl(Duration::from_secs(60)))
        .build()
        .expect("build");
    let g = cachier_core::memoize(ns.as_str(), |x: u64| x)
        .shared_backend(b)
        .build()
        .expect("build");
    let sees = |value: u64, within: Duration, what: &str| {
        let started = Instant::now();
        loop {
            let got = f.call(1);
            if got == value {
                println!("{what}: seen after {:?}", started.elapsed());
                return;
            }
            assert!(
                started.elapsed() <= within,
                "{what}: still {got} after {:?}, not {value}",
                started.elapsed()
            );
            thread::sleep(Duration::from_millis(1));
        }
    };
    let first = f.call(1);
    assert_eq!(f.call(1), first, "read back and kept");
    g.precache_value(&1, 777).expect("overwrite");
    sees(777, PUSH_BOUND, "overwrite by the other instance");
    assert_eq!(f.call(1), 777, "kept again");
    let from = recorder.len();
    let cut_at = Instant::now();
    (cut.cut)();
    if cut.store_up {
        // Written while nobody listens: only the lost channel tells the near cache.
        g.precache_value(&1, 888).expect("overwrite while cut");
    }
    let (down, down_at) = recorder
        .wait_for(from, cut.bound, |h| *h == Heard::Connected(false))
        .unwrap_or_else(|| panic!("the channel not down within {:?}", cut.bound));
    println!(
        "channel down {:?} after the cut",
        down_at.saturating_duration_since(cut_at)
    );
    thread::sleep(cut.bound.saturating_sub(cut_at.elapsed()));
    let served = f.call(1);
    assert_ne!(served, 777, "a kept value served after the channel was cut");
    if cut.store_up {
        assert_eq!(served, 888, "the store's value");
    }
    let restored = Instant::now();
    (cut.restore)();
    // A listener whose connection alone was cut may be back already.
    let (_, back_at) = recorder
        .wait_for(down + 1, Duration::from_secs(20), |h| {
            *h == Heard::Connected(true)
        })
        .expect("the channel came back");
    println!(
        "channel back {:?} after the restore ({:?} after it went down)",
        back_at.saturating_duration_since(restored),
        back_at.saturating_duration_since(down_at)
    );
    let now = f.call(1);
    assert_eq!(f.call(1), now, "read back and kept");
    g.precache_value(&1, 999).expect("overwrite");
    sees(999, PUSH_BOUND, "overwrite after the channel came back");
    f.clear_cache().expect("clear");
}
