//! Forged DNS answers from an on-path attacker between the resolver and knotd (the proxy of
//! tests/common/dnsproxy.rs): none of them may switch DANE off. Insecure must be proven; what
//! is not proven inside a signed zone is bogus, and bogus refuses the connection under every
//! policy, through the library, the `iotsafe` tool and the C API alike.

mod common;

use common::capi::{self, c, last_error};
use common::dnsproxy::{DnsProxy, Forgery};
use common::{dns, pki, tls, unbound};

use std::net::TcpStream;

use foreign_types::ForeignType;
use hickory_resolver::proto::rr::{RData, RecordType};
use iotsafe_dane::capi::*;
use iotsafe_dane::dane::refusal::Refusal;
use iotsafe_dane::dane::resolver::{
    Outcome, Proof, Resolution, Resolver, ResolverConfig, TrustAnchor, Validation,
};
use iotsafe_dane::dane::server::{Decision, Policy, ServerTlsa};
use openssl::ssl::{Ssl, SslContext, SslMethod};

const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const TLSA: RecordType = RecordType::TLSA;
/// A name with TLSA records in the signed zone example.test.: the attacker's target.
const TARGET: &str = "_443._tcp.broker.example.test";

fn tlsa_line(owner: &str) -> String {
    format!("{owner} 300 IN TLSA 3 1 1 {HASH}")
}

/// Records at `_443._tcp` and `_1._tcp`/`_2._tcp` of broker.example.test., a broker in the
/// unsigned zone insecure.test. and one in the unsigned zone plain.optout.test. (delegated
/// from a zone with NSEC3 opt-out), and in iotregistry.test. a wildcard device record beside
/// the record of device `a`.
fn hierarchy(extra: &[(&'static str, String)]) -> dns::TestDns {
    let mut lines = vec![
        ("example.test.", "broker 300 IN A 127.0.0.1".to_string()),
        ("example.test.", tlsa_line("_443._tcp.broker")),
        ("example.test.", tlsa_line("_1._tcp.broker")),
        ("example.test.", tlsa_line("_2._tcp.broker")),
        ("insecure.test.", "broker 300 IN A 127.0.0.1".to_string()),
        ("insecure.test.", tlsa_line("_443._tcp.broker")),
        ("plain.optout.test.", tlsa_line("_443._tcp.broker")),
        ("iotregistry.test.", tlsa_line("*._device")),
        ("iotregistry.test.", tlsa_line("a._device")),
    ];
    lines.extend(extra.iter().cloned());
    let refs: Vec<(&str, &str)> = lines.iter().map(|(z, l)| (*z, l.as_str())).collect();
    dns::TestDns::start(&refs)
}

/// A validating resolver that asks the proxy, with the hierarchy's root key as trust anchor.
fn resolver_via(proxy: &DnsProxy, dns: &dns::TestDns) -> Resolver {
    let anchor: TrustAnchor = dns.trust_anchor().parse().expect("trust anchor");
    Resolver::new(ResolverConfig::new(proxy.addr(), anchor)).expect("resolver")
}

fn why(res: &Resolution) -> String {
    res.last().why.clone().unwrap_or_default()
}

#[test]
fn forged_insecure_denial_in_a_signed_zone_is_bogus() {
    let dns = hierarchy(&[]);
    let proxy = DnsProxy::start(dns.addr());
    proxy.forge(TARGET, TLSA, Forgery::ForeignInsecureSoa("insecure.test."));
    let r = resolver_via(&proxy, &dns);

    let res = r.resolve(TARGET, TLSA).expect("an answer");
    assert!(proxy.forged() >= 1, "the proxy rewrote the answer");
    assert_eq!(res.last().outcome, Outcome::NoData);
    assert_eq!(res.proof(), Proof::Bogus, "{}", res.last());
    assert!(
        why(&res).contains("SOA record of insecure.test."),
        "{}",
        res.last()
    );

    // Server DANE: refused under both policies, never "no DANE" and PKIX.
    for policy in [Policy::Opportunistic, Policy::Require] {
        let tlsa = ServerTlsa::lookup(&r, "broker.example.test", 443, policy);
        let Decision::Refuse(reason) = &tlsa.decision else {
            panic!("{policy:?}: a forged denial must refuse: {tlsa}");
        };
        assert!(matches!(reason, Refusal::Bogus(_)), "{reason}");
        let reason = reason.to_string();
        assert!(
            reason.contains("_443._tcp.broker.example.test.") && reason.contains("bogus"),
            "{reason}"
        );
    }
}

/// RFC 7672: insecure address records mean "no DANE", so forging the address denial is the
/// same downgrade one look-up earlier.
#[test]
fn forged_insecure_address_denial_is_bogus() {
    let dns = hierarchy(&[]);
    let proxy = DnsProxy::start(dns.addr());
    proxy.forge(
        "broker.example.test",
        RecordType::A,
        Forgery::ForeignInsecureSoa("insecure.test."),
    );
    let r = resolver_via(&proxy, &dns);
    let tlsa = ServerTlsa::lookup(&r, "broker.example.test", 443, Policy::Opportunistic);
    assert!(proxy.forged() >= 1, "the proxy rewrote the answer");
    let Decision::Refuse(reason) = &tlsa.decision else {
        panic!("a forged address denial must refuse: {tlsa}");
    };
    assert!(matches!(reason, Refusal::Bogus(_)), "{reason}");
    let reason = reason.to_string();
    assert!(
        reason.contains("address records of broker.example.test. are bogus")
            && reason.contains("insecure.test."),
        "{reason}"
    );
}

#[test]
fn the_shapes_that_already_ended_bogus_stay_bogus() {
    let dns = hierarchy(&[]);
    let proxy = DnsProxy::start(dns.addr());
    let cases = [
        // A denial of a name that has records, with nothing to prove it.
        ("_1._tcp.broker.example.test", Forgery::NoSoa),
        // ...proven by the signed denial of a name in another zone.
        (
            "_2._tcp.broker.example.test",
            Forgery::ForeignNsec("nobody.iotregistry.test.", TLSA),
        ),
        // Real denials (NXDOMAIN, NODATA) without their NSEC records.
        ("_3._tcp.nothing.example.test", Forgery::StrippedNsec),
        ("broker.example.test", Forgery::StrippedNsec),
    ];
    for (name, forgery) in &cases {
        proxy.forge(name, TLSA, forgery.clone());
    }
    let r = resolver_via(&proxy, &dns);
    for (name, forgery) in &cases {
        let res = r.resolve(name, TLSA).expect("an answer");
        assert_eq!(
            res.proof(),
            Proof::Bogus,
            "{forgery:?}: {}\n{}",
            res.last(),
            dns.dig(name, "TLSA")
        );
        assert!(res.records().is_empty());
    }
    assert!(proxy.forged() >= cases.len());
}

#[test]
fn real_insecure_and_real_signed_answers_keep_their_state() {
    let dns = hierarchy(&[]);
    // Through the proxy without forgery: the proxy itself changes nothing.
    let proxy = DnsProxy::start(dns.addr());
    let r = resolver_via(&proxy, &dns);
    let expect = |name: &str, outcome: Outcome, proof: Proof| {
        let res = r.resolve(name, TLSA).expect("an answer");
        assert_eq!(
            res.proof(),
            proof,
            "{}\n{}",
            res.last(),
            dns.dig(name, "TLSA")
        );
        assert_eq!(
            std::mem::discriminant(&res.last().outcome),
            std::mem::discriminant(&outcome),
            "{}",
            res.last()
        );
        res
    };
    let records = Outcome::Records(Vec::new());
    // Below the unsigned delegation insecure.test. (NS in test., no DS): proven insecure.
    let insecure = expect(
        "_443._tcp.broker.insecure.test",
        records.clone(),
        Proof::Insecure,
    );
    assert_eq!(insecure.records().len(), 1);
    assert!(
        why(&insecure).contains("insecure.test.") && why(&insecure).contains("without DS"),
        "{}",
        insecure.last()
    );
    expect("nobody.insecure.test", Outcome::NxDomain, Proof::Insecure);
    expect("broker.insecure.test", Outcome::NoData, Proof::Insecure);
    // Below an unsigned delegation in a zone signed with NSEC3 opt-out: the opt-out NSEC3 of
    // optout.test. covering it, with the one matching its closest encloser, proves it.
    let opted_out = expect(
        "_443._tcp.broker.plain.optout.test",
        records.clone(),
        Proof::Insecure,
    );
    assert!(
        why(&opted_out).contains("opt-out NSEC3 of optout.test.")
            && why(&opted_out).contains("closest encloser optout.test."),
        "{}",
        opted_out.last()
    );
    // Signed answers and signed denials.
    expect(TARGET, records, Proof::Secure);
    expect("nobody.example.test", Outcome::NxDomain, Proof::Secure);
    expect("broker.example.test", Outcome::NoData, Proof::Secure);
    assert_eq!(proxy.forged(), 0);

    // Opportunistic DANE for the unsigned broker is "no DANE" (PKIX), as before.
    let tlsa = ServerTlsa::lookup(&r, "broker.insecure.test", 443, Policy::Opportunistic);
    assert!(matches!(tlsa.decision, Decision::Pkix(_)), "{tlsa}");
}

/// The downgrade the forgery is for: the TLSA record pins the genuine server's key; the
/// attacker's server holds a certificate from a CA the client trusts. Under `opportunistic`,
/// "no DANE" would authenticate the attacker by PKIX.
struct Downgrade {
    _dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
    attacker: tls::TlsServer,
    dns: dns::TestDns,
    proxy: DnsProxy,
}

fn downgrade() -> Downgrade {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = pki::ca(d, "ca", "Trusted CA");
    let genuine = pki::leaf(d, "genuine", "broker", &["broker.example.test"], None);
    let names = ["broker.example.test", "broker.insecure.test"];
    let mis_issued = pki::leaf(d, "attacker", "broker", &names, Some(&ca));
    let attacker = tls::TlsServer::start(&mis_issued.cert_path, &mis_issued.key_path, None);
    let record = pki::dane_ee_record(&genuine.cert);
    let owner = format!("_{}._tcp.broker", attacker.port);
    let dns = hierarchy(&[("example.test.", format!("{owner} 300 IN TLSA {record}"))]);
    let proxy = DnsProxy::start(dns.addr());
    proxy.forge(
        &format!("{owner}.example.test"),
        TLSA,
        Forgery::ForeignInsecureSoa("insecure.test."),
    );
    Downgrade {
        ca_file: ca.cert_path.clone(),
        _dir: dir,
        attacker,
        dns,
        proxy,
    }
}

#[test]
fn cli_check_server_refuses_the_forged_denial_under_opportunistic() {
    let rig = downgrade();
    let anchor = rig.dns.trust_anchor_file();
    let check = |host: &str| {
        std::process::Command::new(common::workspace_binary("iotsafe"))
            .args(["dane", "check-server", host, &rig.attacker.port.to_string()])
            .args(["--policy", "opportunistic", "--ca-file"])
            .arg(&rig.ca_file)
            .args([
                "--resolver",
                &rig.proxy.addr().to_string(),
                "--trust-anchor",
            ])
            .arg(&anchor)
            .output()
            .expect("run iotsafe dane check-server")
    };
    let out = check("broker.example.test");
    let report = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert!(rig.proxy.forged() >= 1, "the proxy rewrote the answer");
    assert_eq!(out.status.code(), Some(1), "{report}");
    let owner = format!("_{}._tcp.broker.example.test.", rig.attacker.port);
    assert!(
        report.contains(&owner) && report.contains("bogus") && report.contains("insecure.test."),
        "{report}"
    );
    assert!(!report.contains("AUTHENTICATED: by PKIX"), "{report}");

    // The same server under a name that really is unsigned: PKIX, as opportunistic DANE says.
    let out = check("broker.insecure.test");
    let report = format!("{}{}", common::stdout(&out), common::stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("AUTHENTICATED: by PKIX"), "{report}");
}

#[test]
fn c_api_refuses_the_forged_denial_under_opportunistic() {
    let rig = downgrade();
    let port = rig.attacker.port;
    let owner = format!("_{port}._tcp.broker.example.test.");
    let handle = capi::new_handle(rig.proxy.addr(), &rig.dns.trust_anchor_file());
    let mut ctx = SslContext::builder(SslMethod::tls_client()).unwrap();
    ctx.set_ca_file(&rig.ca_file).unwrap();
    let plain_ctx = ctx.build();

    // Per connection: refused before connecting.
    let enable = |host: &str| {
        let ssl = Ssl::new(&plain_ctx).unwrap();
        let host = c(host);
        unsafe {
            iotsafe_dane_ssl_enable(
                handle,
                ssl.as_ptr(),
                host.as_ptr(),
                port,
                IOTSAFE_DANE_OPPORTUNISTIC,
            )
        }
    };
    assert_eq!(
        enable("broker.example.test"),
        0,
        "the forged denial is refused"
    );
    assert!(rig.proxy.forged() >= 1, "the proxy rewrote the answer");
    let error = last_error();
    assert!(error.contains(&owner) && error.contains("bogus"), "{error}");
    assert_eq!(enable("broker.insecure.test"), 1, "{}", last_error());

    // On a whole context, as libmosquitto uses it: the handshake fails, the reason is kept.
    let mut ctx = SslContext::builder(SslMethod::tls_client()).unwrap();
    ctx.set_ca_file(&rig.ca_file).unwrap();
    let ctx = ctx.build();
    let rc = unsafe {
        iotsafe_dane_ctx_enable_server_auth(handle, ctx.as_ptr(), port, IOTSAFE_DANE_OPPORTUNISTIC)
    };
    assert_eq!(rc, 1, "{}", last_error());
    let connect = |sni: &str| {
        let mut ssl = Ssl::new(&ctx).unwrap();
        ssl.set_hostname(sni).unwrap();
        ssl.connect(TcpStream::connect(("127.0.0.1", port)).unwrap())
            .is_ok()
    };
    assert!(
        !connect("broker.example.test"),
        "the attacker is not authenticated"
    );
    let error = last_error();
    assert!(error.contains(&owner) && error.contains("bogus"), "{error}");
    assert!(connect("broker.insecure.test"), "{}", last_error());
    unsafe { iotsafe_dane_free(handle) };
}

fn tlsa_rdata(res: &Resolution) -> Vec<String> {
    let mut records: Vec<String> = res
        .records()
        .iter()
        .map(|r| match r {
            RData::TLSA(t) => t.to_string(),
            other => other.to_string(),
        })
        .collect();
    records.sort();
    records
}

/// `*._device.iotregistry.test.`: validated in-process (RFC 4035 §5.3.4), and the same as
/// unbound says. `0._device` sorts between the wildcard and `a._device`, so the NSEC proving it
/// absent is owned by the wildcard itself (what hickory's own check refuses); `dev9._device`
/// sorts after `a._device`, whose NSEC proves it absent.
#[test]
fn wildcard_tlsa_answer_is_secure_in_process_and_through_unbound() {
    let dns = hierarchy(&[]);
    let anchor: TrustAnchor = dns.trust_anchor().parse().expect("trust anchor");
    let r = Resolver::new(ResolverConfig::new(dns.addr(), anchor)).expect("resolver");
    let unbound = unbound::Unbound::start(&dns);
    let mut config = ResolverConfig::new(unbound.addr(), TrustAnchor::iana_root());
    config.validation = Validation::TrustAdBit;
    let ad = Resolver::new(config).expect("resolver");
    for name in [
        "0._device.iotregistry.test",
        "dev9._device.iotregistry.test",
        "a._device.iotregistry.test",
    ] {
        let in_process = r.resolve(name, TLSA).expect("an answer");
        assert_eq!(
            in_process.proof(),
            Proof::Secure,
            "{}\n{}",
            in_process.last(),
            dns.dig(name, "TLSA")
        );
        assert_eq!(in_process.records().len(), 1);
        let validated = ad.resolve(name, TLSA).expect("an answer");
        assert_eq!(
            validated.proof(),
            Proof::Secure,
            "{}",
            unbound.dig(name, "TLSA")
        );
        assert_eq!(tlsa_rdata(&in_process), tlsa_rdata(&validated), "{name}");
    }
}

#[test]
fn forged_wildcard_expansion_without_its_nsec_is_bogus() {
    let dns = hierarchy(&[]);
    let proxy = DnsProxy::start(dns.addr());
    let name = "dev8._device.iotregistry.test";
    proxy.forge(name, TLSA, Forgery::StrippedNsec);
    let r = resolver_via(&proxy, &dns);
    let res = r.resolve(name, TLSA).expect("an answer");
    assert!(proxy.forged() >= 1, "the proxy rewrote the answer");
    assert_eq!(res.proof(), Proof::Bogus, "{}", res.last());
    assert!(res.records().is_empty());
    assert!(
        why(&res).contains("*._device.iotregistry.test."),
        "{}",
        res.last()
    );
}

/// AD-bit mode asks a truncated UDP answer again over TCP. A SERVFAIL (or REFUSED, NOTIMP)
/// there is a failure, as it is over UDP: never a denial without AD bit, which would be
/// "insecure" and so "no DANE" under `opportunistic`.
#[test]
fn ad_bit_mode_takes_a_failure_over_tcp_as_a_failure() {
    use hickory_resolver::proto::op::ResponseCode;
    let dns = hierarchy(&[]);
    let unbound = unbound::Unbound::start(&dns);
    let proxy = DnsProxy::start(unbound.addr());
    let mut config = ResolverConfig::new(proxy.addr(), TrustAnchor::iana_root());
    config.validation = Validation::TrustAdBit;
    let r = Resolver::new(config).expect("resolver");
    let cases = [
        (TARGET, ResponseCode::ServFail),
        ("_1._tcp.broker.example.test", ResponseCode::Refused),
        ("_2._tcp.broker.example.test", ResponseCode::NotImp),
    ];
    for (name, code) in cases {
        proxy.forge(name, TLSA, Forgery::TruncatedThen(code));
        let forged_before = proxy.forged();
        let result = r.resolve(name, TLSA);
        assert_eq!(
            proxy.forged() - forged_before,
            2,
            "truncated over UDP, {code} over TCP"
        );
        let err = result.expect_err("a failure, not an answer or a denial");
        let err = err.to_string();
        assert!(err.contains("indeterminate"), "{code}: {err}");
    }
    // The server check refuses under both policies: no fallback to PKIX.
    for policy in [Policy::Opportunistic, Policy::Require] {
        let tlsa = ServerTlsa::lookup(&r, "broker.example.test", 443, policy);
        let Decision::Refuse(reason) = &tlsa.decision else {
            panic!("{policy:?}: a SERVFAIL over TCP must refuse: {tlsa}");
        };
        assert!(matches!(reason, Refusal::DnsFailure(_)), "{reason}");
        assert!(
            reason.to_string().contains(&format!("{TARGET}.")),
            "{reason}"
        );
    }
}

/// A grandparent zone with NSEC3 opt-out: optout.test. signs the delegation of
/// secure.optout.test. (DS), whose broker has TLSA records. The attacker answers the TLSA
/// question with an unsigned SOA owned by the broker's own name (so it is no foreign record),
/// and the broker's DS question with genuine signed NSEC3 records of optout.test.: a complete
/// opt-out closest-encloser proof, but from a zone that does not hold that name. Only
/// secure.optout.test. can say whether broker.secure.optout.test. is a delegation: bogus.
#[test]
fn a_grandparent_opt_out_nsec3_does_not_prove_a_signed_name_insecure() {
    const BROKER: &str = "_443._tcp.broker.secure.optout.test";
    let dns = hierarchy(&[
        ("secure.optout.test.", tlsa_line("_443._tcp.broker")),
        (
            "secure.optout.test.",
            "broker 300 IN A 127.0.0.1".to_string(),
        ),
    ]);
    let proxy = DnsProxy::start(dns.addr());
    // Unforged, the records are secure.
    let genuine = resolver_via(&proxy, &dns)
        .resolve(BROKER, TLSA)
        .expect("an answer");
    assert_eq!(
        genuine.proof(),
        Proof::Secure,
        "{}\n{}",
        genuine.last(),
        dns.dig(BROKER, "TLSA")
    );

    proxy.forge(
        BROKER,
        TLSA,
        Forgery::UnsignedSoaAt("broker.secure.optout.test."),
    );
    // hickory looks for the zone of an unsigned record by asking NS at its name, then DS.
    proxy.forge(
        "broker.secure.optout.test",
        RecordType::NS,
        Forgery::UnsignedNs,
    );
    proxy.forge(
        "broker.secure.optout.test",
        RecordType::DS,
        Forgery::Nsec3ChainOf("optout.test."),
    );
    let r = resolver_via(&proxy, &dns);
    let res = r.resolve(BROKER, TLSA).expect("an answer");
    assert!(
        proxy.forged() >= 3,
        "the three answers were rewritten: {}",
        res.last()
    );
    assert_eq!(res.proof(), Proof::Bogus, "{}", res.last());
    assert!(
        why(&res).contains("broker.secure.optout.test.")
            && why(&res).contains("NSEC3 of secure.optout.test."),
        "{}",
        res.last()
    );
    let tlsa = ServerTlsa::lookup(&r, "broker.secure.optout.test", 443, Policy::Opportunistic);
    let Decision::Refuse(reason) = &tlsa.decision else {
        panic!("the forged denial must refuse, not fall back to PKIX: {tlsa}");
    };
    assert!(matches!(reason, Refusal::Bogus(_)), "{reason}");
}
