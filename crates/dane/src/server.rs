//! Server authentication by TLSA records (RFC 6698, RFC 7671, RFC 7672).
//!
//! This module decides, from validated DNS, *whether* and *how* a server must be authenticated,
//! and hands the records to OpenSSL's own DANE verifier on the `SSL` object, which does the
//! chain work in the handshake (DANE-TA needs the anchor in the presented chain, PKIX usages need
//! a PKIX path, DANE-EE needs neither). The rules that OpenSSL cannot know are here:
//! - the owner name, with RFC 7671 §7 CNAME handling: TLSA at the CNAME-expanded name first,
//!   then at the original name, and both names as reference identifiers;
//! - DANE only when the address records are secure (RFC 7672 §2.2);
//! - the outcome: secure usable records make authentication mandatory; bogus or failed look-ups
//!   refuse the connection under every policy; insecure or securely denied TLSA means "no DANE",
//!   which `require` refuses and `opportunistic` turns into ordinary PKIX verification.

use std::fmt;

use hickory_resolver::proto::rr::RecordType;
use openssl::ssl::{SslRef, SslVerifyMode};

use super::name::{printable, HostName};
use super::ossl;
use super::resolver::{Outcome, Proof, Resolution, Resolver};
use super::tlsa::{self, Tlsa};

/// What to do when a server has no usable DANE records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// No secure usable TLSA records: refuse.
    Require,
    /// No secure usable TLSA records: fall back to PKIX (RFC 7672 style).
    Opportunistic,
}

/// How the server will be authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// By the TLSA records: mandatory, a mismatch fails the handshake.
    Dane,
    /// By PKIX and the host name, because there is no DANE for this server (the reason).
    Pkix(String),
    /// Not at all: do not connect (the reason).
    Refuse(String),
}

/// One TLSA owner name that was asked, and what came back.
#[derive(Clone, Debug)]
pub struct OwnerLookup {
    pub owner: String,
    pub proof: Proof,
    pub summary: String,
}

/// The DNS facts about one server and the decision taken from them.
#[derive(Clone, Debug)]
pub struct ServerTlsa {
    pub host: String,
    pub port: u16,
    /// Reference identifiers: the host name and, after a secure CNAME, the expanded name.
    pub names: Vec<String>,
    /// Proof of the host's address records (and of its CNAME chain).
    pub address_proof: Proof,
    /// The owner names asked, in order.
    pub lookups: Vec<OwnerLookup>,
    /// The records that authentication uses (empty unless the decision is DANE).
    pub records: Vec<Tlsa>,
    pub decision: Decision,
}

impl ServerTlsa {
    /// Looks up what the DNS says about `host:port` and decides under `policy`. `host` must be
    /// a host name ([`HostName`]); anything else is refused before any DNS query.
    pub fn lookup(resolver: &Resolver, host: &str, port: u16, policy: Policy) -> ServerTlsa {
        let parsed = HostName::parse(host);
        let mut s = ServerTlsa {
            // The parsed name from here on: the TLSA owner and the PKIX reference identifier.
            host: match &parsed {
                Ok(name) => name.fqdn(),
                Err(_) => printable(host),
            },
            port,
            names: Vec::new(),
            address_proof: Proof::Indeterminate,
            lookups: Vec::new(),
            records: Vec::new(),
            decision: Decision::Refuse("not looked up".into()),
        };
        if let Err(e) = parsed {
            s.decision = Decision::Refuse(format!("{e}; no DNS query was made"));
            return s;
        }
        s.names.push(s.host.clone());
        let no_dane = s.find_records(resolver);
        s.decision = match (no_dane, policy) {
            (Ok(()), _) => Decision::Dane,
            (Err(NoDane::Fail(why)), _) => Decision::Refuse(why),
            (Err(NoDane::Absent(why)), Policy::Require) => {
                Decision::Refuse(format!("{why}; the policy requires DANE"))
            }
            (Err(NoDane::Absent(why)), Policy::Opportunistic) => Decision::Pkix(why),
        };
        s
    }

    fn find_records(&mut self, resolver: &Resolver) -> Result<(), NoDane> {
        let address = resolver
            .resolve(&self.host, RecordType::A)
            .map_err(|e| NoDane::Fail(e.to_string()))?;
        self.address_proof = address.proof();
        match self.address_proof {
            Proof::Secure => {}
            Proof::Insecure => {
                return Err(NoDane::Absent(format!(
                    "the address records of {} are insecure, so its TLSA records cannot be trusted",
                    self.host
                )))
            }
            p => {
                return Err(NoDane::Fail(format!(
                    "the address records of {} are {p}{}",
                    self.host,
                    why_weak(&address)
                )))
            }
        }
        let canonical = address.canonical_name().to_string();
        let mut owners = Vec::new();
        if canonical != self.host {
            self.names.push(canonical.clone());
            owners.push(tlsa::service_owner(self.port, "tcp", &canonical));
        }
        owners.push(tlsa::service_owner(self.port, "tcp", &self.host));
        let mut why_not = Vec::new();
        for owner in owners {
            let res = resolver
                .resolve(&owner, RecordType::TLSA)
                .map_err(|e| NoDane::Fail(e.to_string()))?;
            let proof = res.proof();
            let records: Vec<Tlsa> = res.records().iter().filter_map(Tlsa::from_rdata).collect();
            self.lookups.push(OwnerLookup {
                owner: owner.clone(),
                proof,
                summary: summary(&res),
            });
            match proof {
                Proof::Secure if !records.is_empty() => {
                    if tlsa::agile(&records).is_empty() {
                        return Err(NoDane::Absent(format!(
                            "none of the {} TLSA records at {owner} is usable",
                            records.len()
                        )));
                    }
                    self.records = records;
                    return Ok(());
                }
                Proof::Secure | Proof::Insecure => {
                    why_not.push(format!("{owner}: {}", summary(&res)))
                }
                p => {
                    return Err(NoDane::Fail(format!(
                        "the TLSA answer at {owner} is {p}: {}",
                        summary(&res)
                    )))
                }
            }
        }
        Err(NoDane::Absent(format!(
            "no secure TLSA records ({})",
            why_not.join("; ")
        )))
    }

    /// Prepares `ssl` (a client connection not yet handshaking) for this decision: the records
    /// on OpenSSL's DANE for [`Decision::Dane`], host-name PKIX checks for [`Decision::Pkix`], an
    /// error for [`Decision::Refuse`]. Peer verification is switched on in both cases, so a
    /// failed check aborts the handshake.
    pub fn configure(&self, ssl: &mut SslRef) -> Result<(), String> {
        match &self.decision {
            Decision::Refuse(why) => Err(format!("{}:{}: {why}", self.host, self.port)),
            Decision::Pkix(_) => {
                let host = self.host.trim_end_matches('.');
                ssl.param_mut()
                    .set_host(host)
                    .map_err(|e| format!("cannot set host name {host}: {e}"))?;
                ssl.set_verify(SslVerifyMode::PEER);
                Ok(())
            }
            Decision::Dane => {
                ossl::dane_enable(ssl, &self.names)?;
                let mut usable = 0;
                for r in &self.records {
                    if ossl::tlsa_add(ssl, r.usage, r.selector, r.mtype, &r.data)? {
                        usable += 1;
                    }
                }
                if usable == 0 {
                    return Err(format!(
                        "{}:{}: OpenSSL found none of the TLSA records usable",
                        self.host, self.port
                    ));
                }
                ssl.set_verify(SslVerifyMode::PEER);
                Ok(())
            }
        }
    }
}

/// What authenticated the server, read from `ssl` after a completed handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authority {
    /// A TLSA record matched the certificate at this depth of the chain (0: the leaf).
    Tlsa { record: Tlsa, depth: i32 },
    /// Ordinary PKIX with a host-name check.
    Pkix,
}

/// The authority of a finished handshake configured by [`ServerTlsa::configure`], or why the
/// server is not authenticated.
pub fn authority(ssl: &SslRef, decision: &Decision) -> Result<Authority, String> {
    let verify = ssl.verify_result();
    if verify != openssl::x509::X509VerifyResult::OK {
        return Err(format!(
            "certificate verification failed: {}",
            verify.error_string()
        ));
    }
    match decision {
        Decision::Dane => ossl::dane_match(ssl)
            .map(|(depth, usage, selector, mtype, data)| Authority::Tlsa {
                record: Tlsa {
                    usage,
                    selector,
                    mtype,
                    data,
                },
                depth,
            })
            .ok_or_else(|| "no TLSA record matched".to_string()),
        Decision::Pkix(_) => Ok(Authority::Pkix),
        Decision::Refuse(why) => Err(why.clone()),
    }
}

enum NoDane {
    /// Authentication cannot be decided: refuse under every policy.
    Fail(String),
    /// Provably no DANE for this server.
    Absent(String),
}

fn summary(res: &Resolution) -> String {
    let last = res.last();
    let what = match &last.outcome {
        Outcome::Records(r) => format!("{} record(s)", r.len()),
        Outcome::NoData => "no TLSA records (NODATA)".into(),
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

impl fmt::Display for ServerTlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "server {} port {}", self.host, self.port)?;
        writeln!(f, "  address records: {}", self.address_proof)?;
        if self.names.len() > 1 {
            writeln!(f, "  CNAME-expanded name: {}", self.names[1])?;
        }
        for l in &self.lookups {
            writeln!(f, "  TLSA {}: {}", l.owner, l.summary)?;
        }
        for r in &self.records {
            let usable = if r.is_usable() { "" } else { " (unusable)" };
            writeln!(f, "    {r}{usable}")?;
        }
        match &self.decision {
            Decision::Dane => write!(f, "  decision: authenticate by the TLSA records"),
            Decision::Pkix(why) => write!(f, "  decision: PKIX (no DANE: {why})"),
            Decision::Refuse(why) => write!(f, "  decision: refuse ({why})"),
        }
    }
}

/// Server authentication for every connection made from one `SSL_CTX`, for libraries that
/// create the `SSL` objects themselves (libmosquitto, Paho): the server's name is the SNI the
/// library sets, the port is fixed per context. The look-up happens when the server's
/// certificate arrives, so the TLSA answer is as fresh as the cache allows.
pub struct ContextDane {
    pub resolver: std::sync::Arc<Resolver>,
    pub port: u16,
    pub policy: Policy,
    /// Told why a connection was refused (e.g. to keep it as a last-error message).
    pub on_refusal: Option<fn(&str)>,
}

impl ossl::ChainVerifier for ContextDane {
    fn prepare(&self, ssl: &mut SslRef) -> Result<Vec<String>, String> {
        let result = ssl
            .servername(openssl::ssl::NameType::HOST_NAME)
            .map(str::to_string)
            .ok_or_else(|| {
                "no SNI host name on the connection: cannot look up the server".to_string()
            })
            .and_then(|host| {
                let tlsa = ServerTlsa::lookup(&self.resolver, &host, self.port, self.policy);
                tlsa.configure(ssl)?;
                Ok(tlsa.names)
            });
        if let (Err(why), Some(report)) = (&result, self.on_refusal) {
            report(why);
        }
        result
    }

    fn rejected(&self, ssl: &SslRef, why: &str) {
        if let Some(report) = self.on_refusal {
            let host = ssl
                .servername(openssl::ssl::NameType::HOST_NAME)
                .unwrap_or("?");
            report(&format!(
                "{host}:{}: certificate verification failed: {why}",
                self.port
            ));
        }
    }
}

impl ContextDane {
    /// Installs this on `ctx` (and switches peer verification on, without which OpenSSL would
    /// ignore a failed check).
    pub fn install(self, ctx: &mut openssl::ssl::SslContextBuilder) -> Result<(), String> {
        ctx.set_verify(SslVerifyMode::PEER);
        ossl::install_chain_verifier(ctx, self)
    }
}
