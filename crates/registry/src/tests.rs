//! The update messages as built, before any server sees them: sections and classes as RFC 2136
//! §2.4-2.5 has them.

use super::*;

fn registry() -> Registry {
    let key: TsigKey = "k:hmac-sha256:c2VjcmV0".parse().unwrap();
    Registry::new(
        "127.0.0.1:53".parse().unwrap(),
        "iotregistry.test",
        key,
        Duration::from_secs(1),
    )
    .unwrap()
}

/// A `3 1 1` record whose digest is `byte` repeated (also for the other modules' tests).
pub(crate) fn tlsa(byte: u8) -> Tlsa {
    Tlsa {
        usage: 3,
        selector: 1,
        mtype: 1,
        data: vec![byte; 32],
    }
}

fn name() -> DeviceName {
    device_name("d._device.iotregistry.test", false).unwrap()
}

/// RFC 2136 puts the prerequisites in the answer section and the updates in the authority one.
fn sections(message: &Message) -> (&[Record], &[Record]) {
    (&message.answers, &message.authorities)
}

#[test]
fn publish_adds_in_class_in_with_no_prerequisite_and_beside_requires_the_set() {
    let r = registry();
    let message = r.publish_message(&name(), &tlsa(1), 120, false).unwrap();
    let (pre, updates) = sections(&message);
    assert!(pre.is_empty());
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].dns_class, DNSClass::IN);
    assert_eq!(updates[0].ttl, 120);
    assert_eq!(Tlsa::from_rdata(&updates[0].data), Some(tlsa(1)));
    assert_eq!(message.queries[0].name().to_string(), "iotregistry.test.");

    let message = r.publish_message(&name(), &tlsa(1), 120, true).unwrap();
    let (pre, _) = sections(&message);
    assert_eq!(pre.len(), 1);
    assert_eq!(
        pre[0].dns_class,
        DNSClass::ANY,
        "RRset exists (value-independent)"
    );
    assert_eq!(pre[0].record_type(), RecordType::TLSA);
}

#[test]
fn revoking_the_set_requires_it_to_exist() {
    let message = registry().revoke_all_message(&name()).unwrap();
    let (pre, updates) = sections(&message);
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0].dns_class, DNSClass::ANY);
    assert_eq!(pre[0].record_type(), RecordType::TLSA);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].dns_class, DNSClass::ANY, "delete an RRset");
    assert_eq!(updates[0].record_type(), RecordType::TLSA);
}

/// Revoking "every record" deletes the records read just before, on the prerequisite that
/// the set is still exactly them: one published meanwhile is refused, not deleted unseen; a
/// name read without records is sent the value-independent form once, never retried.
#[test]
fn revoking_every_record_deletes_those_seen_and_only_those() {
    let r = registry();
    let current = RecordsAt {
        records: vec![tlsa(1), tlsa(2)],
        ttl: 300,
    };
    let message = r.revoke_all_plan(&name(), &current).unwrap();
    let (pre, updates) = sections(&message);
    assert_eq!(pre.len(), 2, "the whole set seen, value-dependent");
    assert!(pre.iter().all(|p| p.dns_class == DNSClass::IN));
    assert_eq!(updates.len(), 2);
    assert!(
        updates.iter().all(|u| u.dns_class == DNSClass::NONE),
        "delete RRs, not the set"
    );
    assert_eq!(revoke_all_retry(&current), Retry::WhenTheZoneMoved);

    let none = RecordsAt {
        records: vec![],
        ttl: 0,
    };
    let message = r.revoke_all_plan(&name(), &none).unwrap();
    assert_eq!(message.answers[0].dns_class, DNSClass::ANY, "RRset exists");
    assert_eq!(revoke_all_retry(&none), Retry::Never);
}

/// Only a refusal signed with our key is retried: an unsigned NXRRSET may be a forger's,
/// answering a change the server applied.
#[test]
fn only_a_signed_prerequisite_refusal_is_retried() {
    let refusal = |signed| RegistryError::Refused {
        server: "127.0.0.1:53".parse().unwrap(),
        rcode: "NXRRSET".into(),
        tsig_error: None,
        signed,
    };
    assert!(is_signed_nxrrset(&refusal(true)));
    assert!(!is_signed_nxrrset(&refusal(false)));
}

#[test]
fn removing_records_requires_the_set_as_it_was_seen() {
    let r = registry();
    let current = RecordsAt {
        records: vec![tlsa(1), tlsa(2)],
        ttl: 300,
    };
    let message = r
        .remove_records_message(&name(), &current, &[tlsa(1)])
        .unwrap();
    let (pre, updates) = sections(&message);
    assert_eq!(pre.len(), 2, "the whole set, value-dependent");
    assert!(pre
        .iter()
        .all(|p| p.dns_class == DNSClass::IN && p.ttl == 0));
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].dns_class, DNSClass::NONE, "delete an RR");
    assert_eq!(Tlsa::from_rdata(&updates[0].data), Some(tlsa(1)));

    let none = RecordsAt {
        records: vec![],
        ttl: 0,
    };
    let message = r
        .remove_records_message(&name(), &none, &[tlsa(1)])
        .unwrap();
    assert_eq!(message.answers[0].dns_class, DNSClass::ANY);
}

/// hickory's builders assert that the name is in the zone: a name outside it must be an
/// error here, never a panic there.
#[test]
fn a_name_outside_the_zone_is_an_error_not_a_panic() {
    let r = registry();
    let outside = &device_name("d._device.example.test", false).unwrap();
    let why = |e: RegistryError| e.to_string();
    assert!(
        why(r.publish_message(outside, &tlsa(1), 1, false).unwrap_err())
            .contains("is not in the zone iotregistry.test.")
    );
    assert!(r.revoke_all_message(outside).is_err());
    let current = RecordsAt {
        records: vec![],
        ttl: 0,
    };
    assert!(r
        .remove_records_message(outside, &current, &[tlsa(1)])
        .is_err());
}

/// Wildcards, escapes and names not of the `_device` form are refused before any message is
/// built; plain host names only when allowed.
#[test]
fn only_device_names_are_accepted() {
    for (text, why) in [
        ("*._device.iotregistry.test", "not a host name"),
        ("a*b._device.iotregistry.test", "not a host name"),
        ("a\\.b._device.iotregistry.test", "escapes"),
        ("sensor\\0657._device.iotregistry.test", "escapes"),
        ("_mqtt._device.iotregistry.test", "not a host name"),
        ("_mqtt.d.iotregistry.test", "_<service> owner name"),
        ("d.iotregistry.test", "--plain-name"),
    ] {
        let err = device_name(text, false).unwrap_err().to_string();
        assert!(err.contains(why), "{text}: {err}");
        assert!(err.contains("nothing was sent"), "{text}: {err}");
    }
    assert!(device_name("d.iotregistry.test", true).is_ok());
    assert_eq!(
        fqdn(&device_name("D._Device.IoTRegistry.test.", false).unwrap()),
        "d._device.iotregistry.test."
    );
}

/// Every change carries the zone's SOA as read just before, exactly (class IN, TTL 0): a
/// replay of the message after any later change is refused by the server.
#[test]
fn every_change_requires_the_zone_soa_it_was_made_on() {
    let zone = Name::from_ascii("iotregistry.test.").unwrap();
    let soa = zone_soa(2024010107);
    let pre = soa.prerequisite(&zone);
    assert_eq!(pre.dns_class, DNSClass::IN);
    assert_eq!(pre.ttl, 0);
    assert_eq!(pre.name, zone);
    assert!(matches!(&pre.data, RData::SOA(s) if s.serial == 2024010107));
    assert_eq!(soa.negative_ttl(), 60);
}

#[test]
fn refusals_name_the_rcode_and_what_it_means() {
    let refused = RegistryError::Refused {
        server: "192.0.2.1:53".parse().unwrap(),
        rcode: rcode_name(ResponseCode::NotAuth),
        tsig_error: Some("BADSIG".into()),
        signed: false,
    };
    let text = refused.to_string();
    assert!(text.starts_with("192.0.2.1:53 refused the request: NOTAUTH (TSIG error BADSIG)"));
    assert!(text.contains("another secret") && text.ends_with("nothing was changed"));
    assert_eq!(rcode_name(ResponseCode::NXRRSet), "NXRRSET");
    assert_eq!(rcode_name(ResponseCode::Refused), "REFUSED");
}

/// An unsigned refusal other than BADSIG/BADKEY proves nothing: it may be forged after the
/// server applied the request. A signed BADTIME is the clock, not the key.
#[test]
fn only_a_signed_refusal_says_nothing_was_changed() {
    let refusal = |rcode: ResponseCode, tsig: Option<&str>, signed: bool| {
        RegistryError::Refused {
            server: "192.0.2.1:53".parse().unwrap(),
            rcode: rcode_name(rcode),
            tsig_error: tsig.map(str::to_string),
            signed,
        }
        .to_string()
    };
    let forged = refusal(ResponseCode::Refused, None, false);
    assert!(!forged.contains("nothing was changed"), "{forged}");
    assert!(forged.contains("unverified"), "{forged}");
    let real = refusal(ResponseCode::Refused, None, true);
    assert!(real.ends_with("nothing was changed"), "{real}");
    let clock = refusal(ResponseCode::NotAuth, Some("BADTIME"), true);
    assert!(
        clock.contains("clock") && !clock.contains("not signed"),
        "{clock}"
    );
}

/// The probe that tells a primary checking updates against another SOA than the one it
/// serves: the SOA prerequisite alone (value-dependent, class IN, TTL 0), nothing to change.
#[test]
fn the_soa_probe_requires_the_soa_read_and_changes_nothing() {
    let r = registry();
    let soa = zone_soa(42);
    let message = r.soa_probe(&soa);
    assert_eq!(message.metadata.op_code, OpCode::Update);
    let (pre, updates) = sections(&message);
    assert!(updates.is_empty(), "nothing to change");
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0].dns_class, DNSClass::IN, "value-dependent");
    assert_eq!(pre[0].ttl, 0);
    assert_eq!(pre[0].data, RData::SOA(soa.soa.clone()));
}

/// A SOA of the test zone with `serial`.
fn zone_soa(serial: u32) -> ZoneSoa {
    use hickory_resolver::proto::rr::rdata::SOA;
    ZoneSoa {
        soa: SOA::new(
            Name::from_ascii("ns.iotregistry.test.").unwrap(),
            Name::from_ascii("hostmaster.iotregistry.test.").unwrap(),
            serial,
            3600,
            600,
            86400,
            60,
        ),
        ttl: 3600,
    }
}
