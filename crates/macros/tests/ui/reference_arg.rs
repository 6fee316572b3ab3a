use cachier::cachier;

#[cachier]
fn length(text: &str) -> usize {
    text.len()
}

fn main() {
    let _ = length("abc");
}
