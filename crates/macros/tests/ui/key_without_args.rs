use cachier::cachier;

#[cachier(key = |_: &()| 1)]
fn constant() -> u64 {
    42
}

fn main() {
    let _ = constant();
}
