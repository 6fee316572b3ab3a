//! One memoized call, written once as `async` code over a [`Runner`]: look the key up, serve
//! a fresh value, serve a stale one while refreshing (`next_time`), or compute under single
//! flight (see the module above for the two levels).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cachier_settings::caching_enabled;
use serde::Serialize;

use super::flight::{Flight, Joined, Landing, Lead};
use super::near::Keep;
use super::params::{threshold, Threshold, Want};
use super::Shared;
use crate::key::ArgBytes;
use crate::lease::Heartbeat;
use crate::stats::Stats;
use crate::{
    codec, CacheEntry, CallOptions, Claim, ClaimAndGet, ClaimToken, Core, Error, Key, Namespace,
};

/// The decision trace of a verbose call (cachier's `cachier__verbose`), through `tracing`.
pub(super) struct Trace<'a> {
    pub(super) on: bool,
    pub(super) namespace: &'a Namespace,
}

impl Trace<'_> {
    #[inline]
    pub(super) fn note(&self, message: &str) {
        if self.on {
            tracing::info!(target: "cachier", namespace = %self.namespace, "{message}");
        }
    }
}

/// How a wait for another caller's claim ended.
pub(super) enum WaitEnd {
    Released,
    TimedOut,
}

/// What the algorithm needs from a way of calling: the store's operations and the function,
/// blocking or async. Written as futures so that one algorithm serves both.
pub(super) trait Runner<A, R>: Sync {
    fn shared(&self) -> &Shared<A, R>;
    fn get<'a>(
        &'a self,
        key: &'a Key,
    ) -> impl Future<Output = Result<Option<CacheEntry>, Error>> + Send + 'a;
    fn claim<'a>(&'a self, key: &'a Key) -> impl Future<Output = Result<Claim, Error>> + Send + 'a;
    fn claim_and_get<'a>(
        &'a self,
        key: &'a Key,
    ) -> impl Future<Output = Result<ClaimAndGet, Error>> + Send + 'a;
    fn put<'a>(
        &'a self,
        key: &'a Key,
        value: &'a [u8],
        claim: Option<&'a ClaimToken>,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a;
    fn release<'a>(
        &'a self,
        key: &'a Key,
        claim: &'a ClaimToken,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a;
    fn wait<'a>(
        &'a self,
        key: &'a Key,
        max: Duration,
    ) -> impl Future<Output = Result<bool, Error>> + Send + 'a;
    /// Waits at most `max` for this process's leader of a key.
    fn wait_flight<'a>(
        &'a self,
        flight: &'a Flight,
        max: Duration,
    ) -> impl Future<Output = Landing> + Send + 'a;
    fn compute(&self, args: A) -> impl Future<Output = R> + Send + '_;
    /// Recomputes `key` in the background while holding `claim` (`next_time`), unless a value
    /// `want` serves was stored since the caller's read.
    fn refresh_in_background(&self, args: A, key: Key, claim: Held, want: Want);
}

/// A won claim, from the moment it is won: its lease is renewed (a `next_time` refresh may
/// wait in the pool's queue before it computes), and it is released if dropped unfinished.
pub(super) struct Held {
    guard: ReleaseGuard,
    /// Renews the lease for as long as it lives (where the store needs it).
    _heartbeat: Option<Heartbeat>,
}

impl Held {
    fn token(&self) -> &ClaimToken {
        self.guard.token()
    }

    /// The claim was put or released: stop renewing and guarding it.
    fn done(self) {
        self.guard.disarm();
    }
}

impl<A, R> Shared<A, R> {
    /// Holds `token`, the claim just won on `key`.
    pub(super) fn hold(&self, key: Key, token: ClaimToken) -> Held {
        let heartbeat = self
            .capabilities
            .leases
            .then(|| Heartbeat::start(self.core.clone(), key, token.clone(), self.lease));
        let guard = ReleaseGuard {
            core: self.core.clone(),
            key,
            token: Some(token),
        };
        Held {
            guard,
            _heartbeat: heartbeat,
        }
    }
}

/// Releases a claim if the computation unwinds (a panic) or its future is dropped (a cancelled
/// async caller), so waiters take over at once.
pub(super) struct ReleaseGuard {
    core: Arc<dyn Core>,
    key: Key,
    token: Option<ClaimToken>,
}

impl ReleaseGuard {
    fn token(&self) -> &ClaimToken {
        self.token.as_ref().expect("armed until disarmed")
    }
    fn disarm(mut self) {
        self.token = None;
    }
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let (core, key) = (self.core.clone(), self.key);
        let release = move || {
            if let Err(error) = core.release(&key, &token) {
                tracing::warn!(%key, %error, "cachier: could not release an abandoned claim");
            }
        };
        // Inside an async runtime, do not block its thread on the store.
        #[cfg(feature = "async")]
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(release);
            return;
        }
        release();
    }
}

/// One memoized call.
pub(super) async fn run<A, R, D>(
    d: &D,
    args: A,
    options: &CallOptions,
    strict: bool,
) -> Result<R, Error>
where
    A: Serialize + Send,
    R: Send,
    D: Runner<A, R>,
{
    let shared = d.shared();
    let resolved = shared.resolve(options);
    let stale_after = resolved.stale_after;
    if resolved.cleanup_stale {
        shared.maybe_cleanup(stale_after, resolved.cleanup_interval);
    }
    if options.skip_cache || !caching_enabled() {
        return Ok(d.compute(args).await);
    }
    let started = (shared.statistics && Stats::sample_this_call()).then(Instant::now);
    let trace = shared.trace(options.verbose);
    let mut encoded = ArgBytes::new();
    if let Err(error) = shared.encode_args(&args, &mut encoded) {
        shared.tolerate(error, strict)?;
        shared.count(|s| &s.misses);
        return Ok(compute_uncached(d, args, None).await);
    }
    let mut want = Want {
        seen: None,
        threshold: threshold(stale_after, options.max_age),
        allow_none: resolved.allow_none,
    };
    // A near hit was served before this (`near_hit`); what a store read serves is kept.
    let near = shared.near.as_ref().filter(|_| !options.overwrite_cache);
    let near_hash = near.map_or(0, |near| near.hash(encoded.as_bytes()));
    let key = encoded.key();
    let mut store_failed = false;
    if options.overwrite_cache {
        trace.note("Overwriting the cache.");
    } else {
        let before = near.map(|near| near.before(&key));
        let entry = match d.get(&key).await {
            Ok(entry) => entry,
            Err(error) => {
                shared.tolerate(error, strict)?;
                store_failed = true;
                None
            }
        };
        let read = entry
            .as_ref()
            .and_then(|entry| Some((entry.value.clone()?, entry.age)));
        match examine(shared, &key, entry, &mut want, resolved.next_time, &trace) {
            Found::Fresh(value) => {
                if let (Some(near), Some(before), Some((bytes, age))) = (near, before, read) {
                    let keep = Keep {
                        key,
                        value: &value,
                        bytes: &bytes,
                        age,
                    };
                    near.keep(near_hash, encoded.as_bytes(), before, keep);
                }
                shared.count(|s| &s.hits);
                if let Some(started) = started {
                    shared.stats.hit_latency.record(started.elapsed());
                }
                return Ok(value);
            }
            Found::Stale { value, refreshing } => {
                if !refreshing {
                    trace.note("Async calc and return stale");
                    match d.claim(&key).await {
                        Ok(Claim::Claimed(token)) => {
                            let claim = shared.hold(key, token);
                            d.refresh_in_background(args, key, claim, want);
                        }
                        Ok(Claim::Busy) => {}
                        Err(error) => shared.refresh_not_started(&error),
                    }
                }
                trace.note("Returning stale.");
                shared.count(|s| &s.misses);
                return Ok(value);
            }
            Found::Nothing => {}
        }
    }
    shared.count(|s| &s.misses);
    miss(
        d,
        args,
        key,
        want,
        options.overwrite_cache,
        store_failed,
        strict,
        &trace,
    )
    .await
}

/// The near cache's value for `args`, if it serves one to this call: checked by the drivers
/// before the algorithm's future is even made, so that a near hit costs no more than the
/// lookup itself.
#[inline]
pub(super) fn near_hit<A: Serialize, R>(
    shared: &Shared<A, R>,
    args: &A,
    options: &CallOptions,
) -> Option<R> {
    let near = shared.near.as_ref()?;
    if options.skip_cache || options.overwrite_cache || !caching_enabled() {
        return None;
    }
    let started = (shared.statistics && Stats::sample_this_call()).then(Instant::now);
    let resolved = shared.resolve(options);
    let mut encoded = ArgBytes::new();
    shared.encode_args(args, &mut encoded).ok()?;
    let bytes = encoded.as_bytes();
    let threshold = threshold(resolved.stale_after, options.max_age);
    let value = near.get(near.hash(bytes), bytes, threshold, resolved.allow_none)?;
    // Only a served call cleans up here: one that goes on to the store does so there.
    if resolved.cleanup_stale {
        shared.maybe_cleanup(resolved.stale_after, resolved.cleanup_interval);
    }
    shared
        .trace(options.verbose)
        .note("Fresh value kept in this process.");
    shared.count(|s| &s.hits);
    if let Some(started) = started {
        shared.stats.hit_latency.record(started.elapsed());
    }
    Some(value)
}

/// What a call's read of the store offers it.
enum Found<R> {
    /// A fresh value: a hit.
    Fresh(R),
    /// A stale value to serve at once (`next_time`); `refreshing` when a refresh already runs.
    Stale { value: R, refreshing: bool },
    /// Nothing to serve: compute, or wait for whoever computes.
    Nothing,
}

/// Decides what `entry` offers this call, recording in `want` the time of a value it does
/// not serve (a later value must be newer).
fn examine<A, R>(
    shared: &Shared<A, R>,
    key: &Key,
    entry: Option<CacheEntry>,
    want: &mut Want,
    next_time: bool,
    trace: &Trace<'_>,
) -> Found<R> {
    let Some(entry) = entry else {
        trace.note("No entry found. No current calc. Calling like a boss.");
        return Found::Nothing;
    };
    trace.note("Entry found.");
    let Some(bytes) = entry.value.as_ref() else {
        if entry.being_calculated() {
            trace.note("No value but being calculated. Waiting.");
        }
        return Found::Nothing;
    };
    want.seen = Some(entry.time);
    if !want.allow_none && codec::encodes_none(bytes) {
        return Found::Nothing;
    }
    trace.note("Cached result found.");
    if let Threshold::Always = want.threshold {
        trace.note("max_age is negative. Cached result considered stale.");
    }
    let fresh = want.fresh(entry.age);
    if !fresh {
        trace.note("But it is stale... :(");
        shared.count(|s| &s.stale_hits);
        if !next_time {
            return Found::Nothing;
        }
    }
    let value = match (shared.codec.decode)(bytes) {
        Ok(value) => value,
        Err(error) => {
            shared.warn_undecodable(key, &error);
            return Found::Nothing;
        }
    };
    if fresh {
        trace.note("And it is fresh!");
        return Found::Fresh(value);
    }
    if entry.being_calculated() {
        trace.note("Already calc. Returning stale.");
    }
    Found::Stale {
        value,
        refreshing: entry.being_calculated(),
    }
}

/// The miss path. One caller per key and process leads: it goes to the store (or, when the
/// store just failed, computes uncached); the others follow and take its result.
#[allow(clippy::too_many_arguments)]
pub(super) async fn miss<A, R, D>(
    d: &D,
    args: A,
    key: Key,
    want: Want,
    overwrite: bool,
    store_failed: bool,
    strict: bool,
    trace: &Trace<'_>,
) -> Result<R, Error>
where
    A: Serialize + Send,
    R: Send,
    D: Runner<A, R>,
{
    let shared = d.shared();
    if overwrite {
        return from_store(d, args, key, want, true, strict, trace, None).await;
    }
    loop {
        let flight = match shared.flights.join(key) {
            Joined::Lead(lead) => {
                return if store_failed {
                    Ok(compute_uncached(d, args, Some(&lead)).await)
                } else {
                    from_store(d, args, key, want, false, strict, trace, Some(&lead)).await
                };
            }
            Joined::Follow(flight) => flight,
        };
        trace.note("Being calculated in this process. Waiting.");
        match wait_for_flight(d, &flight).await {
            Landing::Value(bytes) => match (shared.codec.decode)(&bytes) {
                Ok(value) => {
                    trace.note("Got the result of the computation waited on.");
                    return Ok(value);
                }
                Err(error) => {
                    shared.warn_undecodable(&key, &error);
                    return compute_unclaimed(d, args, key, strict, trace, None).await;
                }
            },
            Landing::Nothing => trace.note("That computation shared nothing. Trying again."),
            Landing::TimedOut => {
                shared.count(|s| &s.wait_timeouts);
                trace.note("wait_for_calc_timeout reached. Calculating.");
                return compute_unclaimed(d, args, key, strict, trace, None).await;
            }
        }
    }
}

/// Claims the key in the store and computes, or waits for whoever holds the claim.
#[allow(clippy::too_many_arguments)]
pub(super) async fn from_store<A, R, D>(
    d: &D,
    args: A,
    key: Key,
    mut want: Want,
    overwrite: bool,
    strict: bool,
    trace: &Trace<'_>,
    lead: Option<&Lead<'_>>,
) -> Result<R, Error>
where
    A: Serialize + Send,
    R: Send,
    D: Runner<A, R>,
{
    let shared = d.shared();
    loop {
        let ClaimAndGet { claim, entry } = match d.claim_and_get(&key).await {
            Ok(answer) => answer,
            Err(error) => {
                shared.tolerate(error, strict)?;
                return Ok(compute_uncached(d, args, lead).await);
            }
        };
        match claim {
            Claim::Claimed(token) => {
                let claim = shared.hold(key, token);
                let recheck = (!overwrite).then_some((&want, entry));
                return compute_claimed(d, args, key, claim, recheck, strict, trace, lead).await;
            }
            Claim::Busy if overwrite => {
                trace.note("Already calc, but overwriting: computing too.");
                return compute_unclaimed(d, args, key, strict, trace, lead).await;
            }
            Claim::Busy => {
                trace.note("Already calc. Waiting on change.");
                match wait_for_other(d, &key).await {
                    Err(error) => {
                        shared.tolerate(error, strict)?;
                        return Ok(compute_uncached(d, args, lead).await);
                    }
                    Ok(WaitEnd::TimedOut) => {
                        shared.count(|s| &s.wait_timeouts);
                        trace.note("wait_for_calc_timeout reached. Calculating.");
                        return compute_unclaimed(d, args, key, strict, trace, lead).await;
                    }
                    Ok(WaitEnd::Released) => match d.get(&key).await {
                        Err(error) => {
                            shared.tolerate(error, strict)?;
                            return Ok(compute_uncached(d, args, lead).await);
                        }
                        Ok(Some(entry)) => {
                            if let Some(bytes) = entry.value.as_ref() {
                                if want.seen != Some(entry.time) {
                                    match (shared.codec.decode)(bytes) {
                                        Ok(value) => {
                                            trace.note(
                                                "Got the result of the computation waited on.",
                                            );
                                            if let Some(lead) = lead {
                                                lead.land(bytes.clone());
                                            }
                                            return Ok(value);
                                        }
                                        Err(error) => shared.warn_undecodable(&key, &error),
                                    }
                                    want.seen = Some(entry.time);
                                }
                            }
                            // That computation stored nothing new (it failed): take over.
                        }
                        Ok(None) => {}
                    },
                }
            }
        }
    }
}

/// Waits for another caller's claim on `key` to end, in slices of at most [`WAIT_SLICE`].
pub(super) async fn wait_for_other<A, R, D: Runner<A, R>>(
    d: &D,
    key: &Key,
) -> Result<WaitEnd, Error> {
    let start = Instant::now();
    while let Some(slice) = d.shared().wait_slice(start) {
        if d.wait(key, slice).await? {
            return Ok(WaitEnd::Released);
        }
    }
    Ok(WaitEnd::TimedOut)
}

/// Waits for this process's leader of a key, in slices of at most [`WAIT_SLICE`].
pub(super) async fn wait_for_flight<A, R, D: Runner<A, R>>(d: &D, flight: &Flight) -> Landing {
    let start = Instant::now();
    while let Some(slice) = d.shared().wait_slice(start) {
        match d.wait_flight(flight, slice).await {
            Landing::TimedOut => {}
            landing => return landing,
        }
    }
    Landing::TimedOut
}

/// Computes while holding the claim, then stores the result and releases the claim in one
/// step. With `recheck` (what the caller wants, and the entry read just after its claim),
/// first serves a value stored since the caller's own read instead (its claim raced that
/// value's store).
#[allow(clippy::too_many_arguments)]
pub(super) async fn compute_claimed<A, R, D>(
    d: &D,
    args: A,
    key: Key,
    claim: Held,
    recheck: Option<(&Want, Result<Option<CacheEntry>, Error>)>,
    strict: bool,
    trace: &Trace<'_>,
    lead: Option<&Lead<'_>>,
) -> Result<R, Error>
where
    A: Serialize + Send,
    R: Send,
    D: Runner<A, R>,
{
    let shared = d.shared();
    if let Some((want, entry)) = recheck {
        if let Some(value) = stored_since_read(shared, &key, want, entry, lead) {
            trace.note("A value was stored since this caller's read. Serving it.");
            let released = d.release(&key, claim.token()).await;
            claim.done();
            if let Err(error) = released {
                shared.tolerate(error, false)?;
            }
            return Ok(value);
        }
    }
    trace.note("Calling decorated function and waiting");
    let started = Instant::now();
    shared.count(|s| &s.recalculations);
    let preview = shared.preview(&args);
    let value = d.compute(args).await;
    let stored = match shared.encode_and_land(&value, preview.as_deref(), lead, trace) {
        Some(bytes) => match d.put(&key, &bytes, Some(claim.token())).await {
            Ok(()) => {
                shared.forget_near(Some(&key));
                Ok(())
            }
            Err(error) => {
                // The store refused the value: free the key now, so that waiters take over
                // at once instead of after the lease.
                if let Err(release_error) = d.release(&key, claim.token()).await {
                    tracing::debug!(%key, error = %release_error, "cachier: release after a failed put failed");
                }
                Err(error)
            }
        },
        None => d.release(&key, claim.token()).await,
    };
    claim.done();
    if shared.statistics {
        shared.stats.compute_latency.record(started.elapsed());
    }
    if let Err(error) = stored {
        shared.tolerate(error, strict)?;
    }
    Ok(value)
}

/// After a won claim: the value another caller stored since this caller's read, if `entry`
/// (read just after the claim) holds one it serves. A failed read is no reason to give up
/// the claim: the caller computes.
fn stored_since_read<A, R>(
    shared: &Shared<A, R>,
    key: &Key,
    want: &Want,
    entry: Result<Option<CacheEntry>, Error>,
    lead: Option<&Lead<'_>>,
) -> Option<R> {
    let entry = match entry {
        Ok(entry) => entry?,
        Err(error) => {
            shared.tolerate(error, false).ok();
            return None;
        }
    };
    let bytes = want.newer(&entry)?;
    let value = (shared.codec.decode)(bytes)
        .map_err(|error| shared.warn_undecodable(key, &error))
        .ok()?;
    if let Some(lead) = lead {
        lead.land(bytes.clone());
    }
    Some(value)
}

/// Computes while someone else holds the claim (after a wait timeout, or to overwrite),
/// storing the result without touching their claim.
pub(super) async fn compute_unclaimed<A, R, D>(
    d: &D,
    args: A,
    key: Key,
    strict: bool,
    trace: &Trace<'_>,
    lead: Option<&Lead<'_>>,
) -> Result<R, Error>
where
    A: Serialize + Send,
    R: Send,
    D: Runner<A, R>,
{
    let shared = d.shared();
    let started = Instant::now();
    shared.count(|s| &s.recalculations);
    let preview = shared.preview(&args);
    let value = d.compute(args).await;
    let stored = match shared.encode_and_land(&value, preview.as_deref(), lead, trace) {
        Some(bytes) => {
            let stored = d.put(&key, &bytes, None).await;
            shared.forget_near(Some(&key));
            stored
        }
        None => Ok(()),
    };
    if shared.statistics {
        shared.stats.compute_latency.record(started.elapsed());
    }
    if let Err(error) = stored {
        shared.tolerate(error, strict)?;
    }
    Ok(value)
}

/// Computes without the store, which just failed; the result still reaches this process's
/// followers of the key.
pub(super) async fn compute_uncached<A, R, D>(d: &D, args: A, lead: Option<&Lead<'_>>) -> R
where
    A: Send,
    R: Send,
    D: Runner<A, R>,
{
    let shared = d.shared();
    let started = Instant::now();
    shared.count(|s| &s.recalculations);
    shared.count(|s| &s.uncached);
    let value = d.compute(args).await;
    if let Some(lead) = lead {
        // Followers decode these bytes, never store them: no preview.
        if let Some(bytes) = shared.encode(&value, None) {
            lead.land(bytes.into());
        }
    }
    if shared.statistics {
        shared.stats.compute_latency.record(started.elapsed());
    }
    value
}
