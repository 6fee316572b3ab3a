use cachier::cachier;

#[cachier(backend = cachier::backends::memory::MemoryBackend::new(), cache_dir = "/tmp/cache")]
fn price(x: u64) -> u64 {
    x
}

fn main() {
    let _ = price(1);
}
