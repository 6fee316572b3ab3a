//! The server's clock, as this machine can know it: every response's `Date` header bounds the
//! difference between the two clocks, and the bounds of many responses narrow it down.
//!
//! S3 dates have whole seconds, so one response says only that the server's clock read
//! between `Date` and `Date + 1 s` at some moment between sending the request and reading the
//! reply: the offset (server minus local) lies in `[Date - received, Date + 1 s - sent]`. The
//! intersection of those intervals over every response is where the offset can be. The
//! backend corrects its clock by the smallest offset in it: none when this machine's clock
//! agrees with the server's as far as the server's replies can tell, and a correction that
//! only grows more exact (never jumps back and forth) as replies arrive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
    SpawnedReqwestConnector,
};
use parking_lot::Mutex;

/// How long a measured bound is trusted: clocks drift, and a server's clock may be set, so
/// the interval is measured afresh this often (from the replies that keep arriving).
const REMEASURE: Duration = Duration::from_secs(600);

/// Where the server's clock stands against this machine's, from the `Date` headers seen.
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    /// `(lowest, highest)` possible offset in milliseconds, and when measuring started.
    bounds: Mutex<Option<(i64, i64, SystemTime)>>,
    requests: AtomicU64,
}

impl ServerClock {
    /// The server's "now", in milliseconds since the Unix epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        unix_ms(SystemTime::now()) + self.offset_ms()
    }

    /// The correction applied to this machine's clock: the offset closest to zero that the
    /// replies allow.
    pub(crate) fn offset_ms(&self) -> i64 {
        match *self.bounds.lock() {
            Some((low, high, _)) => 0.clamp(low, high),
            None => 0,
        }
    }

    /// How many HTTP requests went out through this clock's client (retries included).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Narrows the bounds with a reply dated `date` (whole seconds) to a request sent at
    /// `sent` and answered at `received`, by this machine's clock.
    pub(crate) fn observe(&self, date: SystemTime, sent: SystemTime, received: SystemTime) {
        let date = unix_ms(date);
        let low = date - unix_ms(received);
        let high = date + 1000 - unix_ms(sent);
        let mut bounds = self.bounds.lock();
        *bounds = match *bounds {
            Some((l, h, since))
                if received.duration_since(since).unwrap_or_default() < REMEASURE =>
            {
                let (l, h) = (l.max(low), h.min(high));
                // An empty intersection means a clock was set: start again from this reply.
                if l <= h {
                    Some((l, h, since))
                } else {
                    Some((low, high, received))
                }
            }
            _ => Some((low, high, received)),
        };
    }
}

/// Milliseconds since the Unix epoch (negative before it).
pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_unix_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Makes the client's HTTP connections: `object_store`'s reqwest client, its I/O on the
/// backend's runtime, with every reply's `Date` fed to the [`ServerClock`].
#[derive(Debug)]
pub(crate) struct ClockConnector {
    pub(crate) clock: Arc<ServerClock>,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl HttpConnector for ClockConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = SpawnedReqwestConnector::new(self.runtime.clone()).connect(options)?;
        Ok(HttpClient::new(ClockService {
            inner,
            clock: self.clock.clone(),
        }))
    }
}

#[derive(Debug)]
struct ClockService {
    inner: HttpClient,
    clock: Arc<ServerClock>,
}

#[async_trait]
impl HttpService for ClockService {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.clock.requests.fetch_add(1, Ordering::Relaxed);
        let sent = SystemTime::now();
        let response = self.inner.execute(request).await?;
        let received = SystemTime::now();
        if let Some(date) = response
            .headers()
            .get("date")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        {
            self.clock.observe(date, sent, received);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> SystemTime {
        from_unix_ms(ms)
    }

    #[test]
    fn a_clock_that_agrees_is_not_corrected() {
        let clock = ServerClock::default();
        // The server's second 1000 s, seen by a request from 1000.2 s to 1000.25 s.
        clock.observe(at(1_000_000), at(1_000_200), at(1_000_250));
        assert_eq!(clock.offset_ms(), 0);
    }

    #[test]
    fn a_late_server_is_bounded_then_narrowed() {
        let clock = ServerClock::default();
        // The server is 5.3 s ahead. At local 1000.0 s its clock reads 1005.3 s.
        clock.observe(at(1_005_000), at(1_000_000), at(1_000_010));
        let first = clock.offset_ms();
        assert!((4_990..=5_300).contains(&first), "{first}");
        // At local 1000.75 s it reads 1006.05 s: date 1006 s.
        clock.observe(at(1_006_000), at(1_000_740), at(1_000_750));
        let second = clock.offset_ms();
        assert!(
            second >= first && (5_250..=5_300).contains(&second),
            "{second}"
        );
    }

    #[test]
    fn a_set_clock_starts_the_measure_again() {
        let clock = ServerClock::default();
        clock.observe(at(1_000_000), at(1_000_000), at(1_000_010));
        // The server's clock jumped 60 s ahead.
        clock.observe(at(1_061_000), at(1_001_000), at(1_001_010));
        assert!(clock.offset_ms() >= 59_990, "{}", clock.offset_ms());
    }

    #[test]
    fn times_round_trip_through_milliseconds() {
        for ms in [-1_500, 0, 1_700_000_000_123] {
            assert_eq!(unix_ms(from_unix_ms(ms)), ms);
        }
    }
}
