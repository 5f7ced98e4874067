//! The proof checks on responses built record by record, with the marks hickory's validator
//! would have left on them.

use super::*;

use hickory_resolver::proto::dnssec::rdata::{SigInput, DS};
use hickory_resolver::proto::dnssec::{Algorithm, DigestType, Nsec3HashAlgorithm};
use hickory_resolver::proto::op::Message;
use hickory_resolver::proto::rr::rdata::{SOA, TLSA};
use hickory_resolver::proto::rr::SerialNumber;

use Proof::{Insecure, Secure};

pub(super) fn n(name: &str) -> Name {
    Name::from_ascii(name).unwrap()
}

pub(super) fn record(owner: &str, data: RData, proof: Proof) -> Record {
    let mut r = Record::from_rdata(n(owner), 300, data);
    r.proof = proof;
    r
}

pub(super) fn soa(zone: &str, proof: Proof) -> Record {
    let data = SOA::new(n("ns.test."), n("hostmaster.test."), 1, 3600, 600, 86400, 5);
    record(zone, RData::SOA(data), proof)
}

pub(super) fn nsec(owner: &str, next: &str, types: &[RecordType]) -> Record {
    let data = NSEC::new(n(next), types.iter().copied());
    record(owner, RData::DNSSEC(DNSSECRData::NSEC(data)), Secure)
}

pub(super) fn rrsig(
    owner: &str,
    covered: RecordType,
    labels: u8,
    signer: &str,
    proof: Proof,
) -> Record {
    let input = SigInput {
        type_covered: covered,
        algorithm: Algorithm::ECDSAP256SHA256,
        num_labels: labels,
        original_ttl: 300,
        sig_expiration: SerialNumber::new(0),
        sig_inception: SerialNumber::new(0),
        key_tag: 1,
        signer_name: n(signer),
    };
    let data = RRSIG::from_sig(input, vec![0; 64]);
    record(owner, RData::DNSSEC(DNSSECRData::RRSIG(data)), proof)
}

pub(super) fn tlsa(owner: &str, proof: Proof) -> Record {
    let data = TLSA::new(3u8.into(), 1u8.into(), 1u8.into(), vec![0xab; 32]);
    record(owner, RData::TLSA(data), proof)
}

fn ds(owner: &str, algorithm: Algorithm) -> Record {
    let data = DS::new(1, algorithm, DigestType::SHA256, vec![0xcd; 32]);
    record(owner, RData::DNSSEC(DNSSECRData::DS(data)), Secure)
}

/// A DS RRset at `owner` with its validated signature by `signer`.
fn signed_ds_rrset(owner: &str, algorithm: Algorithm, signer: &str) -> Vec<Record> {
    let labels = n(owner).num_labels();
    vec![
        ds(owner, algorithm),
        rrsig(owner, RecordType::DS, labels, signer, Secure),
    ]
}

/// An NSEC with its validated signature by `signer`.
fn signed_nsec(owner: &str, next: &str, types: &[RecordType], signer: &str) -> Vec<Record> {
    let labels = n(owner).num_labels();
    vec![
        nsec(owner, next, types),
        rrsig(owner, RecordType::NSEC, labels, signer, Secure),
    ]
}

pub(super) fn response(
    qname: &str,
    qtype: RecordType,
    code: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
) -> DnsResponse {
    let mut message = Message::query();
    message.add_query(Query::query(n(qname), qtype));
    let mut message = message.into_response();
    message.metadata.response_code = code;
    for r in answers {
        message.add_answer(r);
    }
    for r in authorities {
        message.add_authority(r);
    }
    DnsResponse::from_message(message).unwrap()
}

/// The NOERROR answer to the DS query for `cut`.
fn ds_response(cut: &str, answers: Vec<Record>, authorities: Vec<Record>) -> DnsResponse {
    response(
        cut,
        RecordType::DS,
        ResponseCode::NoError,
        answers,
        authorities,
    )
}

/// The NOERROR answer to the TLSA query for `qname`.
pub(super) fn tlsa_response(
    qname: &str,
    answers: Vec<Record>,
    authorities: Vec<Record>,
) -> DnsResponse {
    response(
        qname,
        RecordType::TLSA,
        ResponseCode::NoError,
        answers,
        authorities,
    )
}

pub(super) const QNAME: &str = "_443._tcp.host.example.test.";

#[test]
fn a_foreign_insecure_soa_in_a_denial_is_named() {
    let forged = tlsa_response(QNAME, vec![], vec![soa("insecure.test.", Insecure)]);
    let why = foreign_denial_record(&n(QNAME), &forged).expect("foreign SOA");
    assert!(why.contains("SOA record of insecure.test."), "{why}");
    assert!(why.contains(QNAME), "{why}");

    // The SOA of the name's own zone (or the name itself) is where an insecure denial's SOA is.
    for zone in ["example.test.", QNAME, "test."] {
        let own = tlsa_response(QNAME, vec![], vec![soa(zone, Insecure)]);
        assert_eq!(foreign_denial_record(&n(QNAME), &own), None, "{zone}");
    }
}

#[test]
fn ds_answers_along_the_path() {
    let (zone, cut) = (n("test."), n("example.test."));
    let signed = ds_response(
        "example.test.",
        signed_ds_rrset("example.test.", Algorithm::ECDSAP256SHA256, "test."),
        vec![],
    );
    assert_eq!(ds_step(&zone, &cut, Ok(signed)), DsStep::Signed);

    let exotic = ds_response(
        "example.test.",
        signed_ds_rrset("example.test.", Algorithm::Unknown(253), "test."),
        vec![],
    );
    assert!(
        matches!(ds_step(&zone, &cut, Ok(exotic)), DsStep::Unsigned(why) if why.contains("algorithms"))
    );

    let with_soa = |nsec: Vec<Record>| {
        let mut authorities = vec![soa("test.", Secure)];
        authorities.extend(nsec);
        authorities
    };
    let delegation = ds_response(
        "example.test.",
        vec![],
        with_soa(signed_nsec(
            "example.test.",
            "iotregistry.test.",
            &[RecordType::NS, RecordType::NSEC],
            "test.",
        )),
    );
    assert!(
        matches!(ds_step(&zone, &cut, Ok(delegation)), DsStep::Unsigned(why) if why.contains("without DS"))
    );

    let inside = ds_response(
        "example.test.",
        vec![],
        with_soa(signed_nsec(
            "example.test.",
            "iotregistry.test.",
            &[RecordType::A, RecordType::NSEC],
            "test.",
        )),
    );
    assert_eq!(ds_step(&zone, &cut, Ok(inside)), DsStep::NoCut);

    let missing = response(
        "example.test.",
        RecordType::DS,
        ResponseCode::NXDomain,
        vec![],
        with_soa(signed_nsec(
            "bogus.test.",
            "insecure.test.",
            &[RecordType::NS],
            "test.",
        )),
    );
    assert_eq!(ds_step(&zone, &cut, Ok(missing)), DsStep::NoSuchName);
}

/// The evidence at a cut must come from the zone that holds it: a genuine DS RRset, or NSEC,
/// signed by another zone proves nothing there.
#[test]
fn ds_answers_signed_by_another_zone_prove_nothing() {
    let (zone, cut) = (n("example.test."), n("host.example.test."));
    let grandparent_nsec = ds_response(
        "host.example.test.",
        vec![],
        signed_nsec(
            "host.example.test.",
            "iotregistry.test.",
            &[RecordType::NS, RecordType::NSEC],
            "test.",
        ),
    );
    let Some(DsStep::Bogus(why)) = Some(ds_step(&zone, &cut, Ok(grandparent_nsec))) else {
        panic!("an NSEC of test. is no evidence at a cut in example.test.");
    };
    assert!(why.contains("example.test., the signed zone"), "{why}");

    let unsigned_nsec = ds_response(
        "host.example.test.",
        vec![],
        vec![nsec(
            "host.example.test.",
            "www.example.test.",
            &[RecordType::NS, RecordType::NSEC],
        )],
    );
    assert!(matches!(
        ds_step(&zone, &cut, Ok(unsigned_nsec)),
        DsStep::Bogus(_)
    ));

    let foreign_ds = ds_response(
        "host.example.test.",
        signed_ds_rrset("host.example.test.", Algorithm::Unknown(253), "test."),
        vec![],
    );
    assert!(matches!(
        ds_step(&zone, &cut, Ok(foreign_ds)),
        DsStep::Bogus(why) if why.contains("not signed by example.test.")
    ));
}

#[test]
fn an_unproven_ds_denial_proves_nothing() {
    let (zone, cut) = (n("test."), n("example.test."));
    // The forged shape one level up: an unsigned SOA and no NSEC.
    let forged = ds_response(
        "example.test.",
        vec![],
        vec![soa("insecure.test.", Insecure)],
    );
    assert!(
        matches!(ds_step(&zone, &cut, Ok(forged)), DsStep::Bogus(why) if why.contains("no validated NSEC"))
    );

    // An NSEC hickory did not validate is no evidence.
    let mut unvalidated = nsec("example.test.", "iotregistry.test.", &[RecordType::NS]);
    unvalidated.proof = Insecure;
    let unvalidated = ds_response("example.test.", vec![], vec![unvalidated]);
    assert!(matches!(
        ds_step(&zone, &cut, Ok(unvalidated)),
        DsStep::Bogus(_)
    ));

    let mut insecure_ds = ds("example.test.", Algorithm::ECDSAP256SHA256);
    insecure_ds.proof = Insecure;
    let insecure_ds = ds_response("example.test.", vec![insecure_ds], vec![]);
    assert!(matches!(
        ds_step(&zone, &cut, Ok(insecure_ds)),
        DsStep::Bogus(_)
    ));

    assert!(matches!(
        ds_step(&zone, &cut, Err(NetError::Timeout)),
        DsStep::Failed(_)
    ));
    assert!(matches!(
        ds_step(&zone, &cut, Err(NetError::Dns(DnsError::DnssecBogus))),
        DsStep::Bogus(_)
    ));
}

fn nsec3(owner_label: &str, next: Vec<u8>, opt_out: bool, types: &[RecordType]) -> Record {
    nsec3_of("test.", owner_label, next, opt_out, types)
}

fn nsec3_of(
    zone: &str,
    owner_label: &str,
    next: Vec<u8>,
    opt_out: bool,
    types: &[RecordType],
) -> Record {
    let data = NSEC3::new(
        Nsec3HashAlgorithm::SHA1,
        opt_out,
        0,
        vec![],
        next,
        types.iter().copied(),
    );
    let owner = format!("{owner_label}.{zone}");
    record(&owner, RData::DNSSEC(DNSSECRData::NSEC3(data)), Secure)
}

fn hash_label(name: &str) -> String {
    let digest = Nsec3HashAlgorithm::SHA1.hash(&[], &n(name), 0).unwrap();
    base32hex(digest.as_ref())
}

/// The NSEC3 of the apex of `zone` (the closest encloser of its children), without opt-out so
/// that only the other NSEC3 of a test can allow an unsigned delegation.
fn apex_nsec3(zone: &str) -> Record {
    let types = [RecordType::SOA, RecordType::NS, RecordType::DNSKEY];
    nsec3_of(zone, &hash_label(zone), vec![0xff; 20], false, &types)
}

fn ds_denial(authorities: Vec<Record>) -> DnsResponse {
    ds_response("example.test.", vec![], authorities)
}

#[test]
fn nsec3_delegations() {
    let (zone, cut) = (n("test."), n("example.test."));
    let own = hash_label("example.test.");
    let delegation = nsec3(&own, vec![0xff; 20], false, &[RecordType::NS]);
    assert!(matches!(
        ds_step(&zone, &cut, Ok(ds_denial(vec![delegation]))),
        DsStep::Unsigned(why) if why.contains("NSEC3 of test. matching")
    ));
    let ordinary = nsec3(&own, vec![0xff; 20], false, &[RecordType::A]);
    assert_eq!(
        ds_step(&zone, &cut, Ok(ds_denial(vec![ordinary]))),
        DsStep::NoCut
    );

    // From the lowest hash to the highest: covers every other hash. With the NSEC3 matching the
    // closest encloser (the apex), the closest encloser proof of RFC 5155 §7.2.4 is complete.
    let lowest = "0".repeat(32);
    let opt_out = || nsec3(&lowest, vec![0xff; 20], true, &[RecordType::NS]);
    assert!(matches!(
        ds_step(&zone, &cut, Ok(ds_denial(vec![opt_out(), apex_nsec3("test.")]))),
        DsStep::Unsigned(why) if why.contains("opt-out") && why.contains("closest encloser test.")
    ));
    // Without it, the covering opt-out NSEC3 proves nothing.
    assert_eq!(
        ds_step(&zone, &cut, Ok(ds_denial(vec![opt_out()]))),
        DsStep::NoCut
    );
    let plain = nsec3(&lowest, vec![0xff; 20], false, &[RecordType::NS]);
    let plain = ds_denial(vec![plain, apex_nsec3("test.")]);
    assert_eq!(ds_step(&zone, &cut, Ok(plain)), DsStep::NoCut);
    // An NSEC3 of the zone below the cut (its own chain) says nothing about the cut.
    let child = nsec3_of(
        "example.test.",
        &own,
        vec![0xff; 20],
        true,
        &[RecordType::NS],
    );
    assert!(matches!(
        ds_step(&zone, &cut, Ok(ds_denial(vec![child]))),
        DsStep::Bogus(why) if why.contains("no validated NSEC or NSEC3 of test.")
    ));
}

#[test]
fn base32hex_and_circular_order() {
    // RFC 4648 §10 test vectors, lower case and unpadded.
    assert_eq!(base32hex(b"f"), "co");
    assert_eq!(base32hex(b"fo"), "cpng");
    assert_eq!(base32hex(b"foo"), "cpnmu");
    assert_eq!(base32hex(b"foob"), "cpnmuog");
    assert_eq!(base32hex(b"fooba"), "cpnmuoj1");
    assert_eq!(base32hex(b"foobar"), "cpnmuoj1e8");
    assert!(covers("b", "c", "d"));
    assert!(!covers("b", "e", "d"));
    assert!(!covers("b", "b", "d"));
    // The last NSEC3 of the chain wraps around to the first.
    assert!(covers("x", "z", "b"));
    assert!(covers("x", "a", "b"));
    assert!(!covers("x", "c", "b"));
}

pub(super) const DEVICE: &str = "dev1._device.example.test.";

pub(super) fn wildcard_answer(authorities: Vec<Record>) -> DnsResponse {
    tlsa_response(
        DEVICE,
        vec![
            tlsa(DEVICE, Secure),
            rrsig(DEVICE, RecordType::TLSA, 3, "example.test.", Secure),
        ],
        authorities,
    )
}

pub(super) fn nsec_proof(owner: &str, next: &str, signer: &str) -> Vec<Record> {
    let labels = n(owner).num_labels();
    vec![
        nsec(
            owner,
            next,
            &[RecordType::TLSA, RecordType::RRSIG, RecordType::NSEC],
        ),
        rrsig(owner, RecordType::NSEC, labels, signer, Secure),
    ]
}

#[test]
fn wildcard_expansion_with_the_nsec_owned_by_the_wildcard() {
    let name = n(DEVICE);
    let usual = wildcard_answer(nsec_proof(
        "*._device.example.test.",
        "www.example.test.",
        "example.test.",
    ));
    assert_eq!(wildcard_expansion(&name, RecordType::TLSA, &usual), Ok(()));
    // The last NSEC of the zone, pointing back to the apex.
    let wrapping = wildcard_answer(nsec_proof(
        "*._device.example.test.",
        "example.test.",
        "example.test.",
    ));
    assert_eq!(
        wildcard_expansion(&name, RecordType::TLSA, &wrapping),
        Ok(())
    );
}

#[test]
fn wildcard_expansion_without_its_proof_is_refused() {
    let name = n(DEVICE);
    let bare = wildcard_answer(vec![]);
    let why = wildcard_expansion(&name, RecordType::TLSA, &bare).unwrap_err();
    assert!(
        why.contains("*._device.example.test.") && why.contains("does not exist"),
        "{why}"
    );

    // An NSEC that does not cover the name (it comes after it).
    let after = wildcard_answer(nsec_proof(
        "e._device.example.test.",
        "www.example.test.",
        "example.test.",
    ));
    assert!(wildcard_expansion(&name, RecordType::TLSA, &after).is_err());

    // An NSEC signed by another zone.
    let foreign = wildcard_answer(nsec_proof(
        "*._device.example.test.",
        "www.example.test.",
        "test.",
    ));
    assert!(wildcard_expansion(&name, RecordType::TLSA, &foreign).is_err());

    // An NSEC that hickory did not validate.
    let mut unvalidated = nsec_proof(
        "*._device.example.test.",
        "www.example.test.",
        "example.test.",
    );
    unvalidated[0].proof = Insecure;
    assert!(wildcard_expansion(&name, RecordType::TLSA, &wildcard_answer(unvalidated)).is_err());
}

#[test]
fn wildcard_expansion_over_an_existing_closer_name_is_refused() {
    // `sub._device` exists, so `*._device` must not answer for `dev1.sub._device`.
    let deeper = "dev1.sub._device.example.test.";
    let answer = tlsa_response(
        deeper,
        vec![
            tlsa(deeper, Secure),
            rrsig(deeper, RecordType::TLSA, 3, "example.test.", Secure),
        ],
        nsec_proof(
            "sub._device.example.test.",
            "www.example.test.",
            "example.test.",
        ),
    );
    let why = wildcard_expansion(&n(deeper), RecordType::TLSA, &answer).unwrap_err();
    assert!(why.contains("does not exist"), "{why}");
}

#[test]
fn only_validated_wildcard_expansions_are_rechecked() {
    let name = n(DEVICE);
    let proof = || {
        nsec_proof(
            "*._device.example.test.",
            "www.example.test.",
            "example.test.",
        )
    };
    let unsigned = tlsa_response(DEVICE, vec![tlsa(DEVICE, Insecure)], proof());
    assert!(wildcard_expansion(&name, RecordType::TLSA, &unsigned).is_err());
    // Labels field equal to the owner's: not an expansion, nothing to excuse.
    let plain = tlsa_response(
        DEVICE,
        vec![
            tlsa(DEVICE, Secure),
            rrsig(DEVICE, RecordType::TLSA, 4, "example.test.", Secure),
        ],
        proof(),
    );
    let why = wildcard_expansion(&name, RecordType::TLSA, &plain).unwrap_err();
    assert!(why.contains("not a wildcard expansion"), "{why}");
}

#[test]
fn a_parent_side_delegation_nsec_denies_nothing_below_it() {
    let nsec = NSEC::new(n("iotregistry.test."), [RecordType::NS, RecordType::DS]);
    let owner = n("example.test.");
    let name = n("dev1._device.example.test.");
    assert!(!nsec_denies_below(
        &owner,
        &nsec,
        &name,
        &n("test."),
        &n("test.")
    ));
}

#[test]
fn denials_with_validated_nsec_are_proven() {
    let proven = tlsa_response(
        QNAME,
        vec![],
        vec![
            soa("example.test.", Secure),
            nsec(QNAME, "www.example.test.", &[RecordType::A]),
        ],
    );
    assert!(denial_is_proven(&proven));
    let forged = tlsa_response(QNAME, vec![], vec![soa("insecure.test.", Insecure)]);
    assert!(!denial_is_proven(&forged));
}

/// A validating handle with canned, already validated answers to `<name> DS`; anything else
/// times out. It remembers what was asked.
#[derive(Clone, Default)]
struct Validated {
    answers: std::sync::Arc<std::collections::HashMap<Name, DnsResponse>>,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl DnsHandle for Validated {
    type Response =
        futures_util::stream::Once<futures_util::future::Ready<Result<DnsResponse, NetError>>>;
    type Runtime = hickory_resolver::net::runtime::TokioRuntimeProvider;

    fn send(&self, request: hickory_resolver::proto::op::DnsRequest) -> Self::Response {
        let query = request.queries.first().expect("a question").clone();
        assert_eq!(
            query.query_type(),
            RecordType::DS,
            "only DS RRsets are asked"
        );
        self.asked.lock().unwrap().push(query.name().to_string());
        let result = self
            .answers
            .get(query.name())
            .cloned()
            .ok_or(NetError::Timeout);
        futures_util::stream::once(futures_util::future::ready(result))
    }
}

fn validated(answers: Vec<DnsResponse>) -> Validated {
    let answers = answers
        .into_iter()
        .map(|r| (r.queries[0].name().clone(), r))
        .collect();
    Validated {
        answers: std::sync::Arc::new(answers),
        ..Validated::default()
    }
}

/// A DS RRset at `cut`, signed by its parent zone.
fn signed_ds(cut: &str) -> DnsResponse {
    let parent = n(cut).base_name().to_string();
    let answer = signed_ds_rrset(cut, Algorithm::ECDSAP256SHA256, &parent);
    ds_response(cut, answer, vec![])
}

/// No DS at `cut`: an NSEC of `zone` at `cut` with these types.
fn no_ds(zone: &str, cut: &str, types: &[RecordType]) -> DnsResponse {
    let mut denial = vec![soa(zone, Secure)];
    denial.extend(signed_nsec(cut, "zzz.example.test.", types, zone));
    ds_response(cut, vec![], denial)
}

fn walk(validator: &Validated, name: &str, rtype: RecordType) -> Result<String, Unproven> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let options = DnsRequestOptions::default();
    runtime.block_on(prove_insecure(validator, options, &n(name), rtype))
}

#[test]
fn the_walk_down_a_signed_path_ends_bogus() {
    let a = [RecordType::A];
    let validator = validated(vec![
        signed_ds("test."),
        signed_ds("example.test."),
        no_ds("example.test.", "host.example.test.", &a),
        no_ds("example.test.", "_tcp.host.example.test.", &a),
        no_ds("example.test.", QNAME, &[RecordType::TLSA]),
    ]);
    let Err(Unproven::Bogus(why)) = walk(&validator, QNAME, RecordType::TLSA) else {
        panic!("a name in a signed zone is not insecure");
    };
    assert!(why.contains("is in a signed zone"), "{why}");
    let asked = validator.asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        [
            "test.",
            "example.test.",
            "host.example.test.",
            "_tcp.host.example.test.",
            QNAME
        ]
    );
}

#[test]
fn the_walk_stops_at_the_first_unsigned_delegation() {
    let validator = validated(vec![
        signed_ds("test."),
        no_ds("test.", "example.test.", &[RecordType::NS]),
    ]);
    let how = walk(&validator, QNAME, RecordType::TLSA).expect("proven insecure");
    assert!(
        how.contains("example.test.") && how.contains("without DS"),
        "{how}"
    );
    assert_eq!(*validator.asked.lock().unwrap(), ["test.", "example.test."]);
}

#[test]
fn the_walk_refuses_a_missing_ancestor_and_reports_a_failed_look_up() {
    let gone = response(
        "host.example.test.",
        RecordType::DS,
        ResponseCode::NXDomain,
        vec![],
        signed_nsec(
            "b.example.test.",
            "c.example.test.",
            &[RecordType::A],
            "example.test.",
        ),
    );
    let validator = validated(vec![signed_ds("test."), signed_ds("example.test."), gone]);
    let Err(Unproven::Bogus(why)) = walk(&validator, QNAME, RecordType::TLSA) else {
        panic!("below a name that does not exist, nothing is insecure");
    };
    assert!(
        why.contains("host.example.test. provably does not exist"),
        "{why}"
    );

    // No answer for example.test. DS: undecided, not bogus and not insecure.
    let validator = validated(vec![signed_ds("test.")]);
    assert!(matches!(
        walk(&validator, QNAME, RecordType::TLSA),
        Err(Unproven::Indeterminate(_))
    ));
}

#[test]
fn a_ds_answer_is_proven_insecure_by_its_parent_only() {
    // The DS RRset of a name lives in the parent zone: the walk stops above the name.
    let validator = validated(vec![signed_ds("test.")]);
    let result = walk(&validator, "example.test.", RecordType::DS);
    assert!(matches!(result, Err(Unproven::Bogus(_))), "{result:?}");
    assert_eq!(*validator.asked.lock().unwrap(), ["test."]);
}

/// The attack of an on-path DNS forger when a grandparent zone uses NSEC3 opt-out: test. and
/// example.test. are signed (DS in the root and in test.), and the denial of a DS at
/// host.example.test. is made of genuine opt-out NSEC3 records of test. whose span covers the
/// name. Only example.test. can say whether host.example.test. is a delegation: bogus.
#[test]
fn a_grandparent_opt_out_nsec3_proves_nothing() {
    let covering = nsec3(&"0".repeat(32), vec![0xff; 20], true, &[RecordType::NS]);
    let forged = ds_response(
        "host.example.test.",
        vec![],
        vec![covering, apex_nsec3("test.")],
    );
    let validator = validated(vec![signed_ds("test."), signed_ds("example.test."), forged]);
    let Err(Unproven::Bogus(why)) = walk(&validator, QNAME, RecordType::TLSA) else {
        panic!("an opt-out NSEC3 of test. says nothing about a cut in example.test.");
    };
    assert!(
        why.contains("host.example.test.") && why.contains("NSEC3 of example.test."),
        "{why}"
    );

    // The same proof from example.test. itself is one.
    let own = nsec3_of(
        "example.test.",
        &"0".repeat(32),
        vec![0xff; 20],
        true,
        &[RecordType::NS],
    );
    let genuine = ds_response(
        "host.example.test.",
        vec![],
        vec![own, apex_nsec3("example.test.")],
    );
    let validator = validated(vec![
        signed_ds("test."),
        signed_ds("example.test."),
        genuine,
    ]);
    let how = walk(&validator, QNAME, RecordType::TLSA).expect("proven insecure");
    assert!(how.contains("opt-out NSEC3 of example.test."), "{how}");
}

/// The NSEC variant: an NSEC at host.example.test. showing NS without DS, validated but signed
/// by test., which does not hold that name (example.test. does).
#[test]
fn an_nsec_at_the_cut_signed_by_another_zone_proves_nothing() {
    let forged = ds_response(
        "host.example.test.",
        vec![],
        signed_nsec(
            "host.example.test.",
            "www.example.test.",
            &[RecordType::NS, RecordType::NSEC],
            "test.",
        ),
    );
    let validator = validated(vec![signed_ds("test."), signed_ds("example.test."), forged]);
    let Err(Unproven::Bogus(why)) = walk(&validator, QNAME, RecordType::TLSA) else {
        panic!("an NSEC signed by test. says nothing about a cut in example.test.");
    };
    assert!(why.contains("of example.test."), "{why}");

    let genuine = no_ds(
        "example.test.",
        "host.example.test.",
        &[RecordType::NS, RecordType::NSEC],
    );
    let validator = validated(vec![
        signed_ds("test."),
        signed_ds("example.test."),
        genuine,
    ]);
    let how = walk(&validator, QNAME, RecordType::TLSA).expect("proven insecure");
    assert!(
        how.contains("NSEC of example.test. at host.example.test."),
        "{how}"
    );
}
