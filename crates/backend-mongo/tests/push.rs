//! The change stream cut, on a private server: frozen (`SIGSTOP`: a stream that goes silent,
//! found by the heartbeat) or killed and restarted. A near cache stops serving within the
//! heartbeat's bound and follows the other instance's writes again once the server is back.
//! Needs `CACHIER_TEST_SECANTUSD`, the path of `secantusd-py`.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use cachier_backend_mongo::MongoBackend;
use cachier_core::Backend;
use cachier_testkit::contract::push::{near_cache_follows_a_cut_channel, Cut};
use cachier_testkit::private_mongo::PrivateMongo;

fn backend(server: &PrivateMongo, heartbeat: Duration) -> Arc<dyn Backend> {
    Arc::new(
        MongoBackend::builder(server.url())
            .server_selection_timeout(Duration::from_millis(300))
            .heartbeat(heartbeat)
            .build()
            .expect("backend"),
    )
}

/// A frozen server keeps its connections open and answers nothing: only the heartbeat (the
/// default, 500 ms) finds the stream dead, within about twice the heartbeat.
#[test]
fn near_cache_stops_serving_while_the_server_is_frozen() {
    let Some(server) = PrivateMongo::start("near_cache_stops_serving_while_the_server_is_frozen")
    else {
        return;
    };
    let heartbeat = Duration::from_millis(500);
    let (a, b) = (backend(&server, heartbeat), backend(&server, heartbeat));
    near_cache_follows_a_cut_channel(
        a,
        b,
        Cut {
            cut: &mut || server.signal(libc::SIGSTOP),
            restore: &mut || server.signal(libc::SIGCONT),
            store_up: false,
            bound: Duration::from_millis(1500),
        },
    );
}

/// A killed server (its data gone with it) and one started again on the same port.
#[test]
fn near_cache_stops_serving_while_the_server_is_down() {
    let Some(server) = PrivateMongo::start("near_cache_stops_serving_while_the_server_is_down")
    else {
        return;
    };
    let server = RefCell::new(server);
    let heartbeat = Duration::from_millis(100);
    let (a, b) = {
        let server = server.borrow();
        (backend(&server, heartbeat), backend(&server, heartbeat))
    };
    near_cache_follows_a_cut_channel(
        a,
        b,
        Cut {
            cut: &mut || server.borrow_mut().stop(),
            restore: &mut || server.borrow_mut().resume(),
            store_up: false,
            bound: Duration::from_millis(400),
        },
    );
}

/// A server that cannot stream changes (a standalone one, which refuses `$changeStream` as
/// `mongod` does): near caches serve each entry for their `unwatched_ttl` only, and waiters
/// wake by polling.
#[test]
fn a_server_without_change_streams_bounds_near_entries_and_waiters_poll() {
    use cachier_core::{Claim, Key, Namespace, NearCache};
    use std::time::Instant;

    let Some(server) = PrivateMongo::start_with(
        "a_server_without_change_streams_bounds_near_entries_and_waiters_poll",
        &["--standalone"],
    ) else {
        return;
    };
    let heartbeat = Duration::from_millis(100);
    let (a, b) = (backend(&server, heartbeat), backend(&server, heartbeat));
    let name = cachier_testkit::unique_name("standalone");
    let ttl = Duration::from_millis(300);
    let f = cachier_core::memoize(&name, |x: u64| x)
        .shared_backend(a.clone())
        .near_cache(NearCache::default().unwatched_ttl(ttl))
        .build()
        .expect("build");
    let g = cachier_core::memoize(&name, |x: u64| x)
        .shared_backend(b.clone())
        .build()
        .expect("build");
    // Until the listener has learnt that the server cannot stream, nothing is served from
    // the near cache; then a value kept is served, even after another instance's overwrite.
    let started = Instant::now();
    let mut round = 0u64;
    let kept_at = loop {
        round += 1;
        g.precache_value(&1, round).expect("write");
        assert_eq!(f.call(1), round, "the store's value, read and kept");
        let kept_at = Instant::now();
        g.precache_value(&1, 1_000 + round).expect("overwrite");
        if f.call(1) == round {
            break kept_at;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the near cache never served"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // ... but for the unwatched bound only.
    loop {
        let served = f.call(1);
        if served == 1_000 + round {
            break;
        }
        assert_eq!(served, round);
        assert!(
            kept_at.elapsed() <= ttl + Duration::from_millis(200),
            "an entry served {:?} after it was read, past the bound",
            kept_at.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(kept_at.elapsed() >= ttl, "served for the bound");
    // A waiter wakes by polling.
    let ns = Namespace::new(&name, None).expect("namespace");
    let (waiter, holder) = (a.core(&ns).expect("core"), b.core(&ns).expect("core"));
    let key = Key::of(&2u64).expect("key");
    let Claim::Claimed(token) = holder.claim(&key, Duration::from_secs(10)).expect("claim") else {
        panic!("a free key is busy");
    };
    let finisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        holder.put(&key, b"done", Some(&token)).expect("put");
        Instant::now()
    });
    assert!(waiter.wait(&key, Duration::from_secs(10)).expect("wait"));
    let late = Instant::now().saturating_duration_since(finisher.join().expect("finisher"));
    assert!(
        late < Duration::from_millis(500),
        "woke {late:?} after the put"
    );
}
