//! The proof state of every response, and the states that hickory's validator leaves open,
//! decided here. [`classify`] turns one response (or hickory's error) into an answer with its
//! state, from hickory's marks or the AD bit; the rest of this module decides what it leaves open.
//!
//! hickory validates each RRset of a response on its own and marks it secure, insecure or
//! bogus; it gives no verdict for the message as a whole. Two gaps matter for DANE:
//! - *Insecure* must be proven (RFC 4035 §4.3, §5.2). hickory accepts a NODATA whose authority
//!   section holds nothing but the unsigned SOA of any provably insecure zone, wherever that
//!   zone is, so one forged packet would turn the TLSA records of a signed zone into "no DANE".
//!   Here an insecure answer stands only when its unsigned records belong to the queried name's
//!   own zone or an ancestor ([`foreign_denial_record`]) and a signed proof shows that there is
//!   no DS at some delegation between the trust anchor and the name ([`prove_insecure`]).
//!   Anything else inside a signed zone is bogus, including an NSEC3 denial whose iteration
//!   count is over hickory's soft limit, which hickory calls insecure (RFC 9276 §3.2 allows a
//!   validator to fail such answers).
//! - Wildcard expansions (RFC 4035 §5.3.4). hickory also wants an NSEC covering
//!   `*.<closest encloser>`, but in the usual layout the NSEC next to the queried name is owned
//!   by that wildcard itself, so it calls every wildcard answer bogus. [`wildcard_expansion`]
//!   checks the proof the RFC asks for instead.
//!
//! Only records hickory marked secure count as evidence: their signatures were checked up to the
//! trust anchor. Everything here reads the marks hickory left on a response; nothing trusts an
//! unsigned record.

use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::rdata::{DNSSECRData, NSEC, NSEC3, RRSIG};
use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::op::{DnsRequestOptions, DnsResponse, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

/// Why an answer hickory called insecure is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unproven {
    /// The evidence contradicts "insecure": the answer is bogus.
    Bogus(String),
    /// The evidence could not be fetched (time-out, unreachable server).
    Indeterminate(String),
}

/// What the validated DS answer at one name on the way down says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DsStep {
    /// A signed delegation with a usable DS: the zone below is signed, go on.
    Signed,
    /// No zone cut here (a name inside the zone, or an empty non-terminal): go on.
    NoCut,
    /// A proven unsigned delegation: everything below is insecure (how it was proven).
    Unsigned(String),
    /// The name provably does not exist.
    NoSuchName,
    /// The DS answer itself is not proven.
    Bogus(String),
    /// The DS answer could not be fetched.
    Failed(String),
}

/// Proves that `name` lies below an unsigned delegation: asks, through the validating handle,
/// for the DS RRset of every ancestor from the top-level label down to `name` (for a DS query,
/// down to its parent), and stops at the first signed proof that a delegation has no DS. Its
/// answers come from the handle's caches when the chain was built before. `Ok` says how it was
/// proven.
///
/// The answer to `<cut> DS` comes from the zone that holds `cut`: the deepest zone proven
/// signed so far on the way down, starting at the root (the only trust anchor the resolver
/// takes). Only that zone's records count as evidence there. A genuine denial from any other
/// signed zone (an opt-out NSEC3 of a grandparent whose span covers the name, an NSEC of
/// another zone) says nothing about this cut, and would let an attacker turn a name in a
/// signed zone into an "insecure" one.
pub(crate) async fn prove_insecure<H: DnsHandle>(
    validator: &H,
    options: DnsRequestOptions,
    name: &Name,
    rtype: RecordType,
) -> Result<String, Unproven> {
    let labels = name.num_labels();
    let deepest = if rtype == RecordType::DS {
        labels.saturating_sub(1)
    } else {
        labels
    };
    let mut zone = Name::root();
    for depth in 1..=deepest {
        let cut = name.trim_to(usize::from(depth));
        let query = Query::query(cut.clone(), RecordType::DS);
        let result = validator.lookup(query, options).first_answer().await;
        match ds_step(&zone, &cut, result) {
            DsStep::Signed => zone = cut,
            DsStep::NoCut => continue,
            DsStep::Unsigned(how) => return Ok(how),
            DsStep::NoSuchName => {
                return Err(Unproven::Bogus(format!(
                    "{cut} provably does not exist in its signed zone, so {name} cannot be \
                     in an unsigned one"
                )))
            }
            DsStep::Bogus(why) => return Err(Unproven::Bogus(why)),
            DsStep::Failed(why) => return Err(Unproven::Indeterminate(why)),
        }
    }
    Err(Unproven::Bogus(format!(
        "{name} is in a signed zone: no signed proof of a delegation without DS between the \
         root and {name}"
    )))
}

/// Reads the validated answer to `<cut> DS`, where `zone` is the signed zone that holds `cut`
/// (an ancestor of it): only records of `zone` are evidence.
pub(crate) fn ds_step(zone: &Name, cut: &Name, result: Result<DnsResponse, NetError>) -> DsStep {
    let response = match result {
        Ok(response) => response,
        Err(NetError::Dns(DnsError::Nsec { proof, .. })) => {
            return DsStep::Bogus(format!("the denial of a DS at {cut} is {proof}"))
        }
        Err(NetError::Dns(DnsError::DnssecBogus)) => {
            return DsStep::Bogus(format!("the DS answer at {cut} is bogus"))
        }
        Err(e) => return DsStep::Failed(format!("DS look-up of {cut}: {e}")),
    };
    let ds: Vec<&Record> = response
        .answers
        .iter()
        .filter(|r| r.record_type() == RecordType::DS && r.name == *cut)
        .collect();
    if !ds.is_empty() {
        return signed_ds_step(zone, cut, &ds, &response);
    }
    let nsecs: Vec<_> = secure_nsecs(&response)
        .into_iter()
        .filter(|(owner, _)| signed_by(&response.authorities, owner, RecordType::NSEC, zone))
        .collect();
    let nsec3s: Vec<_> = secure_nsec3s(&response)
        .into_iter()
        .filter(|(owner, _)| owner.base_name() == *zone)
        .collect();
    if nsecs.is_empty() && nsec3s.is_empty() {
        return DsStep::Bogus(format!(
            "the denial of a DS at {cut} carries no validated NSEC or NSEC3 of {zone}, the \
             signed zone that holds {cut}"
        ));
    }
    // hickory returns a denial with validated NSEC/NSEC3 records only when they prove it.
    let at_cut = nsecs.iter().find(|(owner, _)| *owner == cut);
    if let Some((_, nsec)) = at_cut {
        if is_unsigned_delegation(nsec.type_set().contains(RecordType::NS), |t| {
            nsec.type_set().contains(t)
        }) {
            return DsStep::Unsigned(format!(
                "the NSEC of {zone} at {cut} shows a delegation without DS"
            ));
        }
    }
    if let Some(how) = nsec3_unsigned_delegation(zone, cut, &nsec3s) {
        return DsStep::Unsigned(how);
    }
    if response.response_code == ResponseCode::NXDomain {
        return DsStep::NoSuchName;
    }
    DsStep::NoCut
}

fn signed_ds_step(zone: &Name, cut: &Name, ds: &[&Record], response: &DnsResponse) -> DsStep {
    if let Some(unproven) = ds.iter().find(|r| r.proof != Proof::Secure) {
        return DsStep::Bogus(format!(
            "the DS RRset at {cut} is {}, not secure",
            unproven.proof
        ));
    }
    if !signed_by(&response.answers, cut, RecordType::DS, zone) {
        return DsStep::Bogus(format!(
            "the DS RRset at {cut} is not signed by {zone}, the signed zone that holds {cut}"
        ));
    }
    let usable = ds.iter().any(|r| match &r.data {
        RData::DNSSEC(DNSSECRData::DS(ds)) => {
            ds.algorithm().is_supported() && ds.digest_type().is_supported()
        }
        _ => false,
    });
    if usable {
        DsStep::Signed
    } else {
        // RFC 4035 §5.2: a DS RRset of unsupported algorithms makes the zone below insecure.
        DsStep::Unsigned(format!(
            "the signed DS records of {cut} use only algorithms this validator does not support"
        ))
    }
}

/// Whether the validated signature over the `covered` RRset at `owner` names `zone` as signer.
fn signed_by(records: &[Record], owner: &Name, covered: RecordType, zone: &Name) -> bool {
    secure_signature(records, owner, covered).is_some_and(|sig| sig.input().signer_name == *zone)
}

/// A delegation (NS) that is not a zone apex (SOA) and has no DS.
fn is_unsigned_delegation(has_ns: bool, has: impl Fn(RecordType) -> bool) -> bool {
    has_ns && !has(RecordType::DS) && !has(RecordType::SOA)
}

/// RFC 5155 §8.6: an NSEC3 of `zone` matching `cut` that shows NS without DS proves an
/// unsigned delegation there; without one, an opt-out NSEC3 covering the next closer name,
/// with the NSEC3 matching its closest encloser (§7.2.4), allows only an unsigned delegation
/// at or above `cut`. `nsec3s` are the validated NSEC3 records of `zone`.
fn nsec3_unsigned_delegation(
    zone: &Name,
    cut: &Name,
    nsec3s: &[(&Name, &NSEC3)],
) -> Option<String> {
    if let Some(nsec3) = nsec3_matching(cut, nsec3s) {
        let types = nsec3.type_set();
        return is_unsigned_delegation(types.contains(RecordType::NS), |t| types.contains(t))
            .then(|| format!("the NSEC3 of {zone} matching {cut} shows a delegation without DS"));
    }
    // The closest encloser: the deepest ancestor of `cut` in `zone` that an NSEC3 matches.
    let encloser_labels = (zone.num_labels()..cut.num_labels())
        .rev()
        .find(|&labels| nsec3_matching(&cut.trim_to(usize::from(labels)), nsec3s).is_some())?;
    let encloser = cut.trim_to(usize::from(encloser_labels));
    let next_closer = cut.trim_to(usize::from(encloser_labels) + 1);
    let opt_out = nsec3s
        .iter()
        .any(|(owner, nsec3)| nsec3.opt_out() && nsec3_covers(owner, nsec3, &next_closer));
    opt_out.then(|| {
        format!(
            "an opt-out NSEC3 of {zone} covers {next_closer} and one matches its closest \
             encloser {encloser}: any delegation at {cut} is unsigned"
        )
    })
}

/// The NSEC3 whose owner is the hash of `name`.
fn nsec3_matching<'a>(name: &Name, nsec3s: &[(&Name, &'a NSEC3)]) -> Option<&'a NSEC3> {
    nsec3s.iter().find_map(|(owner, nsec3)| {
        let hash = nsec3_hash(name, nsec3)?;
        (first_label(owner)? == hash).then_some(*nsec3)
    })
}

/// Whether the NSEC3 `owner -> next` covers the hash of `name` (strictly between).
fn nsec3_covers(owner: &Name, nsec3: &NSEC3, name: &Name) -> bool {
    let (Some(owner_hash), Some(hash)) = (first_label(owner), nsec3_hash(name, nsec3)) else {
        return false;
    };
    covers(
        &owner_hash,
        &hash,
        &base32hex(nsec3.next_hashed_owner_name()),
    )
}

/// Whether `hash` lies strictly between `owner` and `next` in the (circular) hash order.
/// Base32hex keeps the order of the bytes it encodes, so the encoded labels compare as the
/// hashes do.
fn covers(owner: &str, hash: &str, next: &str) -> bool {
    if owner < next {
        owner < hash && hash < next
    } else {
        hash > owner || hash < next
    }
}

/// The NSEC3 hash of `name` with the parameters of `nsec3`, as its owner label spells it.
fn nsec3_hash(name: &Name, nsec3: &NSEC3) -> Option<String> {
    let digest = nsec3
        .hash_algorithm()
        .hash(nsec3.salt(), name, nsec3.iterations())
        .ok()?;
    Some(base32hex(digest.as_ref()))
}

fn first_label(name: &Name) -> Option<String> {
    let label = name.iter().next()?;
    Some(String::from_utf8_lossy(label).to_ascii_lowercase())
}

/// RFC 4648 base32 with the extended hex alphabet, lower case, unpadded (NSEC3 owner labels).
fn base32hex(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u16, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[usize::from((buffer >> bits) & 0x1f)] as char);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)] as char);
    }
    out
}

/// An unsigned record in the authority section of an unproven denial of `name` that is not at
/// `name` or one of its ancestors: the records that make a denial insecure belong to the zone
/// the name is in, so such a record was pasted in from elsewhere.
pub(crate) fn foreign_denial_record(name: &Name, response: &DnsResponse) -> Option<String> {
    response
        .authorities
        .iter()
        .filter(|r| r.record_type() != RecordType::RRSIG && r.proof != Proof::Secure)
        .find(|r| !r.name.zone_of(name))
        .map(|r| {
            format!(
                "the denial of {name} carries the {} record of {} ({}), which is neither {name} \
                 nor one of its ancestors",
                r.record_type(),
                r.name,
                r.proof
            )
        })
}

/// RFC 4035 §5.3.4: checks a positive answer expanded from a wildcard. The answer RRset at
/// `name` must be validated, and its signature's Labels field (fewer labels than the owner)
/// names the wildcard's parent, the closest encloser. Then one validated NSEC of the same zone
/// must prove that `name` itself does not exist and that no name between it and the closest
/// encloser exists (the NSEC's own closest encloser of `name` is the wildcard's parent). That
/// NSEC may well be owned by the wildcard itself.
pub(crate) fn wildcard_expansion(
    name: &Name,
    rtype: RecordType,
    response: &DnsResponse,
) -> Result<(), String> {
    let covered = [rtype, RecordType::CNAME]
        .into_iter()
        .find(|t| {
            response
                .answers
                .iter()
                .any(|r| r.record_type() == *t && r.name == *name)
        })
        .ok_or_else(|| format!("no {rtype} records at {name}"))?;
    let rrset = response
        .answers
        .iter()
        .filter(|r| r.record_type() == covered && r.name == *name);
    if let Some(r) = rrset.clone().find(|r| r.proof != Proof::Secure) {
        return Err(format!("the {covered} records at {name} are {}", r.proof));
    }
    let signature = secure_signature(&response.answers, name, covered)
        .ok_or_else(|| format!("no validated signature of the {covered} records at {name}"))?;
    let labels = signature.input().num_labels;
    if labels >= name.num_labels() {
        return Err(format!(
            "the {covered} answer at {name} is not a wildcard expansion, yet hickory found its \
             denial records wrong"
        ));
    }
    let encloser = name.trim_to(usize::from(labels));
    let signer = &signature.input().signer_name;
    if !signer.zone_of(&encloser) {
        return Err(format!(
            "the wildcard *.{encloser} is outside the zone {signer} that signed it"
        ));
    }
    let proven = secure_nsecs(response).into_iter().any(|(owner, nsec)| {
        secure_signature(&response.authorities, owner, RecordType::NSEC)
            .is_some_and(|sig| sig.input().signer_name == *signer)
            && nsec_denies_below(owner, nsec, name, signer, &encloser)
    });
    if proven {
        Ok(())
    } else {
        Err(format!(
            "the {covered} answer at {name} is expanded from the wildcard *.{encloser}, but no \
             validated NSEC of {signer} proves that {name} does not exist"
        ))
    }
}

/// Whether the NSEC `owner -> next` of `zone` covers `name` and its closest encloser of `name`
/// is `encloser`: then neither `name` nor any name between it and `encloser` exists.
fn nsec_denies_below(owner: &Name, nsec: &NSEC, name: &Name, zone: &Name, encloser: &Name) -> bool {
    // RFC 6840 §4.1: a parent-side NSEC at a zone cut says nothing about the names below it.
    if nsec.is_ancestor_delegation() && owner.zone_of(name) {
        return false;
    }
    let next = nsec.next_domain_name();
    let wraps = next <= owner;
    let covered = owner < name && (name < next || (wraps && zone.zone_of(name)));
    if !covered {
        return false;
    }
    let closest = [owner, next]
        .into_iter()
        .map(|n| common_ancestor(name, n))
        .max_by_key(|n| n.num_labels())
        .unwrap_or_else(Name::root);
    closest == *encloser
}

/// The longest name that is an ancestor of (or equal to) both `a` and `b`.
fn common_ancestor(a: &Name, b: &Name) -> Name {
    let shared = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x.eq_ignore_ascii_case(y))
        .count();
    a.trim_to(shared)
}

/// The validated RRSIG (hickory marks the one it used) over the `covered` RRset at `owner`.
fn secure_signature<'a>(
    records: &'a [Record],
    owner: &Name,
    covered: RecordType,
) -> Option<&'a RRSIG> {
    records.iter().find_map(|r| match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig))
            if r.proof == Proof::Secure
                && r.name == *owner
                && sig.input().type_covered == covered =>
        {
            Some(sig)
        }
        _ => None,
    })
}

fn secure_nsecs(response: &DnsResponse) -> Vec<(&Name, &NSEC)> {
    response
        .authorities
        .iter()
        .filter(|r| r.proof == Proof::Secure)
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC(nsec)) => Some((&r.name, nsec)),
            _ => None,
        })
        .collect()
}

fn secure_nsec3s(response: &DnsResponse) -> Vec<(&Name, &NSEC3)> {
    response
        .authorities
        .iter()
        .filter(|r| r.proof == Proof::Secure)
        .filter_map(|r| match &r.data {
            RData::DNSSEC(DNSSECRData::NSEC3(nsec3)) => Some((&r.name, nsec3)),
            _ => None,
        })
        .collect()
}

/// Whether a validated denial proves its name and type absent: hickory hands back a denial
/// with validated NSEC/NSEC3 records only when they prove it.
pub(crate) fn denial_is_proven(response: &DnsResponse) -> bool {
    !secure_nsecs(response).is_empty() || !secure_nsec3s(response).is_empty()
}

mod classify;
pub(crate) use classify::classify;

#[cfg(test)]
mod tests;
