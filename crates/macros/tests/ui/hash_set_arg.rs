use std::collections::HashSet;

use cachier::cachier;

#[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
fn count(ids: HashSet<u32>) -> usize {
    ids.len()
}

fn main() {
    let _ = count(HashSet::new());
}
