//! Argument previews on a real store: entries computed now carry one, and an entry written in
//! the envelope of builds from before previews (version 1) is still a hit, listed without one.
#![cfg(unix)]

mod common;

use common::{backend, multiplier, Counter};

#[test]
fn an_entry_in_the_old_envelope_is_still_a_hit() {
    for separate in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let calls = Counter::new();
        let f = multiplier(&backend(root.path(), separate), "previews::f", 10, &calls);
        // The old envelope, byte for byte: format version 1, no flags, postcard's varint 50.
        let old: &[u8] = &[1, 0, 50];
        f.core().put(&f.key(&5).unwrap(), old, None).unwrap();
        assert_eq!(f.call(5), 50);
        assert_eq!(calls.get(), 0, "read, not recomputed");
        assert_eq!(f.call(6), 60);
        let mut listed: Vec<_> = f
            .core()
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| (e.size, e.preview))
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            [(3, None), (5, Some("6".to_owned()))],
            "the new entry carries its preview (3 bytes more)"
        );
    }
}
