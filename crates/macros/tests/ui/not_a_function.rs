use cachier::cachier;

#[cachier]
struct Price(u64);

fn main() {
    let _ = Price(1);
}
