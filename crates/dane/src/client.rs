//! Device identities: TLS client authentication by DNS (draft-ietf-dance-client-auth).
//!
//! A device names itself (in the `dane_clientid` extension, or in its certificate), and the
//! TLSA records at that name, proven by DNSSEC, say which certificate or key it must present.
//! The rules, and why:
//! - the name is parsed once ([`super::name`]: host-name syntax, no escapes) and its labels are
//!   checked against the allowed domains *before* any DNS query, so an unknown client cannot
//!   make the server do DNS work for names of its choosing, nor leave the allowed domains by
//!   writing a dot inside a label;
//! - one verification spends at most its time budget on DNS, however many look-ups it makes;
//! - only a secure TLSA answer authenticates; insecure, bogus or failed look-ups refuse;
//! - DANE-EE(3) binds the key to the name by itself, so the name need not be in the
//!   certificate; DANE-TA(2), PKIX-TA(0) and PKIX-EE(1) only vouch for an issuer or a PKIX path,
//!   so the name must be a SAN dNSName of the certificate (never the CN);
//! - DANE-TA matches a certificate the device sends *above* its leaf, and the leaf must chain
//!   up to it; the PKIX usages need a valid PKIX path to the configured CAs as well;
//! - digest agility (RFC 7671 §9) decides which records count.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::RecordType;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509Ref, X509StoreContext, X509VerifyResult, X509};

pub use super::name::OwnerForm;
use super::name::{printable, DeviceName, DomainName};
use super::refusal::OwnerLookup;
pub use super::refusal::Refusal;
use super::resolver::{Proof, Resolution, Resolver};
use super::tlsa::{self, Tlsa, Usage};

/// How long one verification may spend on DNS, whatever the number of look-ups it makes (a CNAME
/// chain, or several identities of one certificate): a peer must not hold a server longer.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(10);

/// The record that authenticated a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched {
    pub record: Tlsa,
    /// Depth in the presented chain of the certificate the record designates (0: the leaf).
    pub depth: usize,
}

/// The full story of one device verification.
#[derive(Clone, Debug)]
pub struct ClientVerification {
    pub name: String,
    pub form: Option<OwnerForm>,
    pub proof: Option<Proof>,
    pub records: Vec<Tlsa>,
    pub result: Result<Matched, Refusal>,
    /// How long the answers this verification relied on stay cached: after that, the same
    /// verification asks the DNS again (and a broker re-validates a live session). Zero when no
    /// answer was kept.
    pub valid_for: Duration,
}

impl ClientVerification {
    pub fn authenticated(&self) -> bool {
        self.result.is_ok()
    }

    /// A verification refused before any look-up; `name` as given (lower case, no trailing dot,
    /// control characters escaped).
    pub fn refused(name: &str, why: Refusal) -> Self {
        ClientVerification {
            name: printable(name.trim_end_matches('.')).to_ascii_lowercase(),
            form: None,
            proof: None,
            records: Vec::new(),
            result: Err(why),
            valid_for: Duration::ZERO,
        }
    }
}

/// Verifies device certificates against the TLSA records at their names.
pub struct ClientVerifier {
    /// `None` for a domain that is not a valid name: it allows nothing (front ends check the
    /// domains with [`DomainName::parse`] first, to report the mistake).
    allowed: Vec<Option<DomainName>>,
    ca_file: Option<PathBuf>,
    time_budget: Duration,
}

impl ClientVerifier {
    /// `allowed_domains`: names must be at or below one of these (any name when empty).
    /// `ca_file`: CAs for the PKIX usages (the system store when `None`).
    pub fn new(allowed_domains: Vec<String>, ca_file: Option<PathBuf>) -> Self {
        let allowed = allowed_domains
            .iter()
            .map(|d| DomainName::parse(d).ok())
            .collect();
        Self {
            allowed,
            ca_file,
            time_budget: DEFAULT_TIME_BUDGET,
        }
    }

    /// The most time one verification may spend on DNS ([`DEFAULT_TIME_BUDGET`] unless set).
    pub fn with_time_budget(mut self, budget: Duration) -> Self {
        self.time_budget = budget;
        self
    }

    pub fn time_budget(&self) -> Duration {
        self.time_budget
    }

    /// Whether `name` is in the allowed domains. Costs no DNS.
    pub fn is_allowed(&self, name: &DeviceName) -> bool {
        self.allowed.is_empty()
            || self
                .allowed
                .iter()
                .flatten()
                .any(|domain| name.is_within(domain))
    }

    /// Verifies `leaf` (with the certificates `chain` the device sent after it) for `name`, which
    /// is parsed first: a name that is not a host name in a DANE client form is refused.
    pub fn verify(
        &self,
        resolver: &Resolver,
        name: &str,
        leaf: &X509Ref,
        chain: &[X509],
    ) -> ClientVerification {
        self.verify_by(
            resolver,
            name,
            leaf,
            chain,
            Instant::now() + self.time_budget,
        )
    }

    /// [`ClientVerifier::verify`] with its DNS given up at `deadline` if that comes before the
    /// end of the time budget: a caller that tries several names spends one budget on all.
    pub fn verify_by(
        &self,
        resolver: &Resolver,
        name: &str,
        leaf: &X509Ref,
        chain: &[X509],
        deadline: Instant,
    ) -> ClientVerification {
        match DeviceName::parse(name) {
            Ok(name) => {
                let deadline = deadline.min(Instant::now() + self.time_budget);
                self.verify_name(resolver, &name, leaf, chain, deadline)
            }
            Err(e) => ClientVerification::refused(name, Refusal::BadName(e)),
        }
    }

    /// [`ClientVerifier::verify`] for a parsed name, its DNS done by `deadline`.
    pub fn verify_name(
        &self,
        resolver: &Resolver,
        name: &DeviceName,
        leaf: &X509Ref,
        chain: &[X509],
        deadline: Instant,
    ) -> ClientVerification {
        let mut v = ClientVerification {
            name: name.to_string(),
            form: Some(name.form()),
            proof: None,
            records: Vec::new(),
            result: Err(Refusal::NotChecked),
            valid_for: Duration::ZERO,
        };
        v.result = self.decide(resolver, name, &mut v, leaf, chain, deadline);
        v
    }

    /// [`ClientVerifier::verify`] with PEM files; `Err` when a file cannot be read.
    pub fn verify_files(
        &self,
        resolver: &Resolver,
        name: &str,
        cert: &Path,
        chain: Option<&Path>,
    ) -> Result<ClientVerification, String> {
        let leaf = read_pem(cert)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{}: no certificate", cert.display()))?;
        let chain = match chain {
            Some(path) => read_pem(path)?,
            None => Vec::new(),
        };
        Ok(self.verify(resolver, name, &leaf, &chain))
    }

    fn decide(
        &self,
        resolver: &Resolver,
        name: &DeviceName,
        v: &mut ClientVerification,
        leaf: &X509Ref,
        chain: &[X509],
        deadline: Instant,
    ) -> Result<Matched, Refusal> {
        if !self.is_allowed(name) {
            return Err(Refusal::NotAllowed {
                name: name.to_string(),
            });
        }
        let res = resolver
            .resolve_name(name.dns_name(), RecordType::TLSA, Some(deadline))
            .map_err(Refusal::DnsFailure)?;
        v.proof = Some(res.proof());
        v.valid_for = resolver.remaining_ttl(&res);
        v.records = res.records().iter().filter_map(Tlsa::from_rdata).collect();
        secure_records(name, &res, &v.records)?;
        let mut reasons = Vec::new();
        let counted = tlsa::agile(&v.records);
        for &record in &counted {
            match self.check(record, name, leaf, chain) {
                Ok(depth) => {
                    return Ok(Matched {
                        record: record.clone(),
                        depth,
                    })
                }
                Err(why) => reasons.push((record.clone(), why)),
            }
        }
        for r in &v.records {
            if !counted.contains(&r) {
                let why = if r.is_usable() {
                    "ignored: a stronger digest is published for this usage and selector"
                } else {
                    "unusable (unknown parameter or wrong digest length)"
                };
                reasons.push((r.clone(), why.into()));
            }
        }
        Err(Refusal::NoMatch(reasons))
    }

    /// One record against the presented certificates: the matching depth or why not.
    fn check(
        &self,
        record: &Tlsa,
        name: &DeviceName,
        leaf: &X509Ref,
        chain: &[X509],
    ) -> Result<usize, String> {
        let usage = record.usage().ok_or("unknown usage")?;
        if usage != Usage::DaneEe && !san_has(leaf, name) {
            return Err(format!(
                "{} needs {name} as a SAN dNSName of the certificate; it has {}",
                usage.name(),
                sans(leaf)
            ));
        }
        match usage {
            Usage::DaneEe => record
                .matches(leaf)
                .then_some(0)
                .ok_or_else(|| "does not match the certificate".into()),
            Usage::PkixEe => {
                if !record.matches(leaf) {
                    return Err("does not match the certificate".into());
                }
                self.pkix(leaf, chain).map(|_| 0)
            }
            Usage::DaneTa => {
                let (depth, ta) = chain
                    .iter()
                    .enumerate()
                    .find(|(_, c)| record.matches(c))
                    .ok_or("matches no certificate the device sent above its own")?;
                chains_to(leaf, &chain[..depth], ta)?;
                Ok(depth + 1)
            }
            Usage::PkixTa => {
                let path = self.pkix(leaf, chain)?;
                path.iter()
                    .enumerate()
                    .skip(1)
                    .find(|(_, c)| record.matches(c))
                    .map(|(d, _)| d)
                    .ok_or_else(|| "matches no CA certificate of the PKIX path".into())
            }
        }
    }

    /// A PKIX path from `leaf` to the configured CAs: the certificates, leaf first.
    fn pkix(&self, leaf: &X509Ref, chain: &[X509]) -> Result<Vec<X509>, String> {
        let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
        match &self.ca_file {
            Some(path) => {
                for ca in read_pem(path)? {
                    store.add_cert(ca).map_err(|e| e.to_string())?;
                }
            }
            None => store.set_default_paths().map_err(|e| e.to_string())?,
        }
        verify_path(leaf, chain, &store.build())
    }
}

/// Only a secure answer with records can authenticate: the refusal for any other.
fn secure_records(name: &DeviceName, res: &Resolution, records: &[Tlsa]) -> Result<(), Refusal> {
    let lookup = OwnerLookup::of(&name.to_string(), RecordType::TLSA, res);
    if let Some(refusal) = Refusal::of_proof(lookup.clone()) {
        return Err(refusal);
    }
    if records.is_empty() {
        return Err(Refusal::NoSecureRecords(vec![lookup]));
    }
    Ok(())
}

/// `leaf` chains up through `intermediates` to the DANE trust anchor `ta` (signatures and
/// validity of the certificates below the anchor; the anchor itself is trusted as published).
fn chains_to(leaf: &X509Ref, intermediates: &[X509], ta: &X509) -> Result<(), String> {
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    store.add_cert(ta.clone()).map_err(|e| e.to_string())?;
    // The anchor need not be self-signed (RFC 7671 §5.2.2).
    store
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(|e| e.to_string())?;
    verify_path(leaf, intermediates, &store.build())
        .map(|_| ())
        .map_err(|e| format!("the certificate does not chain to the matched trust anchor: {e}"))
}

fn verify_path(leaf: &X509Ref, chain: &[X509], store: &X509Store) -> Result<Vec<X509>, String> {
    let mut untrusted = Stack::new().map_err(|e| e.to_string())?;
    for c in chain {
        untrusted.push(c.clone()).map_err(|e| e.to_string())?;
    }
    let mut ctx = X509StoreContext::new().map_err(|e| e.to_string())?;
    ctx.init(store, leaf, &untrusted, |c| {
        let ok = c.verify_cert()?;
        let path = c
            .chain()
            .map(|s| s.iter().map(|x| x.to_owned()).collect())
            .unwrap_or_default();
        Ok((ok, c.error(), path))
    })
    .map_err(|e| e.to_string())
    .and_then(|(ok, err, path): (bool, X509VerifyResult, Vec<X509>)| {
        if ok {
            Ok(path)
        } else {
            Err(format!("PKIX validation failed: {}", err.error_string()))
        }
    })
}

fn read_pem(path: &Path) -> Result<Vec<X509>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    X509::stack_from_pem(&pem).map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))
}

/// The SAN dNSNames of `cert`, lower case.
pub fn san_dns_names(cert: &X509Ref) -> Vec<String> {
    cert.subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| {
                    n.dnsname()
                        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The DANE client identities a certificate names in its SAN dNSNames (the `_device` and plain
/// forms), for peers that did not send the `dane_clientid` extension. SAN entries that are not
/// such names are not identities and are left out.
pub fn identities_in_certificate(cert: &X509Ref) -> Vec<DeviceName> {
    san_dns_names(cert)
        .iter()
        .filter_map(|n| DeviceName::parse(n).ok())
        .filter(|n| matches!(n.form(), OwnerForm::Device | OwnerForm::Plain))
        .collect()
}

/// Whether `name` is a SAN dNSName of `cert`, compared as parsed names.
fn san_has(cert: &X509Ref, name: &DeviceName) -> bool {
    san_dns_names(cert)
        .iter()
        .any(|n| DeviceName::parse(n).is_ok_and(|n| n == *name))
}

fn sans(cert: &X509Ref) -> String {
    let names = san_dns_names(cert);
    if names.is_empty() {
        "no SAN dNSName".into()
    } else {
        names.join(", ")
    }
}

impl fmt::Display for ClientVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form = match self.form {
            Some(OwnerForm::Service) => "_<service>.<client-domain>",
            Some(OwnerForm::Device) => "<device-id>._device.<org-domain>",
            Some(OwnerForm::Plain) => "<client-domain>",
            None => "none of the DANE client forms",
        };
        writeln!(f, "device identity {} (form {form})", self.name)?;
        if let Some(proof) = self.proof {
            writeln!(
                f,
                "  TLSA {}: {} record(s), {proof}",
                self.name,
                self.records.len()
            )?;
        }
        for r in &self.records {
            writeln!(f, "    {r}")?;
        }
        match &self.result {
            Ok(m) => {
                let usage = m.record.usage().map_or("?", |u| u.name());
                write!(
                    f,
                    "AUTHENTICATED: TLSA {} ({usage}) matched the certificate at depth {}",
                    m.record, m.depth
                )
            }
            Err(refusal) => write!(f, "NOT AUTHENTICATED: {refusal}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_resolver::proto::rr::Name;

    use super::*;
    use crate::resolver::{Answer, Outcome};

    const NAME: &str = "sensor7._device.example.test";

    fn answer(proof: Proof, outcome: Outcome) -> Resolution {
        let answer = Answer {
            name: Name::from_ascii(format!("{NAME}.")).unwrap(),
            rtype: RecordType::TLSA,
            proof,
            outcome,
            ttl: 300,
            why: Some("the resolver's account".into()),
        };
        Resolution {
            steps: vec![Arc::new(answer)],
        }
    }

    fn record() -> Tlsa {
        "3 1 1 abcd".parse().unwrap()
    }

    #[test]
    fn answers_map_to_their_refusals() {
        let name = DeviceName::parse(NAME).unwrap();
        let some = || Outcome::Records(Vec::new());
        let verdict = |proof, outcome, records: &[Tlsa]| {
            secure_records(&name, &answer(proof, outcome), records)
        };
        assert_eq!(verdict(Proof::Secure, some(), &[record()]), Ok(()));
        let bogus = verdict(Proof::Bogus, some(), &[record()]).unwrap_err();
        assert!(
            matches!(&bogus, Refusal::Bogus(l) if l.owner == NAME && l.rtype == RecordType::TLSA),
            "{bogus}"
        );
        assert!(
            bogus.to_string().contains("the resolver's account"),
            "{bogus}"
        );
        let unknown = verdict(Proof::Indeterminate, some(), &[record()]).unwrap_err();
        assert!(matches!(unknown, Refusal::Indeterminate(_)), "{unknown}");
        let insecure = verdict(Proof::Insecure, some(), &[record()]).unwrap_err();
        assert!(matches!(insecure, Refusal::Insecure(_)), "{insecure}");
        assert!(
            insecure.to_string().contains("only a secure answer"),
            "{insecure}"
        );
        let none = verdict(Proof::Secure, Outcome::NxDomain, &[]).unwrap_err();
        let Refusal::NoSecureRecords(lookups) = &none else {
            panic!("{none}");
        };
        assert_eq!(lookups[0].proof, Proof::Secure);
        assert!(none.to_string().contains("NXDOMAIN"), "{none}");
    }

    #[test]
    fn names_are_refused_before_any_look_up() {
        // A resolver nobody answers: these refusals must not ask it.
        let config = crate::resolver::ResolverConfig::new(
            ([127, 0, 0, 1], 9).into(),
            crate::resolver::TrustAnchor::iana_root(),
        );
        let resolver = Resolver::new(config).unwrap();
        let cert = test_certificate();
        let verifier = ClientVerifier::new(vec!["example.test".into()], None);
        let outside = verifier.verify(&resolver, "x._device.elsewhere.test", &cert, &[]);
        assert_eq!(
            outside.result,
            Err(Refusal::NotAllowed {
                name: "x._device.elsewhere.test".into()
            })
        );
        let bad = verifier.verify(&resolver, "a_b.example.test", &cert, &[]);
        assert!(matches!(bad.result, Err(Refusal::BadName(_))), "{bad}");
        assert!(bad.to_string().contains("no DNS query"), "{bad}");
        assert_eq!(resolver.queries_sent(), 0);
    }

    fn test_certificate() -> X509 {
        use openssl::ec::{EcGroup, EcKey};
        use openssl::nid::Nid;
        use openssl::pkey::PKey;
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut cert = openssl::x509::X509Builder::new().unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        cert.build()
    }
}
