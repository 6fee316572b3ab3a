//! Serves every memoized function's statistics in Prometheus text format on a loopback port,
//! then scrapes itself over HTTP and checks the counters.
//!
//! `cargo run -p cachier-rs --features prometheus --example prometheus_metrics`

use std::io::{Read, Write};
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let square = cachier::memoize("examples::metrics::square", |x: u64| x * x)
        .backend(cachier::backends::memory::MemoryBackend::new())
        .build()?;
    square.call(3); // miss
    square.call(3); // hit
    square.call(4); // miss

    let server = cachier::metrics::PrometheusServer::start("127.0.0.1:0", Duration::from_secs(1))?;
    println!("serving http://{}/metrics", server.address());

    let mut stream = std::net::TcpStream::connect(server.address())?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let lines: Vec<&str> = response
        .lines()
        .filter(|l| l.contains("examples::metrics::square"))
        .collect();
    for line in &lines {
        println!("{line}");
    }
    let value = |name: &str| -> f64 {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from the scrape"))
    };
    assert_eq!(value("cachier_cache_hits_total"), 1.0);
    assert_eq!(value("cachier_cache_misses_total"), 2.0);
    assert_eq!(value("cachier_entry_count"), 2.0);
    println!("scraped: 1 hit, 2 misses, 2 entries");
    Ok(())
}
