//! Claims are lock files in the cache directory, in both layouts: every handle on the
//! directory (as every process) sees them, and `clear_being_calculated` sets them aside.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cachier_core::{Backend, Claim, Core, Key};
use common::{backend, namespace};

/// The claim of a process that is alive is visible to others as `being_calculated`, and
/// `clear_being_calculated` lets the next caller compute while it still runs.
#[test]
fn claims_are_visible_across_handles_and_clearable() {
    for separate in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let ns = namespace("claims::visible");
        let a: Arc<dyn Core> = backend(&dir, separate).core(&ns).unwrap();
        let b: Arc<dyn Core> = backend(&dir, separate).core(&ns).unwrap();
        let key = Key::of(&1u64).unwrap();
        let Claim::Claimed(token) = a.claim(&key, Duration::from_secs(1)).unwrap() else {
            panic!("claim")
        };
        assert_eq!(b.claim(&key, Duration::from_secs(1)).unwrap(), Claim::Busy);
        let seen = b.get(&key).unwrap().expect("placeholder");
        assert!(
            seen.being_calculated() && !seen.is_completed() && seen.value.is_none(),
            "{seen:?}"
        );
        if !separate {
            assert_eq!(seen.claim_owner(), Some(token.as_str()));
        }
        assert!(
            !b.wait(&key, Duration::from_millis(50)).unwrap(),
            "still claimed"
        );
        b.clear_being_calculated().unwrap();
        assert!(b.get(&key).unwrap().is_none_or(|e| !e.being_calculated()));
        let Claim::Claimed(second) = b.claim(&key, Duration::from_secs(1)).unwrap() else {
            panic!("claim after clearing")
        };
        a.put(&key, b"first", Some(&token)).unwrap();
        assert!(
            b.get(&key).unwrap().unwrap().being_calculated(),
            "the old holder left the new claim alone"
        );
        b.put(&key, b"second", Some(&second)).unwrap();
        let entry = a.get(&key).unwrap().unwrap();
        assert!(!entry.being_calculated() && entry.is_completed());
        assert_eq!(entry.value.as_deref(), Some(b"second".as_slice()));
        assert!(a.wait(&key, Duration::ZERO).unwrap());
    }
}
