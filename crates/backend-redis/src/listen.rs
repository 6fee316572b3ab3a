//! The change channel of a backend: one thread (`cachier-redis-listen`) per
//! [`RedisBackend`](crate::RedisBackend) and its clones, with a pub/sub connection of its own
//! subscribed to the prefix's channel (`{prefix}:changes`), feeding a [`ChangeHub`] that near
//! caches and waiters of every function of the backend share. It starts when the first near cache
//! subscribes or the first caller waits, and ends soon after the backend is dropped.
//!
//! A connection can die without a word (a frozen server, a dropped network path): the thread
//! sends `PING` on the subscription every `heartbeat` and gives it `heartbeat` to answer, so a
//! channel that went silent is declared down within twice the heartbeat (1 s by default) of its
//! last sign of life. Down, the hub stops the near caches from serving and waiters poll; the
//! thread reconnects every [`RETRY`] at most, and once subscribed again the hub says so (near
//! caches forget everything, since messages were missed meanwhile).
//!
//! The channel counts as up only once the thread hears a probe it published itself after
//! subscribing: the driver does not report a refused `SUBSCRIBE`.
//!
//! On a Redis Cluster the scripts' plain `PUBLISH` is broadcast to every node, so one
//! subscription on any node hears the whole cluster: the thread subscribes on a seed node,
//! else on a primary found from the cluster's map, and moves on when that node dies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use cachier_core::watch::{ChangeHub, Listener, Listening};
use cachier_core::BoxError;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisResult};

use crate::backend::Shared;
use crate::blocking::SyncConn;
use crate::ops;
use crate::pool::{Request, Server};

/// Longest pause between two attempts to subscribe again (shorter with a shorter heartbeat).
const RETRY: Duration = Duration::from_millis(250);

/// The hub of a backend's change channel, after starting its listening thread if it is not
/// running yet.
pub(crate) fn hub<'a>(listener: &'a Listener, shared: &Arc<Shared>) -> &'a Arc<ChangeHub> {
    listener.hub("cachier-redis-listen", |listening| {
        let thread = Thread {
            shared: Arc::downgrade(shared),
            listening,
            channel: ops::changes_channel(&shared.prefix),
            prefix: shared.prefix.clone(),
            shown: shared.shown.clone(),
        };
        move || thread.run()
    })
}

/// What the listening thread owns: the backend only weakly, so that dropping the backend ends
/// the thread.
struct Thread {
    shared: Weak<Shared>,
    /// The hub to feed, the stop flag and the heartbeat.
    listening: Listening,
    channel: String,
    prefix: String,
    /// The server, as it may be shown (no password).
    shown: String,
}

impl Thread {
    fn run(self) {
        let retry = RETRY.min(self.listening.heartbeat);
        // Which candidate node (on a cluster) the next attempt starts from.
        let mut next = 0usize;
        let mut warned = false;
        while !self.listening.stopped() {
            let Some(shared) = self.shared.upgrade() else {
                break;
            };
            let connection = self.connect(&shared, &mut next);
            drop(shared);
            let outcome = match connection {
                Ok(con) => self.listen(con, &mut warned),
                Err(error) => Err(error.into()),
            };
            if let Err(error) = outcome {
                if !warned && !self.listening.stopped() {
                    warned = true;
                    tracing::warn!(server = %self.shown, error = %cachier_core::chain_message(&*error), "cachier: the Redis change channel is down; near caches stop serving and waiters poll until it is back");
                }
                next += 1;
            }
            if !self.listening.stopped() {
                std::thread::sleep(retry);
            }
        }
        self.listening.hub.set_connected(false);
    }

    /// A connection for the subscription: to the server, or to one node of a cluster.
    fn connect(&self, shared: &Shared, next: &mut usize) -> RedisResult<redis::Connection> {
        let timeout = shared.pool.settings().connect_timeout;
        let con = match shared.pool.server() {
            Server::Single(client) => client.get_connection_with_timeout(timeout)?,
            Server::Cluster(_) => {
                let nodes = cluster_nodes(shared);
                if nodes.is_empty() {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "no cluster node to subscribe on",
                    )));
                }
                let node = nodes[*next % nodes.len()].clone();
                redis::Client::open(node)?.get_connection_with_timeout(timeout)?
            }
        };
        con.set_write_timeout(Some(self.listening.heartbeat))?;
        Ok(con)
    }

    /// Subscribes on `con` and delivers what it hears until the connection fails (its error)
    /// or the backend is dropped (`Ok`). The hub is up in between.
    fn listen(&self, mut con: redis::Connection, warned: &mut bool) -> Result<(), BoxError> {
        let mut pubsub = con.as_pubsub();
        pubsub.set_read_timeout(Some(self.listening.heartbeat))?;
        pubsub.subscribe(&self.channel)?;
        self.confirm(&mut pubsub)?;
        self.listening.hub.set_connected(true);
        if std::mem::take(warned) {
            tracing::info!(server = %self.shown, "cachier: the Redis change channel is back");
        }
        let outcome = self.pump(&mut pubsub);
        // Before the subscription is dropped, which may wait on a dead connection.
        self.listening.hub.set_connected(false);
        Ok(outcome?)
    }

    /// Publishes a probe on the channel through the backend's pool and waits up to a
    /// heartbeat to hear it: the driver does not report a refused `SUBSCRIBE` (an ACL
    /// without the channel), and the probe also proves that writes reach this node of a
    /// cluster. What else arrives meanwhile is delivered.
    fn confirm(&self, pubsub: &mut redis::PubSub<'_>) -> Result<(), BoxError> {
        static PROBES: AtomicU64 = AtomicU64::new(0);
        let probe = format!(
            "probe {}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        {
            let Some(shared) = self.shared.upgrade() else {
                return Ok(());
            };
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(&self.channel).arg(&probe);
            let request = Request::Cmd(publish);
            let _: i64 = shared.pool.run("listen", |con| request.send(con))?;
        }
        let deadline = Instant::now() + self.listening.heartbeat;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "subscribed to {} but its own probe was not heard within {:?} (does the user's ACL allow the channel?)",
                    self.channel, self.listening.heartbeat
                )
                .into());
            }
            pubsub.set_read_timeout(Some(left))?;
            match pubsub.get_message() {
                Ok(message) if message.get_payload_bytes() == probe.as_bytes() => return Ok(()),
                Ok(message) => {
                    if let Some((namespace, key)) =
                        ops::change_of(&self.prefix, message.get_payload_bytes())
                    {
                        self.listening.hub.deliver(namespace, key.as_ref());
                    }
                }
                Err(error) if error.is_timeout() => {}
                Err(error) => return Err(error.into()),
            }
        }
    }

    fn pump(&self, pubsub: &mut redis::PubSub<'_>) -> RedisResult<()> {
        let mut pinged = Instant::now();
        while !self.listening.stopped() {
            let left = self.listening.heartbeat.saturating_sub(pinged.elapsed());
            if left.is_zero() {
                pubsub.set_read_timeout(Some(self.listening.heartbeat))?;
                pubsub.ping::<redis::Value>()?;
                pinged = Instant::now();
                continue;
            }
            pubsub.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match pubsub.get_message() {
                Ok(message) => {
                    if let Some((namespace, key)) =
                        ops::change_of(&self.prefix, message.get_payload_bytes())
                    {
                        self.listening.hub.deliver(namespace, key.as_ref());
                    }
                }
                Err(error) if error.is_timeout() => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// The nodes a cluster's subscription may use: the seed nodes, then the primaries the
/// cluster's map names (reached like the first seed, when it is plain TCP).
fn cluster_nodes(shared: &Shared) -> Vec<redis::ConnectionInfo> {
    let seeds: Vec<redis::ConnectionInfo> = shared
        .seeds
        .iter()
        .filter_map(|seed| seed.as_str().into_connection_info().ok())
        .collect();
    let mut nodes = seeds.clone();
    if let Some(first) = seeds.first() {
        if matches!(first.addr(), ConnectionAddr::Tcp(..)) {
            let primaries =
                cachier_core::block_on(ops::primaries(SyncConn(&shared.pool), "listen"));
            for node in primaries.into_iter().flatten().flatten() {
                let addr = ConnectionAddr::Tcp(node.host, node.port);
                if !nodes.iter().any(|n| *n.addr() == addr) {
                    nodes.push(first.clone().set_addr(addr));
                }
            }
        }
    }
    nodes
}
