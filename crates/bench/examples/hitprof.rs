use cachier_bench::*;
fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let backend = cachier::backends::memory::MemoryBackend::new();
    let f = overhead_fn(&run_name("memory"))
        .backend(backend)
        .build()
        .unwrap();
    prefill(&f, n);
    let iters = 50_000_000u64;
    for i in 0..n as u64 {
        std::hint::black_box(f.call(i));
    }
    let t = std::time::Instant::now();
    for i in 0..iters {
        std::hint::black_box(f.call(scattered(i, n)));
    }
    eprintln!("{:?}/call", t.elapsed() / iters as u32);
}
