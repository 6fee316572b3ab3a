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
