//! The core of the conformance behaviour through `#[cachier(...)]`: on the memory backend,
//! and on the default file backend (feature `file`) with a temporary `cache_dir`.
#![cfg(feature = "macros")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use cachier::{cachier, CallOptions};

/// A call counter per memoized function (items cannot capture).
struct Calls(AtomicUsize);

impl Calls {
    const fn new() -> Self {
        Calls(AtomicUsize::new(0))
    }
    fn bump(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) as u64 + 1
    }
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

mod memory {
    use super::*;

    static SQUARE: Calls = Calls::new();

    /// Every computation returns a new value: `x * 1000 + n`.
    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn numbered(x: u64) -> u64 {
        x * 1000 + SQUARE.bump()
    }

    #[test]
    fn hit_after_miss_and_different_args() {
        let first = numbered(7);
        assert_eq!(numbered(7), first);
        let other = numbered(8);
        assert_ne!(other, first);
        assert_eq!(numbered(8), other);
        assert_eq!(numbered(7), first);
        assert_eq!(SQUARE.get(), 2);
    }

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn greet(name: String, times: u8) -> String {
        name.repeat(usize::from(times))
    }

    #[cachier(
        backend = cachier::backends::memory::MemoryBackend::new(),
        preview_args = false
    )]
    fn sign(secret: String) -> usize {
        secret.len()
    }

    /// Entries keep a preview of their arguments, written like a call's, unless the function
    /// says `preview_args = false`.
    #[test]
    fn entries_preview_their_arguments_unless_told_not_to() {
        greet("ab".into(), 2);
        let listed = greet_cache().unwrap().core().entries().unwrap();
        assert_eq!(listed[0].preview.as_deref(), Some(r#""ab", 2"#));
        sign("s3cret".into());
        let listed = sign_cache().unwrap().core().entries().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].preview, None);
        assert_eq!(sign("s3cret".into()), 6, "a hit all the same");
    }

    static TOTALS: Calls = Calls::new();

    /// A `HashMap` argument: equal maps are one key, whatever order each iterates in.
    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn total(prices: std::collections::HashMap<String, u64>) -> u64 {
        TOTALS.bump();
        prices.values().sum()
    }

    /// A `HashSet` argument is accepted with a key function that orders it.
    #[cachier(
        backend = cachier::backends::memory::MemoryBackend::new(),
        key = |(ids,): &(std::collections::HashSet<u32>,)| ids.iter().copied().collect::<std::collections::BTreeSet<u32>>()
    )]
    fn count(ids: std::collections::HashSet<u32>) -> usize {
        ids.len()
    }

    #[test]
    fn hash_map_arguments_have_one_key() {
        let entries = || (0..40u64).map(|i| (format!("item{i}"), i));
        let mut maps: Vec<std::collections::HashMap<String, u64>> = Vec::new();
        for _ in 0..8 {
            let mut map = std::collections::HashMap::new();
            map.extend(entries());
            maps.push(map);
        }
        let orders: std::collections::BTreeSet<Vec<String>> =
            maps.iter().map(|m| m.keys().cloned().collect()).collect();
        assert!(orders.len() > 1, "the maps iterate in different orders");
        for map in maps {
            assert_eq!(total(map), (0..40).sum::<u64>());
        }
        assert_eq!(TOTALS.get(), 1, "one computation for equal maps");
        assert_eq!(count((0..5).collect()), 5);
        assert_eq!(count((0..5).rev().collect()), 5);
        assert_eq!(count_cache().unwrap().stats().misses, 1);
    }

    static INVALIDATED: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn invalidated(x: u64, label: String) -> String {
        format!("{label}{x}-{}", INVALIDATED.bump())
    }

    #[test]
    fn invalidate_through_the_handle_recomputes_one_entry() {
        let one = invalidated(1, "a".into());
        let two = invalidated(2, "a".into());
        let cache = invalidated_cache().unwrap();
        assert!(cache.invalidate(&(1, "a".into())).unwrap());
        assert!(!cache.invalidate(&(1, "a".into())).unwrap());
        assert!(!cache.invalidate(&(1, "b".into())).unwrap(), "never cached");
        assert_eq!(invalidated(2, "a".into()), two, "other entries stay");
        assert_ne!(invalidated(1, "a".into()), one, "computed again");
        assert_eq!(INVALIDATED.get(), 3);
    }

    static JOINED: Calls = Calls::new();

    /// Several arguments of several types are one key; patterns work in the signature.
    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn joined(name: String, (a, b): (u32, u32), mut list: Vec<i64>) -> String {
        JOINED.bump();
        list.sort();
        format!("{name}-{}-{list:?}", a + b)
    }

    #[test]
    fn several_arguments_form_the_key() {
        assert_eq!(joined("x".into(), (1, 2), vec![3, 1]), "x-3-[1, 3]");
        assert_eq!(joined("x".into(), (1, 2), vec![3, 1]), "x-3-[1, 3]");
        assert_eq!(JOINED.get(), 1);
        assert_eq!(joined("x".into(), (2, 1), vec![3, 1]), "x-3-[1, 3]");
        assert_eq!(JOINED.get(), 2, "the tuple (2, 1) is another key");
        let handle = joined_cache().unwrap();
        assert_eq!(
            handle.key(&("x".into(), (1, 2), vec![3, 1])).unwrap(),
            cachier::store::Key::of(&("x", (1u32, 2u32), vec![3i64, 1])).unwrap(),
            "the key is the hash of the argument tuple"
        );
    }

    static STALE: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new(), stale_after = "400ms")]
    fn stale(x: u64) -> u64 {
        x * 1000 + STALE.bump()
    }

    #[test]
    fn stale_after_recomputes() {
        let first = stale(1);
        assert_eq!(stale(1), first);
        thread::sleep(Duration::from_millis(500));
        let second = stale(1);
        assert_ne!(second, first, "a stale entry is recomputed");
        assert_eq!(stale(1), second);
        assert_eq!(STALE.get(), 2);
    }

    static NEXT: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new(), stale_after = "100ms", next_time)]
    fn next(x: u64) -> u64 {
        x * 1000 + NEXT.bump()
    }

    #[test]
    fn next_time_serves_stale_and_refreshes() {
        let first = next(1);
        thread::sleep(Duration::from_millis(200));
        assert_eq!(next(1), first, "the stale value is served at once");
        let mut refreshed = first;
        for _ in 0..100 {
            thread::sleep(Duration::from_millis(10));
            refreshed = next(1);
            if refreshed != first {
                break;
            }
        }
        assert_ne!(refreshed, first, "the background refresh landed");
        assert_eq!(NEXT.get(), 2);
    }

    static NONE: Calls = Calls::new();
    static NONE_ALLOWED: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn maybe(x: u64) -> Option<u64> {
        NONE.bump();
        (x > 10).then_some(x)
    }

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new(), allow_none)]
    fn maybe_allowed(x: u64) -> Option<u64> {
        NONE_ALLOWED.bump();
        (x > 10).then_some(x)
    }

    #[test]
    fn none_is_served_only_with_allow_none() {
        assert_eq!(maybe(1), None);
        assert_eq!(maybe(1), None);
        assert_eq!(NONE.get(), 2, "a cached None is not served by default");
        assert_eq!(maybe(11), Some(11));
        assert_eq!(maybe(11), Some(11));
        assert_eq!(NONE.get(), 3, "Some is cached");

        assert_eq!(maybe_allowed(1), None);
        assert_eq!(maybe_allowed(1), None);
        assert_eq!(NONE_ALLOWED.get(), 1, "allow_none serves the cached None");
    }

    static FALLIBLE: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn parse(text: String) -> Result<u64, String> {
        FALLIBLE.bump();
        text.parse().map_err(|_| format!("not a number: {text}"))
    }

    #[test]
    fn errors_are_not_cached() {
        assert!(parse("x".into()).is_err());
        assert!(parse("x".into()).is_err());
        assert_eq!(FALLIBLE.get(), 2, "an Err is returned and never cached");
        assert_eq!(parse("12".into()), Ok(12));
        assert_eq!(parse("12".into()), Ok(12));
        assert_eq!(FALLIBLE.get(), 3, "Ok is cached");
    }

    static IO: Calls = Calls::new();

    /// Any `...::Result<T>` alias is fallible too.
    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn io_result(fail: bool) -> std::io::Result<u64> {
        IO.bump();
        if fail {
            Err(std::io::Error::other("no"))
        } else {
            Ok(5)
        }
    }

    #[test]
    fn result_aliases_are_fallible() {
        assert!(io_result(true).is_err());
        assert!(io_result(true).is_err());
        assert_eq!(io_result(false).unwrap(), 5);
        assert_eq!(io_result(false).unwrap(), 5);
        assert_eq!(IO.get(), 3);
    }

    static SLOW: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn slow(x: u64) -> u64 {
        thread::sleep(Duration::from_millis(200));
        x * 1000 + SLOW.bump()
    }

    #[test]
    fn concurrent_threads_compute_once() {
        let barrier = Arc::new(Barrier::new(8));
        let results: Vec<u64> = (0..8)
            .map(|_| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    slow(3)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(results.iter().all(|r| *r == results[0]), "{results:?}");
        assert_eq!(
            SLOW.get(),
            1,
            "one computation for eight concurrent callers"
        );
    }

    static MANAGED: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    fn managed(x: u64) -> u64 {
        x * 1000 + MANAGED.bump()
    }

    #[test]
    fn management_calls() {
        let cache = managed_cache().expect("built");
        assert_eq!(
            cache.cache_dpath(),
            None,
            "the memory backend has no directory"
        );
        assert!(cache
            .namespace()
            .to_string()
            .ends_with("macro::memory::managed"));

        let first = managed(1);
        cache.clear_cache().unwrap();
        let second = managed(1);
        assert_ne!(second, first, "clear_cache forgets every entry");
        assert_eq!(MANAGED.get(), 2);

        assert_eq!(cache.precache_value(&(2,), 42).unwrap(), 42);
        assert_eq!(managed(2), 42, "a precached value is served");
        assert_eq!(MANAGED.get(), 2);

        let skipped = cache.call_with((2,), &CallOptions::new().skip_cache(true));
        assert_ne!(skipped, 42, "skip_cache computes");
        assert_eq!(managed(2), 42, "and stores nothing");
        let overwritten = cache.call_with((2,), &CallOptions::new().overwrite_cache(true));
        assert_ne!(overwritten, 42);
        assert_eq!(
            managed(2),
            overwritten,
            "overwrite_cache stores the new value"
        );
        assert_eq!(MANAGED.get(), 4);

        cache.clear_being_calculated().unwrap();
        assert_eq!(managed(2), overwritten);
    }

    static KEYED: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new(), key = |(id, _): &(u32, String)| *id)]
    fn keyed(id: u32, noise: String) -> u32 {
        KEYED.bump();
        drop(noise);
        id * 2
    }

    #[test]
    fn key_function_picks_the_arguments_that_matter() {
        assert_eq!(keyed(3, "a".into()), 6);
        assert_eq!(keyed(3, "different".into()), 6);
        assert_eq!(KEYED.get(), 1);
        assert_eq!(keyed(4, "a".into()), 8);
        assert_eq!(KEYED.get(), 2);
    }

    static SIZED: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new(), entry_size_limit = "16B")]
    fn sized(len: usize) -> Vec<u8> {
        SIZED.bump();
        vec![7; len]
    }

    #[test]
    fn entry_size_limit_skips_large_values() {
        assert_eq!(sized(4).len(), 4);
        assert_eq!(sized(4).len(), 4);
        assert_eq!(SIZED.get(), 1, "a small value is cached");
        assert_eq!(sized(100).len(), 100);
        assert_eq!(sized(100).len(), 100);
        assert_eq!(
            SIZED.get(),
            3,
            "a value over the limit is returned, not stored"
        );
    }

    static ALL: Calls = Calls::new();

    /// Every parameter at once compiles and works.
    #[cachier(
        name = "macro-tests::all-params",
        version = "2",
        shared_backend = std::sync::Arc::new(cachier::backends::memory::MemoryBackend::new()),
        stale_after = "1h",
        next_time = false,
        wait_for_calc_timeout = "5s",
        allow_none = false,
        entry_size_limit = 1_000_000,
        cleanup_stale,
        cleanup_interval = "1d",
        lease = "10s",
    )]
    fn all_params(x: u64) -> u64 {
        ALL.bump();
        x + 1
    }

    #[test]
    fn every_parameter() {
        assert_eq!(all_params(1), 2);
        assert_eq!(all_params(1), 2);
        assert_eq!(ALL.get(), 1);
        let cache = all_params_cache().unwrap();
        let namespace = cache.namespace().to_string();
        assert!(
            namespace.contains("macro-tests::all-params") && namespace.contains('2'),
            "name and version make the namespace: {namespace}"
        );
    }

    static NO_ARGS: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    pub fn no_args() -> u64 {
        NO_ARGS.bump() + 100
    }

    #[test]
    fn zero_argument_function() {
        let first = no_args();
        assert_eq!(no_args(), first);
        assert_eq!(NO_ARGS.get(), 1);
        no_args_cache().unwrap().clear_cache().unwrap();
        assert_ne!(no_args(), first);
    }

    static BROKEN: Calls = Calls::new();

    /// A zero lease is refused when the function is built (at run time, as it is an
    /// expression): the function runs uncached and never panics.
    #[cachier(backend = cachier::backends::memory::MemoryBackend::new(), lease = Duration::ZERO)]
    fn broken(x: u64) -> u64 {
        x * 1000 + BROKEN.bump()
    }

    #[test]
    fn a_build_failure_runs_uncached() {
        let first = broken(1);
        let second = broken(1);
        assert_ne!(first, second, "uncached: computed every time");
        assert_eq!(BROKEN.get(), 2);
        let error = broken_cache().unwrap_err();
        assert!(error.to_string().contains("lease"), "{error}");
        assert!(broken_cache().is_err(), "the error is returned again");
    }

    #[test]
    fn same_named_functions_in_blocks_of_one_module_do_not_share() {
        static A: Calls = Calls::new();
        static B: Calls = Calls::new();
        let a = {
            #[cachier(backend = cachier::backends::memory::MemoryBackend::global())]
            fn in_block(x: u64) -> u64 {
                A.bump();
                x + 1
            }
            (in_block(1), in_block(1), in_block_cache().is_ok())
        };
        let b = {
            #[cachier(backend = cachier::backends::memory::MemoryBackend::global())]
            fn in_block(x: u64) -> u64 {
                B.bump();
                x + 2
            }
            (in_block(1), in_block(1), in_block_cache().is_ok())
        };
        assert_eq!((a.0, a.1), (2, 2));
        assert_eq!((b.0, b.1), (3, 3), "never the other function's entries");
        assert_eq!(
            a.2 as u8 + b.2 as u8,
            1,
            "the second one is refused a cache"
        );
        assert_eq!(A.get() + B.get(), 3, "one of them cached, the other not");
    }
}

/// Two functions named `twin` in two modules, on one store.
mod first {
    use super::Calls;
    pub static CALLS: Calls = Calls::new();
    #[cachier::cachier(backend = cachier::backends::memory::MemoryBackend::global())]
    pub fn twin(x: u64) -> u64 {
        CALLS.bump();
        x + 1
    }
}

mod second {
    use super::Calls;
    pub static CALLS: Calls = Calls::new();
    #[cachier::cachier(backend = cachier::backends::memory::MemoryBackend::global())]
    pub fn twin(x: u64) -> u64 {
        CALLS.bump();
        x + 2
    }
}

#[test]
fn same_named_functions_in_different_modules_do_not_share() {
    assert_eq!(first::twin(1), 2);
    assert_eq!(second::twin(1), 3);
    assert_eq!(first::twin(1), 2);
    assert_eq!(second::twin(1), 3);
    assert_eq!((first::CALLS.get(), second::CALLS.get()), (1, 1));
    let (a, b) = (
        first::twin_cache().unwrap().namespace().to_string(),
        second::twin_cache().unwrap().namespace().to_string(),
    );
    assert!(a.ends_with("macro::first::twin"), "{a}");
    assert!(b.ends_with("macro::second::twin"), "{b}");
}

/// An explicit `name` shares a cache on purpose.
mod named {
    use super::cachier;
    #[cachier(name = "macro-tests::shared-name", backend = cachier::backends::memory::MemoryBackend::global())]
    pub fn plus_one(x: u64) -> u64 {
        x + 1
    }
    #[cachier(name = "macro-tests::shared-name", backend = cachier::backends::memory::MemoryBackend::global())]
    pub fn plus_hundred(x: u64) -> u64 {
        x + 100
    }
}

#[test]
fn an_explicit_name_shares_on_purpose() {
    assert_eq!(named::plus_one(1), 2);
    assert_eq!(named::plus_hundred(1), 2, "same namespace, same entry");
}

mod methods {
    use super::*;

    static PRICE: Calls = Calls::new();

    #[derive(Clone)]
    pub struct Shop {
        pub id: u32,
        pub margin: u64,
    }

    impl Shop {
        /// Shared by every shop: `self` is not part of the key.
        #[cachier(allow_non_static_methods, backend = cachier::backends::memory::MemoryBackend::new())]
        pub fn price(&self, cost: u64) -> u64 {
            PRICE.bump();
            cost + self.margin
        }
    }

    #[test]
    fn a_method_with_opt_in_shares_across_instances() {
        let a = Shop { id: 1, margin: 10 };
        let b = Shop { id: 2, margin: 20 };
        assert_eq!(a.price(100), 110);
        assert_eq!(a.price(100), 110);
        assert_eq!(
            b.price(100),
            110,
            "b gets a's entry: one cache for all instances"
        );
        assert_eq!(PRICE.get(), 1);
        assert_eq!(b.price(5), 25, "a miss runs with the calling instance");
        assert_eq!(PRICE.get(), 2);

        let cache = Shop::price_cache().unwrap();
        assert!(
            cache
                .namespace()
                .to_string()
                .ends_with("macro::methods::Shop::price"),
            "{}",
            cache.namespace()
        );
        assert_eq!(
            b.price_call_with((100,), &CallOptions::new().skip_cache(true)),
            120
        );
        assert_eq!(a.price_precache((7,), 1).unwrap(), 1);
        assert_eq!(b.price(7), 1);
        assert!(
            a.price_invalidate((7,)).unwrap(),
            "the precached entry goes"
        );
        assert!(!b.price_invalidate((7,)).unwrap());
        assert_eq!(b.price(7), 27);
        assert_eq!(PRICE.get(), 4, "computed again after the invalidation");
        cache.clear_cache().unwrap();
        assert_eq!(b.price(100), 120);
        assert_eq!(PRICE.get(), 5);
        assert_eq!(a.id + b.id, 3);
    }

    static LOAD: Calls = Calls::new();
    static OTHER_LOAD: Calls = Calls::new();

    pub struct Config;
    pub struct Other;

    /// `#[cachier]` on the impl lets associated functions without `self` be memoized.
    #[cachier]
    impl Config {
        #[cachier(backend = cachier::backends::memory::MemoryBackend::global())]
        pub fn load(id: u32) -> String {
            LOAD.bump();
            format!("config-{id}")
        }

        pub fn plain() -> u32 {
            1
        }
    }

    #[cachier]
    impl Other {
        #[cachier(backend = cachier::backends::memory::MemoryBackend::global())]
        pub fn load(id: u32) -> String {
            OTHER_LOAD.bump();
            format!("other-{id}")
        }
    }

    #[test]
    fn associated_functions_in_a_cachier_impl() {
        assert_eq!(Config::load(1), "config-1");
        assert_eq!(Config::load(1), "config-1");
        assert_eq!(
            Other::load(1),
            "other-1",
            "the type is part of the namespace"
        );
        assert_eq!(Other::load(1), "other-1");
        assert_eq!((LOAD.get(), OTHER_LOAD.get()), (1, 1));
        assert_eq!(Config::plain(), 1);
        assert!(Config::load_cache()
            .unwrap()
            .namespace()
            .to_string()
            .ends_with("macro::methods::Config::load"));
    }
}

#[cfg(feature = "async")]
mod asynchronous {
    use super::*;

    static HIT: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    async fn fetch(x: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        x * 1000 + HIT.bump()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn async_hit_after_miss() {
        let first = fetch(1).await;
        assert_eq!(fetch(1).await, first);
        assert_ne!(fetch(2).await, first);
        assert_eq!(HIT.get(), 2);
        let cache = fetch_cache().unwrap();
        cache.clear_cache().await.unwrap();
        assert_ne!(fetch(1).await, first);
        assert_eq!(cache.precache_value(&(9,), 5).await.unwrap(), 5);
        assert_eq!(fetch(9).await, 5);
        let skipped = cache
            .call_with((9,), &CallOptions::new().skip_cache(true))
            .await;
        assert_ne!(skipped, 5);
        assert_eq!(HIT.get(), 4);
    }

    static FLIGHT: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    async fn single_flight(x: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        x * 1000 + FLIGHT.bump()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn async_concurrent_calls_compute_once() {
        let tasks: Vec<_> = (0..8).map(|_| tokio::spawn(single_flight(4))).collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        assert!(results.iter().all(|r| *r == results[0]), "{results:?}");
        assert_eq!(FLIGHT.get(), 1);
    }

    static ASYNC_ERR: Calls = Calls::new();

    #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
    async fn async_parse(text: String) -> Result<u64, String> {
        ASYNC_ERR.bump();
        text.parse().map_err(|_| text)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn async_errors_are_not_cached() {
        assert!(async_parse("x".into()).await.is_err());
        assert!(async_parse("x".into()).await.is_err());
        assert_eq!(async_parse("3".into()).await, Ok(3));
        assert_eq!(async_parse("3".into()).await, Ok(3));
        assert_eq!(ASYNC_ERR.get(), 3);
    }

    static ASYNC_METHOD: Calls = Calls::new();

    #[derive(Clone)]
    struct Client {
        base: u64,
    }

    impl Client {
        #[cachier(allow_non_static_methods, backend = cachier::backends::memory::MemoryBackend::new())]
        async fn get(&self, x: u64) -> u64 {
            ASYNC_METHOD.bump();
            self.base + x
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn async_method_shares_across_instances() {
        let a = Client { base: 10 };
        let b = Client { base: 20 };
        assert_eq!(a.get(1).await, 11);
        assert_eq!(b.get(1).await, 11);
        assert_eq!(ASYNC_METHOD.get(), 1);
        assert_eq!(b.get_precache((2,), 0).await.unwrap(), 0);
        assert_eq!(a.get(2).await, 0);
        assert_eq!(
            a.get_call_with((2,), &CallOptions::new().overwrite_cache(true))
                .await,
            12
        );
        assert_eq!(b.get(2).await, 12);
        assert_eq!(ASYNC_METHOD.get(), 2);
        assert!(b.get_invalidate((2,)).await.unwrap());
        assert_eq!(a.get(2).await, 12);
        assert_eq!(
            ASYNC_METHOD.get(),
            3,
            "computed again after the invalidation"
        );
    }
}

#[cfg(feature = "file")]
mod file {
    use super::*;
    use std::path::PathBuf;

    fn temp_dir(case: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "cachier-macro-{case}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    fn dir() -> PathBuf {
        DIR.get_or_init(|| temp_dir("file")).clone()
    }

    static FILE: Calls = Calls::new();

    /// The default backend (files) in a directory of our own.
    #[cachier(cache_dir = dir())]
    fn on_disk(x: u64) -> u64 {
        x * 1000 + FILE.bump()
    }

    static SEPARATE: Calls = Calls::new();

    #[cachier(cache_dir = dir(), separate_files, stale_after = "400ms")]
    fn separate(x: u64) -> u64 {
        x * 1000 + SEPARATE.bump()
    }

    static FILE_SLOW: Calls = Calls::new();

    #[cachier(cache_dir = dir())]
    fn file_slow(x: u64) -> u64 {
        thread::sleep(Duration::from_millis(200));
        x * 1000 + FILE_SLOW.bump()
    }

    #[test]
    fn file_backend_hit_miss_and_management() {
        let first = on_disk(1);
        assert_eq!(on_disk(1), first);
        assert_ne!(on_disk(2), first);
        assert_eq!(FILE.get(), 2);
        let cache = on_disk_cache().unwrap();
        let dpath = cache
            .cache_dpath()
            .expect("the file backend has a directory");
        assert_eq!(
            std::fs::canonicalize(dpath).unwrap(),
            std::fs::canonicalize(dir()).unwrap()
        );
        cache.clear_cache().unwrap();
        assert_ne!(on_disk(1), first);
        assert_eq!(cache.precache_value(&(5,), 77).unwrap(), 77);
        assert_eq!(on_disk(5), 77);
        assert_eq!(FILE.get(), 3);
    }

    #[test]
    fn file_backend_separate_files_and_staleness() {
        let first = separate(1);
        assert_eq!(separate(1), first);
        thread::sleep(Duration::from_millis(500));
        assert_ne!(separate(1), first);
        assert_eq!(SEPARATE.get(), 2);
    }

    #[test]
    fn file_backend_concurrent_threads_compute_once() {
        let barrier = Arc::new(Barrier::new(6));
        let results: Vec<u64> = (0..6)
            .map(|_| {
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    file_slow(3)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(results.iter().all(|r| *r == results[0]), "{results:?}");
        assert_eq!(FILE_SLOW.get(), 1);
    }
}

/// Less common shapes: visibility, `cfg`, `Self` values, `_` arguments, key paths, keys on
/// methods.
mod shapes {
    #![deny(missing_docs)]
    use super::*;
    use serde::{Deserialize, Serialize};

    static POINT: Calls = Calls::new();

    /// A value type built by an associated function.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Point {
        /// x
        pub x: i64,
        /// y
        pub y: i64,
    }

    #[cachier]
    impl Point {
        /// `Self` as the value, `pub(crate)` visibility.
        #[cachier(backend = cachier::backends::memory::MemoryBackend::new())]
        pub(crate) fn on_diagonal(at: i64) -> Self {
            POINT.bump();
            Point { x: at, y: at }
        }

        /// A method with a key on its arguments, in a `#[cachier]` impl.
        #[cachier(allow_non_static_methods, backend = cachier::backends::memory::MemoryBackend::new(), key = |(d,): &(i64,)| d / 10)]
        pub fn shifted(&self, d: i64) -> i64 {
            POINT.bump();
            self.x + d
        }
    }

    fn by_tens(args: &(u64, u64)) -> u64 {
        args.0 / 10
    }

    static TENS: Calls = Calls::new();

    /// A key given as a path; an ignored `_` argument.
    #[cachier(backend = cachier::backends::memory::MemoryBackend::new(), key = by_tens)]
    pub fn tens(x: u64, _: u64) -> u64 {
        TENS.bump();
        x / 10
    }

    /// Compiled out: the generated siblings follow the `cfg`.
    #[cachier]
    #[cfg(any())]
    pub fn never_compiled(x: u64) -> u64 {
        x
    }

    #[test]
    fn less_common_shapes() {
        assert_eq!(Point::on_diagonal(2), Point { x: 2, y: 2 });
        assert_eq!(Point::on_diagonal(2), Point { x: 2, y: 2 });
        assert_eq!(POINT.get(), 1);
        assert!(Point::on_diagonal_cache()
            .unwrap()
            .namespace()
            .to_string()
            .ends_with("macro::shapes::Point::on_diagonal"));
        let p = Point { x: 100, y: 0 };
        assert_eq!(p.shifted(11), 111);
        assert_eq!(p.shifted(19), 111, "same key: 19 / 10 == 11 / 10");
        assert_eq!(POINT.get(), 2);
        assert_eq!(p.shifted_uncached(19), 119);

        assert_eq!(tens(15, 1), 1);
        assert_eq!(tens(19, 2), 1);
        assert_eq!(TENS.get(), 1, "the key function decides");
        assert_eq!(tens_uncached(25, 0), 2);
        assert_eq!(TENS.get(), 2, "uncached runs the body");
        assert_eq!(tens(15, 1), 1);
        assert_eq!(TENS.get(), 2);
    }
}

/// `version = "auto"` through the compiler's own tokens (the macro crate's unit tests run on
/// parsed text): bodies that differ give different namespaces, identical functions the same
/// one, formatting and comments count for nothing, and the version is the constant pinned in
/// the macro crate, so every build and every process of this code computes it alike.
mod auto_version {
    use super::*;

    #[cachier(version = "auto", backend = cachier::backends::memory::MemoryBackend::new())]
    fn plus_one(x: u64) -> u64 {
        x + 1
    }

    #[cachier(version = "auto", backend = cachier::backends::memory::MemoryBackend::new())]
    fn plus_two(x: u64) -> u64 {
        x + 2
    }

    #[cachier(version = "auto", backend = cachier::backends::memory::MemoryBackend::new())]
    fn plus_one_again(x: u64) -> u64 {
        x + 1
    }

    #[rustfmt::skip]
    #[cachier(version = "auto", backend = cachier::backends::memory::MemoryBackend::new())]
    fn plus_one_reformatted( x : u64 )->u64{
        // Comments and layout are not tokens.
        x+1 }

    #[allow(unused_variables)] // attributes are not part of the version
    #[cachier(version = "auto", backend = cachier::backends::memory::MemoryBackend::new())]
    fn price(sku: String, n: u32) -> u64 {
        n as u64 * 999
    }

    fn version(namespace: &cachier::store::Namespace) -> &str {
        namespace.as_str().rsplit_once('@').expect("versioned").1
    }

    #[test]
    fn bodies_decide_the_version() {
        let one = version(plus_one_cache().unwrap().namespace()).to_owned();
        assert!(one.starts_with("auto-") && one.len() == 21, "{one}");
        assert_ne!(one, version(plus_two_cache().unwrap().namespace()));
        assert_eq!(one, version(plus_one_again_cache().unwrap().namespace()));
        assert_eq!(
            one,
            version(plus_one_reformatted_cache().unwrap().namespace())
        );
        assert!(plus_one_cache()
            .unwrap()
            .namespace()
            .as_str()
            .ends_with(&format!("::plus_one@{one}")));
        assert_eq!(plus_one(1) + plus_two(1), 5);
    }

    #[test]
    fn the_version_is_the_same_in_every_build() {
        assert_eq!(
            version(price_cache().unwrap().namespace()),
            "auto-99e53f757db604d6",
            "the value pinned in cachier-macros' version.rs"
        );
        assert_eq!(price("x".into(), 2), 1998);
    }
}
