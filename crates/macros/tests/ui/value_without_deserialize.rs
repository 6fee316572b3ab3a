use cachier::cachier;

#[derive(Clone, serde::Serialize)]
struct Report {
    total: u64,
}

#[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
fn report(n: u64) -> Report {
    Report { total: n }
}

#[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
fn checked_report(n: u64) -> Result<Report, String> {
    Ok(Report { total: n })
}

fn main() {
    let _ = report(1).total;
    let _ = checked_report(1);
}
