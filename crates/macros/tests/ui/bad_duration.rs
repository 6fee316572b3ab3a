use cachier::cachier;

#[cachier(stale_after = "1x")]
fn price(x: u64) -> u64 {
    x
}

#[cachier(wait_for_calc_timeout = 5)]
fn other(x: u64) -> u64 {
    x
}

fn main() {
    let _ = (price(1), other(1));
}
