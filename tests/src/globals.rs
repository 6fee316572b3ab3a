//! Cases that change the global settings: which are read on every call and which when a
//! function is built. Each runs under [`lock`] and restores the defaults.

use std::thread;
use std::time::Duration;

use cachier::{CallOptions, ParamsUpdate};
use parking_lot::{Mutex, MutexGuard};

use crate::backend_from_spec;
use crate::cases::numbered;
use crate::eventually;
use crate::{unique_name, Counter};

const MS: fn(u64) -> Duration = Duration::from_millis;

static LOCK: Mutex<()> = Mutex::new(());

/// Serialises global-changing tests; resets the globals when taken and when dropped.
pub struct GlobalsGuard(#[allow(dead_code)] MutexGuard<'static, ()>);

/// Takes the globals lock.
pub fn lock() -> GlobalsGuard {
    let guard = LOCK.lock();
    cachier::reset_global_params();
    GlobalsGuard(guard)
}

impl Drop for GlobalsGuard {
    fn drop(&mut self) {
        cachier::reset_global_params();
    }
}

/// `disable_caching` after a function is built: nothing is read or written until
/// `enable_caching`, and then the old entry is served again.
pub fn disable_and_enable_caching(spec: &str) {
    let calls = Counter::new();
    let f = numbered(spec, "global_disable", &calls).build().unwrap();
    let cached = f.call(1);
    cachier::disable_caching();
    assert!(!cachier::get_global_params().caching_enabled);
    let fresh = f.call(1);
    assert_ne!(fresh, cached);
    assert_ne!(
        f.call(1),
        fresh,
        "nothing is read or written while disabled"
    );
    cachier::enable_caching();
    assert_eq!(f.call(1), cached, "the old cached value is back");
}

/// A function built while caching is disabled starts caching once it is enabled.
pub fn enable_caching_after_build(spec: &str) {
    cachier::disable_caching();
    let calls = Counter::new();
    let f = numbered(spec, "enable_after_build", &calls)
        .build()
        .unwrap();
    f.call(1);
    f.call(1);
    assert_eq!(calls.get(), 2);
    cachier::enable_caching();
    f.call(1);
    f.call(1);
    assert_eq!(calls.get(), 3);
}

/// A global `stale_after` set after a function is built applies to its next call.
pub fn stale_after_applies_dynamically(spec: &str) {
    let calls = Counter::new();
    let f = numbered(spec, "global_stale_after", &calls)
        .build()
        .unwrap();
    let first = f.call(1);
    thread::sleep(MS(300));
    assert_eq!(f.call(1), first);
    cachier::set_global_params(ParamsUpdate::new().stale_after(MS(100))).unwrap();
    assert_ne!(f.call(1), first, "the global set after build applies");
}

/// A global `next_time` set after a function is built applies to its next call.
pub fn next_time_applies_dynamically(spec: &str) {
    let calls = Counter::new();
    let f = numbered(spec, "global_next_time", &calls)
        .stale_after(MS(200))
        .build()
        .unwrap();
    let first = f.call(1);
    cachier::set_global_params(ParamsUpdate::new().next_time(true)).unwrap();
    thread::sleep(MS(300));
    assert_eq!(f.call(1), first, "stale value returned");
    eventually(|| (f.call(1) != first).then_some(()));
}

/// A global `allow_none` set after a function is built applies; a per-call value wins over it.
pub fn allow_none_applies_dynamically(spec: &str) {
    let calls = Counter::new();
    let c = calls.clone();
    let f = cachier::memoize(&unique_name("global_allow_none"), move |_: u64| {
        c.bump();
        None::<u64>
    })
    .shared_backend(backend_from_spec(spec))
    .build()
    .unwrap();
    f.call(1);
    f.call(1);
    assert_eq!(calls.get(), 2);
    cachier::set_global_params(ParamsUpdate::new().allow_none(true)).unwrap();
    f.call(1);
    assert_eq!(calls.get(), 2, "global allow_none serves the stored None");
    f.call_with(1, &CallOptions::new().allow_none(false));
    assert_eq!(calls.get(), 3, "a per-call value wins over the global");
}

/// A global `wait_for_calc_timeout` set after a function is built bounds its waits.
pub fn wait_for_calc_timeout_applies_dynamically(spec: &str) {
    let calls = Counter::new();
    let c = calls.clone();
    let f = cachier::memoize(&unique_name("global_wait"), move |x: u64| {
        thread::sleep(MS(1500));
        x * 1000 + c.bump() as u64
    })
    .shared_backend(backend_from_spec(spec))
    .build()
    .unwrap();
    cachier::set_global_params(ParamsUpdate::new().wait_for_calc_timeout(MS(300))).unwrap();
    let first = {
        let f = f.clone();
        thread::spawn(move || f.call(1))
    };
    thread::sleep(MS(100));
    let second = f.call(1);
    assert_ne!(
        first.join().unwrap(),
        second,
        "the waiter gave up after the global timeout"
    );
    assert_eq!(calls.get(), 2);
}

/// `entry_size_limit` is read when the function is built; invalid globals are rejected with
/// the parameter's name.
pub fn entry_size_limit_is_read_at_build(spec: &str) {
    let err = cachier::set_global_params(ParamsUpdate::new().entry_size_limit("10XB")).unwrap_err();
    assert!(err.to_string().contains("entry_size_limit"), "{err}");
    let err = cachier::set_global_params(ParamsUpdate::new().max_workers(0)).unwrap_err();
    assert!(err.to_string().contains("max_workers"), "{err}");
    cachier::set_global_params(ParamsUpdate::new().entry_size_limit("10B")).unwrap();
    let calls = Counter::new();
    let c = calls.clone();
    let f = cachier::memoize(&unique_name("global_size"), move |_: u64| {
        c.bump();
        "y".repeat(40)
    })
    .shared_backend(backend_from_spec(spec))
    .build()
    .unwrap();
    cachier::set_global_params(ParamsUpdate::new().no_entry_size_limit()).unwrap();
    f.call(1);
    f.call(1);
    assert_eq!(calls.get(), 2, "the limit in force at build time applies");
}

/// `preview_args` is read when a function is built: entries of a function built while it is
/// off carry no preview of their arguments, and a function's own setting wins over it.
/// Previews are stored by computations and by `precache_value` alike.
pub fn preview_args_is_read_at_build(spec: &str) {
    let previews = |f: &cachier::Memoized<(u64, String), u64>| -> Vec<Option<String>> {
        let mut listed = f.core().entries().expect("entries");
        listed.sort_by_key(|e| e.preview.clone());
        listed.into_iter().map(|e| e.preview).collect()
    };
    let build = |name: &str, own: Option<bool>| {
        let memoize = cachier::memoize(&unique_name(name), |(n, _): (u64, String)| n)
            .shared_backend(backend_from_spec(spec));
        match own {
            Some(on) => memoize.preview_args(on),
            None => memoize,
        }
        .build()
        .unwrap()
    };
    let on = build("preview_default", None);
    cachier::set_global_params(ParamsUpdate::new().preview_args(false)).unwrap();
    let off = build("preview_global_off", None);
    let own = build("preview_own_on", Some(true));
    cachier::set_global_params(ParamsUpdate::new().preview_args(true)).unwrap();
    for f in [&on, &off, &own] {
        f.call((1, "one".into()));
        f.precache_value(&(2, "two".into()), 2).unwrap();
    }
    let shown = vec![
        Some(r#"1, "one""#.to_owned()),
        Some(r#"2, "two""#.to_owned()),
    ];
    assert_eq!(previews(&on), shown, "on by default");
    assert_eq!(previews(&off), vec![None, None], "off when built");
    assert_eq!(previews(&own), shown, "the function's own setting wins");
    assert_eq!(
        off.call((1, "one".into())),
        1,
        "entries without a preview are hits"
    );
}
