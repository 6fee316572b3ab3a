//! Single flight inside one process: of the callers of one function that miss one key at
//! once, one (the leader) goes to the store and the others wait here for what it gets,
//! woken the moment it lands.
//!
//! The store's claims keep processes and machines to one computation per key; this keeps a
//! process to one even while the store fails (the leader then computes uncached and the
//! others take its result), and spares the store every waiter's polling.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::Key;

/// The flights of one memoized function, by key.
#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<Key, Arc<Flight>>>,
}

/// What a caller that missed does: lead the key's flight, or follow the one running.
pub(crate) enum Joined<'a> {
    Lead(Lead<'a>),
    Follow(Arc<Flight>),
}

impl Flights {
    /// Leads a new flight for `key`, or follows the one running.
    pub(crate) fn join(&self, key: Key) -> Joined<'_> {
        let mut running = self.running.lock();
        if let Some(flight) = running.get(&key) {
            return Joined::Follow(flight.clone());
        }
        let flight = Arc::new(Flight::default());
        running.insert(key, flight.clone());
        Joined::Lead(Lead {
            flights: self,
            key,
            flight,
        })
    }

    /// Detaches every running flight: the next caller of each key leads a new one (callers
    /// already following keep waiting for their leader).
    pub(crate) fn detach_all(&self) {
        self.running.lock().clear();
    }
}

/// How a flight ended, for a follower.
pub(crate) enum Landing {
    /// The leader's result, encoded.
    Value(Arc<[u8]>),
    /// The leader has nothing to share (an error result, a panic, a cancelled caller): lead
    /// or follow the next flight.
    Nothing,
    /// The follower's wait ran out first.
    TimedOut,
}

/// One key's flight: its result, once landed, and who waits for it.
#[derive(Default)]
pub(crate) struct Flight {
    state: Mutex<State>,
    landed: Condvar,
}

#[derive(Default)]
enum State {
    #[default]
    Flying,
    /// Async followers waiting (blocking ones wait on the condition variable).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    Awaited(Vec<Waker>),
    Landed(Option<Arc<[u8]>>),
}

impl Flight {
    /// Publishes the result; the first landing wins.
    fn land(&self, value: Option<Arc<[u8]>>) {
        let mut state = self.state.lock();
        if let State::Landed(_) = *state {
            return;
        }
        if let State::Awaited(wakers) = std::mem::replace(&mut *state, State::Landed(value)) {
            wakers.into_iter().for_each(Waker::wake);
        }
        drop(state);
        self.landed.notify_all();
    }

    fn landing(state: &State) -> Option<Landing> {
        match state {
            State::Landed(Some(value)) => Some(Landing::Value(value.clone())),
            State::Landed(None) => Some(Landing::Nothing),
            _ => None,
        }
    }

    /// Blocks the thread until the flight lands or `max` passes.
    pub(crate) fn wait_blocking(&self, max: Duration) -> Landing {
        let mut state = self.state.lock();
        let deadline = std::time::Instant::now() + max;
        loop {
            if let Some(landing) = Flight::landing(&state) {
                return landing;
            }
            if self.landed.wait_until(&mut state, deadline).timed_out() {
                return Flight::landing(&state).unwrap_or(Landing::TimedOut);
            }
        }
    }

    /// Resolves when the flight lands ([`Landing::TimedOut`] is never returned: the caller
    /// bounds the wait on its runtime's timer).
    #[cfg(feature = "async")]
    pub(crate) fn landed(&self) -> impl std::future::Future<Output = Landing> + Send + '_ {
        std::future::poll_fn(move |cx| {
            let mut state = self.state.lock();
            if let Some(landing) = Flight::landing(&state) {
                return std::task::Poll::Ready(landing);
            }
            match &mut *state {
                State::Awaited(wakers) => {
                    if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        wakers.push(cx.waker().clone());
                    }
                }
                state => *state = State::Awaited(vec![cx.waker().clone()]),
            }
            std::task::Poll::Pending
        })
    }
}

/// The leader's side of a flight. Dropping it ends the flight: followers that got no value
/// (the leader failed, panicked or was cancelled) lead or follow the next one.
pub(crate) struct Lead<'a> {
    flights: &'a Flights,
    key: Key,
    flight: Arc<Flight>,
}

impl Lead<'_> {
    /// Hands the result to the followers at once (new callers too, until the leader is
    /// done with the store).
    pub(crate) fn land(&self, value: Arc<[u8]>) {
        self.flight.land(Some(value));
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        {
            let mut running = self.flights.running.lock();
            if running
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                running.remove(&self.key);
            }
        }
        // After the removal: a follower told `Nothing` starts a new flight, not this one.
        self.flight.land(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_then_followers_get_its_value() {
        let flights = Flights::default();
        let key = Key::of(&1u8).unwrap();
        let Joined::Lead(lead) = flights.join(key) else {
            panic!("the first caller leads")
        };
        let Joined::Follow(flight) = flights.join(key) else {
            panic!("the second caller follows")
        };
        let waiter = {
            let flight = flight.clone();
            std::thread::spawn(move || flight.wait_blocking(Duration::from_secs(5)))
        };
        lead.land(Arc::from(&b"v"[..]));
        assert!(matches!(waiter.join().unwrap(), Landing::Value(v) if &*v == b"v"));
        drop(lead);
        assert!(matches!(flights.join(key), Joined::Lead(_)), "a new flight");
    }

    #[test]
    fn a_dropped_leader_lands_nothing_and_a_wait_times_out() {
        let flights = Flights::default();
        let key = Key::of(&2u8).unwrap();
        let lead = flights.join(key);
        let Joined::Follow(flight) = flights.join(key) else {
            panic!("follows")
        };
        assert!(matches!(
            flight.wait_blocking(Duration::from_millis(20)),
            Landing::TimedOut
        ));
        drop(lead);
        assert!(matches!(
            flight.wait_blocking(Duration::ZERO),
            Landing::Nothing
        ));
    }
}
