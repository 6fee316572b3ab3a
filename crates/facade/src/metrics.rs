//! Statistics exported through the [`metrics`](https://docs.rs/metrics) facade, so that any
//! exporter a program already uses (Prometheus, StatsD, OpenTelemetry...) picks them up.
//!
//! Memoized functions never call the facade on their own hot path (a hit costs one relaxed
//! atomic increment); [`publish`] copies every function's statistics into the installed
//! recorder, and [`spawn_publisher`] does so periodically. Labels: `function` (the
//! namespace) and `backend`.
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
//! | `cachier_entry_count` | gauge | stored entries (read at most every [`SIZE_REFRESH`]) |
//! | `cachier_cache_size_bytes` | gauge | stored (encoded) bytes (likewise) |

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cachier_core::{all_stats, LatencySnapshot};
use metrics::{counter, gauge, Label};

/// How often [`publish`] reads a store's entry count and size: listing a store is a full scan
/// (every key of a Redis namespace, every row of a function), too costly for every scrape.
pub const SIZE_REFRESH: Duration = Duration::from_secs(60);

/// A store's entry count and size as last read, by the address of its `Core`.
struct Size {
    read: Instant,
    entries: u64,
    bytes: u64,
}

static SIZES: LazyLock<Mutex<HashMap<usize, Size>>> = LazyLock::new(Default::default);

/// The entry count and size of `core`, read again only when the last reading is older than
/// [`SIZE_REFRESH`]; `None` for stores that cannot list.
fn size_of(
    core: &Arc<dyn crate::store::Core>,
    sizes: &mut HashMap<usize, Size>,
) -> Option<(u64, u64)> {
    let id = Arc::as_ptr(core) as *const () as usize;
    if let Some(size) = sizes.get(&id).filter(|s| s.read.elapsed() < SIZE_REFRESH) {
        return Some((size.entries, size.bytes));
    }
    let entries = core.entries().ok()?;
    let size = Size {
        read: Instant::now(),
        entries: entries.len() as u64,
        bytes: entries.iter().map(|e| e.size).sum(),
    };
    let reading = (size.entries, size.bytes);
    sizes.insert(id, size);
    Some(reading)
}

/// Copies every live memoized function's statistics into the installed `metrics` recorder.
/// Entry counts and sizes are read from the stores ([`Core::entries`](crate::store::Core::entries))
/// at most every [`SIZE_REFRESH`]; stores that cannot list are skipped.
pub fn publish() {
    let functions = all_stats();
    let mut sizes = SIZES.lock().unwrap_or_else(PoisonError::into_inner);
    let live: Vec<usize> = functions
        .iter()
        .map(|f| Arc::as_ptr(&f.core) as *const () as usize)
        .collect();
    sizes.retain(|id, _| live.contains(id));
    for f in functions {
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
        if let Some((entries, bytes)) = size_of(&f.core, &mut sizes) {
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
    /// Binds `address` (use port 0 for any free port) and starts serving.
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
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::{
        store::CacheEntry, store::Capabilities, store::Claim, store::ClaimToken, store::Core,
        store::EntryInfo, store::Key, store::Namespace, Error,
    };

    /// The memory backend, counting how often its stores are listed.
    #[derive(Debug, Clone, Default)]
    struct Counted {
        inner: crate::backends::memory::MemoryBackend,
        listings: Arc<AtomicUsize>,
    }

    struct CountedCore {
        inner: Arc<dyn Core>,
        listings: Arc<AtomicUsize>,
    }

    impl crate::store::Backend for Counted {
        fn name(&self) -> &'static str {
            "counted"
        }
        fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
            Ok(Arc::new(CountedCore {
                inner: self.inner.core(namespace)?,
                listings: self.listings.clone(),
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
            self.listings.fetch_add(1, Ordering::SeqCst);
            self.inner.entries()
        }
    }

    #[test]
    fn publishing_does_not_list_every_store_each_time() {
        let backend = Counted::default();
        let f = crate::memoize("metrics::tests::listed", |x: u64| x)
            .backend(backend.clone())
            .build()
            .unwrap();
        f.call(1);
        for _ in 0..5 {
            publish();
        }
        assert_eq!(
            backend.listings.load(Ordering::SeqCst),
            1,
            "five scrapes within {SIZE_REFRESH:?} list the store once"
        );
    }
}
