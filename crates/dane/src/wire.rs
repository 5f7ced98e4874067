//! The layer between the DNSSEC validator and the network: counts the queries that leave the
//! process, and remembers the answers that build chains of trust.
//!
//! The validator fetches the DNSKEY and DS RRsets of every zone on the way to the trust anchor,
//! and it does so again for every RRset it checks (an NXDOMAIN answer carries an SOA and one or
//! more NSEC RRsets, each signed by the same zone key). Without this layer a cold look-up asks for
//! the same DNSKEY RRset several times, and every look-up in a zone fetches the whole chain again.
//! Here the chain's RRsets (DNSKEY, DS) are cached for their TTL (bounded, least recently used
//! out first, on the resolver's clock), and concurrent requests for one of them share one query.
//! Final answers are cached one layer up, after validation, by [`super::resolver::Resolver`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::stream::{self, Stream};
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{DnsRequest, DnsResponse};
use hickory_resolver::proto::rr::{Name, RecordType};

use super::resolver::{Clock, TtlLru};

type WireResult = Result<DnsResponse, NetError>;
type Key = (Name, RecordType);

/// Counts queries sent to the name server and caches chain-of-trust RRsets.
#[derive(Clone)]
pub(crate) struct Wire<H> {
    inner: H,
    state: Arc<WireState>,
}

pub(crate) struct WireState {
    queries: AtomicU64,
    clock: Arc<dyn Clock>,
    /// The longest a chain RRset is kept, whatever its TTL says (a TTL is not signed: an
    /// on-path attacker could otherwise pin an expiring key set).
    max_ttl: Duration,
    /// Bumped by [`WireState::clear`]: a query sent before a clear lands after it without
    /// putting its pre-clear answer back.
    generation: AtomicU64,
    chain: Mutex<Chain>,
}

/// The chain-of-trust RRsets: answers kept for their TTL, and the queries in flight that
/// concurrent requests for the same RRset share.
struct Chain {
    ready: TtlLru<Key, WireResult>,
    in_flight: HashMap<Key, Shared<BoxFuture<'static, WireResult>>>,
}

impl WireState {
    pub(crate) fn new(capacity: usize, max_ttl: Duration, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            queries: AtomicU64::new(0),
            clock,
            max_ttl,
            generation: AtomicU64::new(0),
            chain: Mutex::new(Chain {
                ready: TtlLru::new(capacity.max(16)),
                in_flight: HashMap::new(),
            }),
        })
    }

    /// Queries sent to the name server since the resolver was built.
    pub(crate) fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    pub(crate) fn clear(&self) {
        let mut chain = self.chain();
        self.generation.fetch_add(1, Ordering::SeqCst);
        chain.ready.clear();
        chain.in_flight.clear();
    }

    fn chain(&self) -> MutexGuard<'_, Chain> {
        self.chain.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The query for `key`, sent in `generation`, has landed: kept for its TTL (at most
    /// `max_ttl`) when it has one, unless the cache was cleared since it was sent.
    fn store(&self, key: Key, result: &WireResult, generation: u64) {
        let mut chain = self.chain();
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        chain.in_flight.remove(&key);
        if let Some(ttl) = ttl_of(result).filter(|ttl| *ttl > 0) {
            let ttl = Duration::from_secs(ttl.into()).min(self.max_ttl);
            let expires = self.clock.now() + ttl;
            chain.ready.insert(key, result.clone(), expires);
        }
    }
}

impl<H: DnsHandle> Wire<H> {
    pub(crate) fn new(inner: H, state: Arc<WireState>) -> Self {
        Self { inner, state }
    }

    fn send_uncached(&self, request: DnsRequest) -> BoxFuture<'static, WireResult> {
        self.state.queries.fetch_add(1, Ordering::Relaxed);
        self.inner.send(request).first_answer().boxed()
    }

    fn send_chain(&self, key: Key, request: DnsRequest) -> BoxFuture<'static, WireResult> {
        let (shared, generation) = {
            let now = self.state.clock.now();
            let mut chain = self.state.chain();
            let generation = self.state.generation.load(Ordering::SeqCst);
            if let Some(result) = chain.ready.get(&key, now) {
                return async move { result }.boxed();
            }
            let shared = match chain.in_flight.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    let shared = self.send_uncached(request).shared();
                    chain.in_flight.insert(key.clone(), shared.clone());
                    shared
                }
            };
            (shared, generation)
        };
        let state = self.state.clone();
        async move {
            let result = shared.await;
            state.store(key, &result, generation);
            result
        }
        .boxed()
    }
}

impl<H: DnsHandle> DnsHandle for Wire<H> {
    type Response = Pin<Box<dyn Stream<Item = WireResult> + Send>>;
    type Runtime = H::Runtime;

    fn is_verifying_dnssec(&self) -> bool {
        self.inner.is_verifying_dnssec()
    }

    fn send(&self, request: DnsRequest) -> Self::Response {
        let key = request
            .queries
            .first()
            .map(|q| (q.name().to_lowercase(), q.query_type()));
        let future = match key {
            Some(key) if matches!(key.1, RecordType::DNSKEY | RecordType::DS) => {
                self.send_chain(key, request)
            }
            _ => self.send_uncached(request),
        };
        Box::pin(stream::once(future))
    }
}

/// How long a wire answer may be reused: the smallest TTL of its records, or the negative TTL
/// of a denial. Transport errors are never reused.
fn ttl_of(result: &WireResult) -> Option<u32> {
    match result {
        Ok(response) => response
            .answers
            .iter()
            .chain(response.authorities.iter())
            .map(|r| r.ttl)
            .min(),
        Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => no_records.negative_ttl,
        Err(_) => None,
    }
}
