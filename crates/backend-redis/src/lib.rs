#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(feature = "async")]
mod nonblocking;
mod pool;
mod scripts;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cachier_core::{
    claim_then_get, Backend, CacheEntry, Claim, ClaimAndGet, ClaimToken, Core, EntryInfo, Error,
    Key, Namespace,
};
use redis::{RedisResult, Value};

#[cfg(feature = "async")]
use crate::nonblocking::RedisAsyncCore;
use crate::pool::{Pool, PoolSettings, Request};

/// The `redis` crate this backend is built on, so callers can build a [`redis::Client`] for
/// [`RedisBackend::from_client`] without matching versions.
pub use redis;

/// The key prefix unless [`RedisBackendBuilder::prefix`] changes it (cachier's).
pub const DEFAULT_PREFIX: &str = "cachier";

/// Keys fetched per `SCAN` step (and deleted or checked per round trip) by the namespace-wide
/// operations.
const SCAN_BATCH: usize = 1000;

/// A Redis (or Valkey) server shared by processes and machines: one hash per entry under
/// `{prefix}:{namespace}:{key hex}`. Clones share one connection pool.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

struct Shared {
    pool: Pool,
    prefix: String,
    evict_after: Option<Duration>,
    /// The server, as it may be shown (no password).
    shown: String,
}

/// Configures a [`RedisBackend`]; made by [`RedisBackend::builder`] or
/// [`RedisBackend::from_client`].
#[must_use]
pub struct RedisBackendBuilder {
    source: Source,
    prefix: String,
    evict_after: Option<Duration>,
    settings: PoolSettings,
}

enum Source {
    Url(String),
    Client(Box<redis::Client>),
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = match &self.source {
            Source::Url(url) => cachier_core::redact_url(url),
            Source::Client(client) => format!("{:?}", client.get_connection_info().addr()),
        };
        f.debug_struct("RedisBackendBuilder")
            .field("server", &server)
            .field("prefix", &self.prefix)
            .field("evict_after", &self.evict_after)
            .field("settings", &self.settings)
            .finish()
    }
}

impl RedisBackendBuilder {
    fn new(source: Source) -> RedisBackendBuilder {
        RedisBackendBuilder {
            source,
            prefix: DEFAULT_PREFIX.to_owned(),
            evict_after: None,
            settings: PoolSettings {
                connect_timeout: Duration::from_secs(1),
                response_timeout: Duration::from_secs(2),
                reconnect_backoff: Duration::from_millis(250),
                max_idle: 16,
            },
        }
    }

    /// The first part of every key (default `"cachier"`): separates applications sharing a
    /// server.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Lets the server delete an entry this long after it was stored (a TTL; cachier never
    /// expires Redis keys). Without it entries stay until cleared or cleaned up.
    pub fn evict_after(mut self, ttl: Duration) -> Self {
        self.evict_after = Some(ttl);
        self
    }

    /// How long opening a connection may take (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long one request may wait for its reply (default 2 s): a hung server fails the
    /// call (a warning and an uncached result by default) instead of blocking it.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.settings.response_timeout = timeout;
        self
    }

    /// After a failed connection attempt, operations fail at once for this long before the
    /// next attempt (default 250 ms), so an unreachable server costs calls nothing.
    pub fn reconnect_backoff(mut self, backoff: Duration) -> Self {
        self.settings.reconnect_backoff = backoff;
        self
    }

    /// Connections kept open between calls (default 16); more are opened under load and
    /// closed after use.
    pub fn max_idle_connections(mut self, n: usize) -> Self {
        self.settings.max_idle = n;
        self
    }

    /// Checks the configuration. Does not connect: a server that is down now makes calls
    /// run uncached (with warnings) until it is back.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL the `redis` crate cannot use (naming what to change), an
    /// empty prefix, or a zero timeout or TTL.
    pub fn build(self) -> Result<RedisBackend, Error> {
        let (client, shown) = match self.source {
            Source::Url(url) => {
                let shown = cachier_core::redact_url(&url);
                let client = redis::Client::open(url.as_str()).map_err(|e| {
                    Error::config(
                        "url",
                        format!("{shown}: {} (expected redis://[user:password@]host[:port][/db], rediss://... with the `tls` feature, or redis+unix:///path/to.sock[?db=N])", cachier_core::redact_message(&url, &e.to_string())),
                    )
                })?;
                (client, shown)
            }
            Source::Client(client) => {
                let shown = format!("{:?}", client.get_connection_info().addr());
                (*client, shown)
            }
        };
        if self.prefix.is_empty() || self.prefix.chars().any(char::is_control) {
            return Err(Error::config(
                "prefix",
                "must be non-empty text without control characters",
            ));
        }
        let positive = |param: &'static str, d: Duration| {
            if d.is_zero() {
                Err(Error::config(param, "must be longer than zero"))
            } else {
                Ok(())
            }
        };
        positive("connect_timeout", self.settings.connect_timeout)?;
        positive("response_timeout", self.settings.response_timeout)?;
        if let Some(ttl) = self.evict_after {
            if ttl < Duration::from_millis(1) {
                return Err(Error::config("evict_after", "must be at least 1 ms"));
            }
        }
        Ok(RedisBackend {
            shared: Arc::new(Shared {
                pool: Pool::new(client, self.settings),
                prefix: self.prefix,
                evict_after: self.evict_after,
                shown,
            }),
        })
    }
}

impl RedisBackend {
    /// The backend of the server at `url`, with default settings.
    ///
    /// # Errors
    /// See [`RedisBackendBuilder::build`].
    pub fn from_url(url: &str) -> Result<RedisBackend, Error> {
        RedisBackend::builder(url).build()
    }

    /// A builder for the server at `url`: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://...` (TLS, with the `tls` feature; `#insecure` accepts any certificate) or
    /// `redis+unix:///path/to.sock[?db=N&user=U&pass=P]`.
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder::new(Source::Url(url.into()))
    }

    /// A builder on a client the caller made (for settings a URL cannot say).
    pub fn from_client(client: redis::Client) -> RedisBackendBuilder {
        RedisBackendBuilder::new(Source::Client(Box::new(client)))
    }

    /// The Redis key of `key` in `namespace`: `{prefix}:{namespace}:{key hex}`.
    pub fn redis_key(&self, namespace: &Namespace, key: &Key) -> String {
        let mut out = namespace_base(&self.shared.prefix, namespace);
        key.push_hex(&mut out);
        out
    }

    /// The client the connections are opened with.
    pub fn client(&self) -> &redis::Client {
        self.shared.pool.client()
    }

    /// The native async store of `namespace` (what [`Backend::async_core`] returns), for
    /// callers that drive a store themselves.
    #[cfg(feature = "async")]
    pub fn async_store(&self, namespace: &Namespace) -> impl cachier_core::AsyncCore + fmt::Debug {
        RedisAsyncCore::new(self.open(namespace))
    }

    fn open(&self, namespace: &Namespace) -> RedisCore {
        let base = namespace_base(&self.shared.prefix, namespace);
        RedisCore {
            shared: self.shared.clone(),
            pattern: scan_pattern(&base),
            base,
            evict_ms: self.shared.evict_after.map_or(0, duration_ms),
        }
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.shared.shown)
            .field("prefix", &self.shared.prefix)
            .field("evict_after", &self.shared.evict_after)
            .finish()
    }
}

impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn core(&self, namespace: &Namespace) -> Result<Arc<dyn Core>, Error> {
        Ok(Arc::new(self.open(namespace)))
    }

    /// The native async store (`RedisAsyncCore`): the same requests as the blocking core,
    /// sent on the caller's runtime.
    #[cfg(feature = "async")]
    fn async_core(
        &self,
        namespace: &Namespace,
        core: &Arc<dyn Core>,
    ) -> Result<Arc<dyn cachier_core::AsyncCore>, Error> {
        let _ = core;
        Ok(Arc::new(self.async_store(namespace)))
    }

    /// Walks `{prefix}:*` with `SCAN` (never `KEYS`) and reads each namespace from its keys:
    /// everything between the prefix and the last `:` + 64 hex digits, so namespaces with
    /// `:` in them come back whole. Keys of other layouts under the prefix are ignored.
    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let mut pattern = glob_escape(&self.shared.prefix);
        pattern.push_str(":*");
        let mut sweep = Sweep::Namespaces {
            prefix: self.shared.prefix.clone(),
            names: BTreeSet::new(),
        };
        sweep.run(&self.shared.pool, "namespaces", &pattern)?;
        let Sweep::Namespaces { names, .. } = sweep else {
            unreachable!("the sweep stays what it was made")
        };
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

/// One `SCAN` step (never `KEYS`, which blocks the server for the whole keyspace).
fn scan_step(pattern: &str, cursor: u64) -> Request<'static> {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_BATCH);
    Request::Cmd(cmd)
}

/// A namespace-wide operation: what it sends for each batch of keys a `SCAN` step returns,
/// and what it makes of the replies. Both paths walk the keys with it ([`Sweep::run`] and
/// its async twin), so they send the same requests.
enum Sweep {
    /// `clear_cache`: `UNLINK` each batch.
    Unlink,
    /// `clear_being_calculated`: [`scripts::UNCLAIM`] on each batch.
    Unclaim,
    /// `delete_stale_entries`: [`scripts::DELETE_STALE`], counting deletions.
    DeleteStale { limit_us: u64, deleted: u64 },
    /// `len`: counts keys, sends nothing.
    Count(u64),
    /// `entries`: [`scripts::LIST`], gathering listings.
    List(Vec<EntryInfo>),
    /// `Backend::namespaces`: reads namespaces from keys, sends nothing.
    Namespaces {
        prefix: String,
        names: BTreeSet<String>,
    },
}

impl Sweep {
    /// The request for one batch of keys, if this operation sends one.
    fn request<'k>(&self, keys: &'k [Vec<u8>]) -> Option<Request<'k>> {
        let script = |script: &'static redis::Script| {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            invocation
        };
        match self {
            Sweep::Unlink => {
                let mut cmd = redis::cmd("UNLINK");
                cmd.arg(keys);
                Some(Request::Cmd(cmd))
            }
            Sweep::Unclaim => Some(Request::Script(script(&scripts::UNCLAIM))),
            Sweep::DeleteStale { limit_us, .. } => {
                let mut invocation = script(&scripts::DELETE_STALE);
                invocation.arg(*limit_us);
                Some(Request::Script(invocation))
            }
            Sweep::List(_) => Some(Request::Script(script(&scripts::LIST))),
            Sweep::Count(_) | Sweep::Namespaces { .. } => None,
        }
    }

    /// Takes in one batch and the reply to its request (`Nil` when none was sent).
    fn absorb(&mut self, keys: &[Vec<u8>], reply: Value) -> RedisResult<()> {
        match self {
            Sweep::Unlink | Sweep::Unclaim => {}
            Sweep::DeleteStale { deleted, .. } => {
                *deleted += redis::from_redis_value::<u64>(reply)?;
            }
            Sweep::Count(n) => *n += keys.len() as u64,
            Sweep::List(out) => {
                let rows: Vec<Value> = redis::from_redis_value(reply)?;
                listed(keys, &rows, out)?;
            }
            Sweep::Namespaces { prefix, names } => {
                for key in keys {
                    if let Some(name) = namespace_of(prefix, key) {
                        names.insert(name.to_owned());
                    }
                }
            }
        }
        Ok(())
    }

    /// After the last batch: `SCAN` may return a key twice.
    fn finish(&mut self) {
        if let Sweep::List(out) = self {
            out.sort_by_key(|e| e.key);
            out.dedup_by_key(|e| e.key);
        }
    }

    /// Walks every key matching `pattern`, one `SCAN` step and at most one request per batch
    /// of [`SCAN_BATCH`] keys.
    fn run(&mut self, pool: &Pool, operation: &'static str, pattern: &str) -> Result<(), Error> {
        let mut cursor = 0u64;
        loop {
            let step = scan_step(pattern, cursor);
            let (next, keys): (u64, Vec<Vec<u8>>) = pool.run(operation, |con| step.send(con))?;
            if !keys.is_empty() {
                let reply = match self.request(&keys) {
                    Some(request) => pool.run(operation, |con| request.send(con))?,
                    None => Value::Nil,
                };
                self.absorb(&keys, reply)
                    .map_err(|e| Error::backend("redis", operation, e))?;
            }
            if next == 0 {
                self.finish();
                return Ok(());
            }
            cursor = next;
        }
    }
}

fn namespace_base(prefix: &str, namespace: &Namespace) -> String {
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

/// Whole milliseconds, at least 1 (Redis TTLs are in ms; zero would delete at once).
fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One function's entries on the server.
#[derive(Clone)]
pub struct RedisCore {
    shared: Arc<Shared>,
    /// `{prefix}:{namespace}:`
    base: String,
    /// `SCAN MATCH` pattern of this namespace's entries.
    pattern: String,
    /// TTL set on stored values, 0 = none.
    evict_ms: u64,
}

impl fmt::Debug for RedisCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCore")
            .field("server", &self.shared.shown)
            .field("keys", &self.base)
            .finish()
    }
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

/// The server's clock from a `TIME` reply, in µs since the Unix epoch.
fn server_time(reply: &Value) -> Option<u64> {
    match reply {
        Value::Array(parts) if parts.len() == 2 => {
            Some(number(&parts[0])? * 1_000_000 + number(&parts[1])?)
        }
        _ => None,
    }
}

/// True for a `WRONGTYPE` reply: something that is not one of our hashes sits at the key.
fn wrong_type(error: &redis::RedisError) -> bool {
    error.code() == Some("WRONGTYPE") || error.to_string().contains("WRONGTYPE")
}

impl RedisCore {
    fn entry_key(&self, key: &Key) -> String {
        let mut out = String::with_capacity(self.base.len() + 64);
        out.push_str(&self.base);
        key.push_hex(&mut out);
        out
    }

    /// Walks this namespace's keys with `sweep` (see [`Sweep::run`]).
    fn sweep(&self, operation: &'static str, mut sweep: Sweep) -> Result<Sweep, Error> {
        sweep.run(&self.shared.pool, operation, &self.pattern)?;
        Ok(sweep)
    }

    /// A hit's one round trip: the hash and the server's clock, pipelined. Read the reply
    /// with [`decode_get`].
    fn get_request(&self, entry_key: &str) -> Request<'static> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(entry_key).cmd("TIME");
        Request::Pipe(pipe)
    }

    fn put_request<'a>(
        &self,
        entry_key: &str,
        value: &[u8],
        claim: Option<&ClaimToken>,
    ) -> Request<'a> {
        let token = claim.map_or("", ClaimToken::as_str);
        let mut invocation = scripts::PUT.prepare_invoke();
        invocation
            .key(entry_key)
            .arg(value)
            .arg(token)
            .arg(self.evict_ms);
        Request::Script(invocation)
    }

    /// Read the reply with [`claimed`]. `token` is made once per claim: a retry of the same
    /// request finds its own claim and reports it claimed.
    fn claim_request<'a>(
        &self,
        entry_key: &str,
        token: &ClaimToken,
        lease: Duration,
    ) -> Request<'a> {
        let mut invocation = scripts::CLAIM.prepare_invoke();
        invocation
            .key(entry_key)
            .arg(token.as_str())
            .arg(duration_us(lease).max(1))
            .arg(duration_ms(lease))
            .arg(if self.evict_ms > 0 { "1" } else { "0" });
        Request::Script(invocation)
    }

    /// The claim script and the entry's read, pipelined: one round trip for a miss's claim
    /// and the re-read after it. The server runs them in order; a write landing between them
    /// only makes the read newer.
    fn claim_and_get_request<'a>(
        &self,
        entry_key: &str,
        token: &ClaimToken,
        lease: Duration,
    ) -> Request<'a> {
        let Request::Script(claim) = self.claim_request(entry_key, token, lease) else {
            unreachable!("a claim is a script")
        };
        let mut pipe = redis::pipe();
        pipe.invoke_script(&claim)
            .cmd("HGETALL")
            .arg(entry_key)
            .cmd("TIME");
        Request::Pipe(pipe)
    }

    fn release_request<'a>(&self, entry_key: &str, claim: &ClaimToken) -> Request<'a> {
        let mut invocation = scripts::RELEASE.prepare_invoke();
        invocation.key(entry_key).arg(claim.as_str());
        Request::Script(invocation)
    }
}

/// The entry in the reply to [`RedisCore::get_request`]. A `WRONGTYPE` error (something not
/// ours at the entry's key) is a miss.
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
    let completed = fields.completed && fields.value.is_some();
    Ok(Some(CacheEntry {
        value: fields.value.map(Arc::from),
        time: UNIX_EPOCH + Duration::from_micros(stored),
        age: Duration::from_micros(now.saturating_sub(stored)),
        completed,
        being_calculated: live,
        claim_owner: if live { fields.claim } else { None },
    }))
}

/// The answer to [`RedisCore::claim_request`]'s script.
/// Turns the reply to [`RedisCore::claim_and_get_request`] into the claim and, when claimed,
/// the entry as read just after it.
fn claimed_and_read(entry_key: &str, reply: (i64, Value, Value), token: ClaimToken) -> ClaimAndGet {
    let (answer, hash, time) = reply;
    let claim = claimed(answer, token);
    let entry = match claim {
        Claim::Claimed(_) => decode_get(entry_key, Ok((hash, time))),
        Claim::Busy => Ok(None),
    };
    ClaimAndGet { claim, entry }
}

/// Whether `error` says the server does not have a script loaded (after a restart or a
/// `SCRIPT FLUSH`): sending it once as a script invocation loads it again.
fn no_script(error: &Error) -> bool {
    matches!(error, Error::Backend { source, .. }
    if source.downcast_ref::<redis::RedisError>().is_some_and(|e| {
        e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
    }))
}

fn claimed(reply: i64, token: ClaimToken) -> Claim {
    if reply == 1 {
        Claim::Claimed(token)
    } else {
        Claim::Busy
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
    if rows.len() != keys.len() * 5 {
        return Err(bad());
    }
    for (redis_key, row) in keys.iter().zip(rows.chunks_exact(5)) {
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
            being_calculated: live,
            claim_owner: if live { claim } else { None },
        });
    }
    Ok(())
}

impl Core for RedisCore {
    fn get(&self, key: &Key) -> Result<Option<CacheEntry>, Error> {
        let entry_key = self.entry_key(key);
        let request = self.get_request(&entry_key);
        let reply = self.shared.pool.run("get", |con| request.send(con));
        decode_get(&entry_key, reply)
    }

    fn put(&self, key: &Key, value: &[u8], claim: Option<&ClaimToken>) -> Result<(), Error> {
        let request = self.put_request(&self.entry_key(key), value, claim);
        self.shared
            .pool
            .run("put", |con| request.send::<i64>(con))?;
        Ok(())
    }

    fn claim(&self, key: &Key, lease: Duration) -> Result<Claim, Error> {
        let token = ClaimToken::new();
        let request = self.claim_request(&self.entry_key(key), &token, lease);
        let reply = self.shared.pool.run("claim", |con| request.send(con))?;
        Ok(claimed(reply, token))
    }

    fn claim_and_get(&self, key: &Key, lease: Duration) -> Result<ClaimAndGet, Error> {
        let entry_key = self.entry_key(key);
        let token = ClaimToken::new();
        let request = self.claim_and_get_request(&entry_key, &token, lease);
        match self.shared.pool.run("claim", |con| request.send(con)) {
            Ok(reply) => Ok(claimed_and_read(&entry_key, reply, token)),
            // Nothing was claimed: claim as a script invocation (which loads it), then read.
            Err(error) if no_script(&error) => claim_then_get(self, key, lease),
            Err(error) => Err(error),
        }
    }

    fn renew(&self, key: &Key, claim: &ClaimToken, lease: Duration) -> Result<bool, Error> {
        let entry_key = self.entry_key(key);
        let renewed = self.shared.pool.run("renew", |con| {
            scripts::RENEW
                .key(&entry_key)
                .arg(claim.as_str())
                .arg(duration_us(lease).max(1))
                .arg(duration_ms(lease))
                .invoke::<i64>(con)
        })?;
        Ok(renewed == 1)
    }

    fn release(&self, key: &Key, claim: &ClaimToken) -> Result<(), Error> {
        let request = self.release_request(&self.entry_key(key), claim);
        self.shared
            .pool
            .run("release", |con| request.send::<i64>(con))?;
        Ok(())
    }

    fn clear_cache(&self) -> Result<(), Error> {
        self.sweep("clear_cache", Sweep::Unlink).map(drop)
    }

    fn clear_being_calculated(&self) -> Result<(), Error> {
        self.sweep("clear_being_calculated", Sweep::Unclaim)
            .map(drop)
    }

    fn delete_stale_entries(&self, older_than: Duration) -> Result<u64, Error> {
        let sweep = Sweep::DeleteStale {
            limit_us: duration_us(older_than),
            deleted: 0,
        };
        match self.sweep("delete_stale_entries", sweep)? {
            Sweep::DeleteStale { deleted, .. } => Ok(deleted),
            _ => unreachable!("the sweep stays what it was made"),
        }
    }

    fn len(&self) -> Result<u64, Error> {
        match self.sweep("len", Sweep::Count(0))? {
            Sweep::Count(n) => Ok(n),
            _ => unreachable!("the sweep stays what it was made"),
        }
    }

    /// One `SCAN` step and one script per batch of 1,000 keys; values never cross the wire
    /// (`HSTRLEN` sizes them), and ages and claims are judged by the server's clock, as `get`
    /// judges them.
    fn entries(&self) -> Result<Vec<EntryInfo>, Error> {
        match self.sweep("entries", Sweep::List(Vec::new()))? {
            Sweep::List(out) => Ok(out),
            _ => unreachable!("the sweep stays what it was made"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_layout() {
        let backend = RedisBackend::builder("redis://127.0.0.1:1/0")
            .prefix("app")
            .build()
            .unwrap();
        let ns = Namespace::new("m::f", Some("2")).unwrap();
        let key = Key::from_bytes([0xab; 32]);
        assert_eq!(
            backend.redis_key(&ns, &key),
            format!("app:m::f@2:{}", "ab".repeat(32))
        );
        assert_eq!(key.to_hex(), "ab".repeat(32));
    }

    #[test]
    fn bad_configuration_is_a_config_error() {
        let check = |result: Result<RedisBackend, Error>, param: &str| match result {
            Err(Error::Config { param: p, message }) => {
                assert_eq!(p, param);
                assert!(!message.contains("s3cret"), "{message}");
            }
            other => panic!("expected a config error for {param}, got {other:?}"),
        };
        check(RedisBackend::from_url("http://user:s3cret@host/"), "url");
        check(
            RedisBackend::from_url("redis://user:s3cret@host/notadb"),
            "url",
        );
        check(
            RedisBackend::builder("redis://127.0.0.1/")
                .prefix("")
                .build(),
            "prefix",
        );
        check(
            RedisBackend::builder("redis://127.0.0.1/")
                .evict_after(Duration::ZERO)
                .build(),
            "evict_after",
        );
        check(
            RedisBackend::builder("redis://127.0.0.1/")
                .response_timeout(Duration::ZERO)
                .build(),
            "response_timeout",
        );
        #[cfg(not(feature = "tls"))]
        check(RedisBackend::from_url("rediss://127.0.0.1/"), "url");
    }

    #[test]
    fn debug_output_hides_credentials() {
        let builder = RedisBackend::builder("redis://user:s3cret@127.0.0.1:6379/0");
        assert!(!format!("{builder:?}").contains("s3cret"));
        let backend = builder.build().unwrap();
        let shown = format!("{backend:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("user:***@127.0.0.1:6379/0"), "{shown}");
        let core = backend.core(&Namespace::new("n", None).unwrap()).unwrap();
        let _ = core; // `dyn Core` has no Debug; RedisCore's shows the redacted server only.
        let client = redis::Client::open("redis://user:s3cret@127.0.0.1:6379/0").unwrap();
        let from_client = RedisBackend::from_client(client).build().unwrap();
        assert!(!format!("{from_client:?}").contains("s3cret"));
    }

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
            // A completed entry, stored at 100 s, 42 bytes, with a lapsed claim.
            bulk("100000000"),
            bulk("1"),
            bulk("old"),
            bulk("100400000"),
            Value::Int(42),
            // A placeholder under a live claim.
            bulk("100200000"),
            bulk("0"),
            bulk("tok"),
            bulk("101000000"),
            Value::Int(-1),
            // Gone since the SCAN.
            Value::Nil,
            Value::Nil,
            Value::Nil,
            Value::Nil,
            Value::Int(-1),
        ];
        let mut out = Vec::new();
        listed(&keys, &reply, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].key, Key::from_hex(&hex).unwrap());
        assert_eq!(out[0].size, 42);
        assert_eq!(out[0].age, Duration::from_millis(500));
        assert!(out[0].completed && !out[0].being_calculated);
        assert_eq!(out[0].claim_owner, None);
        assert_eq!(out[1].size, 0);
        assert!(!out[1].completed && out[1].being_calculated);
        assert_eq!(out[1].claim_owner.as_deref(), Some("tok"));
        assert_eq!(out[1].age, Duration::from_millis(300));
        assert!(
            listed(&keys, &reply[..10], &mut out).is_err(),
            "short reply"
        );
        assert!(listed(&keys, &[], &mut out).is_err(), "no clock");
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
