use cachier::cachier;

#[cachier(stale_afer = "1h")]
fn price(x: u64) -> u64 {
    x
}

#[cachier(hash_func = |x: &(u64,)| x.0)]
fn other(x: u64) -> u64 {
    x
}

fn main() {
    let _ = (price(1), other(1));
}
