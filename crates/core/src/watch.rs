//! How a store tells the near caches of a function, in every process, that its entries
//! changed: pushed messages ([`Watch::Pushed`], fanned out by a [`ChangeHub`]), counters
//! shared by the processes of a machine and read on each near hit ([`Watch::Counted`]), or
//! nothing ([`Watch::Unwatched`]: near entries then live a bounded time).

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::{Error, Key};

/// Told of the changes made to one function's entries by any process.
pub trait ChangeSink: Send + Sync {
    /// The entry of `key` changed: a new value, its deletion, or the end of its claim.
    fn changed(&self, key: &Key);
    /// Any entry may have changed (`clear_cache`, `delete_stale_entries`).
    fn changed_all(&self);
    /// The channel went down (`false`; nothing is heard until it is back) or came up
    /// (`true`; everything may have changed meanwhile).
    fn connected(&self, up: bool);
    /// The store turned out to push nothing (its server cannot): from now on an entry is
    /// served for a bounded time only, as in front of a [`Watch::Unwatched`] store. By
    /// default nothing changes: the channel stays down and nothing is served.
    fn unwatched(&self) {}
}

/// How a store keeps the near caches of a function coherent ([`crate::Core::watch`]).
pub enum Watch {
    /// Changes are pushed to the sink given to `watch` for as long as this lives.
    Pushed(Subscription),
    /// Every process counts changes in counters they share, which a near hit reads.
    Counted(Arc<dyn ChangeCounters>),
    /// Nothing tells of changes: a near entry is served for a bounded time only.
    Unwatched,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Watch::Pushed(_) => "Watch::Pushed",
            Watch::Counted(_) => "Watch::Counted",
            Watch::Unwatched => "Watch::Unwatched",
        })
    }
}

/// Keeps a push registration alive; dropping it stops the messages.
pub struct Subscription(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl Subscription {
    /// A subscription that ends when `guard` is dropped.
    pub fn new(guard: impl Any + Send + Sync) -> Subscription {
        Subscription(Box::new(guard))
    }
}

/// Change counters shared by the processes that use a store: each write bumps the counter of
/// its key's slot (or the whole function's), so a reader notices a change with two loads.
pub trait ChangeCounters: Send + Sync {
    /// The counters of `key`, read now (before the store is read).
    fn stamp(&self, key: &Key) -> Stamp;
    /// Whether nothing that concerns `stamp`'s key has changed since it was read.
    fn unchanged(&self, stamp: &Stamp) -> bool;
}

/// What [`ChangeCounters::stamp`] read: a slot, its counter and the whole function's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The key's slot.
    pub slot: u32,
    /// Its counter.
    pub key: u64,
    /// The whole function's counter.
    pub all: u64,
}

/// How often a listening thread checks its connection unless its backend says otherwise: a
/// channel that dies without a word is found down within twice this.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(500);

/// How often a caller waiting on a pushing store looks at the store while the channel is up,
/// unless its backend says otherwise: the end of a claim is announced, so this only bounds how
/// late a lapsed lease (a crashed holder) is noticed.
pub const DEFAULT_WAIT_POLL: Duration = Duration::from_millis(250);

/// A backend's change channel, started on first use: its hub, and the thread that feeds it,
/// told to stop when the backend that owns this is dropped.
pub struct Listener {
    hub: Arc<ChangeHub>,
    heartbeat: Duration,
    started: Once,
    stop: Arc<AtomicBool>,
}

/// What a listening thread is handed: the hub to feed, the flag that ends it, and how often
/// it checks its connection.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The hub the thread feeds.
    pub hub: Arc<ChangeHub>,
    /// Set when the backend is dropped: the thread ends at its next look.
    pub stop: Arc<AtomicBool>,
    /// How often the thread checks that its connection still answers.
    pub heartbeat: Duration,
}

impl Listening {
    /// Whether the thread should end: the backend that owns the listener was dropped.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// A channel whose thread checks its connection every `heartbeat`, not started yet.
    pub fn new(heartbeat: Duration) -> Listener {
        Listener {
            hub: ChangeHub::new(),
            heartbeat,
            started: Once::new(),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The hub, after starting the listening thread (named `name`) that `start` makes, if it
    /// is not running yet. A thread that cannot be started leaves the hub down: near caches
    /// do not serve, and waiters poll.
    pub fn hub<F>(&self, name: &str, start: impl FnOnce(Listening) -> F) -> &Arc<ChangeHub>
    where
        F: FnOnce() + Send + 'static,
    {
        self.started.call_once(|| {
            let run = start(Listening {
                hub: self.hub.clone(),
                stop: self.stop.clone(),
                heartbeat: self.heartbeat,
            });
            if let Err(error) = std::thread::Builder::new().name(name.into()).spawn(run) {
                tracing::warn!(%error, thread = name, "cachier: cannot start a change listener; near caches stay off and waiters poll");
            }
        });
        &self.hub
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Fans the messages of one channel (a Redis subscription, a PostgreSQL `LISTEN`) out to the
/// near caches of each namespace and to the callers waiting for a key. A backend holds one
/// per connection it listens on, feeds it from its listening thread, and implements
/// [`crate::Core::watch`] with [`ChangeHub::subscribe`] and `wait` with [`ChangeHub::wait_key`].
#[derive(Default)]
pub struct ChangeHub {
    state: Mutex<HubState>,
    /// The channel is up: messages are being heard.
    up: AtomicBool,
    /// The store cannot push: the channel will never be up ([`ChangeHub::set_unwatched`]).
    unwatched: AtomicBool,
}

/// The sinks of one namespace, each with its registration's id.
type Sinks = Vec<(u64, Weak<dyn ChangeSink>)>;

#[derive(Default)]
struct HubState {
    next_id: u64,
    sinks: HashMap<String, Sinks>,
    /// The callers waiting in [`ChangeHub::wait_key`], by namespace and key.
    waiters: HashMap<String, HashMap<Key, Arc<KeyWaiter>>>,
}

/// What the callers waiting for one key sleep on: a message about the key bumps it.
#[derive(Default)]
struct KeyWaiter {
    /// How many callers wait here (the entry goes with the last).
    count: Mutex<usize>,
    bumps: Mutex<u64>,
    woken: Condvar,
    /// What async callers sleep on.
    #[cfg(any(feature = "async", feature = "runtime"))]
    woken_async: tokio::sync::Notify,
}

impl KeyWaiter {
    fn bump(&self) {
        *self.bumps.lock() += 1;
        self.woken.notify_all();
        #[cfg(any(feature = "async", feature = "runtime"))]
        self.woken_async.notify_waiters();
    }
}

impl fmt::Debug for ChangeHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeHub")
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

struct Registration {
    hub: Weak<ChangeHub>,
    namespace: String,
    id: u64,
    /// The sink lives as long as its subscription (the hub only points at it), even when the
    /// subscriber handed over its only reference.
    _sink: Arc<dyn ChangeSink>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            let mut state = hub.state.lock();
            if let Some(sinks) = state.sinks.get_mut(&self.namespace) {
                sinks.retain(|(id, _)| *id != self.id);
                if sinks.is_empty() {
                    state.sinks.remove(&self.namespace);
                }
            }
        }
    }
}

/// Takes a caller of [`ChangeHub::wait_key`] off its key when its wait ends.
struct Unregister<'a> {
    hub: &'a ChangeHub,
    namespace: &'a str,
    key: &'a Key,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        let mut state = self.hub.state.lock();
        let Some(keys) = state.waiters.get_mut(self.namespace) else {
            return;
        };
        if let Some(waiter) = keys.get(self.key) {
            let mut count = waiter.count.lock();
            *count -= 1;
            let last = *count == 0;
            drop(count);
            if last {
                keys.remove(self.key);
            }
        }
        if keys.is_empty() {
            state.waiters.remove(self.namespace);
        }
    }
}

impl ChangeHub {
    /// A hub whose channel is not up yet.
    pub fn new() -> Arc<ChangeHub> {
        Arc::default()
    }

    /// Delivers the messages of `namespace` to `sink` until the subscription is dropped. The
    /// sink is told at once whether the channel is up.
    pub fn subscribe(self: &Arc<Self>, namespace: &str, sink: Arc<dyn ChangeSink>) -> Subscription {
        let id = {
            let mut state = self.state.lock();
            state.next_id += 1;
            let id = state.next_id;
            state
                .sinks
                .entry(namespace.to_owned())
                .or_default()
                .push((id, Arc::downgrade(&sink)));
            id
        };
        sink.connected(self.is_up());
        if self.unwatched.load(Ordering::Acquire) {
            sink.unwatched();
        }
        Subscription::new(Registration {
            hub: Arc::downgrade(self),
            namespace: namespace.to_owned(),
            id,
            _sink: sink,
        })
    }

    /// Whether the channel is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Whether any near cache listens (a backend may start its channel lazily).
    pub fn has_subscribers(&self) -> bool {
        !self.state.lock().sinks.is_empty()
    }

    /// A message heard: `key` of `namespace` changed, or (`None`) any of its entries.
    pub fn deliver(&self, namespace: &str, key: Option<&Key>) {
        for sink in self.sinks_of(Some(namespace)) {
            match key {
                Some(key) => sink.changed(key),
                None => sink.changed_all(),
            }
        }
        for waiter in self.waiters_of(Some((namespace, key))) {
            waiter.bump();
        }
    }

    /// A message heard that names no namespace (a store whose messages cannot always say
    /// whose entry changed): every near cache forgets everything, every waiter looks again.
    pub fn deliver_everywhere(&self) {
        for sink in self.sinks_of(None) {
            sink.changed_all();
        }
        for waiter in self.waiters_of(None) {
            waiter.bump();
        }
    }

    /// The store cannot push its changes (found out by its listener, which then ends): near
    /// caches, present and future, serve their entries for a bounded time instead, and
    /// waiters poll.
    pub fn set_unwatched(&self) {
        self.set_connected(false);
        if !self.unwatched.swap(true, Ordering::AcqRel) {
            for sink in self.sinks_of(None) {
                sink.unwatched();
            }
        }
    }

    /// The channel went down or came back up; every near cache is told, and every waiter
    /// looks again (messages may have been missed).
    pub fn set_connected(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            for sink in self.sinks_of(None) {
                sink.connected(up);
            }
        }
        for waiter in self.waiters_of(None) {
            waiter.bump();
        }
    }

    /// The waiters a message concerns: those of one key (or of every key of a namespace,
    /// for `(namespace, None)`), or all of them (`None`).
    fn waiters_of(&self, of: Option<(&str, Option<&Key>)>) -> Vec<Arc<KeyWaiter>> {
        let state = self.state.lock();
        match of {
            Some((namespace, key)) => match (state.waiters.get(namespace), key) {
                (None, _) => Vec::new(),
                (Some(keys), Some(key)) => keys.get(key).cloned().into_iter().collect(),
                (Some(keys), None) => keys.values().cloned().collect(),
            },
            None => state
                .waiters
                .values()
                .flat_map(|keys| keys.values().cloned())
                .collect(),
        }
    }

    /// Whether any caller waits in [`ChangeHub::wait_key`].
    pub fn has_waiters(&self) -> bool {
        !self.state.lock().waiters.is_empty()
    }

    /// Blocks until `released()` says the claim on `key` of `namespace` ended (true) or `max`
    /// passed (false). `released` is asked at once, then after each message about this key or
    /// its whole namespace, after the channel goes down or up, and, as the fallback for what
    /// no message announces (a lapsed lease), every `poll_up` while the channel is up. While it
    /// is down, the looks follow a [`Backoff`](crate::Backoff) (1 ms doubling to 25 ms).
    /// Waiters of other keys are not woken.
    ///
    /// # Errors
    /// `released`'s error.
    pub fn wait_key(
        &self,
        namespace: &str,
        key: &Key,
        max: Duration,
        poll_up: Duration,
        mut released: impl FnMut() -> Result<bool, Error>,
    ) -> Result<bool, Error> {
        let waiter = self.register(namespace, key);
        let _registered = Unregister {
            hub: self,
            namespace,
            key,
        };
        let deadline = Instant::now() + max;
        let mut backoff = crate::Backoff::until(max);
        loop {
            let seen = *waiter.bumps.lock();
            if released()? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let pause = if self.is_up() {
                poll_up
            } else {
                match backoff.next_pause() {
                    Some(pause) => pause,
                    None => return Ok(false),
                }
            };
            let until = deadline.min(now + pause);
            let mut bumps = waiter.bumps.lock();
            while *bumps == seen {
                if waiter.woken.wait_until(&mut bumps, until).timed_out() {
                    break;
                }
            }
        }
    }

    /// [`ChangeHub::wait_key`] for async callers (and backends whose driver is async): the
    /// same looks, awaited, sleeping on the runtime's timer.
    ///
    /// # Errors
    /// `released`'s error.
    #[cfg(any(feature = "async", feature = "runtime"))]
    pub async fn wait_key_async<F>(
        &self,
        namespace: &str,
        key: &Key,
        max: Duration,
        poll_up: Duration,
        mut released: impl FnMut() -> F,
    ) -> Result<bool, Error>
    where
        F: std::future::Future<Output = Result<bool, Error>>,
    {
        let waiter = self.register(namespace, key);
        let _registered = Unregister {
            hub: self,
            namespace,
            key,
        };
        let deadline = Instant::now() + max;
        let mut backoff = crate::Backoff::until(max);
        loop {
            // Registered before the look, so that a message landing during it is not missed.
            let woken = waiter.woken_async.notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            if released().await? {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            let pause = if self.is_up() {
                poll_up
            } else {
                match backoff.next_pause() {
                    Some(pause) => pause,
                    None => return Ok(false),
                }
            };
            let until = deadline.min(now + pause);
            let _ = tokio::time::timeout(until - now, woken).await;
        }
    }

    fn register(&self, namespace: &str, key: &Key) -> Arc<KeyWaiter> {
        let mut state = self.state.lock();
        let waiter = state
            .waiters
            .entry(namespace.to_owned())
            .or_default()
            .entry(*key)
            .or_default()
            .clone();
        *waiter.count.lock() += 1;
        waiter
    }

    fn sinks_of(&self, namespace: Option<&str>) -> Vec<Arc<dyn ChangeSink>> {
        let state = self.state.lock();
        let live = |list: &Sinks| {
            list.iter()
                .filter_map(|(_, sink)| sink.upgrade())
                .collect::<Vec<_>>()
        };
        match namespace {
            Some(namespace) => state.sinks.get(namespace).map(live).unwrap_or_default(),
            None => state.sinks.values().flat_map(live).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);
    impl ChangeSink for Log {
        fn changed(&self, key: &Key) {
            self.0
                .lock()
                .push(format!("changed {}", &key.to_hex()[..4]));
        }
        fn changed_all(&self) {
            self.0.lock().push("all".into());
        }
        fn connected(&self, up: bool) {
            self.0.lock().push(format!("up {up}"));
        }
    }

    #[test]
    fn messages_reach_the_sinks_of_their_namespace_until_unsubscribed() {
        let hub = ChangeHub::new();
        let (a, b) = (Arc::new(Log::default()), Arc::new(Log::default()));
        let sub_a = hub.subscribe("a", a.clone());
        let _sub_b = hub.subscribe("b", b.clone());
        hub.set_connected(true);
        let key = Key::of(&1).unwrap();
        hub.deliver("a", Some(&key));
        hub.deliver("b", None);
        drop(sub_a);
        hub.deliver("a", None);
        let hex = &key.to_hex()[..4];
        assert_eq!(
            *a.0.lock(),
            ["up false", "up true", &format!("changed {hex}")]
        );
        assert_eq!(*b.0.lock(), ["up false", "up true", "all"]);
        assert!(hub.has_subscribers());
    }

    /// The listening thread is started once, on first use, and told to stop when the
    /// listener (the backend that owns it) is dropped.
    #[test]
    fn a_listener_starts_once_and_its_thread_ends_when_it_is_dropped() {
        let (started, ended) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let listener = Listener::new(Duration::from_millis(5));
        for _ in 0..3 {
            listener.hub("cachier-test-listen", |listening| {
                let (started, ended) = (started.clone(), ended.clone());
                move || {
                    started.fetch_add(1, Ordering::AcqRel);
                    while !listening.stopped() {
                        std::thread::sleep(listening.heartbeat);
                    }
                    ended.store(true, Ordering::Release);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::Acquire) == 0 {
            assert!(Instant::now() < deadline, "the thread never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !ended.load(Ordering::Acquire),
            "running while the listener lives"
        );
        drop(listener);
        while !ended.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the thread did not end");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(started.load(Ordering::Acquire), 1, "started once");
    }

    #[test]
    fn a_keyed_waiter_wakes_on_its_key_or_its_namespace_only() {
        let hub = ChangeHub::new();
        hub.set_connected(true);
        let (mine, other) = (Key::of(&1).unwrap(), Key::of(&2).unwrap());
        let looks = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (hub, looks, done) = (hub.clone(), looks.clone(), done.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let released = hub.wait_key(
                    "f",
                    &mine,
                    Duration::from_secs(10),
                    Duration::from_secs(5),
                    || {
                        looks.fetch_add(1, Ordering::AcqRel);
                        Ok(done.load(Ordering::Acquire))
                    },
                );
                (released.unwrap(), started.elapsed())
            })
        };
        while !hub.has_waiters() {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        hub.deliver("f", Some(&other));
        hub.deliver("g", None);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            looks.load(Ordering::Acquire),
            1,
            "other keys do not wake it"
        );
        hub.deliver("f", None);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(looks.load(Ordering::Acquire), 2, "its whole namespace does");
        done.store(true, Ordering::Release);
        hub.deliver("f", Some(&mine));
        let (released, waited) = waiter.join().unwrap();
        assert!(released);
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
        assert!(!hub.has_waiters(), "a finished wait leaves nothing behind");
    }

    #[cfg(feature = "async")]
    #[test]
    fn an_async_keyed_waiter_wakes_on_its_key() {
        let hub = ChangeHub::new();
        hub.set_connected(true);
        let key = Key::of(&1).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let waker = {
            let (hub, done) = (hub.clone(), done.clone());
            std::thread::spawn(move || {
                while !hub.has_waiters() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(20));
                done.store(true, Ordering::Release);
                hub.deliver("f", Some(&key));
            })
        };
        let started = Instant::now();
        let released = runtime
            .block_on(hub.wait_key_async(
                "f",
                &key,
                Duration::from_secs(10),
                Duration::from_secs(5),
                || std::future::ready(Ok(done.load(Ordering::Acquire))),
            ))
            .unwrap();
        waker.join().unwrap();
        assert!(released);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(!hub.has_waiters());
    }

    #[test]
    fn a_keyed_wait_polls_quickly_while_the_channel_is_down() {
        let hub = ChangeHub::new();
        let looks = AtomicU64::new(0);
        let released = hub
            .wait_key(
                "f",
                &Key::of(&1).unwrap(),
                Duration::from_millis(200),
                Duration::from_secs(60),
                || Ok(looks.fetch_add(1, Ordering::AcqRel) >= 3),
            )
            .unwrap();
        assert!(released, "looked {} times", looks.load(Ordering::Acquire));
    }

    #[test]
    fn a_wait_ends_at_its_deadline() {
        let hub = ChangeHub::new();
        let started = Instant::now();
        let key = Key::of(&1).unwrap();
        let released = hub
            .wait_key(
                "f",
                &key,
                Duration::from_millis(30),
                Duration::from_millis(10),
                || Ok(false),
            )
            .unwrap();
        assert!(!released);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
