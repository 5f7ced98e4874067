//! DNSSEC-validated look-ups with a proof state for every answer.
//!
//! DANE is only as good as the proof behind the TLSA records, so every answer here carries one
//! of the four states of RFC 4033 §5, and negative answers (NXDOMAIN, NODATA) carry the state of
//! their denial proof too. Two ways to get that proof:
//! - in-process validation with hickory's validator against a trust anchor (the IANA root by
//!   default, or a file of root DNSKEY/DS lines for a private root). hickory judges each RRset
//!   on its own; the verdicts it leaves open are decided in [`super::proof`]: an answer it calls
//!   insecure stands only with a signed proof of an unsigned delegation above the name (else it
//!   is bogus), and wildcard expansions are checked by RFC 4035 §5.3.4;
//! - trusting the AD bit of a validating resolver, which is only sound when that resolver is on
//!   loopback (the path to it cannot be tampered with), so nothing else is accepted. A
//!   validating resolver answers SERVFAIL for bogus data, so an answer without AD is its
//!   verdict "insecure" (or unsigned): kept as insecure. That verdict is only as good as the
//!   resolver, which must validate (unbound, BIND, Knot Resolver with DNSSEC on); a
//!   non-validating one would make every answer insecure, never secure. Denials keep their AD
//!   bit too: asked over UDP, and when truncated again over a TCP connection of our own (not
//!   hickory's pool, which drops the header of negative answers), their header reaches the
//!   classifier whole. A denial that arrived without its header could not be judged at all:
//!   indeterminate (refused), never insecure.
//!
//! Answers are cached after classification, so a warm look-up takes a lock and a hash probe and
//! never enters the async runtime. The cache is bounded in entries (the least recently used goes
//! first) and honours the record TTLs on its [`Clock`]; denials are cached for their negative TTL,
//! bogus answers briefly (RFC 4035 §4.7), failures not at all. Concurrent look-ups of one name
//! and type wait for the first one (each until its own deadline) instead of asking again. A cold
//! look-up runs on the resolver's own runtime thread while the caller waits on a channel, so any
//! thread may call, one that drives another async runtime's tasks too.
//!
//! The pieces: `answer` (the result types), `anchor` (trust anchors), `net` (the runtime thread
//! and the look-up itself; the classification of responses is in `super::proof`), `cache` (an
//! LRU on an injected [`Clock`]), `flight` (single flight), `fork_guard`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hickory_resolver::proto::dnssec::TrustAnchors;
use hickory_resolver::proto::rr::{Name, RecordType};

mod anchor;
mod answer;
mod cache;
mod flight;
mod fork_guard;
mod net;

pub use anchor::TrustAnchor;
pub use answer::{Answer, Outcome, Proof, Resolution, ResolveError};
pub use cache::{Clock, ManualClock, SystemClock};

pub(crate) use cache::TtlLru;
use flight::{FlightMap, Flights, NoResult, Role};
use net::Net;

/// Where the proof of an answer comes from.
#[derive(Clone, Debug)]
pub enum Validation {
    /// Validate in-process, from these trust anchors down.
    TrustAnchor(TrustAnchor),
    /// Take the AD bit of a validating resolver. Only accepted for a server on loopback.
    TrustAdBit,
}

/// How to build a [`Resolver`].
#[derive(Clone, Debug)]
pub struct ResolverConfig {
    /// The DNS server asked for every name.
    pub server: SocketAddr,
    pub validation: Validation,
    /// Time-out of one query to the server.
    pub query_timeout: Duration,
    /// Upper bound for a whole look-up, chain of trust included.
    pub lookup_timeout: Duration,
    /// Entries in the answer cache (and in the chain-of-trust cache).
    pub cache_entries: usize,
    /// Longest time an answer is reused, whatever its TTL.
    pub max_ttl: Duration,
    /// How long a bogus answer is remembered (so an attack does not cost a validation per call).
    pub bogus_ttl: Duration,
}

impl ResolverConfig {
    /// Validation in-process against `anchor`, asking `server`.
    pub fn new(server: SocketAddr, anchor: TrustAnchor) -> Self {
        Self {
            server,
            validation: Validation::TrustAnchor(anchor),
            query_timeout: Duration::from_secs(2),
            lookup_timeout: Duration::from_secs(5),
            cache_entries: 10_000,
            max_ttl: Duration::from_secs(3600),
            bogus_ttl: Duration::from_secs(5),
        }
    }
}

type CacheKey = (Name, RecordType);
type Cache = TtlLru<CacheKey, Arc<Answer>>;
type LookupResult = Result<Arc<Answer>, ResolveError>;

/// What a flight's leader lands: its result, and, when the leader had less than the whole
/// look-up time-out (its caller's deadline was near), until when it could look: a failure of
/// such a leader is its own, not an answer for a follower that may look longer.
type Landed = (LookupResult, Option<Instant>);

/// A validating DNS resolver with a bounded answer cache. Cheap to share (`Arc`); one per
/// process is the intended use. Callable from any thread, one that runs an async runtime's tasks
/// too: the network work is done on the resolver's own runtime thread. Usable in a child after
/// `fork()`: the child's first look-up that needs the network starts a runtime and connections
/// of its own (the answer cache is kept, it is plain data).
pub struct Resolver {
    config: ResolverConfig,
    anchors: Arc<TrustAnchors>,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
}

/// What look-ups on several threads share, behind locks that no other thread may hold at a
/// `fork()` (see [`fork_guard`]): a child would wait on them for ever.
struct Shared {
    /// Behind a lock so that [`Resolver::clear_cache`] can swap in a validator with an empty
    /// validation cache and a forked child its own network; look-ups clone the `Arc`.
    net: Mutex<Arc<Net>>,
    cache: Mutex<Cache>,
    flights: Flights<CacheKey, Landed>,
    /// Bumped by [`Resolver::clear_cache`]: an answer fetched before a clear does not go back
    /// into the cache after it.
    generation: std::sync::atomic::AtomicU64,
}

/// The three locks of a [`Shared`], taken in the order the code nests them (`net` before
/// `flights`; `cache` is never held with another); released in reverse (field order).
struct AllLocks<'a> {
    _cache: MutexGuard<'a, Cache>,
    _flights: MutexGuard<'a, FlightMap<CacheKey, Landed>>,
    _net: MutexGuard<'a, Arc<Net>>,
}

impl Shared {
    fn lock_all(&self) -> AllLocks<'_> {
        let net = lock(&self.net);
        let flights = self.flights.lock();
        AllLocks {
            _cache: lock(&self.cache),
            _flights: flights,
            _net: net,
        }
    }
}

impl Resolver {
    /// Builds the resolver: one small runtime thread for the DNS I/O, shared by all look-ups.
    pub fn new(config: ResolverConfig) -> Result<Self, ResolveError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// [`Resolver::new`] with the cache reading the time from `clock` (tests move a
    /// [`ManualClock`] instead of waiting for TTLs to run out).
    pub fn with_clock(config: ResolverConfig, clock: Arc<dyn Clock>) -> Result<Self, ResolveError> {
        if matches!(config.validation, Validation::TrustAdBit) && !config.server.ip().is_loopback()
        {
            return Err(config_err(format!(
                "the AD bit is only trusted from a resolver on loopback, not {}",
                config.server
            )));
        }
        let (net, anchors) = Net::connect(&config, &clock)?;
        let shared = Arc::new(Shared {
            net: Mutex::new(Arc::new(net)),
            cache: Mutex::new(TtlLru::new(config.cache_entries)),
            flights: Flights::new(),
            generation: std::sync::atomic::AtomicU64::new(0),
        });
        fork_guard::register(&shared);
        Ok(Self {
            config,
            anchors,
            clock,
            shared,
        })
    }

    /// Runs `f` with every lock of this resolver held, as a look-up on another thread holds
    /// one for a moment (for tests of what a `fork()` at such a moment leaves to the child).
    #[doc(hidden)]
    pub fn with_locks_held<R>(&self, f: impl FnOnce() -> R) -> R {
        let _held = self.shared.lock_all();
        f()
    }

    pub fn config(&self) -> &ResolverConfig {
        &self.config
    }

    /// DNS queries sent to the server since this resolver was built.
    pub fn queries_sent(&self) -> u64 {
        lock(&self.shared.net).wire.queries()
    }

    /// Forgets every cached answer and validation result (for an operator's "flush", and to
    /// measure cold look-ups).
    pub fn clear_cache(&self) {
        {
            let mut cache = lock(&self.shared.cache);
            self.shared.generation.fetch_add(1, SeqCst);
            cache.clear();
        }
        let mut net = lock(&self.shared.net);
        if net.pid != std::process::id() {
            return; // a forked child's first look-up builds a fresh validator anyway
        }
        net.wire.clear();
        if let Some(fresh) = net.with_fresh_validator(&self.anchors) {
            *net = Arc::new(fresh);
        }
    }

    /// The network side of this process: after a `fork()`, a new runtime, new connections and
    /// an empty chain-of-trust cache (its locks may have been held by the parent's runtime
    /// thread, and its queries in flight belong to it) for the child; the query count starts
    /// again. The parent's are leaked in the child, never dropped: dropping would wait for
    /// runtime threads that only exist in the parent and take the parent's sockets out of the
    /// event-polling instance the two processes share.
    fn net(&self) -> Result<Arc<Net>, ResolveError> {
        let mut net = lock(&self.shared.net);
        if net.pid != std::process::id() {
            let childs = Net::reconnect(&self.config, &self.clock, &self.anchors)?;
            let parents = std::mem::replace(&mut *net, Arc::new(childs));
            std::mem::forget(parents);
            // Look-ups in flight at the fork belong to threads the child does not have.
            self.shared.flights.forget_all();
        }
        Ok(net.clone())
    }

    /// Looks up `name`/`rtype` and follows CNAMEs (at most 8), each step cached.
    pub fn resolve(&self, name: &str, rtype: RecordType) -> Result<Resolution, ResolveError> {
        self.resolve_name(&parse_name(name, rtype)?, rtype, None)
    }

    /// [`Resolver::resolve`] for a parsed name; with a `deadline`, the whole chain is given up
    /// (as indeterminate) when it passes, whatever is left of the look-up time-out.
    pub fn resolve_name(
        &self,
        name: &Name,
        rtype: RecordType,
        deadline: Option<Instant>,
    ) -> Result<Resolution, ResolveError> {
        let mut steps = Vec::new();
        let mut current = name.to_lowercase();
        current.set_fqdn(true);
        loop {
            let answer = self.lookup_name(&current, rtype, deadline)?;
            let next = match &answer.outcome {
                Outcome::Alias(target) if rtype != RecordType::CNAME => Some(target.clone()),
                _ => None,
            };
            steps.push(answer);
            match next {
                Some(target) if steps.len() < 8 => current = target,
                Some(_) => {
                    return Err(ResolveError::Lookup {
                        name: name.to_string(),
                        rtype,
                        reason: "CNAME chain longer than 8".into(),
                    })
                }
                None => return Ok(Resolution { steps }),
            }
        }
    }

    /// One name and type, no CNAME following: the answer may be [`Outcome::Alias`].
    pub fn lookup(&self, name: &str, rtype: RecordType) -> Result<Arc<Answer>, ResolveError> {
        self.lookup_name(&parse_name(name, rtype)?, rtype, None)
    }

    /// One name and type asked of the DNS now, whatever the cache holds, and validated as every
    /// answer is: for a registry that just changed the records and waits to see the change
    /// secure, which a cached answer would hide for its TTL (and [`Resolver::clear_cache`]
    /// would make costly, dropping the chain of trust too). The answer is not cached; the
    /// chain-of-trust RRsets (DNSKEY, DS) are taken from the cache as usual.
    pub fn lookup_fresh(&self, name: &str, rtype: RecordType) -> Result<Arc<Answer>, ResolveError> {
        let name = parse_name(name, rtype)?;
        self.net()?
            .fetch(name.clone(), rtype, self.config.lookup_timeout)
            .map(Arc::new)
            .map_err(|reason| ResolveError::Lookup {
                name: name.to_string(),
                rtype,
                reason,
            })
    }

    /// From the cache, or by the one look-up of `key` in flight (led by this call, or by an
    /// earlier one that this call waits for, until its deadline).
    fn lookup_name(
        &self,
        name: &Name,
        rtype: RecordType,
        deadline: Option<Instant>,
    ) -> LookupResult {
        let key = (name.to_lowercase(), rtype);
        if let Some(answer) = self.cached(&key) {
            return Ok(answer);
        }
        loop {
            let limit = self.time_left(&key, deadline)?;
            // Before joining a flight: a forked child clears the flights of its parent's threads.
            let net = self.net()?;
            let leader = match self.shared.flights.join(&key) {
                Role::Leader(leader) => leader,
                Role::Follower(flight) => {
                    // Without a deadline of its own, as long as the leader may take, and a little.
                    let until = deadline.unwrap_or_else(|| Instant::now() + limit + FOLLOWER_GRACE);
                    match flight.wait(until) {
                        // A leader in more of a hurry than this caller failed within its own
                        // time: that is no answer for a caller that may look longer, which
                        // looks again (leading, or following a newer flight).
                        Ok((Err(_), Some(hurried_until))) if hurried_until < until => continue,
                        Ok((result, _)) => return result,
                        Err(why) => return Err(lookup_err(&key, why)),
                    }
                }
            };
            let hurried_until =
                (limit < self.config.lookup_timeout).then(|| Instant::now() + limit);
            let generation = self.shared.generation.load(SeqCst);
            // A leader that finds the answer cached now lost a race with a flight that just ended.
            let result = match self.cached(&key) {
                Some(answer) => Ok(answer),
                None => net
                    .fetch(key.0.clone(), rtype, limit)
                    .map(Arc::new)
                    .map_err(|reason| ResolveError::Lookup {
                        name: key.0.to_string(),
                        rtype,
                        reason,
                    }),
            };
            if let Ok(answer) = &result {
                self.store(key, answer.clone(), generation);
            }
            leader.land((result.clone(), hurried_until));
            return result;
        }
    }

    /// How long every step of `res` stays in the cache from now: the time after which a look-up
    /// of the same name asks the DNS again (zero when a step was not kept, e.g. a TTL of 0).
    /// A verification that relied on `res` holds no longer than this.
    pub fn remaining_ttl(&self, res: &Resolution) -> Duration {
        let now = self.clock.now();
        let cache = lock(&self.shared.cache);
        res.steps
            .iter()
            .map(|step| {
                let key = (step.name.to_lowercase(), step.rtype);
                cache
                    .expiry(&key, now)
                    .map_or(Duration::ZERO, |expires| expires - now)
            })
            .min()
            .unwrap_or(Duration::ZERO)
    }

    fn cached(&self, key: &CacheKey) -> Option<Arc<Answer>> {
        let now = self.clock.now();
        lock(&self.shared.cache).get(key, now)
    }

    /// Keeps `answer`, fetched in cache `generation`, for its TTL (unless the cache was cleared
    /// since it was fetched).
    fn store(&self, key: CacheKey, answer: Arc<Answer>, generation: u64) {
        let ttl = match answer.proof {
            Proof::Bogus => self.config.bogus_ttl,
            Proof::Indeterminate => return,
            _ => Duration::from_secs(answer.ttl.into()).min(self.config.max_ttl),
        };
        if ttl.is_zero() {
            return;
        }
        let expires = self.clock.now() + ttl;
        let mut cache = lock(&self.shared.cache);
        if self.shared.generation.load(SeqCst) == generation {
            cache.insert(key, answer, expires);
        }
    }

    /// The time a look-up of `key` may take: the look-up time-out, or less before `deadline`;
    /// an error once the deadline has passed.
    fn time_left(
        &self,
        key: &CacheKey,
        deadline: Option<Instant>,
    ) -> Result<Duration, ResolveError> {
        let limit = self.config.lookup_timeout;
        let Some(deadline) = deadline else {
            return Ok(limit);
        };
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(limit.min(left)),
            _ => Err(ResolveError::Lookup {
                name: key.0.to_string(),
                rtype: key.1,
                reason: "not asked: the time budget of this check is spent".into(),
            }),
        }
    }
}

/// How much longer than a look-up may take a follower without a deadline waits for its leader
/// (which gives up at its own limit and lands the flight then).
const FOLLOWER_GRACE: Duration = Duration::from_millis(500);

/// Why a follower of the look-up of `key` has no answer.
fn lookup_err(key: &CacheKey, why: NoResult) -> ResolveError {
    let reason = match why {
        NoResult::TimedOut => "no answer within the time budget of this check",
        NoResult::Abandoned => {
            "the look-up this one waited for was abandoned (it failed internally); not retried"
        }
    };
    ResolveError::Lookup {
        name: key.0.to_string(),
        rtype: key.1,
        reason: reason.into(),
    }
}

/// In a forked child that never looked anything up, the parent's network side is still here:
/// leaked, not dropped (see [`Resolver::net`]).
impl Drop for Resolver {
    fn drop(&mut self) {
        let net = lock(&self.shared.net);
        if net.pid != std::process::id() {
            std::mem::forget(net.clone());
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn config_err(why: String) -> ResolveError {
    ResolveError::Config(why)
}

fn parse_name(name: &str, rtype: RecordType) -> Result<Name, ResolveError> {
    let mut parsed = Name::from_str(name).map_err(|e| ResolveError::Lookup {
        name: name.to_string(),
        rtype,
        reason: format!("not a valid domain name: {e}"),
    })?;
    parsed.set_fqdn(true);
    Ok(parsed.to_lowercase())
}

#[cfg(test)]
mod tests;
