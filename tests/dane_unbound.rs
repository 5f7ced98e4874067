//! AD-bit mode against a real validating resolver: unbound validating the private hierarchy
//! served by knotd, the library's resolver trusting unbound's AD bit on loopback.

mod common;

use common::{dns, pki, tls, unbound};

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

/// `iotsafe dane check-server --trust-ad` through unbound: the handshake is authenticated by
/// records whose only proof is unbound's AD bit, and a server with another key is refused.
#[test]
fn check_server_trusting_unbound_authenticates_by_tlsa() {
    let dir = tempfile::tempdir().unwrap();
    let host = "broker.example.test";
    let good_leaf = pki::leaf(dir.path(), "good", "broker", &[host], None);
    let other_leaf = pki::leaf(dir.path(), "other", "broker", &[host], None);
    let good = tls::TlsServer::start(&good_leaf.cert_path, &good_leaf.key_path, None);
    let other = tls::TlsServer::start(&other_leaf.cert_path, &other_leaf.key_path, None);
    let record = pki::dane_ee_record(&good_leaf.cert);
    let lines = [
        "broker 300 IN A 127.0.0.1".to_string(),
        format!("_{}._tcp.broker 300 IN TLSA {record}", good.port),
        format!("_{}._tcp.broker 300 IN TLSA {record}", other.port),
    ];
    let extra: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("example.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&extra);
    let unbound = unbound::Unbound::start(&dns);
    let resolver = unbound.addr().to_string();
    let check = |port: u16| {
        std::process::Command::new(common::workspace_binary("iotsafe"))
            .args(["dane", "check-server", host, &port.to_string()])
            .args(["--resolver", &resolver, "--trust-ad"])
            .output()
            .expect("run iotsafe dane")
    };
    let out = check(good.port);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    assert!(
        common::stdout(&out).contains("secure"),
        "{}",
        common::stdout(&out)
    );
    let out = check(other.port);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
}

/// The TLSA answer for `name` over UDP alone (`what` it is, for the message) has the TC bit.
fn assert_truncated_over_udp(unbound: &unbound::Unbound, name: &str, what: &str) {
    let udp = unbound.dig_udp_only(name, "TLSA");
    let flags = udp
        .lines()
        .find(|l| l.starts_with(";; Flags:"))
        .unwrap_or_default();
    assert!(
        flags.split_whitespace().any(|f| f == "tc"),
        "the UDP {what} is truncated: {udp}"
    );
}

/// An RRset too large for a UDP response (unbound sets TC) is asked again over TCP and keeps
/// its AD bit.
#[test]
fn truncated_answer_is_asked_again_over_tcp() {
    let lines: Vec<String> = (0..24)
        .map(|i| format!("_443._tcp.big 300 IN TLSA 3 0 2 {i:02x}{}", "ab".repeat(63)))
        .collect();
    let extra: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("example.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&extra);
    let unbound = unbound::Unbound::start(&dns);
    let resolver = ad_resolver(&unbound);
    let name = "_443._tcp.big.example.test";
    assert_truncated_over_udp(&unbound, name, "answer");
    let before = resolver.queries_sent();
    let res = resolver.resolve(name, RecordType::TLSA).expect("look-up");
    assert_eq!(res.records().len(), 24);
    assert_eq!(res.proof(), Proof::Secure);
    assert_eq!(
        resolver.queries_sent() - before,
        2,
        "UDP, then again through the pool (TCP)"
    );
}

/// A denial too large for UDP (unbound truncates its UDP answers at 512 bytes here) is asked
/// again over TCP and keeps its AD bit: a validated denial stays secure, never "insecure" (which
/// would be "no DANE" for a denial nobody checked).
#[test]
fn truncated_denial_keeps_its_ad_bit_over_tcp() {
    // Long names on both sides of the denied name make the NSEC proof large.
    let long = "l".repeat(60);
    let lines = [
        format!("m{long} 300 IN A 127.0.0.1"),
        format!("o{long} 300 IN A 127.0.0.1"),
    ];
    let extra: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("example.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&extra);
    let unbound = unbound::Unbound::start_with(&dns, "    max-udp-size: 512\n");
    let resolver = ad_resolver(&unbound);
    let name = "nxd.example.test";
    assert_truncated_over_udp(&unbound, name, "denial");
    let before = resolver.queries_sent();
    let res = resolver.resolve(name, RecordType::TLSA).expect("look-up");
    assert_eq!(res.last().outcome, Outcome::NxDomain);
    assert_eq!(
        res.proof(),
        Proof::Secure,
        "{}\n{}",
        res.last(),
        unbound.dig(name, "TLSA")
    );
    assert_eq!(resolver.queries_sent() - before, 2, "UDP, then TCP");
}
