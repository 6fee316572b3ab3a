use cachier::cachier;

struct Config;

// An associated function without `self` needs `#[cachier]` on the impl block too.
impl Config {
    #[cachier]
    fn load(id: u32) -> String {
        format!("config-{id}")
    }
}

fn main() {
    let _ = Config::load(1);
}
