//! The validating resolver against a real knotd serving a private DNSSEC root.

mod common;

use common::dns;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::RecordType;
use iotsafe_dane::dane::resolver::{
    ManualClock, Outcome, Proof, ResolveError, Resolver, ResolverConfig, TrustAnchor,
};

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn resolver(dns: &dns::TestDns) -> Resolver {
    let anchor: TrustAnchor = dns.trust_anchor().parse().expect("trust anchor");
    Resolver::new(ResolverConfig::new(dns.addr(), anchor)).expect("resolver")
}

fn tlsa_line(owner: &str, ttl: u32) -> String {
    format!("{owner} {ttl} IN TLSA 3 1 1 {HASH}")
}

fn hierarchy() -> dns::TestDns {
    let dev1 = tlsa_line("dev1._device", 300);
    let bogus = tlsa_line("dev1._device", 300);
    let insecure = tlsa_line("_8883._tcp.broker", 300);
    dns::TestDns::start(&[
        ("iotregistry.test.", dev1.as_str()),
        ("iotregistry.test.", "alias 300 IN CNAME dev1._device"),
        ("iotregistry.test.", "www 300 IN A 127.0.0.1"),
        ("bogus.test.", bogus.as_str()),
        ("insecure.test.", insecure.as_str()),
    ])
}

#[test]
fn secure_answer_and_each_chain_rrset_asked_once() {
    let dns = hierarchy();
    let r = resolver(&dns);
    let res = r
        .resolve("dev1._device.iotregistry.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(res.proof(), Proof::Secure, "{:?}", res);
    assert_eq!(res.records().len(), 1);
    // TLSA, then DNSKEY/DS of iotregistry.test. and test., and the root DNSKEY: nothing twice.
    assert_eq!(r.queries_sent(), 6, "cold look-up query count");

    // Warm: no query at all.
    let res = r
        .resolve("dev1._device.iotregistry.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(res.proof(), Proof::Secure);
    assert_eq!(r.queries_sent(), 6);

    // Another name in the same zone reuses the chain: one query.
    let res = r
        .resolve("www.iotregistry.test", RecordType::A)
        .expect("look-up");
    assert_eq!(res.proof(), Proof::Secure);
    assert_eq!(r.queries_sent(), 7);

    // After a flush the look-up is cold again, validation included.
    r.clear_cache();
    let res = r
        .resolve("dev1._device.iotregistry.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(res.proof(), Proof::Secure);
    assert_eq!(r.queries_sent(), 13);
}

#[test]
fn secure_denials() {
    let dns = hierarchy();
    let r = resolver(&dns);
    let nx = r
        .resolve("nobody._device.iotregistry.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(nx.last().outcome, Outcome::NxDomain);
    assert_eq!(nx.proof(), Proof::Secure, "NXDOMAIN proven by NSEC");

    let nodata = r
        .resolve("www.iotregistry.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(nodata.last().outcome, Outcome::NoData);
    assert_eq!(nodata.proof(), Proof::Secure, "NODATA proven by NSEC");
}

#[test]
fn bogus_and_insecure_zones() {
    let dns = hierarchy();
    let r = resolver(&dns);
    let bogus = r
        .resolve("dev1._device.bogus.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(bogus.proof(), Proof::Bogus, "{bogus:?}");

    let bogus_nx = r
        .resolve("nobody.bogus.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(bogus_nx.proof(), Proof::Bogus, "{bogus_nx:?}");

    let insecure = r
        .resolve("_8883._tcp.broker.insecure.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(insecure.proof(), Proof::Insecure, "{insecure:?}");
    assert_eq!(insecure.records().len(), 1);
}

#[test]
fn cname_is_followed_and_each_step_proven() {
    let dns = hierarchy();
    let r = resolver(&dns);
    let res = r
        .resolve("alias.iotregistry.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(res.steps.len(), 2);
    assert!(matches!(res.steps[0].outcome, Outcome::Alias(_)));
    assert_eq!(
        res.canonical_name().to_string(),
        "dev1._device.iotregistry.test."
    );
    assert_eq!(res.proof(), Proof::Secure);
    assert_eq!(res.records().len(), 1);
}

#[test]
fn ds_trust_anchor_is_accepted() {
    let dns = hierarchy();
    let anchor: TrustAnchor = dns.root_ds().join("\n").parse().expect("DS anchor");
    let r = Resolver::new(ResolverConfig::new(dns.addr(), anchor)).expect("resolver");
    let res = r
        .resolve("dev1._device.iotregistry.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(res.proof(), Proof::Secure);
}

#[test]
fn wrong_trust_anchor_makes_everything_bogus() {
    let dns = hierarchy();
    let anchor: TrustAnchor = dns::TestDns::unrelated_trust_anchor()
        .parse()
        .expect("anchor");
    let r = Resolver::new(ResolverConfig::new(dns.addr(), anchor)).expect("resolver");
    let res = r
        .resolve("dev1._device.iotregistry.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(res.proof(), Proof::Bogus, "{res:?}");
}

#[test]
fn concurrent_lookups_are_coalesced() {
    let dns = hierarchy();
    let r = Arc::new(resolver(&dns));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let r = r.clone();
            std::thread::spawn(move || {
                r.resolve("dev1._device.iotregistry.test", RecordType::TLSA)
                    .expect("look-up")
                    .proof()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), Proof::Secure);
    }
    assert_eq!(r.queries_sent(), 6, "eight callers, one cold look-up");
}

#[test]
fn unreachable_server_times_out_as_indeterminate() {
    let port = common::free_port();
    let mut config = ResolverConfig::new(([127, 0, 0, 1], port).into(), TrustAnchor::iana_root());
    config.query_timeout = Duration::from_millis(200);
    config.lookup_timeout = Duration::from_millis(700);
    let r = Resolver::new(config).expect("resolver");
    let start = Instant::now();
    let err = r
        .resolve("dev1._device.iotregistry.test", RecordType::TLSA)
        .expect_err("nobody answers");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let ResolveError::Lookup { name, rtype, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(name, "dev1._device.iotregistry.test.");
    assert_eq!(*rtype, RecordType::TLSA);
    assert!(err.to_string().contains("indeterminate"), "{err}");
}

/// A resolver whose cache reads `clock` instead of the real time.
fn resolver_on(dns: &dns::TestDns, clock: Arc<ManualClock>) -> Resolver {
    let anchor: TrustAnchor = dns.trust_anchor().parse().expect("trust anchor");
    Resolver::with_clock(ResolverConfig::new(dns.addr(), anchor), clock).expect("resolver")
}

#[test]
fn removed_record_disappears_after_its_ttl() {
    let short = tlsa_line("dev2._device", 2);
    let dns = dns::TestDns::start(&[("iotregistry.test.", short.as_str())]);
    let clock = Arc::new(ManualClock::new());
    let r = resolver_on(&dns, clock.clone());
    let name = "dev2._device.iotregistry.test";
    assert_eq!(
        r.resolve(name, RecordType::TLSA).unwrap().records().len(),
        1
    );
    let cold = r.queries_sent();
    dns.set_records("iotregistry.test.", &[]);
    // Still cached right after the removal, and up to the last moment of the record's TTL...
    clock.advance(Duration::from_millis(1999));
    assert_eq!(
        r.resolve(name, RecordType::TLSA).unwrap().records().len(),
        1
    );
    assert_eq!(r.queries_sent(), cold, "answered from the cache");
    clock.advance(Duration::from_millis(1));
    // ...gone, provably, once the TTL has run out.
    let res = r.resolve(name, RecordType::TLSA).unwrap();
    assert_eq!(res.last().outcome, Outcome::NxDomain);
    assert_eq!(res.proof(), Proof::Secure);
}

/// A fresh look-up (what a registry waits with) asks the DNS whatever the cache holds: it sees
/// a removal at once, while the cached answer stays for its TTL; it leaves the cache as it was.
#[test]
fn a_fresh_lookup_bypasses_the_answer_cache() {
    let line = tlsa_line("dev3._device", 300);
    let dns = dns::TestDns::start(&[("iotregistry.test.", line.as_str())]);
    let r = resolver(&dns);
    let name = "dev3._device.iotregistry.test";
    assert_eq!(r.lookup(name, RecordType::TLSA).unwrap().records().len(), 1);
    dns.set_records("iotregistry.test.", &[]);

    let before = r.queries_sent();
    let fresh = r.lookup_fresh(name, RecordType::TLSA).unwrap();
    assert_eq!(fresh.outcome, Outcome::NxDomain);
    assert_eq!(fresh.proof, Proof::Secure);
    assert!(r.queries_sent() > before, "asked the DNS");

    let cached = r.lookup(name, RecordType::TLSA).unwrap();
    assert_eq!(cached.records().len(), 1, "the cached answer is untouched");
}

/// The resolver is called from code that runs inside a tokio runtime (an async server's
/// handler): it must neither panic ("cannot start a runtime from within a runtime") nor block
/// the caller's runtime from answering. Built, used and dropped there, on a current-thread
/// runtime and on a worker of a multi-thread one.
#[test]
fn lookups_from_inside_a_tokio_runtime() {
    let dns = hierarchy();
    let name = "dev1._device.iotregistry.test";
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let proof = current.block_on(async {
        let r = resolver(&dns);
        let proof = r.resolve(name, RecordType::TLSA).map(|res| res.proof());
        drop(r);
        proof
    });
    assert_eq!(proof, Ok(Proof::Secure));

    let r = Arc::new(resolver(&dns));
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let names = [
        ("dev1._device.iotregistry.test", RecordType::TLSA),
        ("www.iotregistry.test", RecordType::A),
    ];
    let tasks: Vec<_> = names
        .into_iter()
        .map(|(name, rtype)| {
            let r = r.clone();
            workers.spawn(async move { r.resolve(name, rtype).map(|res| res.proof()) })
        })
        .collect();
    for task in tasks {
        let proof = workers.block_on(task).expect("the task did not panic");
        assert_eq!(proof, Ok(Proof::Secure));
    }
    // The last reference dropped on a runtime worker.
    let last = workers.spawn(async move { drop(r) });
    workers.block_on(last).expect("dropped without a panic");
}

#[test]
fn trust_anchor_below_the_root_is_refused() {
    let err = "example. 3600 IN DNSKEY 257 3 13 AAAA"
        .parse::<TrustAnchor>()
        .expect_err("not a root anchor");
    assert!(err.to_string().contains("only root"), "{err}");
}

#[test]
fn ad_bit_is_only_trusted_from_loopback() {
    let mut config = ResolverConfig::new(([192, 0, 2, 1], 53).into(), TrustAnchor::iana_root());
    config.validation = iotsafe_dane::dane::resolver::Validation::TrustAdBit;
    let err = Resolver::new(config).expect_err("remote AD bit");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[test]
fn ad_bit_mode_never_calls_an_unsigned_answer_secure() {
    // knotd is authoritative and sets no AD bit: with AD trust every answer is insecure, and a
    // validating look-up of the same name is secure. The two modes are told apart.
    let dns = hierarchy();
    let mut config = ResolverConfig::new(dns.addr(), TrustAnchor::iana_root());
    config.validation = iotsafe_dane::dane::resolver::Validation::TrustAdBit;
    let r = Resolver::new(config).expect("resolver");
    let res = r
        .resolve("dev1._device.iotregistry.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(res.proof(), Proof::Insecure);
    assert_eq!(res.records().len(), 1);
}
