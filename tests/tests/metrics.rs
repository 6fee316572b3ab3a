//! Statistics exported through the `metrics` facade and scraped over HTTP in
//! Prometheus text format. One test per binary: the Prometheus recorder is process-global.
#![cfg(feature = "prometheus")]

use std::io::{Read, Write};
use std::time::Duration;

fn get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    // In pieces, as a slow client would: the server must wait for the whole request line.
    stream.write_all(b"GET ").expect("request");
    stream.flush().expect("flush");
    std::thread::sleep(std::time::Duration::from_millis(20));
    write!(stream, "{path} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

fn sample(scrape: &str, name: &str, function: &str) -> f64 {
    scrape
        .lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("function=\"{function}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} for {function} missing from:\n{scrape}"))
}

#[test]
fn prometheus_scrape_reports_every_counter() {
    let name = cachier_conformance::unique_name("metrics");
    let f = cachier::memoize_fallible(&name, |x: u64| {
        if x == 0 {
            Err("zero")
        } else {
            Ok("v".repeat(x as usize))
        }
    })
    .backend(cachier::backends::memory::MemoryBackend::new())
    .entry_size_limit(20u64)
    .build()
    .unwrap();
    f.call(1).unwrap(); // miss, stored
    f.call(1).unwrap(); // hit
    f.call(2).unwrap(); // miss, stored
    f.call(0).unwrap_err(); // miss, error not stored
    f.call(50).unwrap(); // miss, over the size limit

    let server =
        cachier::metrics::PrometheusServer::start("127.0.0.1:0", Duration::from_secs(60)).unwrap();
    let scrape = get(server.address(), "/metrics");
    assert!(scrape.starts_with("HTTP/1.1 200 OK"), "{scrape}");
    assert!(
        scrape.contains("# TYPE cachier_cache_hits_total counter"),
        "{scrape}"
    );
    assert_eq!(sample(&scrape, "cachier_cache_hits_total", &name), 1.0);
    assert_eq!(sample(&scrape, "cachier_cache_misses_total", &name), 4.0);
    assert_eq!(sample(&scrape, "cachier_recalculations_total", &name), 4.0);
    assert_eq!(
        sample(&scrape, "cachier_size_limit_rejections_total", &name),
        1.0
    );
    assert_eq!(sample(&scrape, "cachier_entry_count", &name), 2.0);
    assert!(sample(&scrape, "cachier_cache_size_bytes", &name) > 0.0);
    assert!((sample(&scrape, "cachier_cache_hit_rate", &name) - 0.2).abs() < 1e-9);
    assert!(
        scrape.contains("path=\"compute\""),
        "compute latency quantiles exported"
    );

    f.call(2).unwrap();
    let again = get(server.address(), "/metrics");
    assert_eq!(
        sample(&again, "cachier_cache_hits_total", &name),
        2.0,
        "each scrape is current"
    );
    assert!(get(server.address(), "/other").starts_with("HTTP/1.1 404"));
}
