//! Single flight: concurrent look-ups of one key share the first one's query.
//!
//! The first caller of a key leads: it gets a [`Leader`] and does the work; later callers
//! follow: they wait for its result, each until its own deadline. A leader that is dropped
//! without a result (its thread panicked, or the look-up was abandoned) lands the flight as
//! abandoned on the way out, so followers are woken with an error at once instead of waiting
//! for a result that will never come; the key is free again either way.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::lock;

/// The flights in progress, by key.
pub(crate) struct Flights<K, V> {
    map: Mutex<FlightMap<K, V>>,
}

pub(crate) type FlightMap<K, V> = HashMap<K, Arc<Flight<V>>>;

/// One look-up in progress that others wait for.
pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    landed: Condvar,
}

enum State<V> {
    InFlight,
    Landed(V),
    /// The leader went away without a result.
    Abandoned,
}

/// Why a follower has no result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoResult {
    /// The leader was dropped without one (a panic, or an abandoned look-up).
    Abandoned,
    /// The follower's deadline passed first.
    TimedOut,
}

/// What joining a flight makes of a caller.
pub(crate) enum Role<'a, K: Hash + Eq + Clone, V: Clone> {
    Leader(Leader<'a, K, V>),
    Follower(Arc<Flight<V>>),
}

/// The duty to land a flight: [`Leader::land`] with the result, or, when dropped without,
/// abandoned.
pub(crate) struct Leader<'a, K: Hash + Eq + Clone, V: Clone> {
    flights: &'a Flights<K, V>,
    key: K,
    flight: Arc<Flight<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Leads the flight of `key` when none is in progress, else follows it.
    pub(crate) fn join(&self, key: &K) -> Role<'_, K, V> {
        let mut map = lock(&self.map);
        if let Some(flight) = map.get(key) {
            return Role::Follower(flight.clone());
        }
        let flight = Arc::new(Flight {
            state: Mutex::new(State::InFlight),
            landed: Condvar::new(),
        });
        map.insert(key.clone(), flight.clone());
        Role::Leader(Leader {
            flights: self,
            key: key.clone(),
            flight,
        })
    }

    /// The lock over the flights in progress (taken by the fork guard).
    pub(crate) fn lock(&self) -> MutexGuard<'_, FlightMap<K, V>> {
        lock(&self.map)
    }

    /// Forgets every flight in progress (in a forked child, whose leaders are threads it does
    /// not have: a later look-up leads anew).
    pub(crate) fn forget_all(&self) {
        lock(&self.map).clear();
    }

    #[cfg(test)]
    fn in_progress(&self) -> usize {
        lock(&self.map).len()
    }
}

impl<V: Clone> Flight<V> {
    /// The leader's result; waits at most until `deadline`.
    pub(crate) fn wait(&self, deadline: Instant) -> Result<V, NoResult> {
        let mut state = lock(&self.state);
        loop {
            match &*state {
                State::Landed(value) => return Ok(value.clone()),
                State::Abandoned => return Err(NoResult::Abandoned),
                State::InFlight => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoResult::TimedOut);
            }
            state = self
                .landed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn settle(&self, outcome: State<V>) {
        let mut state = lock(&self.state);
        if matches!(*state, State::InFlight) {
            *state = outcome;
        }
        drop(state);
        self.landed.notify_all();
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Leader<'_, K, V> {
    /// Hands `value` to every follower (and frees the key: the next caller leads anew).
    pub(crate) fn land(self, value: V) {
        self.flight.settle(State::Landed(value));
        // Drop frees the key.
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        {
            let mut map = lock(&self.flights.map);
            // Only our own flight: after a fork the map may hold a newer one of this key.
            if map
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        // A no-op after `land`.
        self.flight.settle(State::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(10);

    /// Runs `work` once per key among `threads` concurrent callers, as the resolver does.
    fn single_flight(
        flights: &Flights<&'static str, u32>,
        work: impl Fn() -> u32,
    ) -> Result<u32, NoResult> {
        match flights.join(&"name") {
            Role::Leader(leader) => {
                let value = work();
                leader.land(value);
                Ok(value)
            }
            Role::Follower(flight) => flight.wait(Instant::now() + LONG),
        }
    }

    #[test]
    fn concurrent_callers_share_one_piece_of_work() {
        let flights = Flights::new();
        let calls = AtomicUsize::new(0);
        let gate = Barrier::new(2);
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                single_flight(&flights, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    started_tx.send(()).unwrap();
                    // Held until every follower has joined.
                    gate.wait();
                    42
                })
            });
            started_rx.recv().unwrap();
            let followers: Vec<_> = (0..4)
                .map(|_| match flights.join(&"name") {
                    Role::Follower(flight) => flight,
                    Role::Leader(_) => panic!("a second leader while the first is in flight"),
                })
                .collect();
            gate.wait();
            assert_eq!(leader.join().unwrap(), Ok(42));
            for flight in followers {
                assert_eq!(flight.wait(Instant::now() + LONG), Ok(42));
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_progress(), 0, "the key is free again");
    }

    #[test]
    fn a_panicking_leader_wakes_its_followers_with_an_error() {
        let flights = Flights::new();
        let flights = &flights;
        let (joined_tx, joined_rx) = std::sync::mpsc::channel();
        let (follower_tx, follower_rx) = std::sync::mpsc::channel::<Arc<Flight<u32>>>();
        std::thread::scope(|s| {
            let leader = s.spawn(move || {
                single_flight(flights, || {
                    joined_tx.send(()).unwrap();
                    // The follower is waiting when the leader dies.
                    let _ = follower_rx.recv();
                    panic!("the leader dies mid-flight");
                })
            });
            joined_rx.recv().unwrap();
            let Role::Follower(flight) = flights.join(&"name") else {
                panic!("a second leader");
            };
            let waiter = {
                let flight = flight.clone();
                s.spawn(move || {
                    let started = Instant::now();
                    (flight.wait(Instant::now() + LONG), started.elapsed())
                })
            };
            follower_tx.send(flight).unwrap();
            assert!(leader.join().is_err(), "the leader panicked");
            let (result, waited) = waiter.join().unwrap();
            assert_eq!(result, Err(NoResult::Abandoned));
            assert!(waited < LONG / 2, "woken at once, not at its deadline");
        });
        assert_eq!(flights.in_progress(), 0);
        // The next caller leads a new flight.
        assert_eq!(single_flight(flights, || 7), Ok(7));
    }

    #[test]
    fn a_follower_gives_up_at_its_deadline() {
        let flights: Flights<&str, u32> = Flights::new();
        let _leader = match flights.join(&"name") {
            Role::Leader(leader) => leader,
            Role::Follower(_) => unreachable!(),
        };
        let Role::Follower(flight) = flights.join(&"name") else {
            panic!("a second leader");
        };
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(flight.wait(deadline), Err(NoResult::TimedOut));
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn a_landed_result_reaches_a_late_follower() {
        let flights = Flights::new();
        let Role::Leader(leader) = flights.join(&"name") else {
            unreachable!()
        };
        let Role::Follower(flight) = flights.join(&"name") else {
            unreachable!()
        };
        leader.land(5u32);
        assert_eq!(flight.wait(Instant::now()), Ok(5));
    }
}
