//! Server authentication by TLSA records: a real knotd, real `openssl s_server` peers, and the
//! library's check-server path (OpenSSL's DANE verifier in the handshake).

mod common;

use common::{dns, pki, tls};

use std::path::PathBuf;
use std::process::{Command, Stdio};

use iotsafe_dane::dane::check::{check_server, ServerCheck};
use iotsafe_dane::dane::resolver::{Resolver, ResolverConfig};
use iotsafe_dane::dane::server::{Authority, Decision, Policy};
use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};

const NAMES: [&str; 6] = [
    "broker.example.test",
    "plain.example.test",
    "real.example.test",
    "alias.example.test",
    "broker.insecure.test",
    "broker.bogus.test",
];

/// Two servers for the same names: `good` (key and CA the records designate) and `other`
/// (another key, another CA). Both CAs are in `ca_file`, so a PKIX check alone passes for both
/// and only the TLSA records tell them apart.
struct Peers {
    _dir: tempfile::TempDir,
    ca: pki::Issued,
    good_leaf: pki::Issued,
    good: tls::TlsServer,
    other: tls::TlsServer,
    ca_file: PathBuf,
}

fn peers() -> Peers {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = pki::ca(d, "ca1", "Test CA 1");
    let ca2 = pki::ca(d, "ca2", "Test CA 2");
    let good_leaf = pki::leaf(d, "good", "broker", &NAMES, Some(&ca));
    let other_leaf = pki::leaf(d, "other", "broker", &NAMES, Some(&ca2));
    let chain1 = pki::bundle(d, "chain1.pem", &[&ca.cert]);
    let chain2 = pki::bundle(d, "chain2.pem", &[&ca2.cert]);
    let ca_file = pki::bundle(d, "cas.pem", &[&ca.cert, &ca2.cert]);
    let good = tls::TlsServer::start(&good_leaf.cert_path, &good_leaf.key_path, Some(&chain1));
    let other = tls::TlsServer::start(&other_leaf.cert_path, &other_leaf.key_path, Some(&chain2));
    Peers {
        _dir: dir,
        ca,
        good_leaf,
        good,
        other,
        ca_file,
    }
}

fn resolver(dns: &dns::TestDns) -> Resolver {
    Resolver::new(ResolverConfig::new(
        dns.addr(),
        dns.trust_anchor().parse().unwrap(),
    ))
    .unwrap()
}

/// Zone lines (relative to example.test.) publishing `record` for both servers' ports.
fn tlsa_lines(host: &str, p: &Peers, record: &Tlsa) -> Vec<String> {
    [p.good.port, p.other.port]
        .iter()
        .map(|port| format!("_{port}._tcp.{host} 300 IN TLSA {record}"))
        .collect()
}

/// Knotd with `broker` in `zone`: its address, and `record` for both servers' ports.
fn broker_zone(zone: &str, p: &Peers, record: &Tlsa) -> dns::TestDns {
    let mut lines = vec!["broker 300 IN A 127.0.0.1".to_string()];
    lines.extend(tlsa_lines("broker", p, record));
    let lines: Vec<(&str, &str)> = lines.iter().map(|l| (zone, l.as_str())).collect();
    dns::TestDns::start(&lines)
}

fn check(r: &Resolver, host: &str, port: u16, policy: Policy, p: &Peers) -> ServerCheck {
    check_server(r, host, port, policy, Some(&p.ca_file))
}

fn usage_case(usage: Usage, selector: Selector, mtype: Matching) {
    let p = peers();
    let designated = match usage {
        Usage::DaneEe | Usage::PkixEe => &p.good_leaf.cert,
        Usage::DaneTa | Usage::PkixTa => &p.ca.cert,
    };
    let record = Tlsa::for_certificate(designated, usage, selector, mtype).unwrap();
    let dns = broker_zone("example.test.", &p, &record);
    let r = resolver(&dns);

    for policy in [Policy::Require, Policy::Opportunistic] {
        let ok = check(&r, "broker.example.test", p.good.port, policy, &p);
        assert!(ok.authenticated(), "{ok}");
        let Ok(Authority::Tlsa {
            record: matched,
            depth,
        }) = &ok.result
        else {
            panic!("not by TLSA: {ok}");
        };
        assert_eq!(matched, &record);
        let want_depth = if matches!(usage, Usage::DaneEe | Usage::PkixEe) {
            0
        } else {
            1
        };
        assert_eq!(*depth, want_depth, "{ok}");

        let bad = check(&r, "broker.example.test", p.other.port, policy, &p);
        assert!(!bad.authenticated(), "another key must be refused: {bad}");
        assert_eq!(bad.tlsa.decision, Decision::Dane);
    }
}

#[test]
fn dane_ee_spki_sha256() {
    usage_case(Usage::DaneEe, Selector::Spki, Matching::Sha256);
}

#[test]
fn dane_ee_cert_sha256() {
    usage_case(Usage::DaneEe, Selector::Cert, Matching::Sha256);
}

#[test]
fn dane_ee_cert_full() {
    usage_case(Usage::DaneEe, Selector::Cert, Matching::Full);
}

#[test]
fn dane_ta_cert_sha256() {
    usage_case(Usage::DaneTa, Selector::Cert, Matching::Sha256);
}

#[test]
fn pkix_ee_spki_sha256() {
    usage_case(Usage::PkixEe, Selector::Spki, Matching::Sha256);
}

#[test]
fn pkix_ta_cert_sha256() {
    usage_case(Usage::PkixTa, Selector::Cert, Matching::Sha256);
}

fn good_record(p: &Peers) -> Tlsa {
    pki::dane_ee_record(&p.good_leaf.cert)
}

#[test]
fn bogus_zone_fails_under_both_policies() {
    let p = peers();
    let record = good_record(&p);
    let dns = broker_zone("bogus.test.", &p, &record);
    let r = resolver(&dns);
    for policy in [Policy::Require, Policy::Opportunistic] {
        let c = check(&r, "broker.bogus.test", p.good.port, policy, &p);
        assert!(!c.authenticated(), "{c}");
        assert!(matches!(c.tlsa.decision, Decision::Refuse(_)), "{c}");
        assert!(c.to_string().contains("bogus"), "{c}");
        assert!(c.address.is_none(), "no connection attempt: {c}");
    }
}

#[test]
fn insecure_zone_fails_under_require_and_is_pkix_under_opportunistic() {
    let p = peers();
    let record = good_record(&p);
    let dns = broker_zone("insecure.test.", &p, &record);
    let r = resolver(&dns);

    let c = check(&r, "broker.insecure.test", p.good.port, Policy::Require, &p);
    assert!(!c.authenticated(), "{c}");
    assert!(c.to_string().contains("insecure"), "{c}");

    let c = check(
        &r,
        "broker.insecure.test",
        p.good.port,
        Policy::Opportunistic,
        &p,
    );
    assert_eq!(c.result, Ok(Authority::Pkix), "{c}");
    // PKIX still checks: a server whose certificate does not chain to the CAs is refused.
    let c = check_server(
        &r,
        "broker.insecure.test",
        p.good.port,
        Policy::Opportunistic,
        Some(&p.good_leaf.cert_path),
    );
    assert!(!c.authenticated(), "{c}");
}

#[test]
fn no_records_fails_under_require_and_is_pkix_under_opportunistic() {
    let p = peers();
    let dns = dns::TestDns::start(&[("example.test.", "plain 300 IN A 127.0.0.1")]);
    let r = resolver(&dns);
    let c = check(&r, "plain.example.test", p.good.port, Policy::Require, &p);
    assert!(!c.authenticated(), "{c}");
    assert!(c.to_string().contains("NXDOMAIN"), "{c}");
    let c = check(
        &r,
        "plain.example.test",
        p.good.port,
        Policy::Opportunistic,
        &p,
    );
    assert_eq!(c.result, Ok(Authority::Pkix), "{c}");
}

#[test]
fn cname_expanded_name_first_then_original() {
    let p = peers();
    let record = good_record(&p);
    let mut lines = vec![
        "alias 300 IN CNAME real".to_string(),
        "real 300 IN A 127.0.0.1".to_string(),
    ];
    lines.extend(tlsa_lines("real", &p, &record));
    let lines: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("example.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&lines);
    let r = resolver(&dns);
    let c = check(&r, "alias.example.test", p.good.port, Policy::Require, &p);
    assert!(c.authenticated(), "{c}");
    assert_eq!(c.tlsa.lookups.len(), 1, "{c}");
    assert!(c.tlsa.lookups[0].owner.contains("real.example.test"), "{c}");
    assert!(!check(&r, "alias.example.test", p.other.port, Policy::Require, &p).authenticated());

    // Records only at the original name: found after the expanded name is securely empty.
    let mut lines = vec![
        "real 300 IN A 127.0.0.1".to_string(),
        "alias 300 IN CNAME real".to_string(),
    ];
    lines.extend(tlsa_lines("alias", &p, &record));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    dns.set_records("example.test.", &refs);
    r.clear_cache();
    let c = check(&r, "alias.example.test", p.good.port, Policy::Require, &p);
    assert!(c.authenticated(), "{c}");
    assert_eq!(c.tlsa.lookups.len(), 2, "{c}");
}

#[test]
fn openssl_s_client_agrees_with_our_record() {
    let p = peers();
    let record = good_record(&p);
    let s_client = |port: u16| {
        Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-dane_tlsa_domain", "broker.example.test"])
            .args(["-dane_tlsa_rrdata", &record.to_string()])
            .args(["-verify_return_error", "-brief"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = s_client(p.good.port);
    let text =
        String::from_utf8_lossy(&ok.stderr).to_string() + &String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(text.contains("Verification: OK"), "{text}");
    assert!(text.contains("DANE TLSA 3 1 1"), "{text}");
    let bad = s_client(p.other.port);
    assert!(!bad.status.success(), "s_client accepted another key");
}

#[test]
fn records_made_by_hash_slinger_are_accepted() {
    let p = peers();
    let out = Command::new("tlsa")
        .args([
            "--create",
            "--usage",
            "3",
            "--selector",
            "1",
            "--mtype",
            "1",
        ])
        .args([
            "--port",
            &p.good.port.to_string(),
            "--output",
            "rfc",
            "--certificate",
        ])
        .arg(&p.good_leaf.cert_path)
        .arg("broker.example.test")
        .output()
        .expect("tlsa (package hash-slinger)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("TLSA"))
        .expect("a TLSA line")
        .to_string();
    let (owner, record) = Tlsa::parse_zone_line(&line).unwrap();
    assert_eq!(
        owner.unwrap(),
        format!("_{}._tcp.broker.example.test.", p.good.port)
    );
    assert_eq!(record, good_record(&p));
    // Put it in the zone verbatim and authenticate with it.
    let dns = dns::TestDns::start(&[
        ("example.test.", "broker 300 IN A 127.0.0.1"),
        ("example.test.", line.as_str()),
    ]);
    let r = resolver(&dns);
    let c = check(&r, "broker.example.test", p.good.port, Policy::Require, &p);
    assert!(c.authenticated(), "{c}");
}

/// A secure TLSA RRset whose only record OpenSSL rejects as malformed (`3 1 0` with five bytes
/// that are no SubjectPublicKeyInfo) is "no usable records" (RFC 7671 §4.1 / RFC 6698 §4.1):
/// `opportunistic` authenticates by PKIX, as with no records, and `require` refuses, naming the
/// reason. Our usability rule is OpenSSL's, so the record is never handed to OpenSSL as usable.
#[test]
fn malformed_record_is_unusable_pkix_under_opportunistic_refused_under_require() {
    let p = peers();
    let dns = broker_zone("example.test.", &p, &"3 1 0 0102030405".parse().unwrap());
    let r = resolver(&dns);

    let c = check(&r, "broker.example.test", p.good.port, Policy::Require, &p);
    assert!(!c.authenticated(), "{c}");
    assert!(matches!(c.tlsa.decision, Decision::Refuse(_)), "{c}");
    assert!(c.to_string().contains("usable"), "{c}");

    let c = check(
        &r,
        "broker.example.test",
        p.good.port,
        Policy::Opportunistic,
        &p,
    );
    assert_eq!(c.result, Ok(Authority::Pkix), "{c}");
    assert!(c.to_string().contains("usable"), "{c}");
    // PKIX still decides: the other server's certificate does not chain to the CAs given.
    let c = check_server(
        &r,
        "broker.example.test",
        p.other.port,
        Policy::Opportunistic,
        Some(&p.good_leaf.cert_path),
    );
    assert!(!c.authenticated(), "{c}");
}
