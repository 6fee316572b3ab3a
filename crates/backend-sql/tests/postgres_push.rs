//! PostgreSQL's change channel cut: the listener's connection ended by the server
//! (`pg_terminate_backend`, found by its `application_name`) while another instance writes. A
//! near cache serves nothing it kept once the channel is down, and follows the other
//! instance's writes again once the listener is back. A namespace too long for a notification
//! stays unwatched.
#![cfg(feature = "postgres")]

use std::sync::Arc;
use std::time::Duration;

use cachier_backend_sql::SqlBackend;
use cachier_core::watch::Watch;
use cachier_core::{Backend, Key, Namespace};
use cachier_testkit::contract::push::{near_cache_follows_a_cut_channel, Cut, Recorder};
use cachier_testkit::{service_url, unique_name};

fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

#[test]
fn near_cache_stops_serving_when_its_listener_is_terminated() {
    let Some(url) = service_url("CACHIER_TEST_POSTGRES_URL", "postgres push cut") else {
        return;
    };
    let app = format!("cachier-push-{}", std::process::id());
    let a: Arc<dyn Backend> = Arc::new(
        SqlBackend::builder(&with_param(&url, &format!("application_name={app}")))
            .unwrap()
            .heartbeat(Duration::from_millis(100))
            .build()
            .unwrap(),
    );
    let b: Arc<dyn Backend> = Arc::new(SqlBackend::postgres(&url).unwrap());
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).expect("raw connection");
    let listener = format!("{app}-listen");
    near_cache_follows_a_cut_channel(
        a,
        b,
        Cut {
            cut: &mut || {
                let ended = raw
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                        &[&listener],
                    )
                    .expect("terminate the listener");
                assert_eq!(ended.len(), 1, "one listener connection");
            },
            restore: &mut || {},
            store_up: true,
            bound: Duration::from_millis(400),
        },
    );
}

/// The listener's server process frozen (`SIGSTOP`, the test running as root or as the
/// server's user on its machine): the connection stays open and answers nothing, so only the
/// heartbeat (the default, 500 ms) finds the channel dead, within about twice the heartbeat,
/// and the listener listens again on a new connection while the old one is still frozen.
#[test]
fn near_cache_stops_serving_when_its_listener_is_frozen() {
    let Some(url) = service_url("CACHIER_TEST_POSTGRES_URL", "postgres push frozen") else {
        return;
    };
    let app = format!("cachier-frozen-{}", std::process::id());
    let a: Arc<dyn Backend> = Arc::new(
        SqlBackend::builder(&with_param(&url, &format!("application_name={app}")))
            .unwrap()
            .build()
            .unwrap(),
    );
    let b: Arc<dyn Backend> = Arc::new(SqlBackend::postgres(&url).unwrap());
    let mut raw = postgres::Client::connect(&url, postgres::NoTls).expect("raw connection");
    let listener = format!("{app}-listen");
    /// Continues the frozen process however the test ends.
    struct Thaw(std::cell::Cell<Option<i32>>);
    impl Drop for Thaw {
        fn drop(&mut self) {
            if let Some(pid) = self.0.take() {
                signal(pid, libc::SIGCONT);
            }
        }
    }
    fn signal(pid: i32, signal: libc::c_int) -> bool {
        // SAFETY: kill(2) on a process id read from the server; no memory is passed.
        unsafe { libc::kill(pid, signal) == 0 }
    }
    let frozen = Thaw(std::cell::Cell::new(None));
    // Whether this test may signal the server's processes at all.
    let own: i32 = raw
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    if !signal(own, 0) {
        println!("SKIPPED near_cache_stops_serving_when_its_listener_is_frozen: cannot signal the server's processes (not root or its user, or another machine)");
        return;
    }
    near_cache_follows_a_cut_channel(
        a,
        b,
        Cut {
            cut: &mut || {
                let row = raw
                    .query_one(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                        &[&listener],
                    )
                    .expect("the listener's process");
                let pid: i32 = row.get(0);
                assert!(signal(pid, libc::SIGSTOP), "SIGSTOP {pid}");
                frozen.0.set(Some(pid));
            },
            // The frozen process stays frozen until the end: the listener must not need it.
            restore: &mut || {},
            store_up: true,
            bound: Duration::from_millis(1500),
        },
    );
    drop(frozen);
}

#[test]
fn a_namespace_too_long_for_a_notification_is_unwatched() {
    let Some(url) = service_url("CACHIER_TEST_POSTGRES_URL", "postgres push long name") else {
        return;
    };
    let backend = SqlBackend::postgres(&url).unwrap();
    let long = format!("{}-{}", unique_name("long"), "n".repeat(8000));
    let core = backend.core(&Namespace::new(&long, None).unwrap()).unwrap();
    let watch = core.watch(Arc::new(Recorder::default())).unwrap();
    assert!(matches!(watch, Watch::Unwatched), "{watch:?}");
    // Its writes do not notify (the payload would be refused) and succeed.
    let key = Key::of(&1u64).unwrap();
    core.put(&key, b"value", None).unwrap();
    assert!(core.remove(&key).unwrap());
    core.put(&key, b"value", None).unwrap();
    core.clear_cache().unwrap();
    assert!(core.get(&key).unwrap().is_none());
    // A short one of the same backend is pushed.
    let short = backend
        .core(&Namespace::new(&unique_name("short"), None).unwrap())
        .unwrap();
    let watch = short.watch(Arc::new(Recorder::default())).unwrap();
    assert!(matches!(watch, Watch::Pushed(_)), "{watch:?}");
}
