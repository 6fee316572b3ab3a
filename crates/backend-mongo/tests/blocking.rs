//! The blocking core called from async code, against a dead server and the MongoDB-wire server
//! in `CACHIER_TEST_MONGO_URL`.

use std::time::Duration;

use cachier_backend_mongo::MongoBackend;
use cachier_core::{Backend, Key, Namespace};

fn inside_a_runtime<T>(body: impl FnOnce() -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move { body() })
}

/// A synchronous call made from async code (a thread inside a tokio runtime) must not
/// panic with "cannot start a runtime from within a runtime".
#[test]
fn calls_work_inside_a_callers_runtime() {
    let backend = MongoBackend::builder("mongodb://127.0.0.1:1/?directConnection=true")
        .server_selection_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let core = backend
        .core(&Namespace::new("runtime::closed", None).unwrap())
        .unwrap();
    let key = Key::of(&1u8).unwrap();
    let (answer, failed) =
        inside_a_runtime(|| (backend.block_on(async { 7 }).unwrap(), core.get(&key)));
    assert_eq!(answer, 7);
    assert!(failed.unwrap_err().is_backend());

    let Some(url) = cachier_testkit::service_url(
        "CACHIER_TEST_MONGO_URL",
        "calls_work_inside_a_callers_runtime",
    ) else {
        return;
    };
    let backend = MongoBackend::builder(url)
        .collection("runtime_tests")
        .build()
        .unwrap();
    let core = backend
        .core(&Namespace::new(&format!("runtime::{}", std::process::id()), None).unwrap())
        .unwrap();
    inside_a_runtime(|| {
        core.put(&key, b"bytes", None).unwrap();
        let entry = core.get(&key).unwrap().expect("stored");
        assert_eq!(entry.value.as_ref().map(|v| &v[..]), Some(&b"bytes"[..]));
        core.clear_cache().unwrap();
        assert_eq!(core.len().unwrap(), 0);
    });
}
