#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod call_defaults;
mod error;
mod redact;
mod size;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::RwLock;

pub use call_defaults::CallDefaults;
pub use error::{chain_message, BoxError, Error, ErrorKind, Result, SharedError};
pub use redact::{redact_message, redact_url};
pub use size::{parse_bytes, parse_duration, SizeSpec};

/// Environment variable overriding the default cache directory.
pub const CACHE_DIR_ENV: &str = "CACHIER_CACHE_DIR";
/// Environment variable setting the background pool's size (cachier's name).
pub const MAX_WORKERS_ENV: &str = "CACHIER_MAX_WORKERS";
/// Background workers when [`MAX_WORKERS_ENV`] is unset (cachier's default).
pub const DEFAULT_MAX_WORKERS: usize = 8;
/// Environment variable turning argument previews on or off (`1`/`true`/`on` or
/// `0`/`false`/`off`) for functions that do not set `preview_args` themselves.
pub const PREVIEW_ARGS_ENV: &str = "CACHIER_PREVIEW_ARGS";
/// Environment variable naming the default backend by URL, so that a deployed program moves
/// from the local file cache to a shared server without a code change.
pub const BACKEND_URL_ENV: &str = "CACHIER_BACKEND_URL";
/// Name of the file backend, the default (cachier calls it "pickle").
pub const FILE_BACKEND: &str = "pickle";
/// Name of the in-process memory backend.
pub const MEMORY_BACKEND: &str = "memory";

/// The global parameters. Functions read the call-time ones on every call, so changing them
/// affects functions built earlier (see the crate docs for which are resolved when).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// Read on every call; `false` makes every memoized function call straight through.
    pub caching_enabled: bool,
    /// The backend used when a function names none: `"pickle"` (the file backend),
    /// `"memory"`, or a backend URL (`redis://…`, `postgres://…`, `sqlite:///path`,
    /// `mongodb://…`, `s3://bucket/prefix`, `file:///dir`, `memory:`), by default from [`BACKEND_URL_ENV`].
    pub backend: BackendSpec,
    /// Age after which an entry is stale; `None` = never.
    pub stale_after: Option<Duration>,
    /// On a stale hit, return the stale value and refresh it in the background.
    pub next_time: bool,
    /// Directory of the file backend; `None` = the default, resolved by [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// File backend: one file per entry instead of one store per function.
    pub separate_files: bool,
    /// How long a caller waits for another caller's computation before computing itself;
    /// zero = until that computation finishes or its lease lapses.
    pub wait_for_calc_timeout: Duration,
    /// Serve cached `None` results.
    pub allow_none: bool,
    /// Delete stale entries in the background, at most once per `cleanup_interval`.
    pub cleanup_stale: bool,
    /// Minimum time between two stale cleanups of one function.
    pub cleanup_interval: Duration,
    /// Values whose encoded size exceeds this many bytes are returned but not stored.
    pub entry_size_limit: Option<u64>,
    /// Threads of the background pool (refreshes and cleanups).
    pub max_workers: usize,
    /// Let the `#[cachier]` macro memoize `&self` methods with `self` left out of the key.
    pub allow_non_static_methods: bool,
    /// The near cache of functions that set none: `None` (the default) keeps one in front of
    /// in-process stores only (the memory backend, as large as the store:
    /// [`NearCache::unbounded`]), [`NearCache::OFF`] none anywhere. Read when a function is
    /// built.
    pub near_cache: Option<NearCache>,
    /// Store a short, readable preview of the arguments with each entry (at most 120 bytes,
    /// rendered from their serialized form), so that `cachier show` can say which arguments
    /// an entry belongs to. On by default ([`PREVIEW_ARGS_ENV`] changes the default); turn it
    /// off where arguments carry secrets, since anyone who can read the store reads the
    /// preview. Read when a function is built.
    pub preview_args: bool,
}

/// The near cache of a function: its values kept typed in this process, in front of its
/// store, so that a hit costs no hashing of the key, no decoding and no store access. Other
/// processes' changes reach it through the store's change notifications; a store without
/// them has its near entries served for at most [`NearCache::unwatched_ttl`].
///
/// Bounded in entries, bytes or both (bytes count each value's encoded size, its arguments'
/// and a fixed overhead per entry); past a bound, the least recently hit entries go first
/// (CLOCK, per shard of the cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCache {
    /// At most this many entries (`None`: no bound in entries).
    pub max_entries: Option<usize>,
    /// At most about this many bytes (`None`: no bound in bytes).
    pub max_bytes: Option<u64>,
    /// How long an entry of a store that cannot tell of changes is served.
    pub unwatched_ttl: Duration,
}

impl NearCache {
    /// No near cache.
    pub const OFF: NearCache = NearCache::entries(0);

    /// A near cache of at most `n` entries (0 turns it off).
    pub const fn entries(n: usize) -> NearCache {
        NearCache {
            max_entries: Some(n),
            max_bytes: None,
            unwatched_ttl: Duration::from_secs(1),
        }
    }

    /// A near cache with no bound of its own: in front of an in-process store (the default
    /// there), which tells it of every value it evicts, it holds no more than the store.
    pub const fn unbounded() -> NearCache {
        NearCache {
            max_entries: None,
            max_bytes: None,
            unwatched_ttl: Duration::from_secs(1),
        }
    }

    /// A near cache of at most about `n` bytes.
    pub const fn bytes(n: u64) -> NearCache {
        NearCache {
            max_entries: None,
            max_bytes: Some(n),
            unwatched_ttl: Duration::from_secs(1),
        }
    }

    /// Also at most about `n` bytes.
    pub const fn max_bytes(mut self, n: u64) -> NearCache {
        self.max_bytes = Some(n);
        self
    }

    /// How long an entry is served when the store cannot tell of changes (default 1 s).
    pub const fn unwatched_ttl(mut self, ttl: Duration) -> NearCache {
        self.unwatched_ttl = ttl;
        self
    }

    /// Whether this keeps anything.
    pub const fn is_on(&self) -> bool {
        !matches!(self.max_entries, Some(0)) && !matches!(self.max_bytes, Some(0))
    }
}

impl Default for NearCache {
    /// [`NearCache::DEFAULT_ENTRIES`] entries.
    fn default() -> Self {
        NearCache::entries(NearCache::DEFAULT_ENTRIES)
    }
}

impl NearCache {
    /// The size of the default near cache, in entries.
    pub const DEFAULT_ENTRIES: usize = 10_000;
}

impl Default for Settings {
    /// cachier's defaults, with `max_workers` from [`MAX_WORKERS_ENV`].
    fn default() -> Self {
        Settings {
            caching_enabled: true,
            backend: backend_from_env(),
            stale_after: None,
            next_time: false,
            cache_dir: None,
            separate_files: false,
            wait_for_calc_timeout: Duration::ZERO,
            allow_none: false,
            cleanup_stale: false,
            cleanup_interval: Duration::from_secs(24 * 60 * 60),
            entry_size_limit: None,
            max_workers: max_workers_from_env(),
            allow_non_static_methods: false,
            near_cache: None,
            preview_args: preview_args_from_env(),
        }
    }
}

impl Settings {
    /// The cache directory: the configured one, or [`default_cache_dir`].
    pub fn resolved_cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }
}

/// `$CACHIER_CACHE_DIR`, else `$XDG_CACHE_HOME/cachier` when set and non-empty, else `~/.cachier/`
/// (cachier's rule), read when called.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = non_empty_env(CACHE_DIR_ENV) {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = non_empty_env("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("cachier");
    }
    dirs::home_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join(".cachier")
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The backend [`BACKEND_URL_ENV`] names. A value that is not a backend is kept with its
/// error, never replaced by another store: functions on the default backend then run
/// uncached and report it.
fn backend_from_env() -> BackendSpec {
    match std::env::var(BACKEND_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => {
            BackendSpec::parse(url.trim()).unwrap_or_else(|error| BackendSpec {
                text: url.trim().to_owned(),
                error: Some(Error::config(
                    "backend",
                    format!(
                        "{BACKEND_URL_ENV} is not a backend: {}",
                        chain_message(&error)
                    ),
                )),
            })
        }
        _ => BackendSpec::named(FILE_BACKEND),
    }
}

fn max_workers_from_env() -> usize {
    match std::env::var(MAX_WORKERS_ENV) {
        Err(_) => DEFAULT_MAX_WORKERS,
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!(
                    "cachier: ignoring {MAX_WORKERS_ENV}={text:?} (expected a whole number of at least 1); using {DEFAULT_MAX_WORKERS}"
                );
                DEFAULT_MAX_WORKERS
            }
        },
    }
}

fn preview_args_from_env() -> bool {
    const DEFAULT: bool = true;
    match std::env::var(PREVIEW_ARGS_ENV) {
        Err(_) => DEFAULT,
        Ok(text) => match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                eprintln!(
                    "cachier: ignoring {PREVIEW_ARGS_ENV}={text:?} (expected 1, true, on, 0, false or off); previews stay on"
                );
                DEFAULT
            }
        },
    }
}

/// The live settings. `caching_enabled` and the [`CallDefaults`] sit apart in atomics: every
/// call reads them.
static GLOBAL: LazyLock<RwLock<Arc<Settings>>> = LazyLock::new(|| {
    let settings = Settings::default();
    CALL_DEFAULTS.store(&CallDefaults::of(&settings));
    RwLock::new(Arc::new(settings))
});
static CACHING_ENABLED: AtomicBool = AtomicBool::new(true);
static CALL_DEFAULTS: call_defaults::Published = call_defaults::Published::new();

/// A snapshot of the global parameters.
pub fn get_global_params() -> Settings {
    let mut settings = (**GLOBAL.read()).clone();
    settings.caching_enabled = caching_enabled();
    settings
}

/// The global parameters without copying them.
pub fn global_params() -> Arc<Settings> {
    GLOBAL.read().clone()
}

/// The global parameters a call resolves: what the call engine reads on every call, without
/// a lock (a few atomic loads).
pub fn call_defaults() -> CallDefaults {
    LazyLock::force(&GLOBAL);
    CALL_DEFAULTS.load()
}

/// Replaces the live settings; the caller holds the write lock.
fn publish(guard: &mut Arc<Settings>, next: Settings) {
    CACHING_ENABLED.store(next.caching_enabled, Ordering::Relaxed);
    CALL_DEFAULTS.store(&CallDefaults::of(&next));
    *guard = Arc::new(next);
}

/// Applies `update` to the global parameters, all or nothing.
///
/// # Errors
/// [`Error::Config`] naming the first invalid parameter; nothing is changed then.
pub fn set_global_params(update: ParamsUpdate) -> Result<()> {
    let mut guard = GLOBAL.write();
    let mut next = (**guard).clone();
    update.apply_to(&mut next)?;
    publish(&mut guard, next);
    Ok(())
}

/// Restores cachier's defaults (re-reading the environment), for tests and long-lived programs.
pub fn reset_global_params() {
    let mut guard = GLOBAL.write();
    publish(&mut guard, Settings::default());
}

/// Turns caching on for every memoized function, including those built earlier.
pub fn enable_caching() {
    set_caching_enabled(true);
}

/// Turns caching off: every memoized function calls straight through (no reads, no writes)
/// until [`enable_caching`].
pub fn disable_caching() {
    set_caching_enabled(false);
}

fn set_caching_enabled(enabled: bool) {
    let mut guard = GLOBAL.write();
    let mut next = (**guard).clone();
    next.caching_enabled = enabled;
    publish(&mut guard, next);
}

/// Whether caching is on (one relaxed atomic load).
#[inline]
pub fn caching_enabled() -> bool {
    CACHING_ENABLED.load(Ordering::Relaxed)
}

/// A change to the global parameters: set only what you want to change.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ParamsUpdate {
    caching_enabled: Option<bool>,
    backend: Option<String>,
    stale_after: Option<Option<Duration>>,
    next_time: Option<bool>,
    cache_dir: Option<Option<PathBuf>>,
    separate_files: Option<bool>,
    wait_for_calc_timeout: Option<Duration>,
    allow_none: Option<bool>,
    cleanup_stale: Option<bool>,
    cleanup_interval: Option<Duration>,
    entry_size_limit: Option<Option<SizeSpec>>,
    max_workers: Option<usize>,
    allow_non_static_methods: Option<bool>,
    near_cache: Option<Option<NearCache>>,
    preview_args: Option<bool>,
}

impl ParamsUpdate {
    /// An update that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// See [`Settings::caching_enabled`].
    pub fn caching_enabled(mut self, on: bool) -> Self {
        self.caching_enabled = Some(on);
        self
    }
    /// See [`Settings::backend`]: `"pickle"` (or its alias `"file"`), `"memory"`, or a backend
    /// URL.
    pub fn backend(mut self, name: impl Into<String>) -> Self {
        self.backend = Some(name.into());
        self
    }
    /// See [`Settings::stale_after`].
    pub fn stale_after(mut self, age: Duration) -> Self {
        self.stale_after = Some(Some(age));
        self
    }
    /// Entries never go stale (the default).
    pub fn never_stale(mut self) -> Self {
        self.stale_after = Some(None);
        self
    }
    /// See [`Settings::next_time`].
    pub fn next_time(mut self, on: bool) -> Self {
        self.next_time = Some(on);
        self
    }
    /// See [`Settings::cache_dir`].
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(Some(dir.into()));
        self
    }
    /// Go back to the default cache directory.
    pub fn default_cache_dir(mut self) -> Self {
        self.cache_dir = Some(None);
        self
    }
    /// See [`Settings::separate_files`].
    pub fn separate_files(mut self, on: bool) -> Self {
        self.separate_files = Some(on);
        self
    }
    /// See [`Settings::wait_for_calc_timeout`].
    pub fn wait_for_calc_timeout(mut self, timeout: Duration) -> Self {
        self.wait_for_calc_timeout = Some(timeout);
        self
    }
    /// See [`Settings::allow_none`].
    pub fn allow_none(mut self, on: bool) -> Self {
        self.allow_none = Some(on);
        self
    }
    /// See [`Settings::cleanup_stale`].
    pub fn cleanup_stale(mut self, on: bool) -> Self {
        self.cleanup_stale = Some(on);
        self
    }
    /// See [`Settings::cleanup_interval`].
    pub fn cleanup_interval(mut self, interval: Duration) -> Self {
        self.cleanup_interval = Some(interval);
        self
    }
    /// See [`Settings::entry_size_limit`]: bytes or text such as `"10MB"`.
    pub fn entry_size_limit(mut self, limit: impl Into<SizeSpec>) -> Self {
        self.entry_size_limit = Some(Some(limit.into()));
        self
    }
    /// Remove the size limit.
    pub fn no_entry_size_limit(mut self) -> Self {
        self.entry_size_limit = Some(None);
        self
    }
    /// See [`Settings::max_workers`]; at least 1. Takes effect when the pool starts.
    pub fn max_workers(mut self, workers: usize) -> Self {
        self.max_workers = Some(workers);
        self
    }
    /// See [`Settings::allow_non_static_methods`].
    pub fn allow_non_static_methods(mut self, on: bool) -> Self {
        self.allow_non_static_methods = Some(on);
        self
    }

    /// See [`Settings::near_cache`]: every function that sets none gets this near cache
    /// ([`NearCache::OFF`]: none, not even in front of the memory backend).
    pub fn near_cache(mut self, near: NearCache) -> Self {
        self.near_cache = Some(Some(near));
        self
    }
    /// Back to the default near cache (in front of in-process stores only).
    pub fn default_near_cache(mut self) -> Self {
        self.near_cache = Some(None);
        self
    }
    /// See [`Settings::preview_args`].
    pub fn preview_args(mut self, on: bool) -> Self {
        self.preview_args = Some(on);
        self
    }

    fn apply_to(self, s: &mut Settings) -> Result<()> {
        if let Some(name) = self.backend {
            s.backend = BackendSpec::parse(&name)?;
        }
        if let Some(limit) = self.entry_size_limit {
            s.entry_size_limit = limit.map(|l| l.to_bytes("entry_size_limit")).transpose()?;
        }
        if let Some(workers) = self.max_workers {
            if workers == 0 {
                return Err(Error::config("max_workers", "must be at least 1"));
            }
            s.max_workers = workers;
        }
        if let Some(interval) = self.cleanup_interval {
            s.cleanup_interval = interval;
        }
        macro_rules! copy {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { s.$field = v; } )* };
        }
        copy!(
            caching_enabled,
            stale_after,
            next_time,
            cache_dir,
            separate_files,
            wait_for_calc_timeout,
            allow_none,
            cleanup_stale,
            allow_non_static_methods,
            near_cache,
            preview_args
        );
        Ok(())
    }
}

/// The URL schemes a backend URL may have.
pub const BACKEND_URL_SCHEMES: &[&str] = &[
    "file",
    "memory",
    "sqlite",
    "postgres",
    "postgresql",
    "redis",
    "rediss",
    "redis+unix",
    "redis+cluster",
    "rediss+cluster",
    "mongodb",
    "mongodb+srv",
    "s3",
];

/// The global default backend: a name (`"pickle"`, `"memory"`) or a URL. Its `Debug` and
/// `Display` hide passwords.
///
/// A spec read from [`BACKEND_URL_ENV`] that is not a backend keeps its [`error`](Self::error)
/// instead of falling back to another store.
#[derive(Clone)]
pub struct BackendSpec {
    text: String,
    error: Option<Error>,
}

impl PartialEq for BackendSpec {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.error.is_some() == other.error.is_some()
    }
}

impl Eq for BackendSpec {}

impl BackendSpec {
    fn named(text: &str) -> BackendSpec {
        BackendSpec {
            text: text.to_owned(),
            error: None,
        }
    }

    /// Checks a name or URL; `"file"` becomes `"pickle"`, `"memory:"` becomes `"memory"`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `backend` for anything else.
    pub fn parse(text: &str) -> Result<BackendSpec> {
        match text {
            FILE_BACKEND | "file" => return Ok(BackendSpec::named(FILE_BACKEND)),
            MEMORY_BACKEND | "memory:" => return Ok(BackendSpec::named(MEMORY_BACKEND)),
            _ => {}
        }
        let scheme = text
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme {
            Some(scheme) if BACKEND_URL_SCHEMES.contains(&scheme.as_str()) => {
                Ok(BackendSpec::named(text))
            }
            _ => Err(Error::config(
                "backend",
                format!(
                    "unknown backend {:?}; expected \"pickle\" (the file backend), \"memory\", or a URL with one of the schemes {}",
                    redact_url(text),
                    BACKEND_URL_SCHEMES.join(", ")
                ),
            )),
        }
    }

    /// The name or URL itself, password included: for building the backend, never for logs.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Why this spec names no backend (a [`BACKEND_URL_ENV`] that is not one), if so. Building
    /// the default backend returns this error.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }
}

impl std::fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            None => write!(f, "BackendSpec({:?})", redact_url(&self.text)),
            Some(_) => write!(f, "BackendSpec({:?}, invalid)", redact_url(&self.text)),
        }
    }
}

impl std::fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything that reads or writes the environment or the globals, in one test so that no
    /// other test of this binary races with it.
    #[test]
    fn defaults_environment_and_updates() {
        let d = Settings::default();
        assert!(d.caching_enabled);
        assert_eq!(d.backend.as_str(), FILE_BACKEND);
        assert_eq!(d.stale_after, None);
        assert!(!d.next_time && !d.separate_files && !d.allow_none && !d.cleanup_stale);
        assert_eq!(d.wait_for_calc_timeout, Duration::ZERO);
        assert_eq!(d.cleanup_interval, Duration::from_secs(86_400));
        assert_eq!(d.entry_size_limit, None);

        std::env::set_var(CACHE_DIR_ENV, "/tmp/cachier-env-dir");
        assert_eq!(default_cache_dir(), PathBuf::from("/tmp/cachier-env-dir"));
        std::env::remove_var(CACHE_DIR_ENV);
        std::env::set_var("XDG_CACHE_HOME", "/tmp/xdg");
        assert_eq!(default_cache_dir(), PathBuf::from("/tmp/xdg/cachier"));
        std::env::set_var("XDG_CACHE_HOME", "");
        assert!(default_cache_dir().ends_with(".cachier"));
        std::env::remove_var("XDG_CACHE_HOME");

        assert!(d.preview_args, "previews are on by default");
        std::env::set_var(PREVIEW_ARGS_ENV, "off");
        assert!(!Settings::default().preview_args);
        std::env::set_var(PREVIEW_ARGS_ENV, " TRUE ");
        assert!(Settings::default().preview_args);
        std::env::set_var(PREVIEW_ARGS_ENV, "maybe");
        assert!(
            Settings::default().preview_args,
            "a bad value keeps the default"
        );
        std::env::remove_var(PREVIEW_ARGS_ENV);

        std::env::set_var(MAX_WORKERS_ENV, "3");
        assert_eq!(Settings::default().max_workers, 3);
        std::env::set_var(MAX_WORKERS_ENV, "0");
        assert_eq!(Settings::default().max_workers, DEFAULT_MAX_WORKERS);
        std::env::remove_var(MAX_WORKERS_ENV);
        assert_eq!(Settings::default().max_workers, DEFAULT_MAX_WORKERS);

        let before = get_global_params();
        let err = set_global_params(ParamsUpdate::new().next_time(true).entry_size_limit("10XB"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    param: "entry_size_limit",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            get_global_params(),
            before,
            "a rejected update changes nothing"
        );
        let err = set_global_params(ParamsUpdate::new().backend("nosuch")).unwrap_err();
        assert!(err.to_string().contains("nosuch"), "{err}");

        set_global_params(
            ParamsUpdate::new()
                .backend("file")
                .entry_size_limit("1KB")
                .stale_after(Duration::from_secs(5)),
        )
        .unwrap();
        let now = get_global_params();
        assert_eq!(now.backend.as_str(), FILE_BACKEND);
        set_global_params(ParamsUpdate::new().backend("redis://user:s3cret@127.0.0.1/0")).unwrap();
        let shown = format!("{:?}", get_global_params());
        assert!(
            shown.contains("redis://user:***@127.0.0.1/0") && !shown.contains("s3cret"),
            "{shown}"
        );
        let err = set_global_params(ParamsUpdate::new().backend("ftp://u:pw@host")).unwrap_err();
        assert!(err.to_string().contains("ftp://u:***@host"), "{err}");
        std::env::set_var(BACKEND_URL_ENV, "memory:");
        assert_eq!(Settings::default().backend.as_str(), MEMORY_BACKEND);
        // A typo is kept with its error, never turned into the file backend.
        std::env::set_var(BACKEND_URL_ENV, "redsi://user:s3cret@cache:6379/0");
        let typo = Settings::default().backend;
        assert_eq!(typo.as_str(), "redsi://user:s3cret@cache:6379/0");
        let error = typo.error().expect("a configuration error");
        assert_eq!(error.kind(), ErrorKind::Configuration);
        let message = error.to_string();
        assert!(
            message.contains(BACKEND_URL_ENV)
                && message.contains("redsi")
                && !message.contains("s3cret"),
            "{message}"
        );
        assert!(format!("{typo:?}").contains("invalid"));
        std::env::remove_var(BACKEND_URL_ENV);
        assert!(Settings::default().backend.error().is_none());
        assert_eq!(now.entry_size_limit, Some(1024));
        assert_eq!(call_defaults().stale_after, Some(Duration::from_secs(5)));

        disable_caching();
        assert!(!caching_enabled() && !get_global_params().caching_enabled);
        enable_caching();
        assert!(caching_enabled());
        reset_global_params();
        assert_eq!(call_defaults().stale_after, None);
    }
}
