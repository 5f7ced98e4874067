//! The resolver's single flight and cache lifetimes, through its look-up path: an in-process name
//! server on loopback (AD-bit mode, no trust anchor to fetch) that answers when the test says so,
//! and an injected clock (moved by hand, or failing on the leader's thread).

use super::*;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_resolver::proto::op::Message;
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record};

const NAME: &str = "host.example.test";

/// A name server that only answers when asked to.
struct HeldServer {
    socket: UdpSocket,
}

impl HeldServer {
    fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self { socket }
    }

    /// The next query that arrives, and where from.
    fn next_query(&self) -> (Message, SocketAddr) {
        let mut buf = [0u8; 4096];
        let (len, from) = self.socket.recv_from(&mut buf).expect("a query");
        (Message::from_vec(&buf[..len]).unwrap(), from)
    }

    /// Answers `query` with one A record (no AD bit: insecure, cached for its TTL).
    fn answer(&self, query: (Message, SocketAddr)) {
        self.answer_with_ttl(query, 300);
    }

    fn answer_with_ttl(&self, (query, to): (Message, SocketAddr), ttl: u32) {
        let name = query.queries[0].name().clone();
        let mut response = query.into_response();
        let a = RData::A(A::new(192, 0, 2, 1));
        response.add_answer(Record::from_rdata(name, ttl, a));
        self.socket
            .send_to(&response.to_vec().unwrap(), to)
            .unwrap();
    }
}

/// Panics at the `fault_at`-th reading (from 1) by the thread named "leader": the third is
/// the one that stores its answer in the cache, after the network is done.
struct LeaderFault {
    leader_reads: AtomicUsize,
    fault_at: usize,
}

impl Clock for LeaderFault {
    fn now(&self) -> Instant {
        if std::thread::current().name() == Some("leader") {
            let read = self.leader_reads.fetch_add(1, Ordering::SeqCst) + 1;
            if read == self.fault_at {
                panic!("injected fault in the leader");
            }
        }
        Instant::now()
    }
}

fn config(server: &HeldServer) -> ResolverConfig {
    let addr = server.socket.local_addr().unwrap();
    let mut config = ResolverConfig::new(addr, TrustAnchor::iana_root());
    config.validation = Validation::TrustAdBit;
    config
}

fn resolver(server: &HeldServer, clock: Arc<dyn Clock>) -> Resolver {
    Resolver::with_clock(config(server), clock).unwrap()
}

/// Looks `NAME` up with the server answering with `ttl`; whether a query was sent.
fn lookup_asking(r: &Resolver, server: &HeldServer, ttl: u32) -> bool {
    let before = r.queries_sent();
    std::thread::scope(|s| {
        let lookup = s.spawn(|| r.lookup(NAME, RecordType::A));
        server.answer_with_ttl(server.next_query(), ttl);
        lookup.join().unwrap().expect("answer");
    });
    r.queries_sent() > before
}

/// Looks `NAME` up expecting the cache to answer (no query reaches the server).
fn lookup_cached(r: &Resolver) -> bool {
    let before = r.queries_sent();
    r.lookup(NAME, RecordType::A).expect("cached answer");
    r.queries_sent() == before
}

/// How many callers hold the flight of `name` (its leader and followers), 0 when none.
fn callers_of(r: &Resolver, name: &str) -> usize {
    let key = (parse_name(name, RecordType::A).unwrap(), RecordType::A);
    // The map's own reference is not a caller.
    r.shared
        .flights
        .lock()
        .get(&key)
        .map_or(0, |flight| Arc::strong_count(flight) - 1)
}

/// Waits (briefly yielding) until `done` holds; a test failure after ten seconds.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        std::thread::yield_now();
    }
}

#[test]
fn concurrent_lookups_of_a_name_send_one_query() {
    let server = HeldServer::start();
    let r = resolver(&server, Arc::new(SystemClock));
    std::thread::scope(|s| {
        let callers: Vec<_> = (0..4)
            .map(|_| s.spawn(|| r.lookup(NAME, RecordType::A)))
            .collect();
        let query = server.next_query();
        wait_until("all four callers on one flight", || {
            callers_of(&r, NAME) == 4
        });
        server.answer(query);
        for caller in callers {
            let answer = caller.join().unwrap().expect("answer");
            assert_eq!(answer.records().len(), 1);
        }
    });
    assert_eq!(r.queries_sent(), 1);
}

/// The leader of a flight panics after its query was answered, while three callers wait for it
/// with no deadline of their own: they get an error at once (not after the look-up time-out, and
/// not never), and the name is free for the next look-up.
#[test]
fn a_leader_that_panics_releases_its_followers_at_once() {
    let server = HeldServer::start();
    let clock = Arc::new(LeaderFault {
        leader_reads: AtomicUsize::new(0),
        fault_at: 3,
    });
    let r = resolver(&server, clock);
    std::thread::scope(|s| {
        let leader = std::thread::Builder::new()
            .name("leader".into())
            .spawn_scoped(s, || r.lookup(NAME, RecordType::A))
            .unwrap();
        let query = server.next_query();
        let followers: Vec<_> = (0..3)
            .map(|_| s.spawn(|| r.lookup(NAME, RecordType::A)))
            .collect();
        wait_until("three followers on the leader's flight", || {
            callers_of(&r, NAME) == 4
        });
        let released = Instant::now();
        server.answer(query);
        assert!(leader.join().is_err(), "the leader panicked");
        for follower in followers {
            let err = follower
                .join()
                .unwrap()
                .expect_err("no answer for followers");
            assert!(err.to_string().contains("abandoned"), "{err}");
        }
        assert!(
            released.elapsed() < r.config().lookup_timeout / 2,
            "{:?}",
            released.elapsed()
        );
    });
    assert_eq!(callers_of(&r, NAME), 0);
    // The next look-up asks again and gets its answer.
    std::thread::scope(|s| {
        let next = s.spawn(|| r.lookup(NAME, RecordType::A));
        server.answer(server.next_query());
        assert_eq!(next.join().unwrap().expect("answer").records().len(), 1);
    });
}

/// An answer is kept for its TTL, and no longer than `max_ttl` whatever its TTL, on the
/// resolver's clock; a TTL of 0 is not kept at all.
#[test]
fn answers_live_for_their_ttl_capped_by_max_ttl() {
    let server = HeldServer::start();
    let clock = Arc::new(ManualClock::new());
    let mut config = config(&server);
    config.max_ttl = Duration::from_secs(60);
    let r = Resolver::with_clock(config, clock.clone()).unwrap();

    assert!(lookup_asking(&r, &server, 30));
    clock.advance(Duration::from_millis(29_999));
    assert!(lookup_cached(&r), "within its TTL");
    clock.advance(Duration::from_millis(1));
    assert!(lookup_asking(&r, &server, 3600), "expired at its TTL");
    clock.advance(Duration::from_millis(59_999));
    assert!(lookup_cached(&r), "within max_ttl");
    clock.advance(Duration::from_millis(1));
    assert!(lookup_asking(&r, &server, 0), "a 3600 s TTL capped at 60 s");
    assert!(lookup_asking(&r, &server, 30), "a TTL of 0 is not cached");
}

/// A leader whose own deadline is nearly spent fails within it; a follower with the whole
/// look-up time-out left looks again instead of taking that failure (a client certificate
/// with many names cannot make other handshakes fail for the name it looks up last).
#[test]
fn a_hurried_leader_does_not_fail_its_patient_followers() {
    let server = HeldServer::start();
    let r = resolver(&server, Arc::new(SystemClock));
    let name = parse_name(NAME, RecordType::A).unwrap();
    let hurried = Instant::now() + Duration::from_millis(300);
    std::thread::scope(|s| {
        let leader = s.spawn(|| r.resolve_name(&name, RecordType::A, Some(hurried)));
        let query = server.next_query();
        let follower = s.spawn(|| r.lookup(NAME, RecordType::A));
        wait_until("the follower on the leader's flight", || {
            callers_of(&r, NAME) == 2
        });
        assert!(
            leader.join().unwrap().is_err(),
            "the leader ran out of time"
        );
        // The follower asks again (leading a flight of its own) and, well within its own 5 s,
        // gets the answer.
        let again = server.next_query();
        server.answer(again);
        drop(query);
        let result = follower.join().unwrap();
        assert!(
            result.is_ok(),
            "a follower with no deadline got the leader's time-out: {}",
            result.unwrap_err()
        );
    });
}

/// An answer that was in flight when the cache was cleared is returned to its caller but not
/// kept: the next look-up asks again (a cleared cache ends what it held at once).
#[test]
fn an_answer_in_flight_across_a_clear_is_not_kept() {
    let server = HeldServer::start();
    let r = resolver(&server, Arc::new(SystemClock));
    std::thread::scope(|s| {
        let lookup = s.spawn(|| r.lookup(NAME, RecordType::A));
        let query = server.next_query();
        r.clear_cache();
        server.answer_with_ttl(query, 300);
        lookup
            .join()
            .unwrap()
            .expect("the answer still reaches its caller");
    });
    assert!(
        lookup_asking(&r, &server, 300),
        "asked again after the clear"
    );
    assert!(
        lookup_cached(&r),
        "an answer fetched after the clear is kept"
    );
}
