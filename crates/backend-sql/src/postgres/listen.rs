//! The change channel of a PostgreSQL backend: one thread (`cachier-pg-listen`) per backend
//! and its clones, on a connection of its own (`application_name` `<name>-listen`) that
//! `LISTEN`s to the table's channel (`cachier_<table OID>`), feeding a [`ChangeHub`] that near
//! caches and waiters of every function of the backend share. Every write that changes rows
//! notifies that channel in the same statement ([`Statements::slot`](crate::dialect::Statements::slot)),
//! so the message is delivered on commit, and only when something changed. The thread starts
//! when the first near cache subscribes or the first caller waits, and ends soon after the
//! backend is dropped.
//!
//! A connection can die without a word (a dropped network path, a frozen server): every
//! `heartbeat` the thread runs an empty query with `heartbeat` to answer, so a silent channel is
//! declared down within twice the heartbeat (1 s by default). A connection the server ends
//! (`pg_terminate_backend`, a restart) is seen at once. Down, the hub stops the near caches from
//! serving and waiters poll; the thread connects again every [`RETRY`] at most, and once it
//! listens again the hub says so (near caches forget everything, since messages were missed).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::{Client, Config, NoTls};
use cachier_core::watch::{ChangeHub, Listener, Listening};
use cachier_core::Key;

use super::Server;

/// Longest pause between two attempts to listen again (shorter with a shorter heartbeat).
const RETRY: Duration = Duration::from_millis(250);

/// The hub of a backend's change channel, after starting its listening thread if it is not
/// running yet.
pub(crate) fn hub<'a>(listener: &'a Listener, server: &Arc<Server>) -> &'a Arc<ChangeHub> {
    listener.hub("cachier-pg-listen", |listening| {
        let mut config = server.config.clone();
        let name = format!(
            "{}-listen",
            server.config.get_application_name().unwrap_or("cachier")
        );
        config.application_name(&name);
        let thread = Thread {
            server: Arc::downgrade(server),
            listening,
            config,
            label: server.label.clone(),
        };
        move || thread.run()
    })
}

/// Why a session of the listener ended.
enum Ended {
    /// The backend was dropped.
    Dropped,
    /// The table does not exist yet (the first write creates it).
    NoTable,
    /// The connection failed or was lost.
    Lost(::postgres::Error),
}

/// What the listening thread owns: the backend's server only weakly, so that dropping the
/// backend ends the thread.
struct Thread {
    server: Weak<Server>,
    /// The hub to feed, the stop flag and the heartbeat.
    listening: Listening,
    config: Config,
    /// The server, as it may be shown (no password).
    label: String,
}

impl Thread {
    fn run(self) {
        let retry = RETRY.min(self.listening.heartbeat);
        let mut warned = false;
        while !self.listening.stopped() {
            match self.session(&mut warned) {
                Ended::Dropped => break,
                Ended::NoTable => {}
                Ended::Lost(error) => {
                    if !warned && !self.listening.stopped() {
                        warned = true;
                        tracing::warn!(server = %self.label, error = %cachier_core::chain_message(&error), "cachier: the PostgreSQL change channel is down; near caches stop serving and waiters poll until it is back");
                    }
                }
            }
            if !self.listening.stopped() {
                std::thread::sleep(retry);
            }
        }
        self.listening.hub.set_connected(false);
    }

    /// Connects, listens, and delivers what it hears until the connection fails or the
    /// backend is dropped. The hub is up in between.
    fn session(&self, warned: &mut bool) -> Ended {
        let Some(query) = self
            .server
            .upgrade()
            .and_then(|server| server.stmts.channel_query.clone())
        else {
            return Ended::Dropped;
        };
        let mut client = match self.config.connect(NoTls) {
            Ok(client) => client,
            Err(error) => return Ended::Lost(error),
        };
        let channel: Option<String> = match client
            .query_one(query.as_str(), &[])
            .and_then(|row| row.try_get(0))
        {
            Ok(channel) => channel,
            Err(error) => return Ended::Lost(error),
        };
        let Some(channel) = channel else {
            return Ended::NoTable;
        };
        // The name is `cachier_` and digits: nothing to escape.
        if let Err(error) = client.batch_execute(&format!("LISTEN \"{channel}\"")) {
            return Ended::Lost(error);
        }
        self.listening.hub.set_connected(true);
        if std::mem::take(warned) {
            tracing::info!(server = %self.label, "cachier: the PostgreSQL change channel is back");
        }
        let ended = self.pump(&mut client);
        self.listening.hub.set_connected(false);
        if matches!(ended, Ended::Lost(_)) {
            // Dropping a client waits for its connection to close, which a server that went
            // silent may never do: elsewhere, so that this thread connects again meanwhile.
            let _ = std::thread::Builder::new()
                .name("cachier-pg-close".into())
                .spawn(move || drop(client));
        }
        ended
    }

    fn pump(&self, client: &mut Client) -> Ended {
        let mut checked = Instant::now();
        while !self.listening.stopped() {
            let left = self.listening.heartbeat.saturating_sub(checked.elapsed());
            if left.is_zero() {
                if let Err(error) = client.is_valid(self.listening.heartbeat) {
                    return Ended::Lost(error);
                }
                checked = Instant::now();
                continue;
            }
            {
                let mut notifications = client.notifications();
                let mut heard = notifications.timeout_iter(left);
                loop {
                    match heard.next() {
                        Ok(Some(note)) => {
                            if let Some((namespace, key)) = change_of(note.payload()) {
                                self.listening.hub.deliver(namespace, key.as_ref());
                            }
                        }
                        Ok(None) => break,
                        Err(error) => return Ended::Lost(error),
                    }
                }
            }
            if client.is_closed() {
                // The server ended the connection; the empty query reports why.
                return match client.is_valid(self.listening.heartbeat) {
                    Err(error) => Ended::Lost(error),
                    Ok(()) => continue,
                };
            }
        }
        Ended::Dropped
    }
}

/// What a notification says: the namespace, and the key that changed (its hex, a space, the
/// namespace) or `None` for any of its entries (`*`, a space, the namespace).
pub(crate) fn change_of(payload: &str) -> Option<(&str, Option<Key>)> {
    let (what, namespace) = payload.split_once(' ')?;
    if namespace.is_empty() {
        return None;
    }
    match what {
        "*" => Some((namespace, None)),
        hex => Some((namespace, Some(Key::from_hex(hex)?))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_a_key_or_a_whole_namespace() {
        let hex = "ab".repeat(32);
        assert_eq!(
            change_of(&format!("{hex} m::f @1")),
            Some(("m::f @1", Key::from_hex(&hex)))
        );
        assert_eq!(change_of("* m::f"), Some(("m::f", None)));
        assert_eq!(change_of("* "), None);
        assert_eq!(change_of("nothex m::f"), None);
        assert_eq!(change_of("garbage"), None);
    }
}
