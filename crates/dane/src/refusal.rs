//! Why a peer is not authenticated: one type for server authentication ([`super::server`]) and
//! device verification ([`super::client`], [`super::clientid_ext`]).
//!
//! Each refusal carries what an operator needs to act on it (which name, which records, which
//! proof state) and its `Display` says it in one sentence. The C API maps every variant to a
//! stable numeric reason code, so a broker plugin can decide by the kind of refusal and log the
//! sentence.

use std::fmt;

use hickory_resolver::proto::rr::RecordType;
use openssl::x509::X509VerifyResult;

use super::name::NameError;
use super::resolver::{Outcome, Proof, Resolution, ResolveError};
use super::tlsa::Tlsa;

/// Why a server or a device is not authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The name is not a host name (for a device: in one of the three owner-name forms); no DNS
    /// query was made.
    BadName(NameError),
    /// The device name is outside the allowed domains; no DNS query was made.
    NotAllowed { name: String },
    /// The certificate names more identities than are looked up for one peer; no DNS query was
    /// made.
    TooManyIdentities { found: usize, limit: usize },
    /// A connection to authenticate carries no SNI host name, so there is no name to look up.
    NoServerName,
    /// A look-up produced no answer at all (time-out, SERVFAIL, the time budget spent): the
    /// proof state is indeterminate.
    DnsFailure(ResolveError),
    /// An answer failed DNSSEC validation.
    Bogus(OwnerLookup),
    /// An answer the validator could neither prove nor disprove.
    Indeterminate(OwnerLookup),
    /// An answer provably insecure: the zone is unsigned, so its records prove nothing.
    Insecure(OwnerLookup),
    /// No secure TLSA records: each owner name asked is insecure or securely has none.
    NoSecureRecords(Vec<OwnerLookup>),
    /// Secure TLSA records at `owner`, but none of the `count` is usable.
    NoneUsable { owner: String, count: usize },
    /// Records exist; none matched the presented certificates. One reason per record considered.
    NoMatch(Vec<(Tlsa, String)>),
    /// The TLS library's verification of the presented certificate failed (for a server
    /// authenticated by DANE: `X509_V_ERR_DANE_NO_MATCH` when no record matched).
    CertificateRejected(X509VerifyResult),
    /// The peer has no DANE identity: it sent no name, and none was taken from its certificate.
    NoIdentity,
    /// No DANE verification ran on this connection.
    NotChecked,
    /// The connection could not be set up for the verification (e.g. DANE enabled twice).
    TlsSetup(String),
    /// The server has no DANE (the reason inside), and the policy requires it.
    DaneRequired(Box<Refusal>),
}

/// One DNS look-up a decision rests on: the name and type asked, the proof of the answer, and
/// what came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerLookup {
    /// The name asked, fully qualified.
    pub owner: String,
    pub rtype: RecordType,
    /// The proof of the whole answer (its weakest CNAME step).
    pub proof: Proof,
    /// What came back, its proof and why: `no TLSA records (NODATA), bogus (...)`.
    pub summary: String,
}

impl OwnerLookup {
    /// The look-up of `owner` (`rtype`) that produced `res`.
    pub fn of(owner: &str, rtype: RecordType, res: &Resolution) -> Self {
        OwnerLookup {
            owner: owner.to_string(),
            rtype,
            proof: res.proof(),
            summary: summary(rtype, res),
        }
    }

    /// "the TLSA answer at X is" / "the address records of X are".
    fn subject(&self) -> String {
        match self.rtype {
            RecordType::TLSA => format!("the TLSA answer at {} is", self.owner),
            _ => format!("the address records of {} are", self.owner),
        }
    }
}

/// What a resolution says, with its CNAME and the resolver's reason for its proof:
/// `1 record(s) via CNAME at x., bogus (why)`.
fn summary(rtype: RecordType, res: &Resolution) -> String {
    let last = res.last();
    let what = match &last.outcome {
        Outcome::Records(r) => format!("{} record(s)", r.len()),
        Outcome::NoData => format!("no {rtype} records (NODATA)"),
        Outcome::NxDomain => "no such name (NXDOMAIN)".into(),
        Outcome::Alias(t) => format!("CNAME to {t}"),
    };
    let via = if res.steps.len() > 1 {
        format!(" via CNAME at {}", last.name)
    } else {
        String::new()
    };
    format!("{what}{via}, {}{}", res.proof(), why_weak(res))
}

/// Why a chain is as weak as it is (which record, which name), when the resolver says:
/// ` (reason)`, or nothing.
fn why_weak(res: &Resolution) -> String {
    res.steps
        .iter()
        .find(|step| step.proof == res.proof())
        .and_then(|step| step.why.as_deref())
        .map(|why| format!(" ({why})"))
        .unwrap_or_default()
}

impl Refusal {
    /// The refusal a look-up whose proof is not secure leads to (`None` for a secure one).
    pub fn of_proof(lookup: OwnerLookup) -> Option<Refusal> {
        match lookup.proof {
            Proof::Secure => None,
            Proof::Insecure => Some(Refusal::Insecure(lookup)),
            Proof::Bogus => Some(Refusal::Bogus(lookup)),
            Proof::Indeterminate => Some(Refusal::Indeterminate(lookup)),
        }
    }

    /// The refusal itself, without the policy that made a missing DANE one.
    pub fn cause(&self) -> &Refusal {
        match self {
            Refusal::DaneRequired(inner) => inner.cause(),
            other => other,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadName(e) => write!(f, "{e} (no DNS query made)"),
            Refusal::NotAllowed { name } => {
                write!(
                    f,
                    "{name} is outside the allowed domains (no DNS query made)"
                )
            }
            Refusal::TooManyIdentities { found, limit } => write!(
                f,
                "the certificate names {found} DANE identities in its SAN dNSNames; at most \
                 {limit} are looked up for a client that sends no dane_clientid name \
                 (no DNS query made)"
            ),
            Refusal::NoServerName => write!(
                f,
                "no SNI host name on the connection: cannot look up the server"
            ),
            Refusal::DnsFailure(e) => write!(f, "{e}"),
            Refusal::Bogus(l) | Refusal::Indeterminate(l) => {
                write!(f, "{} {}: {}", l.subject(), l.proof, l.summary)
            }
            Refusal::Insecure(l) if l.rtype == RecordType::TLSA => write!(
                f,
                "{} insecure: {}; only a secure answer authenticates",
                l.subject(),
                l.summary
            ),
            Refusal::Insecure(l) => write!(
                f,
                "{} insecure, so its TLSA records cannot be trusted",
                l.subject()
            ),
            Refusal::NoSecureRecords(lookups) => {
                let each: Vec<String> = lookups
                    .iter()
                    .map(|l| format!("{}: {}", l.owner, l.summary))
                    .collect();
                write!(f, "no secure TLSA records ({})", each.join("; "))
            }
            Refusal::NoneUsable { owner, count } => {
                write!(f, "none of the {count} TLSA records at {owner} is usable")
            }
            Refusal::NoMatch(reasons) => {
                write!(f, "no TLSA record matched")?;
                if !reasons.is_empty() {
                    write!(f, ":")?;
                }
                for (r, why) in reasons {
                    write!(f, "\n    {r}: {why}")?;
                }
                Ok(())
            }
            Refusal::CertificateRejected(result) => write!(
                f,
                "certificate verification failed: {}",
                result.error_string()
            ),
            Refusal::NoIdentity => write!(f, "the peer has no authenticated DANE identity"),
            Refusal::NotChecked => write!(
                f,
                "no DANE verification ran on this SSL (on a server: was the context's info \
                 callback replaced after DANE client authentication was enabled? Then every \
                 client is refused)"
            ),
            Refusal::TlsSetup(why) => write!(f, "{why}"),
            Refusal::DaneRequired(why) => write!(f, "{why}; the policy requires DANE"),
        }
    }
}

impl std::error::Error for Refusal {}
