//! The store operations, written once as `async fn`s over a [`Conn`]: the blocking store
//! completes them with `block_on` over the pool of synchronous connections (whose futures are
//! ready at once), the async store awaits them over a multiplexed connection. Both paths
//! therefore send the same requests and read the replies the same way.
//!
//! On a Redis Cluster every request keeps its keys in one hash slot: an entry's operations
//! touch its one key (the claim and its re-read are pipelined on that key), and the
//! namespace-wide operations `SCAN` every primary and act on each batch slot by slot.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cachier_core::{
    preview_of, CacheEntry, Claim, ClaimAndGet, ClaimToken, EntryInfo, Error, Key, LiveClaim,
    Namespace,
};
use redis::{FromRedisValue, RedisResult, ScriptInvocation, Value};

use crate::pool::{Node, Request};
use crate::scripts;

/// Keys fetched per `SCAN` step (and deleted or checked per round trip) by the namespace-wide
/// operations.
const SCAN_BATCH: usize = 1000;

/// A connection the operations send requests on: a cheap handle, passed by value.
pub(crate) trait Conn: Copy + Send + Sync {
    /// Whether the connection goes to a Redis Cluster.
    fn cluster(self) -> bool;

    /// Sends `request` (on behalf of `operation`, which names it in errors) and reads the
    /// reply as `T`. The request may be sent twice, once more on a fresh connection when a
    /// pooled one was found dead, so it must be safe to repeat.
    fn query<T: FromRedisValue + Send>(
        self,
        operation: &'static str,
        request: &Request<'_>,
    ) -> impl Future<Output = Result<T, Error>> + Send;
}

/// One function's part of the server: what every operation needs besides a connection.
#[derive(Clone)]
pub(crate) struct Scope {
    /// `{prefix}:{namespace}:`
    base: String,
    /// The namespace, as near caches and waiters subscribe to it.
    namespace: String,
    /// The prefix's channel of changes ([`changes_channel`]).
    channel: String,
    /// The message that any entry of the namespace changed: `{prefix}:{namespace}:*`.
    all: String,
    /// `SCAN MATCH` pattern of this namespace's entries.
    pattern: String,
    /// TTL set on stored values, 0 = none.
    evict_ms: u64,
}

impl Scope {
    pub(crate) fn new(prefix: &str, namespace: &Namespace, evict_after: Option<Duration>) -> Scope {
        let base = namespace_base(prefix, namespace);
        Scope {
            pattern: scan_pattern(&base),
            namespace: namespace.as_str().to_owned(),
            channel: changes_channel(prefix),
            all: format!("{base}*"),
            base,
            evict_ms: evict_after.map_or(0, duration_ms),
        }
    }

    /// `{prefix}:{namespace}:`, the start of every key of this function.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The namespace's text.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    fn entry_key(&self, key: &Key) -> String {
        let mut out = String::with_capacity(self.base.len() + 64);
        out.push_str(&self.base);
        key.push_hex(&mut out);
        out
    }
}

/// A hit's one round trip: the hash and the server's clock, pipelined.
pub(crate) async fn get<C: Conn>(
    con: C,
    scope: &Scope,
    key: &Key,
) -> Result<Option<CacheEntry>, Error> {
    let entry_key = scope.entry_key(key);
    let mut pipe = redis::pipe();
    pipe.cmd("HGETALL").arg(&entry_key).cmd("TIME");
    let reply = con.query("get", &Request::Pipe(pipe)).await;
    decode_get(&entry_key, reply)
}

/// [`scripts::PUT`]: stores the value and, with a token, releases its claim in the same step.
pub(crate) async fn put<C: Conn>(
    con: C,
    scope: &Scope,
    key: &Key,
    value: &[u8],
    claim: Option<&ClaimToken>,
) -> Result<(), Error> {
    let mut put = scripts::PUT.prepare_invoke();
    put.key(scope.entry_key(key))
        .arg(value)
        .arg(claim.map_or("", ClaimToken::as_str))
        .arg(scope.evict_ms)
        .arg(&scope.channel);
    con.query::<i64>("put", &Request::Script(put)).await?;
    Ok(())
}

/// [`scripts::CLAIM`]. The token is made once per claim: a retry of the same request finds
/// its own claim and reports it claimed.
pub(crate) async fn claim<C: Conn>(
    con: C,
    scope: &Scope,
    key: &Key,
    lease: Duration,
) -> Result<Claim, Error> {
    let token = ClaimToken::new();
    let request = Request::Script(claim_script(scope, &scope.entry_key(key), &token, lease));
    let answer = con.query("claim", &request).await?;
    Ok(claimed(answer, token))
}

/// The claim script and the entry's read, pipelined: one round trip for a miss's claim and
/// the re-read after it. The server runs them in order; a write landing between them only
/// makes the read newer.
pub(crate) async fn claim_and_get<C: Conn>(
    con: C,
    scope: &Scope,
    key: &Key,
    lease: Duration,
) -> Result<ClaimAndGet, Error> {
    let entry_key = scope.entry_key(key);
    let token = ClaimToken::new();
    let mut pipe = redis::pipe();
    pipe.invoke_script(&claim_script(scope, &entry_key, &token, lease))
        .cmd("HGETALL")
        .arg(&entry_key)
        .cmd("TIME");
    match con.query("claim", &Request::Pipe(pipe)).await {
        Ok((answer, hash, time)) => {
            let claim = claimed(answer, token);
            let entry = match claim {
                Claim::Claimed(_) => decode_get(&entry_key, Ok((hash, time))),
                Claim::Busy => Ok(None),
            };
            Ok(ClaimAndGet { claim, entry })
        }
        // The script was not loaded (nothing was claimed), or a cluster slot was moving (an
        // `ASK` is followed for one command, not a pipeline; the claim may have been made):
        // claim alone with the same token, which finds its own claim, then read.
        Err(error) if no_script(&error) || redirected(&error) => {
            let request = Request::Script(claim_script(scope, &entry_key, &token, lease));
            let claim = claimed(con.query("claim", &request).await?, token);
            let entry = match claim {
                Claim::Claimed(_) => get(con, scope, key).await,
                Claim::Busy => Ok(None),
            };
            Ok(ClaimAndGet { claim, entry })
        }
        Err(error) => Err(error),
    }
}

/// [`scripts::RENEW`]: `false` when the claim is not ours any more.
pub(crate) async fn renew<C: Conn>(
    con: C,
    scope: &Scope,
    key: &Key,
    claim: &ClaimToken,
    lease: Duration,
) -> Result<bool, Error> {
    let mut renew = scripts::RENEW.prepare_invoke();
    renew
        .key(scope.entry_key(key))
        .arg(claim.as_str())
        .arg(duration_us(lease).max(1))
        .arg(duration_ms(lease));
    let renewed: i64 = con.query("renew", &Request::Script(renew)).await?;
    Ok(renewed == 1)
}

/// [`scripts::RELEASE`]: drops the claim if it is still `claim`.
pub(crate) async fn release<C: Conn>(
    con: C,
    scope: &Scope,
    key: &Key,
    claim: &ClaimToken,
) -> Result<(), Error> {
    let mut release = scripts::RELEASE.prepare_invoke();
    release
        .key(scope.entry_key(key))
        .arg(claim.as_str())
        .arg(&scope.channel);
    con.query::<i64>("release", &Request::Script(release))
        .await?;
    Ok(())
}

/// [`scripts::REMOVE`]: deletes the value, keeping a live claim.
pub(crate) async fn remove<C: Conn>(con: C, scope: &Scope, key: &Key) -> Result<bool, Error> {
    let mut remove = scripts::REMOVE.prepare_invoke();
    remove.key(scope.entry_key(key)).arg(&scope.channel);
    let removed: i64 = con.query("remove", &Request::Script(remove)).await?;
    Ok(removed == 1)
}

/// [`scripts::CLEAR`]: `UNLINK`s the function's keys, a batch (on a cluster, a slot of a
/// batch) per round trip, each batch announced.
pub(crate) async fn clear_cache<C: Conn>(con: C, scope: &Scope) -> Result<(), Error> {
    const OPERATION: &str = "clear_cache";
    for node in primaries(con, OPERATION).await? {
        let mut scan = Scan::new(con, OPERATION, &scope.pattern, node.as_ref());
        while let Some(keys) = scan.next_batch().await? {
            for keys in by_slot(con, keys) {
                let mut clear = with_keys(&scripts::CLEAR, &keys);
                clear.arg(&scope.channel).arg(&scope.all);
                con.query::<Value>(OPERATION, &Request::Script(clear))
                    .await?;
            }
        }
    }
    Ok(())
}

/// [`scripts::UNCLAIM`] on each batch of the function's keys.
pub(crate) async fn clear_being_calculated<C: Conn>(con: C, scope: &Scope) -> Result<(), Error> {
    const OPERATION: &str = "clear_being_calculated";
    for node in primaries(con, OPERATION).await? {
        let mut scan = Scan::new(con, OPERATION, &scope.pattern, node.as_ref());
        while let Some(keys) = scan.next_batch().await? {
            for keys in by_slot(con, keys) {
                let mut unclaim = with_keys(&scripts::UNCLAIM, &keys);
                unclaim.arg(&scope.channel).arg(&scope.all);
                con.query::<Value>(OPERATION, &Request::Script(unclaim))
                    .await?;
            }
        }
    }
    Ok(())
}

/// [`scripts::DELETE_STALE`] on each batch of the function's keys; how many it deleted.
pub(crate) async fn delete_stale_entries<C: Conn>(
    con: C,
    scope: &Scope,
    older_than: Duration,
) -> Result<u64, Error> {
    const OPERATION: &str = "delete_stale_entries";
    let mut deleted = 0;
    for node in primaries(con, OPERATION).await? {
        let mut scan = Scan::new(con, OPERATION, &scope.pattern, node.as_ref());
        while let Some(keys) = scan.next_batch().await? {
            for keys in by_slot(con, keys) {
                let mut script = with_keys(&scripts::DELETE_STALE, &keys);
                script
                    .arg(duration_us(older_than))
                    .arg(&scope.channel)
                    .arg(&scope.all);
                let reply = con.query(OPERATION, &Request::Script(script)).await?;
                deleted += decode::<u64>(OPERATION, reply)?;
            }
        }
    }
    Ok(deleted)
}

/// Counts the function's keys; sends nothing but `SCAN` steps.
pub(crate) async fn len<C: Conn>(con: C, scope: &Scope) -> Result<u64, Error> {
    const OPERATION: &str = "len";
    let mut n = 0;
    for node in primaries(con, OPERATION).await? {
        let mut scan = Scan::new(con, OPERATION, &scope.pattern, node.as_ref());
        while let Some(keys) = scan.next_batch().await? {
            n += keys.len() as u64;
        }
    }
    Ok(n)
}

/// One `SCAN` step and one [`scripts::LIST`] per batch of 1,000 keys (on a cluster, per slot
/// of a batch); values never cross the wire (`HSTRLEN` sizes them), and ages and claims are
/// judged by the server's clock, as [`get`] judges them.
pub(crate) async fn entries<C: Conn>(con: C, scope: &Scope) -> Result<Vec<EntryInfo>, Error> {
    const OPERATION: &str = "entries";
    let mut out = Vec::new();
    for node in primaries(con, OPERATION).await? {
        let mut scan = Scan::new(con, OPERATION, &scope.pattern, node.as_ref());
        while let Some(keys) = scan.next_batch().await? {
            for keys in by_slot(con, keys) {
                let request = Request::Script(with_keys(&scripts::LIST, &keys));
                let rows: Vec<Value> = decode(OPERATION, con.query(OPERATION, &request).await?)?;
                listed(&keys, &rows, &mut out)
                    .map_err(|e| Error::backend("redis", OPERATION, e))?;
            }
        }
    }
    // `SCAN` may return a key twice (and on a cluster, a key moved during the walk).
    out.sort_by_key(|e| e.key);
    out.dedup_by_key(|e| e.key);
    Ok(out)
}

/// [`Backend::namespaces`](cachier_core::Backend::namespaces): the namespaces of the entries
/// under `prefix`, read from their keys ([`namespace_of`]), deduplicated and sorted.
pub(crate) async fn namespaces<C: Conn>(con: C, prefix: &str) -> Result<Vec<Namespace>, Error> {
    const OPERATION: &str = "namespaces";
    let mut pattern = glob_escape(prefix);
    pattern.push_str(":*");
    let mut names = BTreeSet::new();
    for node in primaries(con, OPERATION).await? {
        let mut scan = Scan::new(con, OPERATION, &pattern, node.as_ref());
        while let Some(keys) = scan.next_batch().await? {
            for key in &keys {
                if let Some(name) = namespace_of(prefix, key) {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match Namespace::new(&name, None) {
            Ok(namespace) => out.push(namespace),
            Err(error) => {
                tracing::debug!(%name, %error, "cachier: key under the prefix names no namespace; skipped");
            }
        }
    }
    Ok(out)
}

/// The nodes a walk over keys visits: `[None]` (the server) on a single server, every
/// primary of a cluster otherwise (`SCAN` sees one node's keys; replicas hold copies).
pub(crate) async fn primaries<C: Conn>(
    con: C,
    operation: &'static str,
) -> Result<Vec<Option<Node>>, Error> {
    if !con.cluster() {
        return Ok(vec![None]);
    }
    let mut slots = redis::cmd("CLUSTER");
    slots.arg("SLOTS");
    let reply: Value = con.query(operation, &Request::Cmd(slots)).await?;
    let nodes = primaries_of(&reply).ok_or_else(|| {
        Error::backend(
            "redis",
            operation,
            format!("unexpected reply to CLUSTER SLOTS: {reply:?}"),
        )
    })?;
    Ok(nodes.into_iter().map(Some).collect())
}

/// The primaries named by a `CLUSTER SLOTS` reply (each slot range: start, end, primary,
/// replicas...), deduplicated and sorted.
fn primaries_of(reply: &Value) -> Option<Vec<Node>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut nodes = BTreeSet::new();
    for range in ranges {
        let Value::Array(range) = range else {
            return None;
        };
        let Some(Value::Array(primary)) = range.get(2) else {
            return None;
        };
        let host = std::str::from_utf8(text(primary.first()?)?).ok()?;
        let port = u16::try_from(number(primary.get(1)?)?).ok()?;
        if host.is_empty() {
            return None;
        }
        nodes.insert(Node {
            host: host.to_owned(),
            port,
        });
    }
    Some(nodes.into_iter().collect())
}

/// `keys` as groups one request may carry: all of them on a single server, those of one hash
/// slot each on a cluster (a script or `UNLINK` may not span slots there).
fn by_slot<C: Conn>(con: C, keys: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    if !con.cluster() {
        return vec![keys];
    }
    let mut groups: HashMap<redis::cluster_routing::Slot, Vec<Vec<u8>>> = HashMap::new();
    for key in keys {
        groups
            .entry(redis::cluster_routing::Slot::for_key(&key))
            .or_default()
            .push(key);
    }
    groups.into_values().collect()
}

/// A walk over every key matching a pattern with `SCAN` (never `KEYS`, which blocks the
/// server for the whole keyspace), one step per batch of [`SCAN_BATCH`] keys, on the server
/// or on one node of a cluster.
struct Scan<'a, C> {
    con: C,
    operation: &'static str,
    pattern: &'a str,
    node: Option<&'a Node>,
    /// Where the next step starts; `None` once the server said the walk is complete.
    cursor: Option<u64>,
}

impl<'a, C: Conn> Scan<'a, C> {
    fn new(con: C, operation: &'static str, pattern: &'a str, node: Option<&'a Node>) -> Self {
        Scan {
            con,
            operation,
            pattern,
            node,
            cursor: Some(0),
        }
    }

    /// The next non-empty batch of keys, or `None` when the walk is over.
    async fn next_batch(&mut self) -> Result<Option<Vec<Vec<u8>>>, Error> {
        while let Some(cursor) = self.cursor {
            let mut step = redis::cmd("SCAN");
            step.arg(cursor)
                .arg("MATCH")
                .arg(self.pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            let request = match self.node {
                Some(node) => Request::At(node, step),
                None => Request::Cmd(step),
            };
            let (next, keys): (u64, Vec<Vec<u8>>) =
                self.con.query(self.operation, &request).await?;
            self.cursor = (next != 0).then_some(next);
            if !keys.is_empty() {
                return Ok(Some(keys));
            }
        }
        Ok(None)
    }
}

/// A script's `reply` read as `T`, after the connection has returned it: a reply of another
/// shape fails the operation but leaves the connection in the pool.
fn decode<T: FromRedisValue>(operation: &'static str, reply: Value) -> Result<T, Error> {
    redis::from_redis_value(reply)
        .map_err(|e| Error::backend("redis", operation, redis::RedisError::from(e)))
}

/// `script` invoked on a batch of keys.
fn with_keys(script: &'static redis::Script, keys: &[Vec<u8>]) -> ScriptInvocation<'static> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    invocation
}

/// [`scripts::CLAIM`] on `entry_key` for `token`; read its answer with [`claimed`].
fn claim_script(
    scope: &Scope,
    entry_key: &str,
    token: &ClaimToken,
    lease: Duration,
) -> ScriptInvocation<'static> {
    let mut invocation = scripts::CLAIM.prepare_invoke();
    invocation
        .key(entry_key)
        .arg(token.as_str())
        .arg(duration_us(lease).max(1))
        .arg(duration_ms(lease))
        .arg(if scope.evict_ms > 0 { "1" } else { "0" });
    invocation
}

/// The answer to [`scripts::CLAIM`].
fn claimed(answer: i64, token: ClaimToken) -> Claim {
    if answer == 1 {
        Claim::Claimed(token)
    } else {
        Claim::Busy
    }
}

/// Whether `error` says the server does not have a script loaded (after a restart or a
/// `SCRIPT FLUSH`): sending it once as a script invocation loads it again.
fn no_script(error: &Error) -> bool {
    matches!(error, Error::Backend { source, .. }
    if source.downcast_ref::<redis::RedisError>().is_some_and(|e| {
        e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
    }))
}

/// Whether `error` is a cluster's redirection or refusal (`MOVED`, `ASK`, `TRYAGAIN`,
/// `CLUSTERDOWN`) that outlasted the client's retries.
fn redirected(error: &Error) -> bool {
    matches!(error, Error::Backend { source, .. }
    if source.downcast_ref::<redis::RedisError>().is_some_and(redis::RedisError::is_cluster_error))
}

/// The entry in the reply to [`get`]'s pipeline (`HGETALL`, `TIME`). A `WRONGTYPE` error
/// (something not ours at the entry's key) is a miss.
fn decode_get(
    entry_key: &str,
    reply: Result<(Value, Value), Error>,
) -> Result<Option<CacheEntry>, Error> {
    let (hash, time) = match reply {
        Ok(reply) => reply,
        Err(Error::Backend { source, .. })
            if source
                .downcast_ref::<redis::RedisError>()
                .is_some_and(wrong_type) =>
        {
            tracing::warn!(key = %entry_key, "cachier: a non-hash value sits at an entry's key; treating it as a miss");
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    let now = server_time(&time).ok_or_else(|| {
        Error::backend(
            "redis",
            "get",
            format!("unexpected reply to TIME: {time:?}"),
        )
    })?;
    let fields = Fields::from_reply(hash);
    let Some(stored) = fields.time else {
        // Empty (no entry), or garbled beyond use: a miss, overwritten by the next write.
        return Ok(None);
    };
    let live = fields.claim.is_some() && fields.lease.is_some_and(|deadline| deadline > now);
    Ok(Some(CacheEntry {
        value: fields.value.filter(|_| fields.completed).map(Arc::from),
        time: UNIX_EPOCH + Duration::from_micros(stored),
        age: Duration::from_micros(now.saturating_sub(stored)),
        claim: LiveClaim::if_live(live, fields.claim),
    }))
}

/// True for a `WRONGTYPE` reply: something that is not one of our hashes sits at the key.
fn wrong_type(error: &redis::RedisError) -> bool {
    error.code() == Some("WRONGTYPE") || error.to_string().contains("WRONGTYPE")
}

/// The fields of an entry's hash, as read.
#[derive(Default)]
struct Fields {
    value: Option<Vec<u8>>,
    time: Option<u64>,
    completed: bool,
    claim: Option<String>,
    lease: Option<u64>,
}

impl Fields {
    fn from_reply(reply: Value) -> Fields {
        let mut fields = Fields::default();
        let mut set = |name: Value, value: Value| match text(&name) {
            Some(b"value") => {
                if let Value::BulkString(bytes) = value {
                    fields.value = Some(bytes);
                }
            }
            Some(b"time") => fields.time = number(&value),
            Some(b"completed") => fields.completed = text(&value) == Some(b"1"),
            Some(b"claim") => {
                fields.claim = text(&value).map(|t| String::from_utf8_lossy(t).into_owned())
            }
            Some(b"lease") => fields.lease = number(&value),
            _ => {}
        };
        match reply {
            Value::Array(items) => {
                let mut items = items.into_iter();
                while let (Some(name), Some(value)) = (items.next(), items.next()) {
                    set(name, value);
                }
            }
            Value::Map(pairs) => {
                for (name, value) in pairs {
                    set(name, value);
                }
            }
            _ => {}
        }
        fields
    }
}

fn text(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => std::str::from_utf8(text(other)?).ok()?.parse().ok(),
    }
}

/// The server's clock from a `TIME` reply, in µs since the Unix epoch.
fn server_time(reply: &Value) -> Option<u64> {
    match reply {
        Value::Array(parts) if parts.len() == 2 => {
            Some(number(&parts[0])? * 1_000_000 + number(&parts[1])?)
        }
        _ => None,
    }
}

/// Turns [`scripts::LIST`]'s reply for `keys` into listings: entries with no `time` (gone
/// since the `SCAN`, or garbled beyond use) are skipped, as `get` treats them as misses.
fn listed(keys: &[Vec<u8>], reply: &[Value], out: &mut Vec<EntryInfo>) -> RedisResult<()> {
    let bad = || {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "unexpected reply to the listing script",
        ))
    };
    let now = match reply {
        [secs, micros, ..] => number(secs)
            .zip(number(micros))
            .map(|(s, us)| s * 1_000_000 + us)
            .ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let rows = &reply[2..];
    if rows.len() != keys.len() * 6 {
        return Err(bad());
    }
    for (redis_key, row) in keys.iter().zip(rows.chunks_exact(6)) {
        let (Some(key), Some(stored)) = (key_of(redis_key), number(&row[0])) else {
            continue;
        };
        let size = match row[4] {
            Value::Int(n) => u64::try_from(n).ok(),
            _ => None,
        };
        let claim = text(&row[2]).map(|t| String::from_utf8_lossy(t).into_owned());
        let live = claim.is_some() && number(&row[3]).is_some_and(|deadline| deadline > now);
        out.push(EntryInfo {
            key,
            size: size.unwrap_or(0),
            time: UNIX_EPOCH + Duration::from_micros(stored),
            age: Duration::from_micros(now.saturating_sub(stored)),
            completed: text(&row[1]) == Some(b"1") && size.is_some(),
            claim: LiveClaim::if_live(live, claim),
            preview: text(&row[5]).and_then(preview_of),
        });
    }
    Ok(())
}

/// The channel the writes under `prefix` announce their changes on: `{prefix}:changes`. The
/// braces are a hash tag, so that the name keeps to one slot should it ever be used with
/// sharded pub/sub; plain `PUBLISH`, which the scripts use, reaches every node of a cluster.
pub(crate) fn changes_channel(prefix: &str) -> String {
    format!("{{{prefix}}}:changes")
}

/// What a message on the changes channel of `prefix` says: the namespace, and the key that
/// changed or `None` for any of its entries. `None` for a message of another shape.
pub(crate) fn change_of<'m>(prefix: &str, message: &'m [u8]) -> Option<(&'m str, Option<Key>)> {
    if let Some(all) = message.strip_suffix(b":*") {
        let text = std::str::from_utf8(all).ok()?;
        let name = text.strip_prefix(prefix)?.strip_prefix(':')?;
        return (!name.is_empty()).then_some((name, None));
    }
    Some((namespace_of(prefix, message)?, Some(key_of(message)?)))
}

/// `{prefix}:{namespace}:`, to which an entry's key appends its key hex.
pub(crate) fn namespace_base(prefix: &str, namespace: &Namespace) -> String {
    let mut base = String::with_capacity(prefix.len() + namespace.as_str().len() + 66);
    base.push_str(prefix);
    base.push(':');
    base.push_str(namespace.as_str());
    base.push(':');
    base
}

/// The `SCAN MATCH` pattern of the keys under `base`: glob characters escaped, then `?` × 64,
/// which matches exactly one key hex, so never another namespace's keys (not even one whose
/// name is this one's followed by ':' and more).
fn scan_pattern(base: &str) -> String {
    let mut pattern = glob_escape(base);
    pattern.push_str(&"?".repeat(64));
    pattern
}

/// `text` with the glob characters of `SCAN MATCH` escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The namespace in an entry's Redis key `{prefix}:{namespace}:{64 hex digits}`, if `key` is
/// one.
fn namespace_of<'k>(prefix: &str, key: &'k [u8]) -> Option<&'k str> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(prefix)?.strip_prefix(':')?;
    let (name, hex) = rest.split_at_checked(rest.len().checked_sub(65)?)?;
    let hex = hex.strip_prefix(':')?;
    (!name.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(name)
}

/// The key of an entry's Redis key: its last 64 hex digits.
fn key_of(redis_key: &[u8]) -> Option<Key> {
    let hex = redis_key.get(redis_key.len().checked_sub(64)?..)?;
    if !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    Key::from_hex(std::str::from_utf8(hex).ok()?)
}

/// Whole milliseconds, at least 1 (Redis TTLs are in ms; zero would delete at once).
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_read_back_from_keys() {
        let hex = "0f".repeat(32);
        let of = |key: String| namespace_of("app", key.as_bytes()).map(str::to_owned);
        assert_eq!(of(format!("app:m::f@2:{hex}")).as_deref(), Some("m::f@2"));
        assert_eq!(of(format!("app:a:b:{hex}")).as_deref(), Some("a:b"));
        assert_eq!(of(format!("app:ünï:{hex}")).as_deref(), Some("ünï"));
        assert_eq!(of(format!("app::{hex}")), None, "empty namespace");
        assert_eq!(of(format!("app:f{hex}")), None, "no ':' before the key");
        assert_eq!(of(format!("app:f:{}", "g".repeat(64))), None, "not hex");
        assert_eq!(of(format!("other:f:{hex}")), None, "another prefix");
        assert_eq!(of(format!("application:f:{hex}")), None, "a longer prefix");
        assert_eq!(of("app:f:short".into()), None);
        assert_eq!(namespace_of("app", b"app:\xff:\x00"), None);
        assert_eq!(
            key_of(format!("app:f:{hex}").as_bytes()),
            Key::from_hex(&hex)
        );
        assert_eq!(key_of(b"short"), None);
    }

    #[test]
    fn listing_replies_are_parsed_and_checked() {
        let hex = "ab".repeat(32);
        let keys = vec![
            format!("p:n:{hex}").into_bytes(),
            format!("p:n:{}", "cd".repeat(32)).into_bytes(),
            format!("p:n:{}", "ef".repeat(32)).into_bytes(),
        ];
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = vec![
            bulk("100"),
            bulk("500000"), // now: 100.5 s
            // A completed entry, stored at 100 s, 42 bytes, with a lapsed claim; its value
            // starts with an envelope carrying the preview "7".
            bulk("100000000"),
            bulk("1"),
            bulk("old"),
            bulk("100400000"),
            Value::Int(42),
            Value::BulkString(vec![2, 0, 1, b'7', 14]),
            // A placeholder under a live claim.
            bulk("100200000"),
            bulk("0"),
            bulk("tok"),
            bulk("101000000"),
            Value::Int(-1),
            Value::Nil,
            // Gone since the SCAN.
            Value::Nil,
            Value::Nil,
            Value::Nil,
            Value::Nil,
            Value::Int(-1),
            Value::Nil,
        ];
        let mut out = Vec::new();
        listed(&keys, &reply, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].key, Key::from_hex(&hex).unwrap());
        assert_eq!(out[0].size, 42);
        assert_eq!(out[0].age, Duration::from_millis(500));
        assert!(out[0].completed && !out[0].being_calculated());
        assert_eq!(out[0].claim_owner(), None);
        assert_eq!(out[0].preview.as_deref(), Some("7"));
        assert_eq!(out[1].size, 0);
        assert_eq!(out[1].preview, None);
        assert!(!out[1].completed && out[1].being_calculated());
        assert_eq!(out[1].claim_owner(), Some("tok"));
        assert_eq!(out[1].age, Duration::from_millis(300));
        assert!(
            listed(&keys, &reply[..12], &mut out).is_err(),
            "short reply"
        );
        assert!(listed(&keys, &[], &mut out).is_err(), "no clock");
    }

    #[test]
    fn change_messages_name_a_key_or_a_whole_namespace() {
        let hex = "0f".repeat(32);
        let key = Key::from_hex(&hex);
        let of = |m: String| change_of("app", m.as_bytes()).map(|(n, k)| (n.to_owned(), k));
        assert_eq!(of(format!("app:m::f:{hex}")), Some(("m::f".into(), key)));
        assert_eq!(of("app:m::f:*".into()), Some(("m::f".into(), None)));
        assert_eq!(of("app:a:*:*".into()), Some(("a:*".into(), None)));
        assert_eq!(of("app::*".into()), None, "empty namespace");
        assert_eq!(of("other:f:*".into()), None, "another prefix");
        assert_eq!(of("app:f:notakey".into()), None);
        assert_eq!(change_of("app", b"app:\xff:*"), None);
        assert_eq!(changes_channel("app"), "{app}:changes");
    }

    #[test]
    fn scan_pattern_escapes_glob_characters() {
        let ns = Namespace::new("a*b?[c]\\d", None).unwrap();
        let pattern = scan_pattern(&namespace_base("cachier", &ns));
        assert_eq!(
            pattern,
            format!("cachier:a\\*b\\?\\[c\\]\\\\d:{}", "?".repeat(64))
        );
    }
}
