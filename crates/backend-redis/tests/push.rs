//! The change channel cut, on a private `redis-server`: frozen (`SIGSTOP`, a connection that
//! dies without a word, found by the heartbeat) or killed and restarted. A near cache stops
//! serving within the heartbeat's bound and follows the other instance's writes again once
//! the server is back.

use std::sync::Arc;
use std::time::Duration;

use cachier_backend_redis::RedisBackend;
use cachier_core::Backend;
use cachier_testkit::contract::push::{near_cache_follows_a_cut_channel, Cut};
use cachier_testkit::private_redis::PrivateRedis;

fn backend(server: &PrivateRedis, heartbeat: Option<Duration>) -> Arc<dyn Backend> {
    let mut builder = RedisBackend::builder(server.url())
        .response_timeout(Duration::from_millis(300))
        .reconnect_backoff(Duration::from_millis(50));
    if let Some(heartbeat) = heartbeat {
        builder = builder.heartbeat(heartbeat);
    }
    Arc::new(builder.build().expect("backend"))
}

/// A frozen server keeps its connections open and answers nothing: only the heartbeat (the
/// default, 500 ms) finds the channel dead, within about twice the heartbeat.
#[test]
fn near_cache_stops_serving_while_the_server_is_frozen() {
    if !PrivateRedis::available("near_cache_stops_serving_while_the_server_is_frozen") {
        return;
    }
    let server = PrivateRedis::start("push-frozen", &[]);
    let (a, b) = (backend(&server, None), backend(&server, None));
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
    if !PrivateRedis::available("near_cache_stops_serving_while_the_server_is_down") {
        return;
    }
    let server = std::cell::RefCell::new(PrivateRedis::start("push-down", &[]));
    let heartbeat = Some(Duration::from_millis(100));
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

/// A user the server's ACL denies the channel: writes succeed (the scripts' publish is a
/// `pcall`), the listener never subscribes (near caches stay off), waiters still wake by
/// polling.
#[test]
fn a_user_without_the_channel_still_writes_and_waits() {
    use cachier_core::watch::Watch;
    use cachier_core::{Claim, Key, Namespace};
    use cachier_testkit::contract::push::{Heard, Recorder};

    if !PrivateRedis::available("a_user_without_the_channel_still_writes_and_waits") {
        return;
    }
    let server = PrivateRedis::start("push-acl", &[]);
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "limited",
            "on",
            ">pw",
            "~*",
            "+@all",
            "resetchannels",
        ])
        .query(&mut admin)
        .unwrap();
    let url = format!("redis://limited:pw@127.0.0.1:{}/0", server.port());
    let backend = RedisBackend::builder(url).build().unwrap();
    let ns = Namespace::new(&cachier_testkit::unique_name("acl"), None).unwrap();
    let core = backend.core(&ns).unwrap();
    let recorder = Arc::new(Recorder::default());
    let Watch::Pushed(_subscription) = core.watch(recorder.clone()).unwrap() else {
        panic!("a Redis store pushes");
    };
    let key = Key::of(&1u64).unwrap();
    core.put(&key, b"one", None)
        .expect("a write without the channel");
    assert!(core.remove(&key).unwrap());
    core.put(&key, b"two", None).unwrap();
    core.clear_cache().expect("a clear without the channel");
    let Claim::Claimed(token) = core.claim(&key, Duration::from_secs(60)).unwrap() else {
        panic!("a free key is busy");
    };
    let holder = backend.core(&ns).unwrap();
    let finisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        holder.put(&key, b"done", Some(&token)).unwrap();
    });
    assert!(
        core.wait(&key, Duration::from_secs(10)).unwrap(),
        "woken by polling"
    );
    finisher.join().unwrap();
    assert!(
        recorder
            .wait_for(0, Duration::from_secs(1), |h| *h == Heard::Connected(true))
            .is_none(),
        "the channel never comes up: {:?}",
        recorder.since(0)
    );
}
