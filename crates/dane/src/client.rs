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
use super::resolver::{Outcome, Proof, ResolveError, Resolver};
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

/// Why a device is not authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The name is not a host name in one of the three owner-name forms (no DNS query was made).
    BadName(String),
    /// The certificate names more identities than are looked up for one peer (no DNS query was
    /// made): how many it names, and the limit.
    TooManyIdentities(usize, usize),
    /// The name is outside the allowed domains (no DNS query was made).
    NotAllowed,
    /// The look-up failed (proof state indeterminate).
    Lookup(String),
    /// The TLSA answer is not secure.
    NotSecure(Proof, String),
    /// Securely, there are no TLSA records at the name.
    NoRecords(String),
    /// Records exist; none matched. One reason per record considered.
    NoMatch(Vec<(Tlsa, String)>),
}

/// The full story of one device verification.
#[derive(Clone, Debug)]
pub struct ClientVerification {
    pub name: String,
    pub form: Option<OwnerForm>,
    pub proof: Option<Proof>,
    pub records: Vec<Tlsa>,
    pub result: Result<Matched, Refusal>,
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
        match DeviceName::parse(name) {
            Ok(name) => {
                let deadline = Instant::now() + self.time_budget;
                self.verify_name(resolver, &name, leaf, chain, deadline)
            }
            Err(e) => ClientVerification::refused(name, Refusal::BadName(e.to_string())),
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
            result: Err(Refusal::NotAllowed),
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
            return Err(Refusal::NotAllowed);
        }
        let res = resolver
            .resolve_name(name.dns_name(), RecordType::TLSA, Some(deadline))
            .map_err(|e: ResolveError| Refusal::Lookup(e.to_string()))?;
        let proof = res.proof();
        v.proof = Some(proof);
        v.records = res.records().iter().filter_map(Tlsa::from_rdata).collect();
        let what = match &res.last().outcome {
            Outcome::NxDomain => "no such name (NXDOMAIN)".to_string(),
            Outcome::NoData => "no TLSA records (NODATA)".to_string(),
            _ => format!("{} TLSA record(s)", v.records.len()),
        };
        if proof != Proof::Secure {
            return Err(Refusal::NotSecure(proof, what));
        }
        if v.records.is_empty() {
            return Err(Refusal::NoRecords(what));
        }
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

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadName(why) => write!(f, "bad identity name: {why} (no DNS query made)"),
            Refusal::TooManyIdentities(found, limit) => write!(
                f,
                "the certificate names {found} DANE identities in its SAN dNSNames; at most \
                 {limit} are looked up for a client that sends no dane_clientid name \
                 (no DNS query made)"
            ),
            Refusal::NotAllowed => {
                write!(f, "name outside the allowed domains (no DNS query made)")
            }
            Refusal::Lookup(e) => write!(f, "{e}"),
            Refusal::NotSecure(p, what) => write!(
                f,
                "TLSA answer is {p} ({what}); only a secure answer authenticates"
            ),
            Refusal::NoRecords(what) => write!(f, "{what}, proven secure"),
            Refusal::NoMatch(reasons) => {
                write!(f, "no TLSA record matched:")?;
                for (r, why) in reasons {
                    write!(f, "\n    {r}: {why}")?;
                }
                Ok(())
            }
        }
    }
}
