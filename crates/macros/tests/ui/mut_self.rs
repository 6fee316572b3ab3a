use cachier::cachier;

#[derive(Clone)]
struct Counter {
    n: u64,
}

impl Counter {
    #[cachier(allow_non_static_methods)]
    fn bump(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }
}

fn main() {
    let _ = Counter { n: 0 }.bump(1);
}
