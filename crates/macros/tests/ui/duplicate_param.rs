use cachier::cachier;

#[cachier(stale_after = "1h", next_time, stale_after = "2h")]
fn price(x: u64) -> u64 {
    x
}

fn main() {
    let _ = price(1);
}
