//! The store contract of `Core` (and of `AsyncCore`, with the `async` feature), checked by
//! calling a store directly, without memoized functions: every backend's own tests run it with
//! [`store_contract_tests!`](crate::store_contract_tests) and, for stores shared by processes,
//! [`store_contract_process_tests!`](crate::store_contract_process_tests).
//!
//! Every case opens the store with the backend's [`Open`] function in a fresh scratch
//! directory and works in a namespace of its own, so cases share a server safely.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use cachier_core::{Backend, CacheEntry, Claim, ClaimToken, Core, Error, Key, Namespace};

#[cfg(feature = "async")]
mod asynchronous;
pub mod push;
#[cfg(feature = "async")]
pub use asynchronous::*;

/// Opens the store under test; file-based stores put their files in the given scratch
/// directory (a child process of the cross-process case gets the same one). `None` skips
/// the case (see [`service_url`](crate::service_url)).
pub type Open = fn(&Path) -> Option<Arc<dyn Backend>>;

/// A lease no case outlives: a claim taken with it stays live until released.
pub const LEASE: Duration = Duration::from_secs(120);

/// The lease of the lapse cases: short, yet long against one round trip.
pub const SHORT_LEASE: Duration = Duration::from_millis(300);

/// Longer than [`SHORT_LEASE`] with room for clock granularity and a loaded machine.
const PAST_SHORT_LEASE: Duration = Duration::from_millis(700);

/// How soon a waiter must notice a released claim: stores poll every few tens of
/// milliseconds at most.
const PROMPTLY: Duration = Duration::from_millis(500);

/// One case's store: the backend, a namespace of its own and its core.
pub struct Store {
    /// The backend under test.
    pub backend: Arc<dyn Backend>,
    /// A namespace no other test uses.
    pub namespace: Namespace,
    /// The store of [`Store::namespace`].
    pub core: Arc<dyn Core>,
    /// The scratch directory the backend was opened in.
    pub dir: PathBuf,
}

impl Store {
    /// Opens the store for `case`, or `None` to skip it.
    pub fn open(open: Open, case: &str) -> Option<Store> {
        let dir = crate::fresh_dir(&format!("contract-{case}"));
        let backend = open(&dir)?;
        let namespace = namespace(case);
        let core = backend
            .core(&namespace)
            .unwrap_or_else(|e| panic!("{case}: {} core: {e}", backend.name()));
        Some(Store {
            backend,
            namespace,
            core,
            dir,
        })
    }

    /// The core of another namespace of the same backend.
    pub fn sibling(&self, case: &str) -> Arc<dyn Core> {
        self.backend
            .core(&namespace(&format!("{case}-sibling")))
            .expect("core of a second namespace")
    }

    /// A second core of this namespace: another caller of the same function.
    pub fn another_caller(&self) -> Arc<dyn Core> {
        self.backend
            .core(&self.namespace)
            .expect("a second core of the namespace")
    }
}

fn namespace(case: &str) -> Namespace {
    Namespace::new(&crate::unique_name(&format!("contract::{case}")), None).expect("namespace")
}

/// The `n`-th key of a case.
pub fn key(n: u64) -> Key {
    Key::of(&("contract", n)).expect("key")
}

/// Claims `key`, which must be free.
#[track_caller]
pub fn claim(core: &dyn Core, key: &Key, lease: Duration) -> ClaimToken {
    match core.claim(key, lease).expect("claim") {
        Claim::Claimed(token) => token,
        Claim::Busy => panic!("a free key answered Busy to a claim"),
    }
}

#[track_caller]
fn assert_busy(core: &dyn Core, key: &Key, why: &str) {
    assert_eq!(core.claim(key, LEASE).expect("claim"), Claim::Busy, "{why}");
}

/// The completed value under `key`, if any.
#[track_caller]
pub fn completed(core: &dyn Core, key: &Key) -> Option<Vec<u8>> {
    core.get(key)
        .expect("get")
        .and_then(|entry| entry.value.as_ref().map(|v| v.to_vec()))
}

#[track_caller]
fn entry(core: &dyn Core, key: &Key) -> CacheEntry {
    core.get(key).expect("get").expect("an entry")
}

/// Whether `key` shows a live claim.
#[track_caller]
fn being_calculated(core: &dyn Core, key: &Key) -> bool {
    core.get(key)
        .expect("get")
        .is_some_and(|entry| entry.being_calculated())
}

/// `key` holds `value`, completed and unclaimed.
#[track_caller]
fn assert_completed(core: &dyn Core, key: &Key, value: &[u8]) {
    let entry = entry(core, key);
    assert!(entry.is_completed(), "{entry:?}");
    assert!(!entry.being_calculated(), "{entry:?}");
    assert_eq!(entry.claim_owner(), None, "{entry:?}");
    assert_eq!(entry.value.as_ref().map(|v| &v[..]), Some(value));
}

/// `len` bytes that repeat no short pattern.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

// --- get and put ------------------------------------------------------------------------------

/// A key never stored reads as `None`.
pub fn get_of_absent_key_is_none(open: Open) {
    let Some(s) = Store::open(open, "get_of_absent_key_is_none") else {
        return;
    };
    assert_eq!(s.core.get(&key(1)).expect("get"), None);
}

/// `put` stores a completed value that `get` returns, unclaimed and fresh.
pub fn put_then_get_returns_the_value(open: Open) {
    let Some(s) = Store::open(open, "put_then_get_returns_the_value") else {
        return;
    };
    s.core.put(&key(1), b"forty-two", None).expect("put");
    assert_completed(&*s.core, &key(1), b"forty-two");
    let entry = entry(&*s.core, &key(1));
    assert!(entry.age < Duration::from_secs(5), "{entry:?}");
    assert_eq!(entry.value.as_deref(), Some(&b"forty-two"[..]));
    assert_eq!(
        completed(&*s.another_caller(), &key(1)).as_deref(),
        Some(&b"forty-two"[..]),
        "another core of the namespace reads the same value"
    );
}

/// A second `put` replaces the value.
pub fn put_overwrites(open: Open) {
    let Some(s) = Store::open(open, "put_overwrites") else {
        return;
    };
    s.core.put(&key(1), b"first", None).expect("put");
    s.core.put(&key(1), b"second, longer", None).expect("put");
    assert_completed(&*s.core, &key(1), b"second, longer");
    s.core.put(&key(1), b"3", None).expect("put");
    assert_completed(&*s.core, &key(1), b"3");
    assert_eq!(s.core.len().expect("len"), 1);
}

/// Values come back byte for byte: empty, every byte value, 1 MiB.
pub fn values_are_bytes_exact(open: Open) {
    let Some(s) = Store::open(open, "values_are_bytes_exact") else {
        return;
    };
    let every_byte: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let values: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("one zero byte", vec![0]),
        ("every byte value", every_byte),
        ("not UTF-8", b"\xff\xfe\x00\xc3\x28 \xa0\xa1".to_vec()),
        ("1 MiB", noise(1 << 20, 7)),
    ];
    for (n, (what, value)) in values.iter().enumerate() {
        let k = key(n as u64);
        s.core.put(&k, value, None).expect("put");
        let stored = completed(&*s.core, &k).unwrap_or_else(|| panic!("{what}: not stored"));
        assert!(stored == *value, "{what}: {} bytes back", stored.len());
    }
}

// --- claims -----------------------------------------------------------------------------------

/// The first claim of a key wins; every later one, from any caller, is `Busy`.
pub fn claim_then_busy(open: Open) {
    let Some(s) = Store::open(open, "claim_then_busy") else {
        return;
    };
    let _token = claim(&*s.core, &key(1), LEASE);
    assert_busy(&*s.core, &key(1), "the same caller claims again");
    assert_busy(&*s.another_caller(), &key(1), "another caller claims");
    let _other = claim(&*s.core, &key(2), LEASE);
}

/// A claimed key never stored reads as a placeholder: being calculated, no completed value.
pub fn placeholder_is_being_calculated_without_a_value(open: Open) {
    let Some(s) = Store::open(open, "placeholder_is_being_calculated_without_a_value") else {
        return;
    };
    let token = claim(&*s.core, &key(1), LEASE);
    let placeholder = s
        .core
        .get(&key(1))
        .expect("get")
        .expect("a claimed key reads as a placeholder (waiters poll for it)");
    assert!(placeholder.being_calculated(), "{placeholder:?}");
    assert!(!placeholder.is_completed(), "{placeholder:?}");
    assert_eq!(placeholder.value.as_ref(), None);
    if let Some(owner) = placeholder.claim_owner() {
        assert_eq!(owner, token.as_str(), "the owner shown is the claim's");
    }
}

/// A claim keeps the stored value: `get` still returns it, with `being_calculated`.
pub fn claim_keeps_the_stored_value(open: Open) {
    let Some(s) = Store::open(open, "claim_keeps_the_stored_value") else {
        return;
    };
    s.core.put(&key(1), b"old", None).expect("put");
    let token = claim(&*s.core, &key(1), LEASE);
    let entry = entry(&*s.core, &key(1));
    assert!(entry.being_calculated(), "{entry:?}");
    assert!(entry.is_completed(), "{entry:?}");
    assert_eq!(entry.value.as_ref().map(|v| &v[..]), Some(&b"old"[..]));
    s.core.release(&key(1), &token).expect("release");
    assert_completed(&*s.core, &key(1), b"old");
}

/// Of 16 threads claiming one key at once, exactly one wins (over several keys, from one
/// shared core and from a core per thread).
pub fn claim_is_atomic_across_threads(open: Open) {
    const THREADS: usize = 16;
    let Some(s) = Store::open(open, "claim_is_atomic_across_threads") else {
        return;
    };
    for round in 0..6u64 {
        let k = key(round);
        if round % 3 == 2 {
            // Half the keys race against a stored value, as a refresh does.
            s.core.put(&k, b"stored", None).expect("put");
        }
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                let core = if round % 2 == 0 {
                    s.core.clone()
                } else {
                    s.another_caller()
                };
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    core.claim(&k, LEASE).expect("claim")
                })
            })
            .collect();
        let answers: Vec<Claim> = handles
            .into_iter()
            .map(|h| h.join().expect("claimer"))
            .collect();
        let winners = answers
            .iter()
            .filter(|a| matches!(a, Claim::Claimed(_)))
            .count();
        assert_eq!(winners, 1, "round {round}: {answers:?}");
        assert!(being_calculated(&*s.core, &k));
    }
}

/// `put` with the live claim's token stores the value and releases the claim.
pub fn put_with_the_live_token_releases_the_claim(open: Open) {
    let Some(s) = Store::open(open, "put_with_the_live_token_releases_the_claim") else {
        return;
    };
    let token = claim(&*s.core, &key(1), LEASE);
    s.core.put(&key(1), b"done", Some(&token)).expect("put");
    assert_completed(&*s.core, &key(1), b"done");
    let _next = claim(&*s.core, &key(1), LEASE);
}

/// `put` with another token, or none, stores the value and leaves the live claim alone: its
/// holder still releases it.
pub fn put_with_a_foreign_token_keeps_the_claim(open: Open) {
    let Some(s) = Store::open(open, "put_with_a_foreign_token_keeps_the_claim") else {
        return;
    };
    let token = claim(&*s.core, &key(1), LEASE);
    let stranger = ClaimToken::new();
    s.core
        .put(&key(1), b"by a stranger", Some(&stranger))
        .expect("put");
    let seen = entry(&*s.core, &key(1));
    assert_eq!(
        seen.value.as_ref().map(|v| &v[..]),
        Some(&b"by a stranger"[..])
    );
    assert!(
        seen.being_calculated(),
        "the holder's claim is live: {seen:?}"
    );
    assert_busy(&*s.core, &key(1), "a stranger's put left the claim");

    s.another_caller()
        .put(&key(1), b"without a token", None)
        .expect("put");
    assert_eq!(
        completed(&*s.core, &key(1)).as_deref(),
        Some(&b"without a token"[..])
    );
    assert_busy(&*s.core, &key(1), "a put without a token left the claim");

    s.core.release(&key(1), &token).expect("release");
    assert!(!being_calculated(&*s.core, &key(1)));
    assert_eq!(
        completed(&*s.core, &key(1)).as_deref(),
        Some(&b"without a token"[..]),
        "releasing keeps the value"
    );
    let _next = claim(&*s.core, &key(1), LEASE);
}

/// The put of a holder whose claim was cleared and taken by another caller stores its value
/// and leaves the new claim alone; the new holder's put releases it.
pub fn put_of_a_superseded_holder_keeps_the_new_claim(open: Open) {
    let Some(s) = Store::open(open, "put_of_a_superseded_holder_keeps_the_new_claim") else {
        return;
    };
    let other = s.another_caller();
    let first = claim(&*s.core, &key(1), LEASE);
    s.core
        .clear_being_calculated()
        .expect("clear_being_calculated");
    let second = claim(&*other, &key(1), LEASE);
    s.core.put(&key(1), b"late", Some(&first)).expect("put");
    assert_eq!(completed(&*other, &key(1)).as_deref(), Some(&b"late"[..]));
    assert_busy(
        &*other,
        &key(1),
        "the superseded holder's put left the new claim",
    );
    other.put(&key(1), b"fresh", Some(&second)).expect("put");
    assert_completed(&*other, &key(1), b"fresh");
    let _next = claim(&*s.core, &key(1), LEASE);
}

/// `release` frees the claim and keeps no placeholder claimed.
pub fn release_frees_the_claim(open: Open) {
    let Some(s) = Store::open(open, "release_frees_the_claim") else {
        return;
    };
    let token = claim(&*s.core, &key(1), LEASE);
    s.core.release(&key(1), &token).expect("release");
    assert!(!being_calculated(&*s.core, &key(1)));
    assert_eq!(completed(&*s.core, &key(1)), None);
    let _next = claim(&*s.another_caller(), &key(1), LEASE);
}

/// Releasing twice is fine, and a stale token's release leaves the next claim alone.
pub fn release_is_idempotent(open: Open) {
    let Some(s) = Store::open(open, "release_is_idempotent") else {
        return;
    };
    let token = claim(&*s.core, &key(1), LEASE);
    s.core.release(&key(1), &token).expect("release");
    s.core.release(&key(1), &token).expect("release again");
    let next = claim(&*s.another_caller(), &key(1), LEASE);
    s.core
        .release(&key(1), &token)
        .expect("release a third time");
    assert_busy(&*s.core, &key(1), "a stale release left the next claim");
    s.core.release(&key(1), &next).expect("release");
}

/// `release` with a token that is not the live claim's changes nothing.
pub fn release_with_a_wrong_token_keeps_the_claim(open: Open) {
    let Some(s) = Store::open(open, "release_with_a_wrong_token_keeps_the_claim") else {
        return;
    };
    s.core.put(&key(1), b"kept", None).expect("put");
    let _token = claim(&*s.core, &key(1), LEASE);
    s.core
        .release(&key(1), &ClaimToken::new())
        .expect("release");
    assert!(being_calculated(&*s.core, &key(1)));
    assert_busy(&*s.core, &key(1), "a wrong token's release left the claim");
    assert_eq!(completed(&*s.core, &key(1)).as_deref(), Some(&b"kept"[..]));
}

// --- leases -----------------------------------------------------------------------------------

#[track_caller]
fn assert_leased(s: &Store) {
    assert!(
        s.core.capabilities().leases,
        "{}: declared leased, yet its capabilities say no leases",
        s.backend.name()
    );
}

/// `renew` answers true to the holder and keeps the claim live past its first lease.
pub fn renew_extends_the_holders_lease(open: Open) {
    let Some(s) = Store::open(open, "renew_extends_the_holders_lease") else {
        return;
    };
    assert_leased(&s);
    let token = claim(&*s.core, &key(1), SHORT_LEASE);
    let started = Instant::now();
    while started.elapsed() < PAST_SHORT_LEASE {
        thread::sleep(SHORT_LEASE / 4);
        assert!(s.core.renew(&key(1), &token, SHORT_LEASE).expect("renew"));
    }
    assert!(being_calculated(&*s.core, &key(1)));
    assert_busy(
        &*s.core,
        &key(1),
        "a renewed claim is live after its first lease",
    );
}

/// `renew` answers false once `clear_being_calculated` dropped the claim.
pub fn renew_fails_after_clear_being_calculated(open: Open) {
    let Some(s) = Store::open(open, "renew_fails_after_clear_being_calculated") else {
        return;
    };
    assert_leased(&s);
    let token = claim(&*s.core, &key(1), LEASE);
    s.core
        .clear_being_calculated()
        .expect("clear_being_calculated");
    assert!(!s.core.renew(&key(1), &token, LEASE).expect("renew"));
    let _next = claim(&*s.core, &key(1), LEASE);
}

/// `renew` answers false to a holder whose lease lapsed and was taken over, and true to the
/// new holder.
pub fn renew_fails_after_a_takeover(open: Open) {
    let Some(s) = Store::open(open, "renew_fails_after_a_takeover") else {
        return;
    };
    assert_leased(&s);
    let first = claim(&*s.core, &key(1), SHORT_LEASE);
    thread::sleep(PAST_SHORT_LEASE);
    let second = claim(&*s.another_caller(), &key(1), LEASE);
    assert!(!s.core.renew(&key(1), &first, LEASE).expect("renew"));
    assert!(s.core.renew(&key(1), &second, LEASE).expect("renew"));
    assert_busy(&*s.core, &key(1), "the new holder's claim is live");
}

/// A lease that passes without renewal frees the key: not being calculated, claimable, its
/// waiters woken; a stored value stays.
pub fn lapsed_lease_frees_the_key(open: Open) {
    let Some(s) = Store::open(open, "lapsed_lease_frees_the_key") else {
        return;
    };
    assert_leased(&s);
    s.core.put(&key(2), b"kept", None).expect("put");
    let _abandoned = claim(&*s.core, &key(1), SHORT_LEASE);
    let _abandoned_refresh = claim(&*s.core, &key(2), SHORT_LEASE);
    let started = Instant::now();
    assert!(s.core.wait(&key(1), Duration::from_secs(10)).expect("wait"));
    assert!(
        started.elapsed() < SHORT_LEASE + Duration::from_secs(2),
        "the waiter woke {:?} after the claim, on a {SHORT_LEASE:?} lease",
        started.elapsed()
    );
    thread::sleep(PAST_SHORT_LEASE.saturating_sub(started.elapsed()));
    assert!(!being_calculated(&*s.core, &key(1)));
    assert!(!being_calculated(&*s.core, &key(2)));
    assert_eq!(completed(&*s.core, &key(2)).as_deref(), Some(&b"kept"[..]));
    let _next = claim(&*s.another_caller(), &key(1), LEASE);
    let _next_refresh = claim(&*s.another_caller(), &key(2), LEASE);
}

/// Stores whose claims last exactly as long as their holder (a process's memory, an OS file
/// lock) need no heartbeat, so nothing renews them: the renewal and lapse cases do not apply.
/// Instead, a claim taken with a short lease stays live after it passes.
pub fn claims_need_no_heartbeat(open: Open) {
    let Some(s) = Store::open(open, "claims_need_no_heartbeat") else {
        return;
    };
    assert!(
        !s.core.capabilities().leases,
        "{}: declared unleased, yet its capabilities say leases",
        s.backend.name()
    );
    let token = claim(&*s.core, &key(1), SHORT_LEASE);
    thread::sleep(PAST_SHORT_LEASE);
    assert!(being_calculated(&*s.core, &key(1)));
    assert_busy(&*s.another_caller(), &key(1), "the holder still lives");
    s.core.release(&key(1), &token).expect("release");
    let _next = claim(&*s.core, &key(1), LEASE);
}

// --- wait -------------------------------------------------------------------------------------

/// `wait` returns true at once for a key nobody claims, stored or not.
pub fn wait_without_a_claim_returns_at_once(open: Open) {
    let Some(s) = Store::open(open, "wait_without_a_claim_returns_at_once") else {
        return;
    };
    s.core.put(&key(2), b"stored", None).expect("put");
    let token = claim(&*s.core, &key(3), LEASE);
    s.core.release(&key(3), &token).expect("release");
    for n in 1..=3 {
        let started = Instant::now();
        assert!(s.core.wait(&key(n), Duration::from_secs(10)).expect("wait"));
        assert!(
            started.elapsed() < PROMPTLY,
            "key {n}: {:?}",
            started.elapsed()
        );
    }
}

/// `wait` gives up with false after `max` while the claim is held.
pub fn wait_times_out_while_claimed(open: Open) {
    let Some(s) = Store::open(open, "wait_times_out_while_claimed") else {
        return;
    };
    let _token = claim(&*s.core, &key(1), LEASE);
    let max = Duration::from_millis(300);
    let started = Instant::now();
    assert!(!s.another_caller().wait(&key(1), max).expect("wait"));
    let waited = started.elapsed();
    assert!(
        waited >= max - Duration::from_millis(5),
        "gave up after {waited:?}"
    );
    assert!(
        waited < max + Duration::from_secs(3),
        "gave up after {waited:?}"
    );
}

fn wakes_promptly(open: Open, case: &str, finish: fn(&dyn Core, &Key, &ClaimToken)) {
    let Some(s) = Store::open(open, case) else {
        return;
    };
    let token = claim(&*s.core, &key(1), LEASE);
    let holder = s.core.clone();
    let finisher = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        finish(&*holder, &key(1), &token);
        Instant::now()
    });
    assert!(s
        .another_caller()
        .wait(&key(1), Duration::from_secs(20))
        .expect("wait"));
    let woke = Instant::now();
    let finished = finisher.join().expect("finisher");
    assert!(
        woke.saturating_duration_since(finished) < PROMPTLY,
        "the waiter woke {:?} after the claim ended",
        woke.saturating_duration_since(finished)
    );
}

/// A waiter wakes with true soon after the holder releases.
pub fn wait_wakes_promptly_after_release(open: Open) {
    wakes_promptly(
        open,
        "wait_wakes_promptly_after_release",
        |core, k, token| core.release(k, token).expect("release"),
    );
}

/// A waiter wakes with true soon after the holder stores its value.
pub fn wait_wakes_promptly_after_put(open: Open) {
    wakes_promptly(open, "wait_wakes_promptly_after_put", |core, k, token| {
        core.put(k, b"done", Some(token)).expect("put")
    });
}

// --- management -------------------------------------------------------------------------------

/// `clear_cache` deletes every entry of its namespace and nothing of another.
pub fn clear_cache_is_per_namespace(open: Open) {
    let Some(s) = Store::open(open, "clear_cache_is_per_namespace") else {
        return;
    };
    let sibling = s.sibling("clear_cache_is_per_namespace");
    for n in 0..3 {
        s.core.put(&key(n), b"mine", None).expect("put");
        sibling.put(&key(n), b"theirs", None).expect("put");
    }
    let _claim = claim(&*sibling, &key(9), LEASE);
    s.core.clear_cache().expect("clear_cache");
    assert_eq!(s.core.len().expect("len"), 0);
    assert!(s.core.is_empty().expect("is_empty"));
    for n in 0..3 {
        assert_eq!(s.core.get(&key(n)).expect("get"), None, "key {n}");
        assert_eq!(
            completed(&*sibling, &key(n)).as_deref(),
            Some(&b"theirs"[..])
        );
    }
    assert!(being_calculated(&*sibling, &key(9)));
    assert_eq!(sibling.len().expect("len"), 4);
    s.core
        .put(&key(0), b"again", None)
        .expect("put after clear_cache");
    assert_completed(&*s.core, &key(0), b"again");
}

/// `remove` deletes one key's value and reports it; other keys, other namespaces and other
/// keys' claims stay; removing again, or a key never stored, reports nothing.
pub fn remove_deletes_one_entry(open: Open) {
    let Some(s) = Store::open(open, "remove_deletes_one_entry") else {
        return;
    };
    let sibling = s.sibling("remove_deletes_one_entry");
    for n in 1..=3 {
        s.core.put(&key(n), b"mine", None).expect("put");
    }
    sibling.put(&key(1), b"theirs", None).expect("put");
    let other_claim = claim(&*s.core, &key(4), LEASE);
    assert!(
        s.core.remove(&key(1)).expect("remove"),
        "a stored value is reported removed"
    );
    assert_eq!(s.core.get(&key(1)).expect("get"), None);
    assert_eq!(
        completed(&*s.another_caller(), &key(1)),
        None,
        "gone for every caller"
    );
    assert_completed(&*s.core, &key(2), b"mine");
    assert_completed(&*s.core, &key(3), b"mine");
    assert_completed(&*sibling, &key(1), b"theirs");
    assert!(
        being_calculated(&*s.core, &key(4)),
        "another key's claim stays"
    );
    assert_busy(&*s.another_caller(), &key(4), "another key's claim stays");
    assert_eq!(
        s.core.len().expect("len"),
        3,
        "two entries and a placeholder"
    );
    assert!(
        !s.core.remove(&key(1)).expect("remove again"),
        "nothing left to remove"
    );
    assert!(!s
        .core
        .remove(&key(9))
        .expect("remove of a key never stored"));
    s.core
        .put(&key(1), b"again", None)
        .expect("put after remove");
    assert_completed(&*s.core, &key(1), b"again");
    s.core.release(&key(4), &other_claim).expect("release");
}

/// `remove` under a live claim deletes the value but keeps the claim: other callers still
/// find the key busy and wait, the holder's `put` stores the new value and releases its claim,
/// so an invalidation never lets a second computation start. A placeholder (claimed, nothing
/// stored) has no value to remove.
pub fn remove_under_a_claim_keeps_the_claim(open: Open) {
    let Some(s) = Store::open(open, "remove_under_a_claim_keeps_the_claim") else {
        return;
    };
    s.core.put(&key(1), b"old", None).expect("put");
    let refresh = claim(&*s.core, &key(1), LEASE);
    let placeholder = claim(&*s.core, &key(2), LEASE);
    assert!(
        s.core.remove(&key(1)).expect("remove"),
        "the value under the claim went"
    );
    assert!(
        !s.core.remove(&key(2)).expect("remove"),
        "a placeholder holds no value"
    );
    for n in [1, 2] {
        let entry = s.core.get(&key(n)).expect("get");
        let entry = entry.unwrap_or_else(|| panic!("key {n}: the claim went with the value"));
        assert_eq!(entry.value, None, "key {n}: a value survived remove");
        assert!(entry.being_calculated(), "key {n}: {entry:?}");
        assert_busy(
            &*s.another_caller(),
            &key(n),
            "the claim stays after remove",
        );
        assert!(
            !s.another_caller()
                .wait(&key(n), Duration::from_millis(100))
                .expect("wait"),
            "key {n}: a waiter still waits for the holder"
        );
    }
    s.core.put(&key(1), b"new", Some(&refresh)).expect("put");
    s.core
        .put(&key(2), b"two", Some(&placeholder))
        .expect("put");
    assert_completed(&*s.core, &key(1), b"new");
    assert_completed(&*s.core, &key(2), b"two");
}

/// A key whose value was removed under a claim, then released, reads as a miss and can be
/// claimed: nothing of it lingers as a value or a claim.
pub fn remove_then_release_leaves_a_miss(open: Open) {
    let Some(s) = Store::open(open, "remove_then_release_leaves_a_miss") else {
        return;
    };
    s.core.put(&key(1), b"old", None).expect("put");
    let token = claim(&*s.core, &key(1), LEASE);
    assert!(s.core.remove(&key(1)).expect("remove"));
    s.core.release(&key(1), &token).expect("release");
    let seen = s.core.get(&key(1)).expect("get");
    assert!(
        seen.as_ref()
            .is_none_or(|e| !e.is_completed() && !e.being_calculated()),
        "{seen:?}"
    );
    let again = claim(&*s.another_caller(), &key(1), LEASE);
    s.core.release(&key(1), &again).expect("release");
}

/// `clear_being_calculated` drops every claim of its namespace (values stay, keys become
/// claimable) and none of another namespace.
pub fn clear_being_calculated_drops_claims_and_keeps_values(open: Open) {
    let case = "clear_being_calculated_drops_claims_and_keeps_values";
    let Some(s) = Store::open(open, case) else {
        return;
    };
    let sibling = s.sibling(case);
    s.core.put(&key(1), b"kept", None).expect("put");
    let _refresh = claim(&*s.core, &key(1), LEASE);
    let _placeholder = claim(&*s.core, &key(2), LEASE);
    let _theirs = claim(&*sibling, &key(1), LEASE);
    s.core
        .clear_being_calculated()
        .expect("clear_being_calculated");
    assert_completed(&*s.core, &key(1), b"kept");
    assert!(!being_calculated(&*s.core, &key(2)));
    assert_eq!(completed(&*s.core, &key(2)), None);
    assert!(being_calculated(&*sibling, &key(1)));
    assert_busy(&*sibling, &key(1), "another namespace's claim stays");
    let started = Instant::now();
    assert!(s.core.wait(&key(2), Duration::from_secs(10)).expect("wait"));
    assert!(
        started.elapsed() < PROMPTLY,
        "waited {:?}",
        started.elapsed()
    );
    let _next = claim(&*s.core, &key(1), LEASE);
    let _next_placeholder = claim(&*s.core, &key(2), LEASE);
}

/// `delete_stale_entries` deletes the entries older than its argument, in its namespace
/// only, and counts them.
pub fn delete_stale_entries_deletes_only_older_ones(open: Open) {
    let case = "delete_stale_entries_deletes_only_older_ones";
    let Some(s) = Store::open(open, case) else {
        return;
    };
    let sibling = s.sibling(case);
    s.core.put(&key(1), b"old", None).expect("put");
    s.core.put(&key(2), b"old", None).expect("put");
    sibling.put(&key(1), b"old", None).expect("put");
    thread::sleep(Duration::from_millis(1200));
    s.core.put(&key(3), b"new", None).expect("put");
    let deleted = s
        .core
        .delete_stale_entries(Duration::from_millis(600))
        .expect("delete_stale_entries");
    assert_eq!(deleted, 2);
    assert_eq!(s.core.get(&key(1)).expect("get"), None);
    assert_eq!(s.core.get(&key(2)).expect("get"), None);
    assert_completed(&*s.core, &key(3), b"new");
    assert_eq!(s.core.len().expect("len"), 1);
    assert_completed(&*sibling, &key(1), b"old");
    assert_eq!(
        s.core
            .delete_stale_entries(Duration::from_millis(600))
            .expect("delete_stale_entries"),
        0,
        "nothing left to delete"
    );
}

/// After `clear_cache` under live claims the values are gone, and `get` agrees with `claim`:
/// a claim that survived shows as being calculated (so `claim` is `Busy`), one that went with
/// the entries does not (so `claim` wins). The holders' puts still store.
pub fn clear_cache_under_a_claim_leaves_get_and_claim_agreeing(open: Open) {
    let Some(s) = Store::open(
        open,
        "clear_cache_under_a_claim_leaves_get_and_claim_agreeing",
    ) else {
        return;
    };
    s.core.put(&key(1), b"old", None).expect("put");
    let refresh = claim(&*s.core, &key(1), LEASE);
    let placeholder = claim(&*s.core, &key(2), LEASE);
    s.core.clear_cache().expect("clear_cache");
    for n in [1, 2] {
        let seen = s.core.get(&key(n)).expect("get");
        assert_eq!(
            seen.as_ref().and_then(|e| e.value.as_ref()),
            None,
            "key {n}: a value survived clear_cache"
        );
        let shown = seen.is_some_and(|e| e.being_calculated());
        match s.another_caller().claim(&key(n), LEASE).expect("claim") {
            Claim::Busy => assert!(
                shown,
                "key {n}: after clear_cache, claim answers Busy (the claim survived) but get \
                 shows no claim"
            ),
            Claim::Claimed(token) => {
                assert!(!shown, "key {n}: get shows a claim that claim ignores");
                s.core.release(&key(n), &token).expect("release");
            }
        }
    }
    s.core.put(&key(1), b"new", Some(&refresh)).expect("put");
    s.core
        .put(&key(2), b"two", Some(&placeholder))
        .expect("put");
    assert_completed(&*s.core, &key(1), b"new");
    assert_completed(&*s.core, &key(2), b"two");
}

/// `delete_stale_entries` keeps an old entry while it is being calculated: deleting it
/// would delete the claim with it.
pub fn delete_stale_entries_keeps_entries_being_calculated(open: Open) {
    let case = "delete_stale_entries_keeps_entries_being_calculated";
    let Some(s) = Store::open(open, case) else {
        return;
    };
    s.core.put(&key(1), b"old", None).expect("put");
    let _refresh = claim(&*s.core, &key(1), LEASE);
    let _placeholder = claim(&*s.core, &key(2), LEASE);
    thread::sleep(Duration::from_millis(1200));
    let deleted = s
        .core
        .delete_stale_entries(Duration::from_millis(600))
        .expect("delete_stale_entries");
    assert_eq!(deleted, 0);
    assert_eq!(completed(&*s.core, &key(1)).as_deref(), Some(&b"old"[..]));
    assert!(being_calculated(&*s.core, &key(1)));
    assert!(being_calculated(&*s.core, &key(2)));
    assert_busy(&*s.core, &key(1), "the refresh's claim stays");
    assert_busy(&*s.core, &key(2), "the placeholder's claim stays");
}

/// Runs `case` of a backend's contract tests. A case the backend lists among its known
/// violations must still fail (its failure is printed), so that a fix is noticed and the
/// listing removed.
pub fn run(case: &str, known_violations: &[&str], body: impl FnOnce()) {
    if !known_violations.contains(&case) {
        return body();
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    assert!(
        outcome.is_err(),
        "{case} passes now: remove it from this backend's known_violations"
    );
    eprintln!("KNOWN VIOLATION {case}: the failure above is this backend's known violation");
}

/// `len` counts entries, placeholders included; `is_empty` agrees.
pub fn len_and_is_empty(open: Open) {
    let Some(s) = Store::open(open, "len_and_is_empty") else {
        return;
    };
    assert_eq!(s.core.len().expect("len"), 0);
    assert!(s.core.is_empty().expect("is_empty"));
    for n in 0..3 {
        s.core.put(&key(n), b"v", None).expect("put");
    }
    s.core.put(&key(0), b"overwritten", None).expect("put");
    assert_eq!(s.core.len().expect("len"), 3);
    assert!(!s.core.is_empty().expect("is_empty"));
    let _refresh = claim(&*s.core, &key(0), LEASE);
    assert_eq!(s.core.len().expect("len"), 3, "a claim on a stored key");
    let _placeholder = claim(&*s.core, &key(7), LEASE);
    assert_eq!(s.core.len().expect("len"), 4, "a placeholder counts");
}

/// `entries` lists every key with its value's size and claim where the store declares
/// listing, and is unsupported where it does not.
pub fn entries_list_keys_and_sizes(open: Open) {
    let Some(s) = Store::open(open, "entries_list_keys_and_sizes") else {
        return;
    };
    let sizes = [(1u64, 10usize), (2, 0), (3, 1000)];
    for (n, size) in sizes {
        s.core.put(&key(n), &noise(size, n), None).expect("put");
    }
    let _refresh = claim(&*s.core, &key(1), LEASE);
    let _placeholder = claim(&*s.core, &key(4), LEASE);
    assert_eq!(s.core.len().expect("len"), 4);
    let mut listed = match (s.core.entries(), s.core.capabilities().listing) {
        (Ok(listed), true) => listed,
        (Err(Error::Unsupported { .. }), false) => return,
        (Ok(_), false) => panic!(
            "{}: lists entries, yet declares no listing",
            s.backend.name()
        ),
        (Err(e), _) => panic!("entries: {e}"),
    };
    listed.sort_by_key(|e| e.key.to_hex());
    let mut expected = [key(1), key(2), key(3), key(4)];
    expected.sort_by_key(|k| k.to_hex());
    assert_eq!(
        listed.iter().map(|e| e.key).collect::<Vec<_>>(),
        expected.to_vec()
    );
    for info in &listed {
        let (size, completed, being_calculated) = match info.key {
            k if k == key(1) => (10, true, true),
            k if k == key(2) => (0, true, false),
            k if k == key(3) => (1000, true, false),
            _ => (0, false, true),
        };
        assert_eq!(
            (info.size, info.completed, info.being_calculated()),
            (size, completed, being_calculated),
            "{info:?}"
        );
        assert!(info.age < Duration::from_secs(30), "{info:?}");
    }
}

/// `entries` shows the preview of the arguments that a value's envelope carries, read without
/// the value's type, and none for a value without one (the old envelope, or other bytes).
pub fn entries_show_the_previews_values_carry(open: Open) {
    use cachier_core::codec::{encode, encode_with_preview, MAX_PREVIEW_LEN};
    let Some(s) = Store::open(open, "entries_show_the_previews_values_carry") else {
        return;
    };
    let long = "é".repeat(200);
    let values = [
        (
            1,
            encode_with_preview(&"small", Some("12, \"abc\"")).expect("encode"),
        ),
        (2, encode(&"no preview").expect("encode")),
        (
            3,
            encode_with_preview(&vec![7u8; 1000], Some(long.as_str())).expect("encode"),
        ),
        (
            4,
            encode_with_preview(&vec![9u8; 100_000], Some("big")).expect("encode"),
        ),
        (5, b"garbage".to_vec()),
    ];
    for (n, value) in &values {
        s.core.put(&key(*n), value, None).expect("put");
    }
    let listed = match s.core.entries() {
        Ok(listed) => listed,
        Err(Error::Unsupported { .. }) if !s.core.capabilities().listing => return,
        Err(e) => panic!("entries: {e}"),
    };
    let preview = |n: u64| {
        listed
            .iter()
            .find(|e| e.key == key(n))
            .unwrap_or_else(|| panic!("key {n} listed: {listed:?}"))
            .preview
            .clone()
    };
    assert_eq!(preview(1).as_deref(), Some("12, \"abc\""));
    assert_eq!(preview(2), None, "the envelope without a preview");
    let cut = preview(3).expect("a long preview, cut");
    assert!(
        cut.len() <= MAX_PREVIEW_LEN && cut.starts_with("éé") && cut.ends_with('…'),
        "{cut}"
    );
    // A store that cannot read a large value's first bytes alone may leave its preview out,
    // never show another.
    assert!(matches!(preview(4).as_deref(), Some("big") | None));
    assert_eq!(preview(5), None, "bytes that are not an envelope");
    // Stored values still read whole and decode.
    let entry = s.core.get(&key(3)).expect("get").expect("stored");
    let value: Vec<u8> = cachier_core::codec::decode(entry.value.as_deref().expect("value"))
        .expect("decodes past its preview");
    assert_eq!(value, vec![7u8; 1000]);
}

/// `Backend::namespaces` lists a namespace while it has entries, or is unsupported.
pub fn namespaces_list_namespaces_with_entries(open: Open) {
    let case = "namespaces_list_namespaces_with_entries";
    let Some(s) = Store::open(open, case) else {
        return;
    };
    let listing = s.core.capabilities().listing;
    let listed = |s: &Store| match s.backend.namespaces() {
        Ok(names) => Some(names.contains(&s.namespace)),
        Err(Error::Unsupported { .. }) if !listing => None,
        Err(e) => panic!("namespaces: {e}"),
    };
    s.core.put(&key(1), b"v", None).expect("put");
    match listed(&s) {
        Some(found) => assert!(found, "a namespace with an entry is listed"),
        None => return,
    }
    s.core.clear_cache().expect("clear_cache");
    assert_eq!(
        listed(&s),
        Some(false),
        "an emptied namespace is not listed"
    );
}

// --- across processes -------------------------------------------------------------------------

/// Set in a child process of [`claim_is_atomic_across_processes`].
const CHILD_ENV: &str = "CACHIER_CONTRACT_CHILD";
const DIR_ENV: &str = "CACHIER_CONTRACT_DIR";
const NAMESPACE_ENV: &str = "CACHIER_CONTRACT_NAMESPACE";
/// Marks the children's protocol lines among the test harness's output.
const SAYS: &str = "contract-child: ";
const PROCESSES: usize = 6;
const ROUNDS: u64 = 4;

/// Kills the children still running when the parent fails.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Of several processes claiming one key at once, exactly one wins, and its claim holds
/// against the others until it releases.
///
/// The test binary is its own child: it runs this test again (`<name> --exact`) with
/// `CACHIER_CONTRACT_CHILD` set, and the child opens the same store with the same scratch directory and
/// namespace. `module` is the test's `module_path!()`, `case` its function name.
pub fn claim_is_atomic_across_processes(open: Open, module: &str, case: &str) {
    if std::env::var_os(CHILD_ENV).is_some() {
        return process_child(open);
    }
    let Some(s) = Store::open(open, case) else {
        return;
    };
    // The store exists before the race, so the children race for claims only.
    assert_eq!(s.core.len().expect("len"), 0);
    let test = match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{case}"),
        None => case.to_owned(),
    };
    let exe = std::env::current_exe().expect("the test binary");
    let (said, heard) = mpsc::channel::<(usize, String)>();
    let mut children = Children(Vec::new());
    for i in 0..PROCESSES {
        let mut child = Command::new(&exe)
            .args([&test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .env(DIR_ENV, &s.dir)
            .env(NAMESPACE_ENV, s.namespace.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a child process");
        let stdout = child.stdout.take().expect("stdout");
        let said = said.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness may have begun the line (`test <name> ... `).
                if let Some((_, words)) = line.split_once(SAYS) {
                    if said.send((i, words.to_owned())).is_err() {
                        break;
                    }
                }
            }
        });
        children.0.push(child);
    }
    let hear_all = |what: &str| -> Vec<String> {
        let mut answers = vec![None; PROCESSES];
        while answers.iter().any(Option::is_none) {
            let (i, words) = heard
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("children silent while waiting for {what}"));
            answers[i] = Some(words);
        }
        answers.into_iter().flatten().collect()
    };
    let tell_all = |children: &mut Children, line: &str| {
        for child in &mut children.0 {
            let stdin = child.stdin.as_mut().expect("stdin");
            writeln!(stdin, "{line}").expect("tell a child");
            stdin.flush().expect("flush");
        }
    };
    assert!(hear_all("ready").iter().all(|w| w == "ready"));
    for round in 0..ROUNDS {
        tell_all(&mut children, &format!("go {round}"));
        let answers = hear_all("claims");
        let winners = answers
            .iter()
            .filter(|w| **w == format!("{round} claimed"))
            .count();
        let losers = answers
            .iter()
            .filter(|w| **w == format!("{round} busy"))
            .count();
        assert_eq!(
            (winners, losers),
            (1, PROCESSES - 1),
            "round {round}: {answers:?}"
        );
        assert!(being_calculated(&*s.core, &key(round)));
        assert_busy(&*s.core, &key(round), "a child holds the claim");
    }
    tell_all(&mut children, "exit");
    assert!(hear_all("released").iter().all(|w| w == "released"));
    for child in &mut children.0 {
        drop(child.stdin.take());
        let status = child.wait().expect("wait for a child");
        assert!(status.success(), "a child failed: {status}");
    }
    for round in 0..ROUNDS {
        assert!(!being_calculated(&*s.core, &key(round)));
        let _next = claim(&*s.core, &key(round), LEASE);
    }
}

/// A child of [`claim_is_atomic_across_processes`]: claims on `go <round>`, holds its claims
/// until `exit`, then releases them.
fn process_child(open: Open) {
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("the scratch directory"));
    let name = std::env::var(NAMESPACE_ENV).expect("the namespace");
    let backend = open(&dir).expect("the child opens the store its parent opened");
    let core = backend
        .core(&Namespace::new(&name, None).expect("namespace"))
        .expect("core");
    // Connected before the race, so the race is between claims.
    assert!(core.get(&key(u64::MAX)).expect("get").is_none());
    let say = |words: &str| println!("{SAYS}{words}");
    say("ready");
    let mut held = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read from the parent");
        if let Some(round) = line.strip_prefix("go ") {
            let round: u64 = round.parse().expect("round");
            match core.claim(&key(round), LEASE).expect("claim") {
                Claim::Claimed(token) => {
                    held.push((round, token));
                    say(&format!("{round} claimed"));
                }
                Claim::Busy => say(&format!("{round} busy")),
            }
        } else if line == "exit" {
            break;
        }
    }
    for (round, token) in held {
        core.release(&key(round), &token).expect("release");
    }
    say("released");
}
