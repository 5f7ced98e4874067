//! AD-bit mode against a real validating resolver: unbound validating the private hierarchy
//! served by knotd, the library's resolver trusting unbound's AD bit on loopback.

mod common;

use common::{dns, unbound};

use hickory_resolver::proto::rr::RecordType;
use iotsafe_dane::dane::resolver::{
    Outcome, Proof, Resolver, ResolverConfig, TrustAnchor, Validation,
};
use iotsafe_dane::dane::server::{Decision, Policy, ServerTlsa};

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn hierarchy() -> dns::TestDns {
    let tlsa = format!("_8883._tcp.broker 300 IN TLSA 3 1 1 {HASH}");
    let dev = format!("dev1._device 300 IN TLSA 3 1 1 {HASH}");
    let bogus_broker = format!("_8883._tcp.broker 300 IN TLSA 3 1 1 {HASH}");
    dns::TestDns::start(&[
        ("example.test.", tlsa.as_str()),
        ("example.test.", "broker 300 IN A 127.0.0.1"),
        ("bogus.test.", dev.as_str()),
        ("bogus.test.", bogus_broker.as_str()),
        ("bogus.test.", "broker 300 IN A 127.0.0.1"),
        ("insecure.test.", tlsa.as_str()),
    ])
}

fn ad_resolver(unbound: &unbound::Unbound) -> Resolver {
    let mut config = ResolverConfig::new(unbound.addr(), TrustAnchor::iana_root());
    config.validation = Validation::TrustAdBit;
    Resolver::new(config).expect("resolver")
}

/// unbound and an AD-trusting resolver pointing at it.
struct Rig {
    dns: dns::TestDns,
    unbound: unbound::Unbound,
    resolver: Resolver,
}

fn rig() -> Rig {
    let dns = hierarchy();
    let unbound = unbound::Unbound::start(&dns);
    let resolver = ad_resolver(&unbound);
    Rig {
        dns,
        unbound,
        resolver,
    }
}

impl Rig {
    fn context(&self, name: &str, rtype: &str) -> String {
        format!(
            "through unbound:\n{}\nunbound log:\n{}\nknotd:\n{}",
            self.unbound.dig(name, rtype),
            self.unbound.log(),
            self.dns.dig(name, rtype)
        )
    }
}

#[test]
fn signed_tlsa_answer_is_secure_by_the_ad_bit() {
    let rig = rig();
    let name = "_8883._tcp.broker.example.test";
    let res = rig
        .resolver
        .resolve(name, RecordType::TLSA)
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.context(name, "TLSA")));
    assert_eq!(res.proof(), Proof::Secure, "{}", rig.context(name, "TLSA"));
    assert_eq!(res.records().len(), 1);
    let address = rig
        .resolver
        .resolve("broker.example.test", RecordType::A)
        .expect("look-up");
    assert_eq!(address.proof(), Proof::Secure);

    // The whole server decision: DANE, from unbound's validation alone.
    let tlsa = ServerTlsa::lookup(&rig.resolver, "broker.example.test", 8883, Policy::Require);
    assert_eq!(tlsa.decision, Decision::Dane, "{tlsa}");
    assert_eq!(tlsa.records.len(), 1);
}

#[test]
fn bogus_zone_fails_because_unbound_answers_servfail() {
    let rig = rig();
    let name = "dev1._device.bogus.test";
    let err = rig
        .resolver
        .resolve(name, RecordType::TLSA)
        .expect_err("a bogus answer must not come back as data");
    assert!(
        err.to_string().contains("SERVFAIL") && err.to_string().contains("indeterminate"),
        "{err}"
    );
    assert!(
        rig.unbound.log().contains("validation failure"),
        "unbound saw the bogus chain: {}",
        rig.unbound.log()
    );
    for policy in [Policy::Require, Policy::Opportunistic] {
        let tlsa = ServerTlsa::lookup(&rig.resolver, "broker.bogus.test", 8883, policy);
        assert!(
            matches!(tlsa.decision, Decision::Refuse(_)),
            "bogus DNS refuses under {policy:?}: {tlsa}"
        );
    }
}

#[test]
fn insecure_delegation_is_insecure() {
    let rig = rig();
    let name = "_8883._tcp.broker.insecure.test";
    let res = rig
        .resolver
        .resolve(name, RecordType::TLSA)
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.context(name, "TLSA")));
    assert_eq!(
        res.proof(),
        Proof::Insecure,
        "{}",
        rig.context(name, "TLSA")
    );
    assert_eq!(
        res.records().len(),
        1,
        "the records are there, just unproven"
    );
}

#[test]
fn denials_keep_the_ad_bit() {
    let rig = rig();
    let nx = rig
        .resolver
        .resolve("nobody.example.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(nx.last().outcome, Outcome::NxDomain);
    assert_eq!(
        nx.proof(),
        Proof::Secure,
        "NXDOMAIN validated by unbound: {}",
        rig.context("nobody.example.test", "TLSA")
    );
    let nodata = rig
        .resolver
        .resolve("broker.example.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(nodata.last().outcome, Outcome::NoData);
    assert_eq!(nodata.proof(), Proof::Secure, "NODATA validated by unbound");

    // A denial in the unsigned zone has no AD bit.
    let insecure_nx = rig
        .resolver
        .resolve("nobody.insecure.test", RecordType::TLSA)
        .expect("look-up");
    assert_eq!(insecure_nx.last().outcome, Outcome::NxDomain);
    assert_eq!(insecure_nx.proof(), Proof::Insecure);
}
