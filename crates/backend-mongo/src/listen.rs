//! The change channel of a backend: one thread (`cachier-mongo-listen`) per
//! [`MongoBackend`](crate::MongoBackend) and its clones, following a change stream of the
//! collection and feeding a [`ChangeHub`] that near caches and waiters of every function of
//! the backend share. It starts when the first near cache subscribes or the first caller
//! waits, and ends soon after the backend is dropped.
//!
//! A change event names its document by `_id` only; the stream asks the server to look the
//! document up (`fullDocument: "updateLookup"`, one lookup by `_id` per event and listening
//! process) and passes on only its `func` and `key`, so the message names the entry. A
//! deletion cannot be looked up (the document is gone, and reading its earlier image would
//! need pre-images kept on the collection): it reaches every function's near caches as a
//! change of all their entries. Deleting is rare next to storing (`invalidate`,
//! `clear_cache`, stale cleanup).
//!
//! The stream's `getMore` waits at most a `heartbeat` for events, so a silent stream answers
//! every heartbeat; one that does not answer within two is declared down. Down, the hub stops
//! the near caches from serving and waiters poll; the thread reopens the stream every
//! [`RETRY`] at most (near caches forget everything once it is back). A server that cannot
//! stream changes (a standalone `mongod`: change streams need a replica set or a sharded
//! cluster) is told to the hub as unwatched, and the thread ends: near caches then serve an
//! entry for `NearCache::unwatched_ttl` only.

use std::future::IntoFuture;
use std::sync::{Arc, Weak};
use std::time::Duration;

use cachier_core::watch::{ChangeHub, Listener, Listening};
use cachier_core::{BoxError, Key};
use mongodb::bson::{doc, Document};
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType};
use mongodb::options::FullDocumentType;
use mongodb::Collection;

use crate::ops::{error_code, Shared};
use crate::runtime;

/// Longest pause between two attempts to open the stream again (shorter with a shorter
/// heartbeat).
const RETRY: Duration = Duration::from_millis(250);

/// Error codes of a server that cannot stream changes: `$changeStream` outside a replica
/// set (40573), an unknown stage (40324), a command not supported (115).
const UNSUPPORTED: [i32; 3] = [40573, 40324, 115];

/// The hub of a backend's change channel, after starting its listening thread if it is not
/// running yet.
pub(crate) fn hub<'a>(listener: &'a Listener, shared: &Arc<Shared>) -> &'a Arc<ChangeHub> {
    listener.hub("cachier-mongo-listen", |listening| {
        let thread = Thread {
            shared: Arc::downgrade(shared),
            listening,
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
}

/// Why a stream ended.
enum End {
    /// The backend is gone.
    Stopped,
    /// The collection was dropped or renamed: its stream is over, a new one follows.
    Invalidated,
    /// The server cannot stream changes.
    Unsupported(BoxError),
    /// The stream failed or went silent.
    Failed(BoxError),
}

impl Thread {
    fn run(self) {
        let retry = RETRY.min(self.listening.heartbeat);
        let mut warned = false;
        let thread = Arc::new(self);
        while !thread.listening.stopped() {
            let Some(shared) = thread.shared.upgrade() else {
                break;
            };
            let collection = shared.collection.clone();
            drop(shared);
            let listening = thread.clone();
            let was_warned = warned;
            let end = runtime::block_on("listen", async move {
                listening.listen(collection, was_warned).await
            });
            let end = match end {
                Ok((end, still_warned)) => {
                    warned = still_warned;
                    end
                }
                Err(error) => End::Failed(error.into()),
            };
            match end {
                End::Stopped => break,
                End::Invalidated => continue,
                End::Unsupported(error) => {
                    tracing::info!(error = %cachier_core::chain_message(&*error), "cachier: the MongoDB server cannot stream changes; near caches serve each entry for their unwatched_ttl and waiters poll");
                    thread.listening.hub.set_unwatched();
                    return;
                }
                End::Failed(error) => {
                    if !warned && !thread.listening.stopped() {
                        warned = true;
                        tracing::warn!(error = %cachier_core::chain_message(&*error), "cachier: the MongoDB change stream is down; near caches stop serving and waiters poll until it is back");
                    }
                }
            }
            if !thread.listening.stopped() {
                std::thread::sleep(retry);
            }
        }
        thread.listening.hub.set_connected(false);
    }

    /// Opens a change stream on `collection` and delivers what it hears until it ends. The
    /// hub is up in between. `warned`: an outage was logged (whether it still is, returned).
    async fn listen(&self, collection: Collection<Document>, mut warned: bool) -> (End, bool) {
        let end = match self.open(&collection).await {
            Ok(mut stream) => {
                self.listening.hub.set_connected(true);
                if std::mem::take(&mut warned) {
                    tracing::info!("cachier: the MongoDB change stream is back");
                }
                let end = self.pump(&mut stream).await;
                self.listening.hub.set_connected(false);
                end
            }
            Err(error) if error_code(&error).is_some_and(|c| UNSUPPORTED.contains(&c)) => {
                End::Unsupported(crate::DriverError::from(error).into())
            }
            Err(error) => End::Failed(crate::DriverError::from(error).into()),
        };
        (end, warned)
    }

    async fn open(
        &self,
        collection: &Collection<Document>,
    ) -> mongodb::error::Result<mongodb::change_stream::ChangeStream<ChangeStreamEvent<Document>>>
    {
        // Only what names the entry crosses the wire, not the value.
        let project = doc! { "$project": {
            "operationType": 1,
            "ns": 1,
            "fullDocument.func": 1,
            "fullDocument.key": 1,
        } };
        collection
            .watch()
            .pipeline([project])
            .full_document(FullDocumentType::UpdateLookup)
            .max_await_time(self.listening.heartbeat)
            .into_future()
            .await
    }

    async fn pump(
        &self,
        stream: &mut mongodb::change_stream::ChangeStream<ChangeStreamEvent<Document>>,
    ) -> End {
        let silence = self.listening.heartbeat * 2;
        loop {
            if self.listening.stopped() {
                return End::Stopped;
            }
            let event = match tokio::time::timeout(silence, stream.next_if_any()).await {
                Err(_) => {
                    return End::Failed(
                        format!("the change stream did not answer within {silence:?}").into(),
                    )
                }
                Ok(Err(error)) => return End::Failed(crate::DriverError::from(error).into()),
                Ok(Ok(None)) => continue,
                Ok(Ok(Some(event))) => event,
            };
            match event.operation_type {
                OperationType::Insert | OperationType::Update | OperationType::Replace => {
                    match entry_of(event.full_document.as_ref()) {
                        Some((func, key)) => self.listening.hub.deliver(func, Some(&key)),
                        // Deleted before the lookup, or not an entry: whose, is not known.
                        None => self.listening.hub.deliver_everywhere(),
                    }
                }
                OperationType::Delete => self.listening.hub.deliver_everywhere(),
                OperationType::Drop
                | OperationType::Rename
                | OperationType::DropDatabase
                | OperationType::Invalidate => {
                    self.listening.hub.deliver_everywhere();
                    return End::Invalidated;
                }
                // A kind of event this version does not know: assume the worst.
                _ => self.listening.hub.deliver_everywhere(),
            }
        }
    }
}

/// The function and key a looked-up document is the entry of.
fn entry_of(document: Option<&Document>) -> Option<(&str, Key)> {
    let document = document?;
    let func = document.get_str("func").ok()?;
    let key = Key::from_hex(document.get_str("key").ok()?)?;
    Some((func, key))
}
