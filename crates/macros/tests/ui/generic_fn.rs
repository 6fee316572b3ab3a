use cachier::cachier;

#[cachier]
fn twice<T: Clone>(x: T) -> (T, T) {
    (x.clone(), x)
}

fn main() {
    let _ = twice(1);
}
