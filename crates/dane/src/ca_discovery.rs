//! CA discovery by DNS (draft-wilson-dane-pkix-cd): a registry publishes the certificates of
//! the CAs that issue its devices' certificates as full-certificate TLSA records (`0 0 0`
//! PKIX-TA or `2 0 0` DANE-TA) at its domain. An operator builds a broker's `cafile` from
//! them, and a broker notices when a CA it trusts is no longer published.
//!
//! Only a secure answer counts: an insecure, bogus or failed look-up is an error that says so,
//! never an empty list.

use std::fmt;

use hickory_resolver::proto::rr::RecordType;
use openssl::x509::{X509Ref, X509};

use super::name::DomainName;
use super::ossl::is_ca_certificate;
use super::refusal::{OwnerLookup, Refusal};
use super::resolver::Resolver;
use super::tlsa::{Tlsa, Usage};

/// The CA certificates published at one domain, and the records that were not usable as such.
#[derive(Debug)]
pub struct PublishedCas {
    pub domain: String,
    pub cas: Vec<X509>,
    /// Records at the domain that are no full CA certificate (other usages, digests, bad DER,
    /// certificates without basicConstraints CA:TRUE).
    pub skipped: Vec<(Tlsa, String)>,
}

impl PublishedCas {
    /// Whether `ca` is one of the published certificates (compared as DER).
    pub fn publishes(&self, ca: &X509Ref) -> bool {
        let Ok(der) = ca.to_der() else {
            return false;
        };
        self.cas.iter().any(|c| c.to_der().is_ok_and(|d| d == der))
    }
}

/// Looks up the TLSA records at `domain` and returns the CA certificates they publish: an
/// error naming the proof state unless the answer is secure, or when it publishes none (with
/// each record's reason when there are records).
pub fn fetch(resolver: &Resolver, domain: &str) -> Result<PublishedCas, Refusal> {
    // Parsed first (host-name syntax, underscore labels allowed, no escapes): the name looked
    // up is the name reported.
    let owner = DomainName::parse(domain)
        .map_err(Refusal::BadName)?
        .to_string();
    let res = resolver
        .resolve(&owner, RecordType::TLSA)
        .map_err(Refusal::DnsFailure)?;
    let lookup = OwnerLookup::of(&owner, RecordType::TLSA, &res);
    if let Some(refusal) = Refusal::of_proof(lookup.clone()) {
        return Err(refusal);
    }
    let mut found = PublishedCas {
        domain: owner,
        cas: Vec::new(),
        skipped: Vec::new(),
    };
    for record in res.records().iter().filter_map(Tlsa::from_rdata) {
        match ca_certificate(&record) {
            Ok(cert) => found.cas.push(cert),
            Err(why) => found.skipped.push((record, why)),
        }
    }
    if found.cas.is_empty() && found.skipped.is_empty() {
        return Err(Refusal::NoSecureRecords(vec![lookup]));
    }
    if found.cas.is_empty() {
        // Records, but none a CA certificate: each with why not.
        return Err(Refusal::NoMatch(found.skipped));
    }
    Ok(found)
}

/// The certificate a `0 0 0` or `2 0 0` record carries, if it is a CA's: a broker's cafile
/// must not make an end-entity certificate a trust anchor.
fn ca_certificate(record: &Tlsa) -> Result<X509, String> {
    let ta = matches!(record.usage(), Some(Usage::PkixTa | Usage::DaneTa));
    if !ta || record.selector != 0 || record.mtype != 0 {
        return Err("not a full CA certificate (usage 0 or 2, selector 0, matching 0)".into());
    }
    let cert = X509::from_der(&record.data).map_err(|e| format!("not a DER certificate: {e}"))?;
    if !is_ca_certificate(&cert) {
        return Err(format!(
            "{}: not a CA certificate (no basicConstraints CA:TRUE)",
            subject(&cert)
        ));
    }
    Ok(cert)
}

impl fmt::Display for PublishedCas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "TLSA {}: {} CA certificate(s), secure",
            self.domain,
            self.cas.len()
        )?;
        for ca in &self.cas {
            writeln!(f, "  {}", subject(ca))?;
        }
        for (record, why) in &self.skipped {
            writeln!(
                f,
                "  skipped {} {} {}: {why}",
                record.usage, record.selector, record.mtype
            )?;
        }
        Ok(())
    }
}

/// The subject of `cert`, one line.
pub fn subject(cert: &X509Ref) -> String {
    cert.subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlsa::{Matching, Selector};

    #[test]
    fn only_full_ta_certificates_are_cas() {
        let group =
            openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap())
            .unwrap();
        let build = |ca: bool| {
            let mut b = openssl::x509::X509Builder::new().unwrap();
            b.set_version(2).unwrap();
            b.set_pubkey(&key).unwrap();
            let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
            b.set_not_before(&now).unwrap();
            b.set_not_after(&now).unwrap();
            let mut constraints = openssl::x509::extension::BasicConstraints::new();
            if ca {
                constraints.ca();
            }
            b.append_extension(constraints.critical().build().unwrap())
                .unwrap();
            b.sign(&key, openssl::hash::MessageDigest::sha256())
                .unwrap();
            b.build()
        };
        let cert = build(true);
        for usage in [Usage::PkixTa, Usage::DaneTa] {
            let r = Tlsa::for_certificate(&cert, usage, Selector::Cert, Matching::Full).unwrap();
            assert_eq!(
                ca_certificate(&r).unwrap().to_der().unwrap(),
                cert.to_der().unwrap()
            );
        }
        for (usage, selector, mtype) in [
            (Usage::DaneEe, Selector::Cert, Matching::Full),
            (Usage::DaneTa, Selector::Spki, Matching::Full),
            (Usage::DaneTa, Selector::Cert, Matching::Sha256),
        ] {
            let r = Tlsa::for_certificate(&cert, usage, selector, mtype).unwrap();
            assert!(
                ca_certificate(&r).is_err(),
                "{usage:?} {selector:?} {mtype:?}"
            );
        }
        let leaf =
            Tlsa::for_certificate(&build(false), Usage::DaneTa, Selector::Cert, Matching::Full)
                .unwrap();
        assert!(ca_certificate(&leaf)
            .unwrap_err()
            .contains("not a CA certificate"));
        let garbage = Tlsa::new(Usage::DaneTa, Selector::Cert, Matching::Full, vec![0x30, 1]);
        assert!(ca_certificate(&garbage).unwrap_err().contains("not a DER"));
    }
}
