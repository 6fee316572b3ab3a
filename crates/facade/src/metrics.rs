//! Statistics exported through the [`metrics`](https://docs.rs/metrics) facade, so that any
//! exporter a program already uses (Prometheus, StatsD, OpenTelemetry...) picks them up.
//!
//! Memoized functions never call the facade on their own hot path (a hit costs one relaxed
//! atomic increment); [`publish`] copies every function's statistics into the installed
//! recorder, and [`spawn_publisher`] does so periodically. What a publish costs does not grow
//! with what the stores hold: their entry counts and sizes are read by a thread of their own,
//! at a bounded rate (see [`publish`]). Labels: `function` (the namespace) and `backend`.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `cachier_cache_hits_total` | counter | fresh values served |
//! | `cachier_cache_misses_total` | counter | calls without a usable value |
//! | `cachier_stale_hits_total` | counter | stale values found |
//! | `cachier_recalculations_total` | counter | computations run |
//! | `cachier_wait_timeouts_total` | counter | waits that ran out |
//! | `cachier_size_limit_rejections_total` | counter | results over `entry_size_limit` |
//! | `cachier_backend_errors_total` | counter | store failures |
//! | `cachier_uncached_total` | counter | computations run without the store (it failed) |
//! | `cachier_cache_hit_rate` | gauge | hits / (hits + misses) |
//! | `cachier_latency_seconds{path, quantile}` | gauge | p50/p90/p99 of hit and compute latency |
//! | `cachier_entry_count` | gauge | stored entries, as of at most [`SIZE_REFRESH`] ago (see [`publish`]) |
//! | `cachier_cache_size_bytes` | gauge | stored (encoded) bytes, likewise |

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cachier_core::{all_stats, FunctionStats, LatencySnapshot};
use metrics::{counter, gauge, Label};

use crate::store::Core;

/// How often a store's entry count and size are read again. Reading them lists the store (every
/// key of a Redis namespace, every row of a function), so it happens in the background, never
/// in [`publish`], and at most this often per store.
pub const SIZE_REFRESH: Duration = Duration::from_secs(60);

/// How long [`PrometheusServer::start`] waits for the first readings of the stores of the live
/// functions, so that its first scrape normally has them.
#[cfg(feature = "prometheus")]
const FIRST_READINGS_WAIT: Duration = Duration::from_secs(1);

/// A store's entry count and encoded bytes, as last read.
#[derive(Debug, Clone, Copy)]
struct Reading {
    /// When the listing started.
    at: Instant,
    /// `None` when the store could not be listed.
    size: Option<(u64, u64)>,
}

/// A store is known by the address of its `Core`.
type StoreId = usize;

fn store_id(core: &Arc<dyn Core>) -> StoreId {
    Arc::as_ptr(core) as *const () as usize
}

#[derive(Default)]
struct SizeState {
    readings: HashMap<StoreId, Reading>,
    /// Stores to read, each at most once, oldest request first.
    queue: VecDeque<(StoreId, Weak<dyn Core>)>,
    /// The store being read.
    reading: Option<StoreId>,
}

/// Reads the sizes of stores on a thread of its own, one store at a time, so that what
/// [`publish`] costs does not grow with what the stores hold.
#[derive(Default)]
struct SizeReader {
    state: Mutex<SizeState>,
    /// Work was queued.
    work: Condvar,
    /// The queue ran empty.
    idle: Condvar,
}

static READER: LazyLock<&'static SizeReader> = LazyLock::new(|| {
    let reader: &'static SizeReader = Box::leak(Box::default());
    std::thread::Builder::new()
        .name("cachier-metrics-sizes".into())
        .spawn(move || reader.run())
        .expect("cachier: cannot start the metrics size reader");
    reader
});

impl SizeReader {
    fn lock(&self) -> MutexGuard<'_, SizeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The latest reading of each function's store (`None` before the first, or for a store
    /// that cannot list), in the order of `functions`. Forgets the stores of functions gone,
    /// and queues a reading for each store never read or last read [`SIZE_REFRESH`] ago.
    /// Never lists a store itself.
    fn latest(&self, functions: &[FunctionStats]) -> Vec<Option<(u64, u64)>> {
        let mut state = self.lock();
        let live: Vec<StoreId> = functions.iter().map(|f| store_id(&f.core)).collect();
        state.readings.retain(|id, _| live.contains(id));
        let mut queued = false;
        let sizes = functions
            .iter()
            .zip(&live)
            .map(|(f, &id)| {
                let reading = state.readings.get(&id).copied();
                if reading.is_none_or(|r| r.at.elapsed() >= SIZE_REFRESH)
                    && state.reading != Some(id)
                    && !state.queue.iter().any(|(queued, _)| *queued == id)
                {
                    state.queue.push_back((id, Arc::downgrade(&f.core)));
                    queued = true;
                }
                reading.and_then(|r| r.size)
            })
            .collect();
        drop(state);
        if queued {
            self.work.notify_one();
        }
        sizes
    }

    /// Waits until every queued reading is done, or `max` passed.
    #[cfg_attr(not(any(test, feature = "prometheus")), allow(dead_code))]
    fn settle(&self, max: Duration) {
        let deadline = Instant::now() + max;
        let mut state = self.lock();
        while !state.queue.is_empty() || state.reading.is_some() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self
                .idle
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            let Some((id, core)) = state.queue.pop_front() else {
                self.idle.notify_all();
                state = self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            // A function dropped since its request: nothing to read.
            let Some(core) = core.upgrade() else {
                continue;
            };
            state.reading = Some(id);
            drop(state);
            let at = Instant::now();
            // A store's own panic must not end the readings of every store.
            let size = catch_unwind(AssertUnwindSafe(|| core.entries()))
                .ok()
                .and_then(Result::ok)
                .map(|entries| {
                    let bytes = entries.iter().map(|e| e.size).sum();
                    (entries.len() as u64, bytes)
                });
            drop(core);
            state = self.lock();
            state.reading = None;
            state.readings.insert(id, Reading { at, size });
        }
    }
}

/// Copies every live memoized function's statistics into the installed `metrics` recorder.
///
/// Its cost grows with the number of live functions, not with what their stores hold. The
/// entry count and size gauges are the latest reading of a thread that lists one store at a
/// time in the background: a publish requests a new reading of a store when its last one is
/// [`SIZE_REFRESH`] old (or it has none) and publishes the last one meanwhile. So they
/// describe the store as of at most [`SIZE_REFRESH`] plus one listing ago when publishes come
/// at least that often (as of the previous publish otherwise), and appear with the first
/// publish after a store's first reading. Stores that cannot list have none.
pub fn publish() {
    let functions = all_stats();
    let sizes = READER.latest(&functions);
    for (f, size) in functions.into_iter().zip(sizes) {
        let labels = vec![
            Label::new("function", f.namespace.to_string()),
            Label::new("backend", f.backend),
        ];
        let s = &f.stats;
        let counters = [
            ("cachier_cache_hits_total", s.hits),
            ("cachier_cache_misses_total", s.misses),
            ("cachier_stale_hits_total", s.stale_hits),
            ("cachier_recalculations_total", s.recalculations),
            ("cachier_wait_timeouts_total", s.wait_timeouts),
            (
                "cachier_size_limit_rejections_total",
                s.size_limit_rejections,
            ),
            ("cachier_backend_errors_total", s.backend_errors),
            ("cachier_uncached_total", s.uncached),
        ];
        for (name, value) in counters {
            counter!(name, labels.clone()).absolute(value);
        }
        gauge!("cachier_cache_hit_rate", labels.clone()).set(s.hit_rate);
        publish_latency(&labels, "hit", &s.hit_latency);
        publish_latency(&labels, "compute", &s.compute_latency);
        if let Some((entries, bytes)) = size {
            gauge!("cachier_entry_count", labels.clone()).set(entries as f64);
            gauge!("cachier_cache_size_bytes", labels.clone()).set(bytes as f64);
        }
    }
}

fn publish_latency(labels: &[Label], path: &'static str, latency: &LatencySnapshot) {
    for (quantile, text) in [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")] {
        if let Some(value) = latency.quantile(quantile) {
            let mut labels = labels.to_vec();
            labels.push(Label::new("path", path));
            labels.push(Label::new("quantile", text));
            gauge!("cachier_latency_seconds", labels).set(value.as_secs_f64());
        }
    }
}

/// A background thread calling [`publish`] every `interval`; stops when dropped.
pub struct Publisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a [`Publisher`].
pub fn spawn_publisher(interval: Duration) -> Publisher {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("cachier-metrics".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                publish();
                std::thread::park_timeout(interval);
            }
        })
        .expect("cachier: cannot start the metrics thread");
    Publisher {
        stop,
        thread: Some(thread),
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// A loopback HTTP server exposing `/metrics` in Prometheus text format (feature
/// `prometheus`): installs `metrics-exporter-prometheus` as the global recorder, publishes
/// every `interval`, and renders on each scrape. Stops when dropped.
#[cfg(feature = "prometheus")]
pub struct PrometheusServer {
    address: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _publisher: Publisher,
}

#[cfg(feature = "prometheus")]
impl PrometheusServer {
    /// Binds `address` (use port 0 for any free port) and starts serving. Before it returns,
    /// it waits up to a second for the first readings of the live functions' store sizes (see
    /// [`publish`]), so that the first scrape normally has them.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) if another global `metrics` recorder is already
    /// installed, the bind's I/O error otherwise (as [`Error::Backend`](crate::Error::Backend)).
    pub fn start(
        address: impl std::net::ToSocketAddrs,
        interval: Duration,
    ) -> crate::Result<PrometheusServer> {
        use std::io::{Read, Write};
        let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| {
                crate::Error::config(
                    "metrics",
                    format!("cannot install the Prometheus recorder: {e}"),
                )
            })?;
        let listener = std::net::TcpListener::bind(address)
            .map_err(|e| crate::Error::backend("prometheus", "bind", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| crate::Error::backend("prometheus", "bind", e))?;
        let address = listener
            .local_addr()
            .map_err(|e| crate::Error::backend("prometheus", "bind", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // The first readings of the stores' sizes, so that the first scrape normally has them.
        publish();
        READER.settle(FIRST_READINGS_WAIT);
        let publisher = spawn_publisher(interval);
        let thread = std::thread::Builder::new()
            .name("cachier-prometheus".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    // Read until the request line is complete: a client may send it in pieces.
                    let mut request = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !request.windows(2).any(|w| w == b"\r\n") && request.len() < 8192 {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => request.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request);
                    let response = if line.starts_with("GET /metrics ") {
                        publish();
                        let body = handle.render();
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned()
                    };
                    let _ = stream.write_all(response.as_bytes());
                }
            })
            .map_err(|e| crate::Error::backend("prometheus", "spawn", e))?;
        Ok(PrometheusServer {
            address,
            stop,
            thread: Some(thread),
            _publisher: publisher,
        })
    }

    /// Where it listens.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }
}

#[cfg(feature = "prometheus")]
impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize};

    use metrics::{Counter, Gauge, GaugeFn, Histogram, Key as MetricKey, KeyName, Metadata};
    use metrics::{Recorder, SharedString, Unit};

    use super::*;
    use crate::{
        store::CacheEntry, store::Capabilities, store::Claim, store::ClaimToken, store::EntryInfo,
        store::Key, store::Namespace, Error,
    };

    /// The memory backend, counting how often its stores are listed; a listing waits until
    /// `gate` is open.
    #[derive(Debug, Clone)]
    struct Counted {
        inner: crate::backends::memory::MemoryBackend,
        listings: Arc<AtomicUsize>,
        gate: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Counted {
        fn new(open: bool) -> Counted {
            Counted {
                inner: crate::backends::memory::MemoryBackend::new(),
                listings: Arc::default(),
                gate: Arc::new((Mutex::new(open), Condvar::new())),
            }
        }

        fn open(&self) {
            *self.gate.0.lock().unwrap() = true;
            self.gate.1.notify_all();
        }
    }

    struct CountedCore {
        inner: Arc<dyn Core>,
        backend: Counted,
    }

    impl crate::store::Backend for Counted {
        fn name(&self) -> &'static str {
            "counted"
        }
        fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
            Ok(Arc::new(CountedCore {
                inner: self.inner.core(namespace)?,
                backend: self.clone(),
            }))
        }
    }

    impl Core for CountedCore {
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
            self.inner.get(key)
        }
        fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
            self.inner.put(key, value, claim)
        }
        fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
            self.inner.claim(key, lease)
        }
        fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
            self.inner.release(key, claim)
        }
        fn watch(
            &self,
            sink: Arc<dyn cachier_core::watch::ChangeSink>,
        ) -> Result<cachier_core::watch::Watch, Error> {
            self.inner.watch(sink)
        }
        fn clear_cache(&self) -> Result<(), Error> {
            self.inner.clear_cache()
        }
        fn clear_being_calculated(&self) -> Result<(), Error> {
            self.inner.clear_being_calculated()
        }
        fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
            self.inner.delete_stale_entries(older_than)
        }
        fn len(&self) -> Result<u64, Error> {
            self.inner.len()
        }
        fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
            self.backend.listings.fetch_add(1, Ordering::SeqCst);
            let (open, opened) = &*self.backend.gate;
            let guard = opened
                .wait_timeout_while(open.lock().unwrap(), Duration::from_secs(30), |o| !*o)
                .unwrap();
            drop(guard);
            self.inner.entries()
        }
    }

    /// A recorder keeping the last value of each gauge, by name and `function` label.
    #[derive(Default)]
    struct Gauges(Mutex<HashMap<(String, String), Arc<GaugeValue>>>);

    #[derive(Default)]
    struct GaugeValue(AtomicU64);

    impl GaugeFn for GaugeValue {
        fn increment(&self, value: f64) {
            self.set(f64::from_bits(self.0.load(Ordering::SeqCst)) + value);
        }
        fn decrement(&self, value: f64) {
            self.increment(-value);
        }
        fn set(&self, value: f64) {
            self.0.store(value.to_bits(), Ordering::SeqCst);
        }
    }

    impl Gauges {
        fn get(&self, name: &str, function: &str) -> Option<f64> {
            let gauges = self.0.lock().unwrap();
            let value = gauges.get(&(name.to_owned(), function.to_owned()))?;
            Some(f64::from_bits(value.0.load(Ordering::SeqCst)))
        }
    }

    impl Recorder for Gauges {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &MetricKey, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }
        fn register_gauge(&self, key: &MetricKey, _: &Metadata<'_>) -> Gauge {
            let function = key
                .labels()
                .find(|l| l.key() == "function")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            let mut gauges = self.0.lock().unwrap();
            let value = gauges
                .entry((key.name().to_owned(), function))
                .or_default()
                .clone();
            Gauge::from_arc(value)
        }
        fn register_histogram(&self, _: &MetricKey, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn publishing_does_not_list_every_store_each_time() {
        let backend = Counted::new(true);
        let f = crate::memoize("metrics::tests::listed", |x: u64| x)
            .backend(backend.clone())
            .build()
            .unwrap();
        f.call(1);
        for _ in 0..5 {
            publish();
        }
        READER.settle(Duration::from_secs(10));
        publish();
        assert_eq!(
            backend.listings.load(Ordering::SeqCst),
            1,
            "six scrapes within {SIZE_REFRESH:?} list the store once"
        );
    }

    #[test]
    fn publishing_never_waits_for_a_listing() {
        let backend = Counted::new(false);
        let name = "metrics::tests::slow_listing";
        let f = crate::memoize(name, |x: u64| x)
            .backend(backend.clone())
            .build()
            .unwrap();
        for x in 0..3 {
            f.call(x);
        }
        let gauges = Gauges::default();
        // The listing this publish requests is held at the gate: the publish must not wait
        // for it, and publishes no size it does not have.
        let started = Instant::now();
        metrics::with_local_recorder(&gauges, publish);
        let took = started.elapsed();
        backend.open();
        assert!(took < Duration::from_secs(1), "publish took {took:?}");
        assert_eq!(gauges.get("cachier_entry_count", name), None);
        assert_eq!(gauges.get("cachier_cache_hit_rate", name), Some(0.0));
        // Once the reading landed, the next publish has it.
        READER.settle(Duration::from_secs(10));
        metrics::with_local_recorder(&gauges, publish);
        assert_eq!(gauges.get("cachier_entry_count", name), Some(3.0));
        assert!(gauges.get("cachier_cache_size_bytes", name).unwrap() > 0.0);
        assert_eq!(backend.listings.load(Ordering::SeqCst), 1);
    }
}
