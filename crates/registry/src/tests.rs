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

fn tlsa(byte: u8) -> Tlsa {
    Tlsa {
        usage: 3,
        selector: 1,
        mtype: 1,
        data: vec![byte; 32],
    }
}

const NAME: &str = "d._device.iotregistry.test";

/// RFC 2136 puts the prerequisites in the answer section and the updates in the authority one.
fn sections(message: &Message) -> (&[Record], &[Record]) {
    (&message.answers, &message.authorities)
}

#[test]
fn publish_adds_in_class_in_with_no_prerequisite_and_beside_requires_the_set() {
    let r = registry();
    let message = r.publish_message(NAME, &tlsa(1), 120, false).unwrap();
    let (pre, updates) = sections(&message);
    assert!(pre.is_empty());
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].dns_class, DNSClass::IN);
    assert_eq!(updates[0].ttl, 120);
    assert_eq!(Tlsa::from_rdata(&updates[0].data), Some(tlsa(1)));
    assert_eq!(message.queries[0].name().to_string(), "iotregistry.test.");

    let message = r.publish_message(NAME, &tlsa(1), 120, true).unwrap();
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
    let message = registry().revoke_all_message(NAME).unwrap();
    let (pre, updates) = sections(&message);
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0].dns_class, DNSClass::ANY);
    assert_eq!(pre[0].record_type(), RecordType::TLSA);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].dns_class, DNSClass::ANY, "delete an RRset");
    assert_eq!(updates[0].record_type(), RecordType::TLSA);
}

#[test]
fn removing_records_requires_the_set_as_it_was_seen() {
    let r = registry();
    let current = RecordsAt {
        records: vec![tlsa(1), tlsa(2)],
        ttl: 300,
    };
    let message = r
        .remove_records_message(NAME, &current, &[tlsa(1)])
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
    let message = r.remove_records_message(NAME, &none, &[tlsa(1)]).unwrap();
    assert_eq!(message.answers[0].dns_class, DNSClass::ANY);
}

/// hickory's builders assert that the name is in the zone: a name outside it must be an
/// error here, never a panic there.
#[test]
fn a_name_outside_the_zone_is_an_error_not_a_panic() {
    let r = registry();
    let outside = "d._device.example.test";
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
    assert!(r
        .publish_message("not a name..", &tlsa(1), 1, false)
        .is_err());
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
