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
//! never enters the async runtime. The cache is bounded in entries and honours the record TTLs;
//! denials are cached for their negative TTL, bogus answers briefly (RFC 4035 §4.7), failures
//! not at all. Concurrent look-ups of one name and type wait for the first one instead of
//! asking again.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverOpts};
use hickory_resolver::net::dnssec::DnssecDnsHandle;
use hickory_resolver::net::runtime::{RuntimeProvider, TokioRuntimeProvider};
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::net::xfer::{DnsExchange, DnsHandle, FirstAnswer};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::rdata::{DNSSECRData, DNSKEY};
use hickory_resolver::proto::dnssec::{DigestType, TrustAnchors, Verifier};
use hickory_resolver::proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Query, ResponseCode,
};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use super::proof::{self, Unproven};
use super::wire::{Wire, WireState};

use hickory_resolver::proto::dnssec::Proof as HickoryProof;

/// The DNSSEC state of an answer (RFC 4033 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proof {
    /// Validated from the trust anchor down (for a denial: NSEC/NSEC3 proven).
    Secure,
    /// Provably outside any signed zone (an unsigned delegation).
    Insecure,
    /// Should have validated and did not: an attack or a broken zone. Never "no DANE".
    Bogus,
    /// Could not be decided (time-out, unreachable server).
    Indeterminate,
}

impl Proof {
    /// The weaker of two states: a chain is only as good as its weakest link, and a bogus link
    /// spoils it whatever else is there.
    pub fn weakest(self, other: Proof) -> Proof {
        use Proof::*;
        match (self, other) {
            (Bogus, _) | (_, Bogus) => Bogus,
            (Indeterminate, _) | (_, Indeterminate) => Indeterminate,
            (Insecure, _) | (_, Insecure) => Insecure,
            (Secure, Secure) => Secure,
        }
    }

    fn from_hickory(proof: HickoryProof) -> Proof {
        match proof {
            HickoryProof::Secure => Proof::Secure,
            HickoryProof::Insecure => Proof::Insecure,
            HickoryProof::Bogus => Proof::Bogus,
            _ => Proof::Indeterminate,
        }
    }
}

impl fmt::Display for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proof::Secure => "secure",
            Proof::Insecure => "insecure",
            Proof::Bogus => "bogus",
            Proof::Indeterminate => "indeterminate",
        })
    }
}

/// What the DNS said about one name and type.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The RRset of the asked type.
    Records(Vec<RData>),
    /// The name is an alias (CNAME) for this target.
    Alias(Name),
    /// The name exists without records of this type.
    NoData,
    /// The name does not exist.
    NxDomain,
}

/// One classified answer: what the DNS said and how well it is proven.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The name asked for, fully qualified, lower case.
    pub name: Name,
    pub rtype: RecordType,
    pub proof: Proof,
    pub outcome: Outcome,
    /// Seconds the answer may be used from the moment it was received.
    pub ttl: u32,
    /// Why the answer is bogus, or how its insecurity was proven (which record, which name).
    pub why: Option<String>,
}

impl Answer {
    /// The records of the asked type (empty for denials and aliases).
    pub fn records(&self) -> &[RData] {
        match &self.outcome {
            Outcome::Records(records) => records,
            _ => &[],
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Records(r) => {
                write!(f, "{} {}: {} record(s)", self.name, self.rtype, r.len())?
            }
            Outcome::Alias(t) => write!(f, "{} {}: CNAME to {t}", self.name, self.rtype)?,
            Outcome::NoData => write!(f, "{} {}: no such record (NODATA)", self.name, self.rtype)?,
            Outcome::NxDomain => {
                write!(f, "{} {}: no such name (NXDOMAIN)", self.name, self.rtype)?
            }
        }
        write!(f, ", {}", self.proof)?;
        match &self.why {
            Some(why) => write!(f, " ({why})"),
            None => Ok(()),
        }
    }
}

/// A look-up with its CNAME chain followed: one [`Answer`] per step, the last one final.
#[derive(Clone, Debug)]
pub struct Resolution {
    pub steps: Vec<Arc<Answer>>,
}

impl Resolution {
    /// The final answer (never an alias).
    pub fn last(&self) -> &Answer {
        self.steps
            .last()
            .expect("a resolution has at least one step")
    }

    /// The proof of the whole chain: its weakest step.
    pub fn proof(&self) -> Proof {
        self.steps
            .iter()
            .fold(Proof::Secure, |p, step| p.weakest(step.proof))
    }

    /// The name the final answer is for (the original name when there was no CNAME).
    pub fn canonical_name(&self) -> &Name {
        &self.last().name
    }

    pub fn records(&self) -> &[RData] {
        self.last().records()
    }
}

/// Why a look-up produced no answer at all. The proof state of such a look-up is
/// indeterminate, and callers must fail closed on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// The resolver could not be built as configured.
    Config(String),
    /// No usable answer for this name and type.
    Lookup {
        name: String,
        rtype: RecordType,
        reason: String,
    },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Config(why) => write!(f, "DNS resolver configuration: {why}"),
            ResolveError::Lookup {
                name,
                rtype,
                reason,
            } => write!(
                f,
                "DNS look-up of {name} {rtype} failed: {reason} (proof state: indeterminate)"
            ),
        }
    }
}

impl std::error::Error for ResolveError {}

/// Where the proof of an answer comes from.
#[derive(Clone, Debug)]
pub enum Validation {
    /// Validate in-process, from these trust anchors down.
    TrustAnchor(TrustAnchor),
    /// Take the AD bit of a validating resolver. Only accepted for a server on loopback.
    TrustAdBit,
}

/// Trust anchors for the root zone: DNSKEY lines, DS lines, or the built-in IANA root keys.
#[derive(Clone, Debug)]
pub struct TrustAnchor {
    /// Zone-file text of root DNSKEY records (empty for the built-in IANA keys).
    dnskeys: String,
    /// Root DS records: (key tag, algorithm, digest type, digest).
    ds: Vec<(u16, u8, u8, Vec<u8>)>,
}

impl TrustAnchor {
    /// The IANA root keys compiled into hickory (KSK-2017 and KSK-2024).
    pub fn iana_root() -> Self {
        Self {
            dnskeys: String::new(),
            ds: Vec::new(),
        }
    }

    /// Reads zone-file lines of root DNSKEY or DS records (e.g.
    /// `. 3600 IN DNSKEY 257 3 13 <base64>`), as unbound's or ldns' root key files have them.
    pub fn from_file(path: &Path) -> Result<Self, ResolveError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ResolveError::Config(format!("trust anchor file {}: {e}", path.display()))
        })?;
        text.parse()
            .map_err(|e: ResolveError| ResolveError::Config(format!("{}: {e}", path.display())))
    }

    fn is_builtin(&self) -> bool {
        self.dnskeys.is_empty() && self.ds.is_empty()
    }
}

impl FromStr for TrustAnchor {
    type Err = ResolveError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut anchor = TrustAnchor {
            dnskeys: String::new(),
            ds: Vec::new(),
        };
        for line in text.lines() {
            let line = line.split(';').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(pos) = fields.iter().position(|f| *f == "DNSKEY" || *f == "DS") else {
                return Err(config_err(format!("not a DNSKEY or DS record: {line}")));
            };
            if fields[0] != "." {
                // hickory's validator loops on anchors below the root; refuse them loudly.
                return Err(config_err(format!(
                    "trust anchor for {} refused: only root (.) anchors are supported",
                    fields[0]
                )));
            }
            if fields[pos] == "DNSKEY" {
                // hickory's parser wants TTL and class, which root key files often omit.
                let rdata = fields[pos + 1..].join(" ");
                anchor
                    .dnskeys
                    .push_str(&format!(". 3600 IN DNSKEY {rdata}\n"));
            } else {
                anchor.ds.push(parse_ds(&fields[pos + 1..], line)?);
            }
        }
        if anchor.is_builtin() {
            return Err(config_err(
                "no DNSKEY or DS record in the trust anchor".into(),
            ));
        }
        Ok(anchor)
    }
}

fn parse_ds(f: &[&str], line: &str) -> Result<(u16, u8, u8, Vec<u8>), ResolveError> {
    let bad = || config_err(format!("malformed DS record: {line}"));
    if f.len() < 4 {
        return Err(bad());
    }
    let hex: String = f[3..].concat();
    Ok((
        f[0].parse().map_err(|_| bad())?,
        f[1].parse().map_err(|_| bad())?,
        f[2].parse().map_err(|_| bad())?,
        iotsafe_hex::decode(&hex).ok().ok_or_else(bad)?,
    ))
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

type Pool = NameServerPool<TokioRuntimeProvider>;

#[derive(Clone)]
enum Stack {
    Validating(DnssecDnsHandle<Wire<Pool>>),
    /// Trusting the AD bit: queries go over plain UDP, whose responses reach us whole (the
    /// pool turns a negative response into an error without its header, and so without its AD
    /// bit); a truncated response is asked again over a TCP connection of its own, whole too.
    AdBit {
        udp: Wire<DnsExchange<TokioRuntimeProvider>>,
        tcp: TcpRetry,
    },
}

/// The TCP retry of a truncated UDP answer in AD-bit mode: one connection per retry (rare),
/// made on whatever runtime runs the look-up, and counted like every other query.
#[derive(Clone)]
struct TcpRetry {
    server: SocketAddr,
    timeout: Duration,
    wire: Arc<WireState>,
}

impl TcpRetry {
    async fn send(&self, request: DnsRequest) -> Result<DnsResponse, NetError> {
        type Tcp = <TokioRuntimeProvider as RuntimeProvider>::Tcp;
        // The connection's task lives in the provider's task set, which ends with the last
        // clone of the provider: this one is kept until the answer is in.
        let provider = TokioRuntimeProvider::new();
        let exchange = TcpClientStream::<Tcp>::exchange(
            self.server,
            None,
            self.timeout,
            None,
            provider.clone(),
        )
        .await?;
        let response = Wire::new(exchange, self.wire.clone())
            .send(request)
            .first_answer()
            .await;
        drop(provider);
        response
    }
}

type CacheKey = (Name, RecordType);

/// What talks to the network: the runtime whose thread drives the sockets, and the handles that
/// use them. Owned by one process: a child made by `fork()` has a copy of this memory but not the
/// runtime's thread, and shares the sockets and the event-polling instance with its parent, so it
/// builds its own (see [`Resolver::net`]).
struct Net {
    /// The process that built it.
    pid: u32,
    runtime: Arc<tokio::runtime::Runtime>,
    stack: Stack,
    /// The query counter and chain-of-trust cache under `stack`.
    wire: Arc<WireState>,
}

/// A validating DNS resolver with a bounded answer cache. Cheap to share (`Arc`); one per
/// process is the intended use. Usable in a child after `fork()`: the child's first look-up
/// that needs the network starts a runtime and connections of its own (the answer cache is
/// kept, it is plain data).
pub struct Resolver {
    config: ResolverConfig,
    anchors: Arc<TrustAnchors>,
    shared: Arc<Shared>,
}

type Cache = HashMap<CacheKey, (Arc<Answer>, Instant)>;
type Flights = HashMap<CacheKey, Arc<Flight>>;

/// What look-ups on several threads share, behind locks that no other thread may hold at a
/// `fork()` (see [`fork_guard`]): a child would wait on them for ever.
struct Shared {
    /// Behind a lock so that [`Resolver::clear_cache`] can swap in a validator with an empty
    /// validation cache and a forked child its own network; look-ups clone the `Arc`.
    net: Mutex<Arc<Net>>,
    cache: Mutex<Cache>,
    flights: Mutex<Flights>,
}

/// The three locks of a [`Shared`], taken in the order the code nests them (`net` before
/// `flights`; `cache` is never held with another); released in reverse (field order).
struct AllLocks<'a> {
    _cache: MutexGuard<'a, Cache>,
    _flights: MutexGuard<'a, Flights>,
    _net: MutexGuard<'a, Arc<Net>>,
}

impl Shared {
    fn lock_all(&self) -> AllLocks<'_> {
        let net = lock(&self.net);
        let flights = lock(&self.flights);
        AllLocks {
            _cache: lock(&self.cache),
            _flights: flights,
            _net: net,
        }
    }
}

/// A look-up in progress that others wait for.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Result<Arc<Answer>, ResolveError>>>,
    done: Condvar,
}

impl Resolver {
    /// Builds the resolver: one small runtime thread for the DNS I/O, shared by all look-ups.
    pub fn new(config: ResolverConfig) -> Result<Self, ResolveError> {
        if matches!(config.validation, Validation::TrustAdBit) && !config.server.ip().is_loopback()
        {
            return Err(config_err(format!(
                "the AD bit is only trusted from a resolver on loopback, not {}",
                config.server
            )));
        }
        let runtime = Arc::new(start_runtime()?);
        let wire = WireState::new(config.cache_entries);
        let anchors_used = match &config.validation {
            Validation::TrustAdBit => Arc::new(TrustAnchors::empty()),
            Validation::TrustAnchor(anchor) => {
                let plain = Wire::new(runtime.block_on(async { pool(&config) })?, wire.clone());
                Arc::new(runtime.block_on(anchors(anchor, &plain))?)
            }
        };
        let stack = stack(&config, &runtime, &wire, &anchors_used)?;
        let shared = Arc::new(Shared {
            net: Mutex::new(Arc::new(Net {
                pid: std::process::id(),
                runtime,
                stack,
                wire,
            })),
            cache: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        });
        fork_guard::register(&shared);
        Ok(Self {
            config,
            anchors: anchors_used,
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
        lock(&self.shared.cache).clear();
        let mut net = lock(&self.shared.net);
        if net.pid != std::process::id() {
            return; // a forked child's first look-up builds a fresh validator anyway
        }
        net.wire.clear();
        if let Stack::Validating(handle) = &net.stack {
            let fresh =
                DnssecDnsHandle::with_trust_anchor(handle.inner().clone(), self.anchors.clone());
            *net = Arc::new(Net {
                pid: net.pid,
                runtime: net.runtime.clone(),
                stack: Stack::Validating(fresh),
                wire: net.wire.clone(),
            });
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
        let pid = std::process::id();
        if net.pid != pid {
            let runtime = Arc::new(start_runtime()?);
            let wire = WireState::new(self.config.cache_entries);
            let stack = stack(&self.config, &runtime, &wire, &self.anchors)?;
            let parents = std::mem::replace(
                &mut *net,
                Arc::new(Net {
                    pid,
                    runtime,
                    stack,
                    wire,
                }),
            );
            std::mem::forget(parents);
            // Look-ups in flight at the fork belong to threads the child does not have.
            lock(&self.shared.flights).clear();
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

    fn lookup_name(
        &self,
        name: &Name,
        rtype: RecordType,
        deadline: Option<Instant>,
    ) -> Result<Arc<Answer>, ResolveError> {
        let key = (name.to_lowercase(), rtype);
        if let Some(answer) = self.cached(&key) {
            return Ok(answer);
        }
        let limit = self.time_left(&key, deadline)?;
        // Before joining a flight: a forked child clears the flights of its parent's threads.
        let net = self.net()?;
        let (flight, leader) = {
            let mut flights = lock(&self.shared.flights);
            match flights.get(&key) {
                Some(flight) => (flight.clone(), false),
                None => {
                    let flight = Arc::new(Flight::default());
                    flights.insert(key.clone(), flight.clone());
                    (flight, true)
                }
            }
        };
        if !leader {
            return wait_for(&flight, &key, deadline);
        }
        // A leader that finds the answer cached now lost a race with a flight that just ended.
        let result = match self.cached(&key) {
            Some(answer) => Ok(answer),
            None => self.fetch(&key, &net, limit),
        };
        if let Ok(answer) = &result {
            self.store(key.clone(), answer.clone());
        }
        lock(&self.shared.flights).remove(&key);
        *lock(&flight.result) = Some(result.clone());
        flight.done.notify_all();
        result
    }

    fn cached(&self, key: &CacheKey) -> Option<Arc<Answer>> {
        let cache = lock(&self.shared.cache);
        match cache.get(key) {
            Some((answer, expires)) if *expires > Instant::now() => Some(answer.clone()),
            _ => None,
        }
    }

    fn store(&self, key: CacheKey, answer: Arc<Answer>) {
        let ttl = match answer.proof {
            Proof::Bogus => self.config.bogus_ttl,
            Proof::Indeterminate => return,
            _ => Duration::from_secs(answer.ttl.into()).min(self.config.max_ttl),
        };
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut cache = lock(&self.shared.cache);
        if cache.len() >= self.config.cache_entries && !cache.contains_key(&key) {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= self.config.cache_entries {
                let soonest = cache
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| k.clone());
                if let Some(soonest) = soonest {
                    cache.remove(&soonest);
                }
            }
        }
        cache.insert(key, (answer, now + ttl));
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

    /// Asks the network, within `limit`.
    fn fetch(
        &self,
        key: &CacheKey,
        net: &Net,
        limit: Duration,
    ) -> Result<Arc<Answer>, ResolveError> {
        let (name, rtype) = key.clone();
        let stack = net.stack.clone();
        let result = net.runtime.block_on(async move {
            tokio::time::timeout(limit, ask_and_prove(&stack, name, rtype)).await
        });
        let fail = |reason: String| ResolveError::Lookup {
            name: key.0.to_string(),
            rtype,
            reason,
        };
        let result = result.map_err(|_| fail(format!("no answer within {limit:?}")))?;
        result.map(Arc::new).map_err(fail)
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

/// The result of another thread's look-up of `key`, or an error when `deadline` passes first.
fn wait_for(
    flight: &Flight,
    key: &CacheKey,
    deadline: Option<Instant>,
) -> Result<Arc<Answer>, ResolveError> {
    let mut result = lock(&flight.result);
    while result.is_none() {
        result = match deadline {
            None => flight.done.wait(result).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ResolveError::Lookup {
                        name: key.0.to_string(),
                        rtype: key.1,
                        reason: "no answer within the time budget of this check".into(),
                    });
                }
                let (guard, _) = flight
                    .done
                    .wait_timeout(result, left)
                    .unwrap_or_else(|e| e.into_inner());
                guard
            }
        };
    }
    result.clone().expect("set before notify")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn config_err(why: String) -> ResolveError {
    ResolveError::Config(why)
}

/// One small runtime thread for the DNS I/O.
fn start_runtime() -> Result<tokio::runtime::Runtime, ResolveError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("dane-dns")
        .enable_all()
        .build()
        .map_err(|e| config_err(format!("cannot start the DNS runtime: {e}")))
}

/// New connections to the configured server on `runtime`, validating from `anchors` (or trusting
/// the AD bit, as configured).
fn stack(
    config: &ResolverConfig,
    runtime: &tokio::runtime::Runtime,
    wire: &Arc<WireState>,
    anchors: &Arc<TrustAnchors>,
) -> Result<Stack, ResolveError> {
    Ok(match &config.validation {
        Validation::TrustAdBit => {
            let server = config.server;
            let timeout = config.query_timeout;
            // The exchange spawns its background task on the runtime.
            let udp = runtime.block_on(async move {
                UdpClientStream::builder(server, TokioRuntimeProvider::new())
                    .with_timeout(Some(timeout))
                    .exchange()
            });
            Stack::AdBit {
                udp: Wire::new(udp, wire.clone()),
                tcp: TcpRetry {
                    server,
                    timeout,
                    wire: wire.clone(),
                },
            }
        }
        Validation::TrustAnchor(_) => {
            let pool = Wire::new(runtime.block_on(async { pool(config) })?, wire.clone());
            Stack::Validating(DnssecDnsHandle::with_trust_anchor(pool, anchors.clone()))
        }
    })
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

fn pool(config: &ResolverConfig) -> Result<Pool, ResolveError> {
    let mut opts = ResolverOpts::default();
    opts.timeout = config.query_timeout;
    opts.attempts = 2;
    opts.edns0 = true;
    opts.cache_size = 0;
    opts.try_tcp_on_error = true;
    let tls = TlsConfig::new().map_err(|e| config_err(format!("{e}")))?;
    let cx = Arc::new(PoolContext::new(opts, tls));
    let mut server = NameServerConfig::udp_and_tcp(config.server.ip());
    for conn in &mut server.connections {
        conn.port = config.server.port();
    }
    Ok(NameServerPool::from_config(
        [server],
        cx,
        TokioRuntimeProvider::new(),
    ))
}

fn request_options() -> DnsRequestOptions {
    let mut options = DnsRequestOptions::default();
    options.use_edns = true;
    options.edns_set_dnssec_ok = true;
    options.recursion_desired = true;
    options
}

async fn ask(stack: &Stack, name: Name, rtype: RecordType) -> Result<DnsResponse, NetError> {
    let query = Query::query(name, rtype);
    match stack {
        Stack::Validating(handle) => handle.lookup(query, request_options()).first_answer().await,
        Stack::AdBit { udp, tcp } => {
            let mut request = DnsRequest::from_query(query, request_options());
            request.metadata.authentic_data = true;
            let response = udp.send(request.clone()).first_answer().await?;
            if !response.metadata.truncation {
                return answer_or_denial(response);
            }
            // The TCP answer passes the same filter: a SERVFAIL there is just as much a
            // failure, never a denial without AD bit ("insecure").
            let response = tcp.send(request).await?;
            if response.metadata.truncation {
                return Err(NetError::from("the answer is truncated even over TCP"));
            }
            answer_or_denial(response)
        }
    }
}

/// In AD-bit mode, only answers and denials (NOERROR, NXDOMAIN) carry a verdict in their AD bit;
/// SERVFAIL (what a validating resolver says for bogus data) and every other code is a failure.
fn answer_or_denial(response: DnsResponse) -> Result<DnsResponse, NetError> {
    match response.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(response),
        code => Err(NetError::Dns(DnsError::ResponseCode(code))),
    }
}

/// Asks and classifies; with in-process validation, an answer hickory calls insecure is then
/// proven insecure or found bogus (the proof walk shares the look-up's time limit).
async fn ask_and_prove(stack: &Stack, name: Name, rtype: RecordType) -> Result<Answer, String> {
    let result = ask(stack, name.clone(), rtype).await;
    match stack {
        Stack::AdBit { .. } => classify(&name, rtype, result, true),
        Stack::Validating(validator) => {
            let answer = classify(&name, rtype, result, false)?;
            if answer.proof != Proof::Insecure {
                return Ok(answer);
            }
            match proof::prove_insecure(validator, request_options(), &name, rtype).await {
                Ok(how) => Ok(Answer {
                    why: Some(format!("proven: {how}")),
                    ..answer
                }),
                Err(Unproven::Bogus(why)) => Ok(Answer {
                    proof: Proof::Bogus,
                    why: Some(why),
                    ..answer
                }),
                Err(Unproven::Indeterminate(why)) => Err(format!(
                    "the answer is unsigned and its proof of insecurity could not be fetched: {why}"
                )),
            }
        }
    }
}

/// Turns a response (or a negative error) into an [`Answer`]; `Err` for failures that leave the
/// proof state undecided. In validating mode, an `Insecure` answer here is hickory's verdict and
/// still has to be proven.
fn classify(
    name: &Name,
    rtype: RecordType,
    result: Result<DnsResponse, NetError>,
    ad_mode: bool,
) -> Result<Answer, String> {
    let answer = |proof, outcome, ttl, why: Option<String>| Answer {
        name: name.clone(),
        rtype,
        proof,
        outcome,
        ttl,
        why,
    };
    match result {
        Ok(response) => Ok(classify_response(name, rtype, &response, ad_mode, answer)),
        Err(NetError::Dns(DnsError::NoRecordsFound(none))) => {
            // A denial whose header (and AD bit) was lost on the way, as hickory's pool does with
            // negative answers: whether the resolver validated it is unknown. Neither secure nor
            // insecure ("no DANE" would let a forged denial switch DANE off): indeterminate,
            // never cached.
            let outcome = negative(none.response_code);
            let why = "the denial reached us without its header (AD bit)";
            Ok(answer(Proof::Indeterminate, outcome, 0, Some(why.into())))
        }
        Err(NetError::Dns(DnsError::Nsec { response, .. }))
            if has_answer(name, rtype, &response) =>
        {
            // A positive answer refused for its denial records: hickory's wildcard check wants
            // an NSEC that the usual zone layout does not have. The RFC's own check decides.
            Ok(match proof::wildcard_expansion(name, rtype, &response) {
                Ok(()) => classify_response(name, rtype, &response, false, answer),
                Err(why) => answer(Proof::Bogus, negative(response.response_code), 0, Some(why)),
            })
        }
        Err(NetError::Dns(DnsError::Nsec {
            response, proof, ..
        })) => {
            let outcome = negative(response.response_code);
            let ttl = response.negative_ttl().unwrap_or(0);
            let why = format!("its NSEC/NSEC3 records do not prove the denial ({proof})");
            Ok(answer(Proof::from_hickory(proof), outcome, ttl, Some(why)))
        }
        Err(NetError::Dns(DnsError::DnssecBogus)) => Ok(answer(
            Proof::Bogus,
            Outcome::NoData,
            0,
            Some("hickory found it bogus".into()),
        )),
        Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))) => Err(
            "the server answered SERVFAIL (a validating resolver does so for bogus data)".into(),
        ),
        Err(e) => Err(e.to_string()),
    }
}

fn negative(code: ResponseCode) -> Outcome {
    if code == ResponseCode::NXDomain {
        Outcome::NxDomain
    } else {
        Outcome::NoData
    }
}

/// Whether the response holds records of `rtype` (or a CNAME) at `name`.
fn has_answer(name: &Name, rtype: RecordType, response: &DnsResponse) -> bool {
    response.answers.iter().any(|r| {
        (r.record_type() == rtype || r.record_type() == RecordType::CNAME)
            && r.name.to_lowercase() == *name
    })
}

fn classify_response(
    name: &Name,
    rtype: RecordType,
    response: &DnsResponse,
    ad_mode: bool,
    answer: impl Fn(Proof, Outcome, u32, Option<String>) -> Answer,
) -> Answer {
    let proof_of = |proofs: &mut dyn Iterator<Item = HickoryProof>| {
        if ad_mode {
            return if response.metadata.authentic_data {
                Proof::Secure
            } else {
                Proof::Insecure
            };
        }
        proofs.fold(Proof::Secure, |p, q| p.weakest(Proof::from_hickory(q)))
    };
    let at_name = |t: RecordType| {
        response
            .answers
            .iter()
            .filter(move |r| r.record_type() == t && r.name.to_lowercase() == *name)
    };
    let records: Vec<_> = at_name(rtype).collect();
    if !records.is_empty() {
        let proof = proof_of(&mut records.iter().map(|r| r.proof));
        let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
        let data = records.iter().map(|r| r.data.clone()).collect();
        return answer(proof, Outcome::Records(data), ttl, None);
    }
    if let Some(cname) = at_name(RecordType::CNAME).next() {
        if let RData::CNAME(target) = &cname.data {
            let proof = proof_of(&mut std::iter::once(cname.proof));
            let target = target.0.to_lowercase();
            return answer(proof, Outcome::Alias(target), cname.ttl, None);
        }
    }
    let outcome = negative(response.response_code);
    let ttl = response.negative_ttl().unwrap_or(0);
    if ad_mode {
        return answer(proof_of(&mut std::iter::empty()), outcome, ttl, None);
    }
    // A denial that passed validation: secure only when a validated NSEC/NSEC3 proves it.
    if proof::denial_is_proven(response) {
        return answer(Proof::Secure, outcome, ttl, None);
    }
    // hickory let an unproven denial through: its unsigned records must at least be those of
    // the name's own zone before the insecurity is proven (by the caller).
    match proof::foreign_denial_record(name, response) {
        Some(why) => answer(Proof::Bogus, outcome, ttl, Some(why)),
        None => answer(Proof::Insecure, outcome, ttl, None),
    }
}

/// Builds hickory's trust anchors: DNSKEY lines as given; DS lines by fetching the root DNSKEY
/// RRset (unvalidated) and keeping the keys whose digest matches a DS.
async fn anchors(anchor: &TrustAnchor, wire: &Wire<Pool>) -> Result<TrustAnchors, ResolveError> {
    if anchor.is_builtin() {
        return Ok(TrustAnchors::default());
    }
    let mut text = anchor.dnskeys.clone();
    if !anchor.ds.is_empty() {
        let query = Query::query(Name::root(), RecordType::DNSKEY);
        let response = wire
            .lookup(query, request_options())
            .first_answer()
            .await
            .map_err(|e| {
                config_err(format!(
                    "cannot fetch the root DNSKEY RRset for the DS trust anchor: {e}"
                ))
            })?;
        let mut matched = 0;
        for record in &response.answers {
            let RData::DNSSEC(DNSSECRData::DNSKEY(key)) = &record.data else {
                continue;
            };
            if ds_matches(key, &anchor.ds) {
                text.push_str(&format!("{record}\n"));
                matched += 1;
            }
        }
        if matched == 0 {
            return Err(config_err(
                "no root DNSKEY matches the DS trust anchor".into(),
            ));
        }
    }
    TrustAnchors::from_str(&text).map_err(|e| config_err(format!("trust anchor: {e}")))
}

fn ds_matches(key: &DNSKEY, ds: &[(u16, u8, u8, Vec<u8>)]) -> bool {
    let Ok(tag) = key.calculate_key_tag() else {
        return false;
    };
    ds.iter().any(|(ds_tag, alg, dtype, digest)| {
        *ds_tag == tag
            && u8::from(key.algorithm()) == *alg
            && key
                .to_digest(&Name::root(), DigestType::from(*dtype))
                .is_ok_and(|d| d.as_ref() == digest.as_slice())
    })
}

mod fork_guard;

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::net::NoRecords;

    /// A denial that arrives as hickory's "no records" error has lost its header and AD bit:
    /// its proof state is unknown, so it is neither insecure ("no DANE") nor cached.
    #[test]
    fn a_denial_without_its_header_is_indeterminate() {
        let name = parse_name("_443._tcp.broker.example.test", RecordType::TLSA).unwrap();
        let query = Query::query(name.clone(), RecordType::TLSA);
        let mut none = NoRecords::new(query, ResponseCode::NXDomain);
        none.negative_ttl = Some(300);
        let error = NetError::Dns(DnsError::NoRecordsFound(none));
        for ad_mode in [true, false] {
            let answer = classify(&name, RecordType::TLSA, Err(error.clone()), ad_mode).unwrap();
            assert_eq!(answer.proof, Proof::Indeterminate);
            assert_eq!(answer.outcome, Outcome::NxDomain);
            assert_eq!(answer.ttl, 0);
        }
    }
}
