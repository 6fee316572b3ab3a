//! Names in the cache directory: every file and directory of a function is named after its
//! namespace's [`file_stem`].

use sha2::{Digest, Sha256};

/// The longest readable part of a store's file name (the hash suffix keeps it unique).
const MAX_READABLE: usize = 80;

/// A store's file name for `namespace`: its letters, digits, `_`, `-`, `.` and `@` (others
/// become `_`, `::` becomes `.`, leading dots go, at most 80 of them), then `-` and 16 hex
/// digits of the namespace's SHA-256 hash. No namespace can name a path outside the cache
/// directory, a hidden file, or a reserved device name, and distinct namespaces never share a
/// file.
pub fn file_stem(namespace: &str) -> String {
    let readable: String = namespace
        .replace("::", ".")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let readable = readable.trim_start_matches(['.', '-']);
    let readable = &readable[..readable.len().min(MAX_READABLE)];
    let readable = if readable.is_empty() { "fn" } else { readable };
    let hash = Sha256::digest(namespace.as_bytes());
    let mut stem = format!("{readable}-");
    cachier_core::push_hex(&mut stem, &hash[..8]);
    stem
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn stems_cannot_escape_or_collide() {
        let long = "x".repeat(5000);
        let names = [
            "../../etc/passwd",
            "a/b",
            "a\\b",
            "a_b",
            "con",
            "CON",
            "nul.txt",
            ".hidden",
            "..",
            ".",
            "-rf",
            long.as_str(),
            "ünïcödé::函数",
            "my_crate::pricing::quote@2",
        ];
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let stem = file_stem(name);
            assert!(seen.insert(stem.clone()), "{name:?} collides as {stem:?}");
            assert!(!stem.contains('/') && !stem.contains('\\'), "{stem}");
            assert!(!stem.starts_with('.') && !stem.starts_with('-'), "{stem}");
            assert!(stem.len() <= MAX_READABLE + 17, "{} bytes", stem.len());
            assert!(stem.is_ascii(), "{stem}");
            assert!(
                stem.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@')),
                "{stem}"
            );
            let dir = Path::new("/cache");
            assert_eq!(
                dir.join(&stem).parent(),
                Some(dir),
                "{stem} stays in the directory"
            );
        }
        assert!(file_stem("my_crate::pricing::quote@2").starts_with("my_crate.pricing.quote@2-"));
        assert_eq!(file_stem("a::b"), file_stem("a::b"), "stable");
    }
}
