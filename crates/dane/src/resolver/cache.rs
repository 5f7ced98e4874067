//! The answer cache: bounded, least recently used out first, each entry kept until its expiry.
//!
//! Time comes from a [`Clock`], so that expiry is tested by moving a clock instead of waiting
//! for it. Every operation is O(1): a hash map whose entries are linked in use order.

use std::hash::Hash;
use std::panic::RefUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use linked_hash_map::LinkedHashMap;

/// Where the cache reads the time. Look-up deadlines are not on it: they are the caller's,
/// in real time. (Unwind-safe, so that a resolver may be used under `catch_unwind`.)
pub trait Clock: Send + Sync + RefUnwindSafe + 'static {
    fn now(&self) -> Instant;
}

/// The real time (monotonic).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to (for tests of expiry).
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Instant>,
}

impl ManualClock {
    /// Stopped at the real time of the call.
    pub fn new() -> Self {
        Self {
            now: Mutex::new(Instant::now()),
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// At most `capacity` entries; a new one pushes out the least recently used. An expired entry
/// is never handed out, and is dropped when found (or pushed out like any other).
pub(crate) struct TtlLru<K: Hash + Eq, V> {
    entries: LinkedHashMap<K, (V, Instant)>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlLru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: LinkedHashMap::new(),
            capacity,
        }
    }

    /// The value of `key` while it has not expired at `now` (it becomes the most recently used).
    pub(crate) fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        match self.entries.get_refresh(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// When the live entry of `key` expires (`None`: no entry, or expired at `now`). Leaves the
    /// order of use as it is: asking how long an answer lasts is not using it.
    pub(crate) fn expiry(&self, key: &K, now: Instant) -> Option<Instant> {
        match self.entries.get(key) {
            Some((_, expires)) if *expires > now => Some(*expires),
            _ => None,
        }
    }

    /// Keeps `value` until `expires` (replacing an earlier value of `key`), as the most
    /// recently used entry.
    pub(crate) fn insert(&mut self, key: K, value: V, expires: Instant) {
        if self.capacity == 0 {
            return;
        }
        self.entries.insert(key, (value, expires));
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn an_entry_lives_until_its_expiry_on_the_clock() {
        let clock = ManualClock::new();
        let mut cache = TtlLru::new(4);
        cache.insert("a", 1, clock.now() + MINUTE);
        clock.advance(MINUTE - Duration::from_millis(1));
        assert_eq!(cache.get(&"a", clock.now()), Some(1));
        clock.advance(Duration::from_millis(1));
        assert_eq!(cache.get(&"a", clock.now()), None, "expired at its expiry");
        assert_eq!(cache.len(), 0, "an expired entry found is dropped");
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let clock = ManualClock::new();
        let expires = clock.now() + MINUTE;
        let mut cache = TtlLru::new(3);
        for key in ["a", "b", "c"] {
            cache.insert(key, key.len(), expires);
        }
        // "a" used again: "b" is now the least recently used.
        assert!(cache.get(&"a", clock.now()).is_some());
        cache.insert("d", 1, expires);
        assert_eq!(cache.get(&"b", clock.now()), None);
        for kept in ["a", "c", "d"] {
            assert!(cache.get(&kept, clock.now()).is_some(), "{kept}");
        }
        // Order of use now: a, c, d. Replacing "a" makes it the most recent.
        cache.insert("a", 2, expires);
        cache.insert("e", 1, expires);
        assert_eq!(cache.get(&"c", clock.now()), None);
        assert_eq!(cache.get(&"a", clock.now()), Some(2));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn a_longer_lived_entry_does_not_protect_itself_from_eviction() {
        // Eviction is by use, not by expiry: an entry nobody asks for goes, however long its TTL.
        let clock = ManualClock::new();
        let mut cache = TtlLru::new(2);
        cache.insert("long", 1, clock.now() + 100 * MINUTE);
        cache.insert("short", 2, clock.now() + MINUTE);
        assert!(cache.get(&"short", clock.now()).is_some());
        cache.insert("new", 3, clock.now() + MINUTE);
        assert_eq!(cache.get(&"long", clock.now()), None);
        assert_eq!(cache.get(&"short", clock.now()), Some(2));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let clock = ManualClock::new();
        let mut cache = TtlLru::new(0);
        cache.insert("a", 1, clock.now() + MINUTE);
        assert_eq!(cache.get(&"a", clock.now()), None);
    }
}
