//! The proof state of one response: what hickory's marks, the AD bit or the error it returned
//! say about the asked name and type, as an [`Answer`]. Pure: it reads a response, asks nothing.
//! What it leaves to the network (an insecure verdict still to be proven) is
//! [`super::prove_insecure`]'s.

use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::Proof as HickoryProof;
use hickory_resolver::proto::op::{DnsResponse, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use super::super::resolver::{Answer, Outcome, Proof};

/// Turns a response (or a negative error) into an [`Answer`]; `Err` for failures that leave the
/// proof state undecided. In validating mode, an `Insecure` answer here is hickory's verdict and
/// still has to be proven.
pub(crate) fn classify(
    name: &Name,
    rtype: RecordType,
    result: Result<DnsResponse, NetError>,
    ad_mode: bool,
) -> Result<Answer, String> {
    let answer = |proof, outcome, ttl, why: Option<String>| Answer {
        name: name.clone(),
        rtype,
        proof,
        outcome,
        ttl,
        why,
    };
    match result {
        Ok(response) => Ok(classify_response(name, rtype, &response, ad_mode, answer)),
        Err(NetError::Dns(DnsError::NoRecordsFound(none))) => {
            // A denial whose header (and AD bit) was lost on the way, as hickory's pool does with
            // negative answers: whether the resolver validated it is unknown. Neither secure nor
            // insecure ("no DANE" would let a forged denial switch DANE off): indeterminate,
            // never cached.
            let outcome = negative(none.response_code);
            let why = "the denial reached us without its header (AD bit)";
            Ok(answer(Proof::Indeterminate, outcome, 0, Some(why.into())))
        }
        Err(NetError::Dns(DnsError::Nsec {
            response, proof, ..
        })) => Ok(refused_for_its_nsec(name, rtype, &response, proof)),
        Err(NetError::Dns(DnsError::DnssecBogus)) => Ok(answer(
            Proof::Bogus,
            Outcome::NoData,
            0,
            Some("hickory found it bogus".into()),
        )),
        Err(NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))) => Err(
            "the server answered SERVFAIL (a validating resolver does so for bogus data)".into(),
        ),
        Err(e) => Err(e.to_string()),
    }
}

/// An answer hickory refused because its NSEC/NSEC3 records (with the verdict `proof`) do not
/// prove what they should.
fn refused_for_its_nsec(
    name: &Name,
    rtype: RecordType,
    response: &DnsResponse,
    proof: HickoryProof,
) -> Answer {
    let answer = |proof, outcome, ttl, why: Option<String>| Answer {
        name: name.clone(),
        rtype,
        proof,
        outcome,
        ttl,
        why,
    };
    if has_answer(name, rtype, response) {
        // A positive answer refused for its denial records: hickory's wildcard check wants
        // an NSEC that the usual zone layout does not have. The RFC's own check decides.
        return match super::wildcard_expansion(name, rtype, response) {
            Ok(()) => classify_response(name, rtype, response, false, answer),
            Err(why) => answer(Proof::Bogus, negative(response.response_code), 0, Some(why)),
        };
    }
    let outcome = negative(response.response_code);
    let ttl = response.negative_ttl().unwrap_or(0);
    let why = format!("its NSEC/NSEC3 records do not prove the denial ({proof})");
    answer(from_hickory(proof), outcome, ttl, Some(why))
}

fn negative(code: ResponseCode) -> Outcome {
    if code == ResponseCode::NXDomain {
        Outcome::NxDomain
    } else {
        Outcome::NoData
    }
}

/// Whether the response holds records of `rtype` (or a CNAME) at `name`.
fn has_answer(name: &Name, rtype: RecordType, response: &DnsResponse) -> bool {
    response.answers.iter().any(|r| {
        (r.record_type() == rtype || r.record_type() == RecordType::CNAME)
            && r.name.to_lowercase() == *name
    })
}

fn classify_response(
    name: &Name,
    rtype: RecordType,
    response: &DnsResponse,
    ad_mode: bool,
    answer: impl Fn(Proof, Outcome, u32, Option<String>) -> Answer,
) -> Answer {
    let proof_of = |proofs: &mut dyn Iterator<Item = HickoryProof>| {
        if ad_mode {
            return if response.metadata.authentic_data {
                Proof::Secure
            } else {
                Proof::Insecure
            };
        }
        proofs.fold(Proof::Secure, |p, q| p.weakest(from_hickory(q)))
    };
    let at_name = |t: RecordType| {
        response
            .answers
            .iter()
            .filter(move |r| r.record_type() == t && r.name.to_lowercase() == *name)
    };
    let records: Vec<_> = at_name(rtype).collect();
    if !records.is_empty() {
        let proof = proof_of(&mut records.iter().map(|r| r.proof));
        let ttl = records.iter().map(|r| r.ttl).min().unwrap_or(0);
        let data = records.iter().map(|r| r.data.clone()).collect();
        return answer(proof, Outcome::Records(data), ttl, None);
    }
    if let Some(cname) = at_name(RecordType::CNAME).next() {
        if let RData::CNAME(target) = &cname.data {
            let proof = proof_of(&mut std::iter::once(cname.proof));
            let target = target.0.to_lowercase();
            return answer(proof, Outcome::Alias(target), cname.ttl, None);
        }
    }
    let outcome = negative(response.response_code);
    let ttl = response.negative_ttl().unwrap_or(0);
    if ad_mode {
        return answer(proof_of(&mut std::iter::empty()), outcome, ttl, None);
    }
    // A denial that passed validation: secure only when a validated NSEC/NSEC3 proves it.
    if super::denial_is_proven(response) {
        return answer(Proof::Secure, outcome, ttl, None);
    }
    // hickory let an unproven denial through: its unsigned records must at least be those of
    // the name's own zone before the insecurity is proven (by the caller).
    match super::foreign_denial_record(name, response) {
        Some(why) => answer(Proof::Bogus, outcome, ttl, Some(why)),
        None => answer(Proof::Insecure, outcome, ttl, None),
    }
}

/// hickory's mark on a record as one of the four states (its "indeterminate" and any later
/// addition count as indeterminate: never secure).
fn from_hickory(proof: HickoryProof) -> Proof {
    match proof {
        HickoryProof::Secure => Proof::Secure,
        HickoryProof::Insecure => Proof::Insecure,
        HickoryProof::Bogus => Proof::Bogus,
        _ => Proof::Indeterminate,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{
        n, nsec, nsec_proof, record, response, soa, tlsa, tlsa_response, wildcard_answer, DEVICE,
        QNAME,
    };
    use super::*;
    use hickory_resolver::net::NoRecords;
    use hickory_resolver::proto::op::Query;
    use hickory_resolver::proto::rr::rdata::CNAME;
    use HickoryProof::{Bogus, Insecure, Secure};

    const TLSA: RecordType = RecordType::TLSA;

    fn validated(response: DnsResponse) -> Result<Answer, String> {
        classify(&n(QNAME), TLSA, Ok(response), false)
    }

    fn with_ad_bit(mut response: DnsResponse, ad: bool) -> Result<Answer, String> {
        response.metadata.authentic_data = ad;
        classify(&n(QNAME), TLSA, Ok(response), true)
    }

    /// A denial that arrives as hickory's "no records" error has lost its header and AD bit:
    /// its proof state is unknown, so it is neither insecure ("no DANE") nor cached.
    #[test]
    fn a_denial_without_its_header_is_indeterminate() {
        let name = n(QNAME);
        let mut none = NoRecords::new(Query::query(name.clone(), TLSA), ResponseCode::NXDomain);
        none.negative_ttl = Some(300);
        let error = NetError::Dns(DnsError::NoRecordsFound(none));
        for ad_mode in [true, false] {
            let answer = classify(&name, TLSA, Err(error.clone()), ad_mode).unwrap();
            assert_eq!(answer.proof, Proof::Indeterminate);
            assert_eq!(answer.outcome, Outcome::NxDomain);
            assert_eq!(answer.ttl, 0);
        }
    }

    #[test]
    fn records_are_as_proven_as_their_weakest_and_live_as_long_as_their_shortest() {
        let mut short = tlsa(QNAME, Secure);
        short.ttl = 60;
        let secure = validated(tlsa_response(
            QNAME,
            vec![tlsa(QNAME, Secure), short],
            vec![],
        ));
        let secure = secure.unwrap();
        assert_eq!(secure.proof, Proof::Secure);
        assert_eq!(secure.records().len(), 2);
        assert_eq!(secure.ttl, 60);

        let mixed = vec![tlsa(QNAME, Secure), tlsa(QNAME, Bogus)];
        let mixed = validated(tlsa_response(QNAME, mixed, vec![])).unwrap();
        assert_eq!(mixed.proof, Proof::Bogus);
        let unsigned = validated(tlsa_response(QNAME, vec![tlsa(QNAME, Insecure)], vec![]));
        assert_eq!(
            unsigned.unwrap().proof,
            Proof::Insecure,
            "still to be proven"
        );
    }

    #[test]
    fn records_at_another_name_are_not_the_answer() {
        let elsewhere = validated(tlsa_response(
            QNAME,
            vec![tlsa("_25._tcp.host.example.test.", Secure)],
            vec![
                soa("example.test.", Secure),
                nsec(QNAME, "z.example.test.", &[]),
            ],
        ));
        let elsewhere = elsewhere.unwrap();
        assert_eq!(elsewhere.outcome, Outcome::NoData);
        assert!(elsewhere.records().is_empty());
    }

    #[test]
    fn an_alias_names_its_lower_cased_target() {
        let target = Name::from_ascii("Target.Example.Test.").unwrap();
        let cname = record(QNAME, RData::CNAME(CNAME(target)), Secure);
        let alias = validated(tlsa_response(QNAME, vec![cname], vec![])).unwrap();
        assert_eq!(alias.outcome, Outcome::Alias(n("target.example.test.")));
        assert_eq!(alias.proof, Proof::Secure);
    }

    #[test]
    fn denials_are_secure_only_with_a_validated_nsec() {
        let proven = validated(tlsa_response(
            QNAME,
            vec![],
            vec![
                soa("example.test.", Secure),
                nsec(QNAME, "z.example.test.", &[]),
            ],
        ))
        .unwrap();
        assert_eq!(
            (proven.proof, proven.outcome),
            (Proof::Secure, Outcome::NoData)
        );
        assert_eq!(proven.ttl, 5, "the negative TTL (SOA minimum)");

        let nx = response(
            QNAME,
            TLSA,
            ResponseCode::NXDomain,
            vec![],
            vec![
                soa("example.test.", Secure),
                nsec("a.example.test.", "z.example.test.", &[]),
            ],
        );
        assert_eq!(validated(nx).unwrap().outcome, Outcome::NxDomain);

        // Unsigned, in the name's own zone: insecure for now, proven or not by the caller.
        let own = tlsa_response(QNAME, vec![], vec![soa("example.test.", Insecure)]);
        assert_eq!(validated(own).unwrap().proof, Proof::Insecure);

        // Unsigned, from another zone: a forgery, named.
        let forged = tlsa_response(QNAME, vec![], vec![soa("insecure.test.", Insecure)]);
        let forged = validated(forged).unwrap();
        assert_eq!(forged.proof, Proof::Bogus);
        assert!(forged.why.unwrap().contains("insecure.test."));
    }

    #[test]
    fn the_ad_bit_alone_decides_in_ad_mode() {
        let answer = || tlsa_response(QNAME, vec![tlsa(QNAME, Insecure)], vec![]);
        assert_eq!(with_ad_bit(answer(), true).unwrap().proof, Proof::Secure);
        assert_eq!(with_ad_bit(answer(), false).unwrap().proof, Proof::Insecure);
        let denial = || tlsa_response(QNAME, vec![], vec![soa("example.test.", Insecure)]);
        let secure = with_ad_bit(denial(), true).unwrap();
        assert_eq!((secure.proof, secure.ttl), (Proof::Secure, 5));
        assert_eq!(with_ad_bit(denial(), false).unwrap().proof, Proof::Insecure);
    }

    #[test]
    fn failures_leave_the_state_undecided_or_bogus() {
        let name = n(QNAME);
        let servfail = NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail));
        let why = classify(&name, TLSA, Err(servfail), true).unwrap_err();
        assert!(why.contains("SERVFAIL"), "{why}");
        let bogus = classify(
            &name,
            TLSA,
            Err(NetError::Dns(DnsError::DnssecBogus)),
            false,
        );
        assert_eq!(bogus.unwrap().proof, Proof::Bogus);
        let timeout = classify(&name, TLSA, Err(NetError::from("timed out")), false);
        assert!(timeout.is_err());
    }

    #[test]
    fn a_denial_its_nsec_records_do_not_prove_takes_their_state() {
        let denial = tlsa_response(QNAME, vec![], vec![soa("example.test.", Secure)]);
        let answer = refused_for_its_nsec(&n(QNAME), TLSA, &denial, Bogus);
        assert_eq!(
            (answer.proof, answer.outcome),
            (Proof::Bogus, Outcome::NoData)
        );
        assert!(answer.why.unwrap().contains("do not prove the denial"));
    }

    #[test]
    fn a_wildcard_answer_hickory_refused_is_judged_by_the_rfc() {
        let name = n(DEVICE);
        let proven = wildcard_answer(nsec_proof(
            "*._device.example.test.",
            "www.example.test.",
            "example.test.",
        ));
        let answer = refused_for_its_nsec(&name, TLSA, &proven, Bogus);
        assert_eq!(answer.proof, Proof::Secure);
        assert_eq!(answer.records().len(), 1);

        let unproven = wildcard_answer(vec![]);
        let answer = refused_for_its_nsec(&name, TLSA, &unproven, Bogus);
        assert_eq!(answer.proof, Proof::Bogus);
        assert!(answer.why.unwrap().contains("wildcard"));
    }
}
