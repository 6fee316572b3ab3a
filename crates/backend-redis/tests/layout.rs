//! What the store keeps on the shared server (`CACHIER_TEST_REDIS_URL`): one hash per entry
//! under the documented key, times and leases by the server's clock, TTLs only with
//! `evict_after`, listing with `SCAN` (never `KEYS`), and whatever else sits at an entry's
//! address read as a miss. (The 100,000-entry namespace is in `large_namespace.rs`.)

mod common;

use std::thread;
use std::time::Duration;

use cachier_backend_redis::RedisBackend;
use cachier_core::{Backend, Claim, EntryInfo, Key, Namespace};
use cachier_testkit::{unique_name, Counter};
use common::{command_calls, numbered, raw, shared_url, MS};

/// The layout is cachier's: one hash per entry under `{prefix}:{namespace}:{key hex}`, with
/// the value, the time by the server's clock and the completion flag; no file directory.
#[test]
fn entries_are_hashes_under_the_documented_key() {
    let Some(url) = shared_url("entries_are_hashes_under_the_documented_key") else {
        return;
    };
    let backend = RedisBackend::builder(&url)
        .prefix("cachier-test")
        .build()
        .unwrap();
    let name = unique_name("layout");
    let calls = Counter::new();
    let f = numbered(&backend, &name, &calls);
    assert_eq!(f.call(4), 4001);
    assert_eq!(f.cache_dpath(), None);
    let key = f.key(&4).unwrap();
    let redis_key = backend.redis_key(f.namespace(), &key);
    assert_eq!(redis_key, format!("cachier-test:{name}:{}", key.to_hex()));
    let mut con = raw(&url);
    let kind: String = redis::cmd("TYPE").arg(&redis_key).query(&mut con).unwrap();
    assert_eq!(kind, "hash");
    let (completed, time, claim): (String, u64, Option<String>) = redis::cmd("HMGET")
        .arg(&redis_key)
        .arg("completed")
        .arg("time")
        .arg("claim")
        .query(&mut con)
        .unwrap();
    assert_eq!(completed, "1");
    assert_eq!(claim, None, "the claim went with the result write");
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut con).unwrap();
    let server_now = secs * 1_000_000 + micros;
    assert!(
        time <= server_now && server_now - time < 5_000_000,
        "time {time} vs server {server_now}"
    );
    let ttl: i64 = redis::cmd("PTTL").arg(&redis_key).query(&mut con).unwrap();
    assert_eq!(ttl, -1, "no TTL unless evict_after is set");
    f.clear_cache().unwrap();
}

/// Values that are not ours are misses, recomputed and overwritten: undecodable bytes, a
/// garbled hash, and a non-hash key at an entry's address.
#[test]
fn garbage_at_an_entry_is_recomputed() {
    let Some(url) = shared_url("garbage_at_an_entry_is_recomputed") else {
        return;
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("garbage"), &calls);
    let mut con = raw(&url);
    let address = |x: u64| backend.redis_key(f.namespace(), &f.key(&x).unwrap());
    let (secs, _): (u64, u64) = redis::cmd("TIME").query(&mut con).unwrap();
    // 1: bytes that do not decode, marked completed and fresh.
    redis::cmd("HSET")
        .arg(address(1))
        .arg("value")
        .arg(b"\xff\x00garbage".as_slice())
        .arg("time")
        .arg(secs * 1_000_000)
        .arg("completed")
        .arg("1")
        .query::<()>(&mut con)
        .unwrap();
    // 2: a hash whose fields make no sense.
    redis::cmd("HSET")
        .arg(address(2))
        .arg("time")
        .arg("yesterday")
        .arg("lease")
        .arg("soon")
        .arg("claim")
        .arg("nobody")
        .query::<()>(&mut con)
        .unwrap();
    // 3: a string, not a hash.
    redis::cmd("SET")
        .arg(address(3))
        .arg("not a hash")
        .query::<()>(&mut con)
        .unwrap();
    for x in 1..=3u64 {
        let first = f
            .try_call(x)
            .expect("a garbage entry is a miss, not an error");
        assert_eq!(first, x * 1000 + x);
        assert_eq!(
            f.try_call(x).unwrap(),
            first,
            "the recomputed value replaced the garbage"
        );
    }
    assert_eq!(calls.get(), 3);
    assert_eq!(f.backend_error_count(), 0);
    f.clear_cache().unwrap();
}

/// A claim is a lease by the server's clock: renewed, it holds; not renewed, it lapses, and
/// a claim-only placeholder disappears with it (a crashed holder leaves nothing behind).
#[test]
fn leases_renew_and_lapse() {
    let Some(url) = shared_url("leases_renew_and_lapse") else {
        return;
    };
    let backend = RedisBackend::from_url(&url).unwrap();
    let ns = Namespace::new(&unique_name("leases"), None).unwrap();
    let core = backend.core(&ns).unwrap();
    let key = Key::of(&1u8).unwrap();
    let lease = MS(400);
    let Claim::Claimed(token) = core.claim(&key, lease).unwrap() else {
        panic!("first claim")
    };
    assert_eq!(core.claim(&key, lease).unwrap(), Claim::Busy);
    let entry = core.get(&key).unwrap().expect("placeholder");
    assert!(entry.being_calculated() && !entry.is_completed() && entry.value.is_none());
    assert_eq!(entry.claim_owner(), Some(token.as_str()));
    for _ in 0..4 {
        thread::sleep(MS(200));
        assert!(core.renew(&key, &token, lease).unwrap());
    }
    assert_eq!(
        core.claim(&key, lease).unwrap(),
        Claim::Busy,
        "renewed 800 ms past a 400 ms lease"
    );
    thread::sleep(MS(500));
    assert!(
        core.get(&key).unwrap().is_none(),
        "the lapsed placeholder expired"
    );
    let mut con = raw(&url);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(backend.redis_key(&ns, &key))
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, 0);
    let Claim::Claimed(second) = core.claim(&key, lease).unwrap() else {
        panic!("take-over")
    };
    assert!(
        !core.renew(&key, &token, lease).unwrap(),
        "the first holder lost its claim"
    );
    core.put(&key, b"v", Some(&token)).unwrap();
    assert!(
        core.get(&key).unwrap().unwrap().being_calculated(),
        "a stale token does not release"
    );
    core.put(&key, b"w", Some(&second)).unwrap();
    let entry = core.get(&key).unwrap().unwrap();
    assert!(!entry.being_calculated() && entry.is_completed());
    assert_eq!(entry.value.as_deref(), Some(b"w".as_slice()));
    core.clear_cache().unwrap();
}

/// `evict_after` sets a TTL on stored entries: the server deletes them.
#[test]
fn evict_after_expires_entries() {
    let Some(url) = shared_url("evict_after_expires_entries") else {
        return;
    };
    let backend = RedisBackend::builder(&url)
        .evict_after(MS(400))
        .build()
        .unwrap();
    let calls = Counter::new();
    let f = numbered(&backend, &unique_name("evict"), &calls);
    assert_eq!(f.call(1), 1001);
    assert_eq!(f.call(1), 1001);
    let mut con = raw(&url);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(backend.redis_key(f.namespace(), &f.key(&1).unwrap()))
        .query(&mut con)
        .unwrap();
    assert!(ttl > 0 && ttl <= 400, "PTTL {ttl}");
    thread::sleep(MS(600));
    assert_eq!(f.core().len().unwrap(), 0, "evicted by the server");
    assert_eq!(f.call(1), 1002);
}

/// Listing: namespaces come back whole from the keys, `:` and `@` included, under
/// a prefix with glob characters; a namespace that extends another's name is listed apart;
/// foreign keys under the prefix are ignored; `entries()` covers more than one SCAN batch,
/// sizes values with HSTRLEN, judges claims by the server's clock, and never uses KEYS.
#[test]
fn listing_namespaces_and_entries_on_the_server() {
    let Some(url) = shared_url("listing_namespaces_and_entries_on_the_server") else {
        return;
    };
    let prefix = format!("t[*]?{}", unique_name("listing").replace("::", "-"));
    let backend = RedisBackend::builder(&url).prefix(&prefix).build().unwrap();
    let base = Namespace::new("app::mod:fn", Some("v:2")).unwrap();
    let extended = Namespace::new(&format!("{base}:more"), None).unwrap();
    let core = backend.core(&base).unwrap();
    let extended_core = backend.core(&extended).unwrap();
    let mut con = raw(&url);
    let n = 2_500u64;
    let mut pipe = redis::pipe();
    for i in 0..n {
        let value = vec![b'v'; (i % 89) as usize];
        pipe.cmd("HSET")
            .arg(backend.redis_key(&base, &Key::of(&i).unwrap()))
            .arg("value")
            .arg(value)
            .arg("time")
            .arg(1u64)
            .arg("completed")
            .arg("1")
            .ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    extended_core
        .put(&Key::of(&1u8).unwrap(), b"other", None)
        .unwrap();
    // Not entries: a key without a key hex, and one of another prefix that starts alike.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:junk"))
        .arg("x")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}x:ns:{}", "0".repeat(64)))
        .arg("x")
        .query(&mut con)
        .unwrap();
    let keys_before = command_calls(&mut con, "keys");
    assert_eq!(
        backend.namespaces().unwrap(),
        vec![base.clone(), extended.clone()]
    );
    let entries = core.entries().unwrap();
    assert_eq!(entries.len() as u64, n, "exactly this namespace's entries");
    for e in &entries {
        assert!(
            e.completed && !e.being_calculated() && e.claim_owner().is_none(),
            "{e:?}"
        );
        assert!(
            e.age > Duration::from_secs(1_000_000),
            "stored at 1 µs after the epoch"
        );
    }
    for i in [0u64, 1, 88, 89, 2_499] {
        let key = Key::of(&i).unwrap();
        let e = entries.iter().find(|e| e.key == key).unwrap();
        assert_eq!(e.size, i % 89);
        let stored = core.get(&key).unwrap().unwrap();
        assert_eq!(e.size, stored.value.unwrap().len() as u64);
    }
    assert_eq!(extended_core.entries().unwrap().len(), 1);
    assert_eq!(
        command_calls(&mut con, "keys"),
        keys_before,
        "KEYS was never called"
    );

    // A live claim on a stored entry, then lapsed; a placeholder under a live claim.
    let key = Key::of(&5u64).unwrap();
    let fresh = Key::of(&(n + 1)).unwrap();
    let Claim::Claimed(token) = core.claim(&key, MS(300)).unwrap() else {
        panic!("claim")
    };
    let Claim::Claimed(placeholder) = core.claim(&fresh, Duration::from_secs(30)).unwrap() else {
        panic!("claim")
    };
    let listed = core.entries().unwrap();
    let find = |entries: &[EntryInfo], key| entries.iter().find(|e| e.key == key).cloned();
    let e = find(&listed, key).unwrap();
    assert!(e.being_calculated() && e.completed, "{e:?}");
    assert_eq!(e.claim_owner(), Some(token.as_str()));
    let p = find(&listed, fresh).unwrap();
    assert!(p.being_calculated() && !p.completed && p.size == 0, "{p:?}");
    assert_eq!(p.claim_owner(), Some(placeholder.as_str()));
    assert!(p.age < Duration::from_secs(60), "{p:?}");
    thread::sleep(MS(400));
    let e = find(&core.entries().unwrap(), key).unwrap();
    assert!(
        !e.being_calculated() && e.claim_owner().is_none(),
        "lapsed: {e:?}"
    );
    assert_eq!(
        e.being_calculated(),
        core.get(&key).unwrap().unwrap().being_calculated()
    );
    core.release(&fresh, &placeholder).unwrap();

    // Garbage at an entry's address is not listed (get reads it as a miss).
    let garbage = backend.redis_key(&base, &Key::of(&(n + 2)).unwrap());
    let _: () = redis::cmd("SET")
        .arg(&garbage)
        .arg("x")
        .query(&mut con)
        .unwrap();
    assert_eq!(core.entries().unwrap().len() as u64, n);

    core.clear_cache().unwrap();
    extended_core.clear_cache().unwrap();
    assert!(core.entries().unwrap().is_empty());
    assert_eq!(backend.namespaces().unwrap(), vec![]);
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:junk"))
        .arg(format!("{prefix}x:ns:{}", "0".repeat(64)))
        .query(&mut con)
        .unwrap();
}
