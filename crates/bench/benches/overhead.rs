//! `cargo bench -p cachier-bench`: prints the overhead table (see the crate README).

fn main() {
    // `cargo test --benches` / `cargo bench -- --list` run bench targets too: measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench -p cachier-bench` to measure");
        return;
    }
    let config = cachier_bench::Config::from_env();
    let mut rows = Vec::new();
    #[cfg(feature = "memory")]
    rows.extend(cachier_bench::memory::rows(&config));
    #[cfg(feature = "file")]
    rows.extend(cachier_bench::file::rows(&config));
    #[cfg(feature = "redis")]
    rows.extend(cachier_bench::redis::rows(&config));
    #[cfg(feature = "redis")]
    rows.extend(cachier_bench::redis::cluster_rows(&config));
    #[cfg(feature = "macros")]
    rows.extend(cachier_bench::macros::rows(&config));
    #[cfg(feature = "sqlite")]
    rows.extend(cachier_bench::sql::sqlite_rows(&config));
    #[cfg(feature = "postgres")]
    rows.extend(cachier_bench::sql::postgres_rows(&config));
    #[cfg(feature = "mongo")]
    rows.extend(cachier_bench::mongo::rows(&config));
    #[cfg(feature = "s3")]
    rows.extend(cachier_bench::s3::rows(&config));
    #[cfg(feature = "memory")]
    rows.extend(cachier_bench::near::rows(&config));
    #[cfg(feature = "metrics")]
    rows.extend(cachier_bench::metrics::rows(&config));
    #[cfg(any(
        feature = "file",
        feature = "postgres",
        feature = "redis",
        feature = "mongo"
    ))]
    rows.extend(cachier_bench::coherence::rows(&config));
    cachier_bench::print_table(&rows);
}
