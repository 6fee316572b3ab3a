use cachier::cachier;

#[cachier(entry_size_limit = "10XB")]
fn price(x: u64) -> u64 {
    x
}

fn main() {
    let _ = price(1);
}
