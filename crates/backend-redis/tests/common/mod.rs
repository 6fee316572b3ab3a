//! Helpers shared by the integration tests against real Redis servers: the shared one at
//! `CACHIER_TEST_REDIS_URL`, and private `redis-server` processes (`PrivateRedis`).
#![allow(dead_code)] // each test file uses some of them

use std::time::Duration;

use cachier_backend_redis::RedisBackend;
use cachier_core::{memoize, Memoized};
use cachier_testkit::{service_url, Counter};

pub const MS: fn(u64) -> Duration = Duration::from_millis;

/// The shared server, or `None` (a SKIPPED line; a failure when services are required).
pub fn shared_url(test: &str) -> Option<String> {
    service_url("CACHIER_TEST_REDIS_URL", test)
}

/// A plain connection to `url`, to read or plant what the store keeps there.
pub fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .expect("client")
        .get_connection()
        .expect("connect to the test server")
}

/// `f(x) = x * 1000 + n`, `n` counting computations, on `backend`.
pub fn numbered(backend: &RedisBackend, name: &str, calls: &Counter) -> Memoized<u64, u64> {
    let calls = calls.clone();
    memoize(name, move |x: u64| x * 1000 + calls.bump() as u64)
        .backend(backend.clone())
        .build()
        .expect("build")
}

/// Calls of one command so far, from `INFO commandstats` (0 when never called).
pub fn command_calls(con: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}
