//! [`RedisBackend`]: the server and its settings, handing out one store per function.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cachier_core::{block_on, Backend, Core, Error, Key, Namespace};

use crate::blocking::{RedisCore, SyncConn};
use crate::builder::RedisBackendBuilder;
#[cfg(feature = "async")]
use crate::nonblocking::RedisAsyncCore;
use crate::ops::{self, Scope};
use crate::pool::{Pool, Server};
use cachier_core::watch::Listener;

/// A Redis (or Valkey) server, or a Redis Cluster, shared by processes and machines: one hash
/// per entry under `{prefix}:{namespace}:{key hex}`. Clones share one connection pool.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

/// What a backend's clones and the stores it opened share.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) prefix: String,
    pub(crate) evict_after: Option<Duration>,
    /// The server, as it may be shown (no password).
    pub(crate) shown: String,
    /// A cluster's seed node URLs (empty for one server): where the change listener
    /// subscribes first.
    pub(crate) seeds: Vec<String>,
    /// The change channel, started on first use.
    pub(crate) listener: Listener,
    /// How often a waiter looks at the store while the change channel is up.
    pub(crate) wait_poll: Duration,
}

impl RedisBackend {
    /// The backend [`RedisBackendBuilder::build`] checked.
    pub(crate) fn new(shared: Shared) -> RedisBackend {
        RedisBackend {
            shared: Arc::new(shared),
        }
    }

    /// A builder on a client the caller made (for settings a URL cannot say).
    pub fn from_client(client: redis::Client) -> RedisBackendBuilder {
        RedisBackendBuilder::for_client(client)
    }

    /// The Redis key of `key` in `namespace`: `{prefix}:{namespace}:{key hex}`.
    pub fn redis_key(&self, namespace: &Namespace, key: &Key) -> String {
        let mut out = ops::namespace_base(&self.shared.prefix, namespace);
        key.push_hex(&mut out);
        out
    }

    /// The client the connections are opened with; `None` on a cluster (see
    /// [`cluster_client`](Self::cluster_client)).
    pub fn client(&self) -> Option<&redis::Client> {
        match self.shared.pool.server() {
            Server::Single(client) => Some(client),
            Server::Cluster(_) => None,
        }
    }

    /// The cluster client the connections are opened with; `None` on a single server.
    pub fn cluster_client(&self) -> Option<&redis::cluster::ClusterClient> {
        match self.shared.pool.server() {
            Server::Single(_) => None,
            Server::Cluster(client) => Some(client),
        }
    }

    /// The native async store of `namespace` (what [`Backend::async_core`] returns), for
    /// callers that drive a store themselves.
    #[cfg(feature = "async")]
    pub fn async_store(&self, namespace: &Namespace) -> impl cachier_core::AsyncCore + fmt::Debug {
        RedisAsyncCore::new(self.shared.clone(), self.scope(namespace))
    }

    fn scope(&self, namespace: &Namespace) -> Scope {
        Scope::new(&self.shared.prefix, namespace, self.shared.evict_after)
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
        Ok(Arc::new(RedisCore::new(
            self.shared.clone(),
            self.scope(namespace),
        )))
    }

    /// The native async store (`RedisAsyncCore`): the same operations as the blocking core,
    /// awaited on the caller's runtime.
    #[cfg(feature = "async")]
    fn async_core(
        &self,
        namespace: &Namespace,
        core: &Arc<dyn Core>,
    ) -> Result<Arc<dyn cachier_core::AsyncCore>, Error> {
        let _ = core;
        Ok(Arc::new(self.async_store(namespace)))
    }

    /// Walks `{prefix}:*` with `SCAN` (never `KEYS`; on a cluster, on every primary) and reads
    /// each namespace from its keys: everything between the prefix and the last `:` + 64 hex
    /// digits, so namespaces with `:` in them come back whole. Keys of other layouts under the
    /// prefix are ignored.
    fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        let con = SyncConn(&self.shared.pool);
        block_on(ops::namespaces(con, &self.shared.prefix))
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
}
