//! No resolver lock is held by another thread at a `fork()`.
//!
//! A child made by `fork()` has one thread, the copy of the one that forked. A lock that any
//! other thread of the parent held at that moment stays locked in the child for ever, and the
//! child's first look-up would wait on it with no time-out. `pthread_atfork` handlers take the
//! locks of every live resolver before the fork (waiting for the short critical sections in
//! progress; no code holds them across I/O) and release them after it, in the parent and in
//! the child alike. (glibc removes the handlers when the library that registered them is
//! unloaded, as an OpenSSL provider may be.)

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};

use super::{lock, AllLocks, Shared};

/// Every resolver built in this process (dropped ones are pruned at each registration).
static REGISTRY: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

thread_local! {
    /// The locks taken before a fork, by the forking thread (the child's only thread is a copy
    /// of it, with this value).
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Puts `shared` under the fork handlers, installing them the first time.
pub(super) fn register(shared: &Arc<Shared>) {
    INSTALL.call_once(|| {
        // SAFETY: plain functions that live as long as the program. On failure (ENOMEM) the
        // handlers are missing and a fork is as unguarded as before: nothing better to do.
        unsafe { libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child)) };
    });
    let mut registry = lock(&REGISTRY);
    registry.retain(|r| r.strong_count() > 0);
    registry.push(Arc::downgrade(shared));
}

struct Held {
    locks: Vec<AllLocks<'static>>,
    /// Keeps the resolvers alive while `locks` borrow from them.
    resolvers: Vec<Arc<Shared>>,
    registry: MutexGuard<'static, Vec<Weak<Shared>>>,
}

impl Held {
    fn release(self, in_child: bool) {
        let Held {
            locks,
            resolvers,
            registry,
        } = self;
        drop(locks);
        drop(registry);
        if in_child {
            // A resolver dropped by another thread during the fork would be dropped here, in
            // the child, with its parent's runtime: leaked instead (see `Resolver::net`).
            std::mem::forget(resolvers);
        }
    }
}

unsafe extern "C" fn prepare() {
    let registry = lock(&REGISTRY);
    let resolvers: Vec<Arc<Shared>> = registry.iter().filter_map(Weak::upgrade).collect();
    let locks = resolvers
        .iter()
        .map(|shared| {
            // SAFETY: `Held::resolvers` keeps this `Shared` alive, and `Held::release` drops
            // the guards before it.
            let shared: &'static Shared = unsafe { &*Arc::as_ptr(shared) };
            shared.lock_all()
        })
        .collect();
    let held = Held {
        locks,
        resolvers,
        registry,
    };
    // Never panics across the C boundary: a thread without its locals keeps no locks.
    let _ = HELD.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            *slot = Some(held);
        }
    });
}

fn release(in_child: bool) {
    let _ = HELD.try_with(|cell| {
        if let Some(held) = cell.try_borrow_mut().ok().and_then(|mut slot| slot.take()) {
            held.release(in_child);
        }
    });
}

unsafe extern "C" fn in_parent() {
    release(false);
}

unsafe extern "C" fn in_child() {
    release(true);
}
