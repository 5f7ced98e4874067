//! Device identities (draft-ietf-dance-client-auth) against a real knotd.

mod common;

use common::{dns, pki};

use std::sync::Arc;
use std::time::Duration;

use iotsafe_dane::dane::client::{ClientVerifier, OwnerForm, Refusal};
use iotsafe_dane::dane::refusal::OwnerLookup;
use iotsafe_dane::dane::resolver::{ManualClock, Proof, Resolver, ResolverConfig};
use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};

fn resolver(dns: &dns::TestDns) -> Resolver {
    Resolver::new(ResolverConfig::new(
        dns.addr(),
        dns.trust_anchor().parse().unwrap(),
    ))
    .unwrap()
}

fn ee(cert: &pki::Issued) -> Tlsa {
    Tlsa::for_certificate(&cert.cert, Usage::DaneEe, Selector::Spki, Matching::Sha256).unwrap()
}

#[test]
fn each_owner_name_form_accepted_with_its_record_and_rejected_with_another() {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
    let other = pki::leaf(dir.path(), "other", "other", &[], None);
    let good = ee(&device).to_string();
    let bad = ee(&other).to_string();
    let zone_lines = [
        format!("_mqtt-client.device1 300 IN TLSA {good}"),
        format!("device1 300 IN TLSA {good}"),
        format!("_mqtt-client.device2 300 IN TLSA {bad}"),
        format!("device2 300 IN TLSA {bad}"),
    ];
    let registry_lines = [
        format!("sensor7._device 300 IN TLSA {good}"),
        format!("sensor8._device 300 IN TLSA {bad}"),
    ];
    let mut extra: Vec<(&str, &str)> = zone_lines
        .iter()
        .map(|l| ("example.test.", l.as_str()))
        .collect();
    extra.extend(
        registry_lines
            .iter()
            .map(|l| ("iotregistry.test.", l.as_str())),
    );
    let dns = dns::TestDns::start(&extra);
    let r = resolver(&dns);
    let v = ClientVerifier::new(vec![], None);

    let cases = [
        (
            "_mqtt-client.device1.example.test",
            "_mqtt-client.device2.example.test",
            OwnerForm::Service,
        ),
        (
            "sensor7._device.iotregistry.test",
            "sensor8._device.iotregistry.test",
            OwnerForm::Device,
        ),
        (
            "device1.example.test",
            "device2.example.test",
            OwnerForm::Plain,
        ),
    ];
    for (accepted, rejected, form) in cases {
        let ok = v.verify(&r, accepted, &device.cert, &[]);
        assert_eq!(ok.form, Some(form));
        assert!(ok.authenticated(), "{ok}");
        assert_eq!(ok.result.as_ref().unwrap().depth, 0);
        let no = v.verify(&r, rejected, &device.cert, &[]);
        assert!(matches!(no.result, Err(Refusal::NoMatch(_))), "{no}");
        assert!(
            no.to_string().contains("does not match the certificate"),
            "{no}"
        );
    }
}

#[test]
fn name_must_be_san_for_usages_0_to_2_but_not_3() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = pki::ca(d, "ca", "Registry CA");
    let ca_file = pki::bundle(d, "ca.pem", &[&ca.cert]);
    let record = |cert: &pki::Issued, usage| {
        let selector = if usage == Usage::PkixEe {
            Selector::Spki
        } else {
            Selector::Cert
        };
        Tlsa::for_certificate(&cert.cert, usage, selector, Matching::Sha256).unwrap()
    };
    // Per usage: a certificate with the owner name as SAN dNSName, and one with the name only
    // in its CN (which never counts). The records designate both (the CA, or both leaves).
    let mut lines = Vec::new();
    let mut cases = Vec::new();
    for (label, usage) in [
        ("ta", Usage::DaneTa),
        ("pkixta", Usage::PkixTa),
        ("pkixee", Usage::PkixEe),
        ("ee", Usage::DaneEe),
    ] {
        let owner = format!("{label}._device.iotregistry.test");
        let with = pki::leaf(d, &format!("{label}-with"), "x", &[&owner], Some(&ca));
        let without = pki::leaf(
            d,
            &format!("{label}-without"),
            &owner,
            &["x._device.iotregistry.test"],
            Some(&ca),
        );
        match usage {
            Usage::DaneTa | Usage::PkixTa => lines.push(format!(
                "{label}._device 300 IN TLSA {}",
                record(&ca, usage)
            )),
            _ => {
                lines.push(format!(
                    "{label}._device 300 IN TLSA {}",
                    record(&with, usage)
                ));
                lines.push(format!(
                    "{label}._device 300 IN TLSA {}",
                    record(&without, usage)
                ));
            }
        }
        cases.push((owner, usage, with, without));
    }
    let extra: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("iotregistry.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&extra);
    let r = resolver(&dns);
    let v = ClientVerifier::new(vec!["iotregistry.test".into()], Some(ca_file));
    let chain = [ca.cert.clone()];
    for (owner, usage, with, without) in cases {
        let ok = v.verify(&r, &owner, &with.cert, &chain);
        assert!(ok.authenticated(), "{usage:?}: {ok}");
        let no = v.verify(&r, &owner, &without.cert, &chain);
        if usage == Usage::DaneEe {
            // DANE-EE: the name need not be in the certificate at all.
            assert!(no.authenticated(), "{no}");
        } else {
            assert!(
                !no.authenticated(),
                "{usage:?}: name only in the CN must be refused: {no}"
            );
            assert!(no.to_string().contains("SAN dNSName"), "{no}");
        }
    }
}

#[test]
fn dane_ta_needs_the_anchor_in_the_presented_chain() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = pki::ca(d, "ca", "Registry CA");
    let name = "ta._device.iotregistry.test";
    let leaf = pki::leaf(d, "leaf", "x", &[name], Some(&ca));
    let rogue = pki::leaf(d, "rogue", "x", &[name], None);
    let ta =
        Tlsa::for_certificate(&ca.cert, Usage::DaneTa, Selector::Spki, Matching::Sha256).unwrap();
    let line = format!("ta._device 300 IN TLSA {ta}");
    let dns = dns::TestDns::start(&[("iotregistry.test.", line.as_str())]);
    let r = resolver(&dns);
    let v = ClientVerifier::new(vec![], None);
    assert!(v
        .verify(&r, name, &leaf.cert, std::slice::from_ref(&ca.cert))
        .authenticated());
    let no_chain = v.verify(&r, name, &leaf.cert, &[]);
    assert!(no_chain.to_string().contains("above its own"), "{no_chain}");
    // The anchor is presented, but the leaf is not issued by it.
    let rogue = v.verify(&r, name, &rogue.cert, std::slice::from_ref(&ca.cert));
    assert!(rogue.to_string().contains("does not chain"), "{rogue}");
}

#[test]
fn out_of_domain_and_malformed_names_cost_no_dns_query() {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
    let dns = dns::TestDns::start(&[]);
    let r = resolver(&dns);
    let v = ClientVerifier::new(vec!["iotregistry.test".into()], None);
    let out = v.verify(&r, "sensor7._device.evil.test", &device.cert, &[]);
    assert!(
        matches!(out.result, Err(Refusal::NotAllowed { .. })),
        "{out}"
    );
    // A suffix that is not a label boundary is not inside the domain.
    let out = v.verify(&r, "x._device.notiotregistry.test", &device.cert, &[]);
    assert!(
        matches!(out.result, Err(Refusal::NotAllowed { .. })),
        "{out}"
    );
    let bad = v.verify(&r, "a._b._device.iotregistry.test", &device.cert, &[]);
    assert!(matches!(bad.result, Err(Refusal::BadName(_))), "{bad}");
    assert_eq!(r.queries_sent(), 0);
    // Inside the domain, the look-up happens.
    let _ = v.verify(&r, "sensor7._device.iotregistry.test", &device.cert, &[]);
    assert!(r.queries_sent() > 0);
}

#[test]
fn bogus_insecure_and_absent_records_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
    let line = format!("dev 300 IN TLSA {}", ee(&device));
    let dns = dns::TestDns::start(&[
        ("bogus.test.", line.as_str()),
        ("insecure.test.", line.as_str()),
    ]);
    let r = resolver(&dns);
    let v = ClientVerifier::new(vec![], None);
    let bogus = v.verify(&r, "dev.bogus.test", &device.cert, &[]);
    assert!(
        matches!(
            bogus.result,
            Err(Refusal::Bogus(OwnerLookup {
                proof: Proof::Bogus,
                ..
            }))
        ),
        "{bogus}"
    );
    let insecure = v.verify(&r, "dev.insecure.test", &device.cert, &[]);
    assert!(
        matches!(
            insecure.result,
            Err(Refusal::Insecure(OwnerLookup {
                proof: Proof::Insecure,
                ..
            }))
        ),
        "{insecure}"
    );
    let absent = v.verify(&r, "nobody._device.iotregistry.test", &device.cert, &[]);
    assert!(
        matches!(absent.result, Err(Refusal::NoSecureRecords(_))),
        "{absent}"
    );
    assert!(absent.to_string().contains("NXDOMAIN"), "{absent}");
}

#[test]
fn digest_agility_strongest_digest_decides() {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
    let other = pki::leaf(dir.path(), "other", "other", &[], None);
    let sha256 = |c: &pki::Issued| {
        Tlsa::for_certificate(&c.cert, Usage::DaneEe, Selector::Spki, Matching::Sha256).unwrap()
    };
    let sha512 = |c: &pki::Issued| {
        Tlsa::for_certificate(&c.cert, Usage::DaneEe, Selector::Spki, Matching::Sha512).unwrap()
    };
    let lines = [
        format!("a._device 300 IN TLSA {}", sha256(&other)),
        format!("a._device 300 IN TLSA {}", sha512(&device)),
        format!("b._device 300 IN TLSA {}", sha256(&device)),
        format!("b._device 300 IN TLSA {}", sha512(&other)),
    ];
    let extra: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("iotregistry.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&extra);
    let r = resolver(&dns);
    let v = ClientVerifier::new(vec![], None);
    let a = v.verify(&r, "a._device.iotregistry.test", &device.cert, &[]);
    assert_eq!(a.result.as_ref().map(|m| m.record.mtype), Ok(2), "{a}");
    // The SHA-256 record would match, but SHA-512 is published for the same usage/selector.
    let b = v.verify(&r, "b._device.iotregistry.test", &device.cert, &[]);
    assert!(!b.authenticated(), "{b}");
    assert!(b.to_string().contains("stronger digest"), "{b}");
}

#[test]
fn revoked_by_removing_the_record_once_the_ttl_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
    let line = format!("sensor7._device 2 IN TLSA {}", ee(&device));
    let dns = dns::TestDns::start(&[("iotregistry.test.", line.as_str())]);
    let clock = Arc::new(ManualClock::new());
    let config = ResolverConfig::new(dns.addr(), dns.trust_anchor().parse().unwrap());
    let r = Resolver::with_clock(config, clock.clone()).unwrap();
    let v = ClientVerifier::new(vec!["iotregistry.test".into()], None);
    let name = "sensor7._device.iotregistry.test";
    assert!(v.verify(&r, name, &device.cert, &[]).authenticated());
    dns.set_records("iotregistry.test.", &[]);
    clock.advance(Duration::from_millis(1999));
    assert!(
        v.verify(&r, name, &device.cert, &[]).authenticated(),
        "cached within the TTL"
    );
    clock.advance(Duration::from_millis(1));
    let revoked = v.verify(&r, name, &device.cert, &[]);
    assert!(
        matches!(revoked.result, Err(Refusal::NoSecureRecords(_))),
        "{revoked}"
    );
}
