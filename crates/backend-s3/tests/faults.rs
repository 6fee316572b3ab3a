//! An endpoint that fails: stopped mid-run and restarted (calls compute uncached with a
//! warning, strict calls return the error, caching resumes after the restart), and one that
//! throttles (`503 SlowDown` replies are retried with backoff, unseen by callers). Each test
//! runs its own moto server (`CACHIER_TEST_MOTO_SERVER`), so stopping it disturbs no one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use cachier_backend_s3::S3Backend;
use cachier_core::memoize;
use cachier_testkit::{capture_logs, service_url, unique_name, Counter};

/// A private moto server on a port of its own, with the tests' bucket.
struct PrivateMoto {
    binary: String,
    port: u16,
    child: Child,
}

impl PrivateMoto {
    fn start(test: &str) -> Option<PrivateMoto> {
        let binary = service_url("CACHIER_TEST_MOTO_SERVER", test)?;
        let port = free_port();
        let child = spawn(&binary, port);
        Some(PrivateMoto {
            binary,
            port,
            child,
        })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts again on the same port; moto keeps nothing, so the bucket is made again (as an
    /// operator restoring the store would).
    fn restart(&mut self) {
        self.child = spawn(&self.binary, self.port);
    }

    fn url(&self) -> String {
        format!(
            "s3://test:test@cachier-test?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.port
        )
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

// The child is returned and waited for by `PrivateMoto`'s `Drop` (or `give_up`).
#[allow(clippy::zombie_processes)]
fn spawn(binary: &str, port: u16) -> Child {
    let child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let started = Instant::now();
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            // Anonymous bucket creation, as scripts/test.sh does.
            write!(
                stream,
                "PUT /cachier-test HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply);
            assert!(reply.starts_with("HTTP/1.1 200"), "create bucket: {reply}");
            return child;
        }
        if started.elapsed() > Duration::from_secs(30) {
            give_up(
                child,
                &format!("moto_server did not open port {port} within 30 s"),
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a server that never came up, then fails the test.
fn give_up(mut child: Child, why: &str) -> ! {
    let _ = child.kill();
    let _ = child.wait();
    panic!("{why}");
}

#[test]
fn a_stopped_endpoint_costs_uncached_calls_until_it_is_back() {
    let Some(mut moto) = PrivateMoto::start("a_stopped_endpoint_costs_uncached_calls") else {
        return;
    };
    let backend = S3Backend::from_url(&moto.url()).expect("s3 backend");
    let calls = Counter::new();
    let c = calls.clone();
    let f = memoize(&unique_name("s3_outage"), move |x: u64| {
        c.bump();
        x * 3
    })
    .backend(backend)
    .build()
    .expect("memoized function");
    assert_eq!(f.call(5), 15);
    assert_eq!(f.call(5), 15);
    assert_eq!(calls.get(), 1, "a hit while the endpoint is up");

    moto.stop();
    let started = Instant::now();
    let logs = capture_logs(|| {
        assert_eq!(f.call(5), 15);
        assert_eq!(f.call(6), 18);
    });
    assert_eq!(
        calls.get(),
        3,
        "computed uncached while the endpoint is down"
    );
    assert!(logs.contains("cache unavailable"), "{logs}");
    assert!(logs.contains("s3"), "{logs}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "each call gave up within the retry budget: {:?}",
        started.elapsed()
    );
    let error = f.try_call(5).expect_err("strict calls return the error");
    assert!(error.is_backend(), "{error}");
    assert!(error.to_string().contains("s3 backend"), "{error}");

    moto.restart();
    let before = calls.get();
    assert_eq!(f.try_call(5).expect("the endpoint is back"), 15);
    assert_eq!(f.call(5), 15);
    assert_eq!(
        calls.get(),
        before + 1,
        "cached again once the endpoint is back (the restarted server kept nothing)"
    );
    assert_eq!(f.core().len().unwrap(), 1);
}

/// A proxy in front of a server that answers the first `throttled` requests itself with
/// `503 SlowDown`, as S3 does under load, then forwards every connection.
struct ThrottlingProxy {
    port: u16,
    throttled: Arc<AtomicUsize>,
}

impl ThrottlingProxy {
    fn start(upstream: u16, throttle: usize) -> ThrottlingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let left = Arc::new(AtomicUsize::new(throttle));
        let throttled = Arc::new(AtomicUsize::new(0));
        let count = throttled.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let throttle = left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if throttle {
                    count.fetch_add(1, Ordering::SeqCst);
                    thread::spawn(move || slow_down(client));
                } else {
                    thread::spawn(move || forward(client, upstream));
                }
            }
        });
        ThrottlingProxy { port, throttled }
    }
}

/// Reads one request, answers `503 SlowDown` and closes the connection.
fn slow_down(client: TcpStream) {
    let mut reader = BufReader::new(client);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let mut client = reader.into_inner();
    let _ = write!(
        client,
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
        xml.len()
    );
}

fn forward(client: TcpStream, upstream: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let _ = std::io::copy(&mut s_read, &mut c_write);
    let _ = c_write.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}

#[test]
fn throttling_is_retried_with_backoff() {
    let Some(moto) = PrivateMoto::start("throttling_is_retried_with_backoff") else {
        return;
    };
    let proxy = ThrottlingProxy::start(moto.port, 3);
    let url = moto
        .url()
        .replace(&format!(":{}&", moto.port), &format!(":{}&", proxy.port));
    let backend = S3Backend::from_url(&url).expect("s3 backend");
    let calls = Counter::new();
    let c = calls.clone();
    let f = memoize(&unique_name("s3_throttled"), move |x: u64| {
        c.bump();
        x + 1
    })
    .backend(backend.clone())
    .build()
    .expect("memoized function");
    let started = Instant::now();
    assert_eq!(
        f.try_call(1).expect("throttling is retried, not returned"),
        2
    );
    assert_eq!(f.try_call(1).expect("a hit"), 2);
    assert_eq!(calls.get(), 1, "stored despite the throttled requests");
    assert_eq!(proxy.throttled.load(Ordering::SeqCst), 3);
    assert!(
        backend.requests_sent() >= 3 + 3,
        "three throttled requests were sent again: {} requests",
        backend.requests_sent()
    );
    // Backoff from 50 ms: three retries wait about 50 + 100 + 200 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "retried without backing off: {:?}",
        started.elapsed()
    );
}
