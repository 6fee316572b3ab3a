use cachier::cachier;

#[derive(Clone)]
struct Shop {
    margin: u64,
}

impl Shop {
    #[cachier(stale_after = "1h")]
    fn price(&self, cost: u64) -> u64 {
        cost + self.margin
    }
}

fn main() {
    let _ = Shop { margin: 1 }.price(1);
}
