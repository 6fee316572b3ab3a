//! The essential cases again through [`Backend::async_core`](cachier_core::Backend::async_core),
//! awaited on a tokio runtime: the store an async memoized function uses (the backend's
//! native one where it has one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachier_core::{AsyncCore, Claim, ClaimToken, Key};

use super::{key, Open, Store, LEASE, PROMPTLY};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn open_async(open: Open, case: &str) -> Option<(Store, Arc<dyn AsyncCore>)> {
    let s = Store::open(open, case)?;
    let store = s
        .backend
        .async_core(&s.namespace, &s.core)
        .expect("async_core");
    Some((s, store))
}

async fn claim(store: &dyn AsyncCore, key: &Key) -> ClaimToken {
    match store.claim(key, LEASE).await.expect("claim") {
        Claim::Claimed(token) => token,
        Claim::Busy => panic!("a free key answered Busy to a claim"),
    }
}

async fn completed(store: &dyn AsyncCore, key: &Key) -> Option<Vec<u8>> {
    store
        .get(key)
        .await
        .expect("get")
        .and_then(|entry| entry.value.as_ref().map(|v| v.to_vec()))
}

async fn being_calculated(store: &dyn AsyncCore, key: &Key) -> bool {
    store
        .get(key)
        .await
        .expect("get")
        .is_some_and(|entry| entry.being_calculated())
}

/// Absent keys read as `None`; `put` stores (byte for byte, empty values too) and overwrites;
/// the blocking core reads what the async one wrote.
pub fn async_get_and_put(open: Open) {
    let Some((s, store)) = open_async(open, "async_get_and_put") else {
        return;
    };
    let every_byte: Vec<u8> = (0..=255u8).collect();
    runtime().block_on(async {
        assert_eq!(store.get(&key(1)).await.expect("get"), None);
        store.put(&key(1), b"first", None).await.expect("put");
        let entry = store.get(&key(1)).await.expect("get").expect("stored");
        assert!(
            entry.is_completed() && !entry.being_calculated(),
            "{entry:?}"
        );
        assert!(entry.age < Duration::from_secs(5), "{entry:?}");
        assert_eq!(entry.value.as_ref().map(|v| &v[..]), Some(&b"first"[..]));
        store.put(&key(1), b"second", None).await.expect("put");
        assert_eq!(
            completed(&*store, &key(1)).await.as_deref(),
            Some(&b"second"[..])
        );
        store.put(&key(2), b"", None).await.expect("put");
        assert_eq!(completed(&*store, &key(2)).await.as_deref(), Some(&b""[..]));
        store.put(&key(3), &every_byte, None).await.expect("put");
        assert_eq!(completed(&*store, &key(3)).await, Some(every_byte.clone()));
    });
    assert_eq!(
        super::completed(&*s.core, &key(1)).as_deref(),
        Some(&b"second"[..]),
        "the blocking core reads what the async one wrote"
    );
}

/// Claim, `Busy`, the placeholder, release, and a put with the token that releases.
pub fn async_claim_busy_and_release(open: Open) {
    let Some((s, store)) = open_async(open, "async_claim_busy_and_release") else {
        return;
    };
    runtime().block_on(async {
        let token = claim(&*store, &key(1)).await;
        assert_eq!(
            store.claim(&key(1), LEASE).await.expect("claim"),
            Claim::Busy
        );
        let placeholder = store.get(&key(1)).await.expect("get").expect("placeholder");
        assert!(placeholder.being_calculated(), "{placeholder:?}");
        assert_eq!(placeholder.value.as_ref(), None);
        store.release(&key(1), &token).await.expect("release");
        store.release(&key(1), &token).await.expect("release again");
        assert!(!being_calculated(&*store, &key(1)).await);

        let token = claim(&*store, &key(1)).await;
        store
            .put(&key(1), b"done", Some(&token))
            .await
            .expect("put");
        assert!(!being_calculated(&*store, &key(1)).await);
        assert_eq!(
            completed(&*store, &key(1)).await.as_deref(),
            Some(&b"done"[..])
        );
        let _next = claim(&*store, &key(1)).await;
    });
    assert!(
        super::being_calculated(&*s.core, &key(1)),
        "the blocking core sees the async claim"
    );
}

/// A put with another token, or none, stores and leaves the live claim; a wrong token's
/// release changes nothing; the holder's release still works.
pub fn async_foreign_tokens_keep_the_claim(open: Open) {
    let Some((_s, store)) = open_async(open, "async_foreign_tokens_keep_the_claim") else {
        return;
    };
    runtime().block_on(async {
        let token = claim(&*store, &key(1)).await;
        store
            .put(&key(1), b"by a stranger", Some(&ClaimToken::new()))
            .await
            .expect("put");
        store.put(&key(1), b"untokened", None).await.expect("put");
        store
            .release(&key(1), &ClaimToken::new())
            .await
            .expect("release");
        assert_eq!(
            completed(&*store, &key(1)).await.as_deref(),
            Some(&b"untokened"[..])
        );
        assert!(being_calculated(&*store, &key(1)).await);
        assert_eq!(
            store.claim(&key(1), LEASE).await.expect("claim"),
            Claim::Busy
        );
        store.release(&key(1), &token).await.expect("release");
        let _next = claim(&*store, &key(1)).await;
    });
}

/// Of 16 tasks claiming one key at once, exactly one wins.
pub fn async_claim_is_atomic(open: Open) {
    let Some((_s, store)) = open_async(open, "async_claim_is_atomic") else {
        return;
    };
    runtime().block_on(async {
        for round in 0..4 {
            let barrier = Arc::new(tokio::sync::Barrier::new(16));
            let tasks: Vec<_> = (0..16)
                .map(|_| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        store.claim(&key(round), LEASE).await.expect("claim")
                    })
                })
                .collect();
            let mut winners = 0;
            for task in tasks {
                if matches!(task.await.expect("claimer"), Claim::Claimed(_)) {
                    winners += 1;
                }
            }
            assert_eq!(winners, 1, "round {round}");
        }
    });
}

/// `wait` is true at once without a claim, false after `max` while claimed, and true soon
/// after the holder releases.
pub fn async_wait(open: Open) {
    let Some((_s, store)) = open_async(open, "async_wait") else {
        return;
    };
    runtime().block_on(async {
        let started = Instant::now();
        assert!(store
            .wait(&key(1), Duration::from_secs(10))
            .await
            .expect("wait"));
        assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());

        let token = claim(&*store, &key(1)).await;
        let max = Duration::from_millis(300);
        let started = Instant::now();
        assert!(!store.wait(&key(1), max).await.expect("wait"));
        let waited = started.elapsed();
        assert!(
            waited >= max - Duration::from_millis(5) && waited < max + Duration::from_secs(3),
            "gave up after {waited:?}"
        );

        let holder = store.clone();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            holder.release(&key(1), &token).await.expect("release");
            Instant::now()
        });
        assert!(store
            .wait(&key(1), Duration::from_secs(20))
            .await
            .expect("wait"));
        let woke = Instant::now();
        let released = release.await.expect("release task");
        assert!(
            woke.saturating_duration_since(released) < PROMPTLY,
            "the waiter woke {:?} after the release",
            woke.saturating_duration_since(released)
        );
    });
}

/// `clear_being_calculated` frees claims and keeps values, `delete_stale_entries` counts
/// what it deletes, `clear_cache` empties the namespace.
pub fn async_management(open: Open) {
    let Some((s, store)) = open_async(open, "async_management") else {
        return;
    };
    runtime().block_on(async {
        store.put(&key(1), b"kept", None).await.expect("put");
        let _claim = claim(&*store, &key(1)).await;
        store
            .clear_being_calculated()
            .await
            .expect("clear_being_calculated");
        assert!(!being_calculated(&*store, &key(1)).await);
        assert_eq!(
            completed(&*store, &key(1)).await.as_deref(),
            Some(&b"kept"[..])
        );
        let _next = claim(&*store, &key(1)).await;
        store
            .clear_being_calculated()
            .await
            .expect("clear_being_calculated");

        tokio::time::sleep(Duration::from_millis(1200)).await;
        store.put(&key(2), b"new", None).await.expect("put");
        assert_eq!(
            store
                .delete_stale_entries(Duration::from_millis(600))
                .await
                .expect("delete_stale_entries"),
            1
        );
        assert_eq!(store.get(&key(1)).await.expect("get"), None);
        assert_eq!(
            completed(&*store, &key(2)).await.as_deref(),
            Some(&b"new"[..])
        );
        store.clear_cache().await.expect("clear_cache");
        assert_eq!(store.get(&key(2)).await.expect("get"), None);
    });
    assert_eq!(s.core.len().expect("len"), 0);
}

/// `remove` through the async store: one key's value goes, another key stays, and a value
/// under a live claim goes while the claim stays until its holder's `put`.
pub fn async_remove(open: Open) {
    let Some((s, store)) = open_async(open, "async_remove") else {
        return;
    };
    runtime().block_on(async {
        store.put(&key(1), b"one", None).await.expect("put");
        store.put(&key(2), b"two", None).await.expect("put");
        assert!(store.remove(&key(1)).await.expect("remove"));
        assert!(!store.remove(&key(1)).await.expect("remove again"));
        assert_eq!(store.get(&key(1)).await.expect("get"), None);
        assert_eq!(
            completed(&*store, &key(2)).await.as_deref(),
            Some(&b"two"[..])
        );

        let token = claim(&*store, &key(2)).await;
        assert!(store.remove(&key(2)).await.expect("remove under a claim"));
        assert_eq!(completed(&*store, &key(2)).await, None);
        assert!(being_calculated(&*store, &key(2)).await, "the claim stays");
        assert_eq!(
            store.claim(&key(2), LEASE).await.expect("claim"),
            Claim::Busy
        );
        store.put(&key(2), b"new", Some(&token)).await.expect("put");
        assert!(!being_calculated(&*store, &key(2)).await);
        assert_eq!(
            completed(&*store, &key(2)).await.as_deref(),
            Some(&b"new"[..])
        );
    });
    assert_eq!(
        super::completed(&*s.core, &key(2)).as_deref(),
        Some(&b"new"[..]),
        "the blocking store reads what the async one did"
    );
}
