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
//!
//! Every refusal is a [`Refusal`], and the one taken on a connection stays on its `SSL`
//! ([`outcome`]), so that a program handling many connections at once asks each one.

use std::fmt;
use std::sync::OnceLock;

use hickory_resolver::proto::rr::RecordType;
use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef, SslVerifyMode};
use openssl::x509::{X509VerifyResult, X509};

use super::name::{printable, HostName};
use super::ossl;
pub use super::refusal::OwnerLookup;
use super::refusal::Refusal;
use super::resolver::{Proof, Resolution, Resolver};
use super::tlsa::{self, Tlsa, Usage};

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
    Pkix(Refusal),
    /// Not at all: do not connect (the reason).
    Refuse(Refusal),
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
            decision: Decision::Refuse(Refusal::NotChecked),
        };
        if let Err(e) = parsed {
            s.decision = Decision::Refuse(Refusal::BadName(e));
            return s;
        }
        s.names.push(s.host.clone());
        s.decision = decide(s.find_records(resolver), policy);
        s
    }

    fn find_records(&mut self, resolver: &Resolver) -> Result<(), NoDane> {
        let address = resolver
            .resolve(&self.host, RecordType::A)
            .map_err(|e| NoDane::Fail(Refusal::DnsFailure(e)))?;
        self.address_proof = address.proof();
        address_verdict(&self.host, &address)?;
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
                .map_err(|e| NoDane::Fail(Refusal::DnsFailure(e)))?;
            let lookup = OwnerLookup::of(&owner, RecordType::TLSA, &res);
            self.lookups.push(lookup.clone());
            let records: Vec<Tlsa> = res.records().iter().filter_map(Tlsa::from_rdata).collect();
            match tlsa_verdict(lookup.clone(), records)? {
                Some(records) => {
                    self.records = records;
                    return Ok(());
                }
                None => why_not.push(lookup),
            }
        }
        Err(NoDane::Absent(Refusal::NoSecureRecords(why_not)))
    }

    /// Prepares `ssl` (a client connection not yet handshaking) for this decision: the records
    /// on OpenSSL's DANE for [`Decision::Dane`], host-name PKIX checks for [`Decision::Pkix`], an
    /// error for [`Decision::Refuse`]. Peer verification is switched on in both cases, so a
    /// failed check aborts the handshake.
    ///
    /// The verdict stays on `ssl` for [`outcome`].
    ///
    /// A session already offered for resumption (`SSL_set_session` before this call) is kept
    /// only when a DANE-EE record designates its server's certificate, else dropped; a session
    /// offered after this call is resumed unchecked, and [`outcome`] reports `NotChecked`.
    pub fn configure(&self, ssl: &mut SslRef) -> Result<(), Refusal> {
        let result = self.prepare(ssl);
        remember(ssl, result.as_ref().err());
        result?;
        self.check_offered_session(ssl)
    }

    /// Keeps the session `ssl` offers for resumption (marking it vouched for) only when a
    /// DANE-EE record designates the certificate its server had; drops it otherwise (see
    /// [`drop_offered_session`]).
    fn check_offered_session(&self, ssl: &mut SslRef) -> Result<(), Refusal> {
        let Some(server) = ossl::offered_session_peer(ssl) else {
            return Ok(());
        };
        match server.filter(|server| self.designates(server)) {
            Some(server) => {
                if let Some(index) = verdict_index() {
                    ssl.set_ex_data(index, Verdict::ResumptionVouched(server));
                }
                Ok(())
            }
            None => drop_offered_session(ssl),
        }
    }

    /// Whether the decision is DANE and a DANE-EE record designates `server` (the only usage a
    /// certificate alone, without the chain it came with, can be checked against).
    fn designates(&self, server: &X509) -> bool {
        matches!(self.decision, Decision::Dane)
            && self
                .records
                .iter()
                .any(|r| r.usage == Usage::DaneEe as u8 && r.matches(server))
    }

    fn prepare(&self, ssl: &mut SslRef) -> Result<(), Refusal> {
        match &self.decision {
            Decision::Refuse(why) => Err(why.clone()),
            Decision::Pkix(_) => {
                let host = self.host.trim_end_matches('.');
                ssl.param_mut()
                    .set_host(host)
                    .map_err(|e| Refusal::TlsSetup(format!("cannot set host name {host}: {e}")))?;
                ssl.set_verify(SslVerifyMode::PEER);
                Ok(())
            }
            Decision::Dane => {
                ossl::dane_enable(ssl, &self.names).map_err(Refusal::TlsSetup)?;
                let mut usable = 0;
                for r in &self.records {
                    if ossl::tlsa_add(ssl, r.usage, r.selector, r.mtype, &r.data)
                        .map_err(Refusal::TlsSetup)?
                    {
                        usable += 1;
                    }
                }
                if usable == 0 {
                    // Found usable here, but not by OpenSSL.
                    return Err(Refusal::NoneUsable {
                        owner: self
                            .lookups
                            .last()
                            .map(|l| l.owner.clone())
                            .unwrap_or_default(),
                        count: self.records.len(),
                    });
                }
                ssl.set_verify(SslVerifyMode::PEER);
                Ok(())
            }
        }
    }

    /// `host:port: why`, the refusal as a log line.
    pub fn refusal_message(&self, why: &Refusal) -> String {
        format!("{}:{}: {why}", self.host, self.port)
    }
}

/// The decision from what the DNS says (`Ok`: secure usable records) under `policy`.
fn decide(found: Result<(), NoDane>, policy: Policy) -> Decision {
    match (found, policy) {
        (Ok(()), _) => Decision::Dane,
        (Err(NoDane::Fail(why)), _) => Decision::Refuse(why),
        (Err(NoDane::Absent(why)), Policy::Require) => {
            Decision::Refuse(Refusal::DaneRequired(Box::new(why)))
        }
        (Err(NoDane::Absent(why)), Policy::Opportunistic) => Decision::Pkix(why),
    }
}

/// The address records must be secure for TLSA records to count (RFC 7672 §2.2): insecure ones
/// mean no DANE, anything weaker refuses.
fn address_verdict(host: &str, address: &Resolution) -> Result<(), NoDane> {
    let lookup = OwnerLookup::of(host, RecordType::A, address);
    match Refusal::of_proof(lookup) {
        None => Ok(()),
        Some(why @ Refusal::Insecure(_)) => Err(NoDane::Absent(why)),
        Some(why) => Err(NoDane::Fail(why)),
    }
}

/// The TLSA answer at one owner name: its records when they are secure and usable (`Some`), no
/// DANE at this owner (`None`: insecure, or securely none), or why there is no DANE at all.
fn tlsa_verdict(lookup: OwnerLookup, records: Vec<Tlsa>) -> Result<Option<Vec<Tlsa>>, NoDane> {
    match lookup.proof {
        Proof::Secure if !records.is_empty() => {
            if tlsa::agile(&records).is_empty() {
                return Err(NoDane::Absent(Refusal::NoneUsable {
                    owner: lookup.owner,
                    count: records.len(),
                }));
            }
            Ok(Some(records))
        }
        Proof::Secure | Proof::Insecure => Ok(None),
        Proof::Bogus => Err(NoDane::Fail(Refusal::Bogus(lookup))),
        Proof::Indeterminate => Err(NoDane::Fail(Refusal::Indeterminate(lookup))),
    }
}

/// What server authentication decided on one `SSL`: refused before the handshake, prepared
/// (the handshake's certificate verification decides), or a session to resume whose server
/// certificate (kept here) the TLSA records still designate (checked when the handshake
/// started; should the server decline the session, the full handshake is verified as prepared).
enum Verdict {
    Refused(Refusal),
    Prepared,
    ResumptionVouched(X509),
}

/// Drops the session `ssl` offers for resumption, for a full (verified) handshake.
fn drop_offered_session(ssl: &mut SslRef) -> Result<(), Refusal> {
    let dropped = ossl::forget_offered_session(ssl);
    refuse_unless_dropped(ssl, dropped)
}

/// When the offered session could not be dropped, it must not be resumed unvouched: the
/// verdict is a refusal and the handshake fails before it starts.
fn refuse_unless_dropped(ssl: &mut SslRef, dropped: Result<(), String>) -> Result<(), Refusal> {
    dropped.map_err(|e| {
        let why = Refusal::TlsSetup(format!(
            "cannot drop the session offered for resumption ({e}): the handshake is refused \
             rather than resumed unchecked"
        ));
        remember(ssl, Some(&why));
        ossl::refuse_handshake(ssl);
        why
    })
}

fn verdict_index() -> Option<Index<Ssl, Verdict>> {
    static IDX: OnceLock<Option<Index<Ssl, Verdict>>> = OnceLock::new();
    *IDX.get_or_init(|| Ssl::new_ex_index().ok())
}

fn remember(ssl: &mut SslRef, refusal: Option<&Refusal>) {
    if let Some(index) = verdict_index() {
        let verdict = match refusal {
            Some(why) => Verdict::Refused(why.clone()),
            None => Verdict::Prepared,
        };
        ssl.set_ex_data(index, verdict);
    }
}

/// Server authentication on a client `SSL` (by [`ServerTlsa::configure`] or [`ContextDane`]):
/// `Ok` only once a handshake verified the server's certificate, else why not. The verdict
/// stored on the `SSL` comes first: a refusal stays a refusal and an `SSL` nothing configured
/// stays [`Refusal::NotChecked`] even when the connection went on to resume a session. A
/// prepared `SSL` is not checked before the server's certificate arrived (OpenSSL's verify
/// result reads OK before any verification ran); a resumed session counts only when its
/// server's certificate was found designated by the records when the handshake started (a
/// session offered after a per-`SSL` configuration was not, and is `NotChecked`).
///
/// A TLS 1.2 renegotiation (which the server may ask for at any time, and OpenSSL's client
/// grants) makes the connection `NotChecked` unless a refusal was taken: the client offers
/// its current session again, and that resumption runs no check of ours. (A full
/// renegotiation on a context configured by [`ContextDane`] is refused: DANE cannot be set up
/// twice on one `SSL`. One on a per-`SSL` configuration is verified by OpenSSL against the
/// records of the first handshake, not the DNS of now.)
pub fn outcome(ssl: &SslRef) -> Result<(), Refusal> {
    match verdict_index().and_then(|index| ssl.ex_data(index)) {
        Some(Verdict::Refused(why)) => Err(why.clone()),
        Some(_) if ossl::renegotiated(ssl) => Err(Refusal::NotChecked),
        // A context-level check runs in certificate verification, which a resumed session
        // skips: the session was resumed only after the records, as the DNS says now, were
        // found to designate its server's certificate (ResumptionCheck).
        // The session resumed must be the one checked: its server's certificate.
        Some(Verdict::ResumptionVouched(vouched)) if ssl.session_reused() => {
            match ssl.peer_certificate() {
                Some(peer) if same_certificate(&peer, vouched) => verification(ssl),
                _ => Err(Refusal::NotChecked),
            }
        }
        None => Err(Refusal::NotChecked),
        // A session offered after the SSL was configured, resumed without our check.
        Some(Verdict::Prepared) if ssl.session_reused() => Err(Refusal::NotChecked),
        // A full handshake (also one whose vouched session the server declined): a failed
        // verification is known before the handshake finishes (it aborted it).
        Some(Verdict::Prepared | Verdict::ResumptionVouched(_)) => {
            verification(ssl).and_then(|()| match ssl.peer_certificate() {
                Some(_) => Ok(()),
                None => Err(Refusal::NotChecked),
            })
        }
    }
}

fn same_certificate(a: &X509, b: &X509) -> bool {
    matches!((a.to_der(), b.to_der()), (Ok(a), Ok(b)) if a == b)
}

/// OpenSSL's verification result on `ssl` (OK also before any verification ran).
fn verification(ssl: &SslRef) -> Result<(), Refusal> {
    match ssl.verify_result() {
        X509VerifyResult::OK => Ok(()),
        failed => Err(Refusal::CertificateRejected(failed)),
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
pub fn authority(ssl: &SslRef, decision: &Decision) -> Result<Authority, Refusal> {
    verification(ssl)?;
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
            .ok_or(Refusal::NoMatch(Vec::new())),
        Decision::Pkix(_) => Ok(Authority::Pkix),
        Decision::Refuse(why) => Err(why.clone()),
    }
}

enum NoDane {
    /// Authentication cannot be decided: refuse under every policy.
    Fail(Refusal),
    /// Provably no DANE for this server.
    Absent(Refusal),
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
    /// Told why a connection was refused (`host:port: why`, and the refusal), e.g. to keep it
    /// as a last error. The refusal also stays on the connection's `SSL` ([`outcome`]).
    pub on_refusal: Option<fn(&str, &Refusal)>,
    /// Told when a check starts (`Some(NotChecked)`) and when a server passed it (`None`), so
    /// that a per-thread "last verdict" never outlives the handshake it belongs to.
    pub on_checked: Option<fn(Option<&Refusal>)>,
}

impl ContextDane {
    fn report(&self, host: Option<&str>, why: &Refusal) {
        if let Some(report) = self.on_refusal {
            match host {
                Some(host) => report(&format!("{host}:{}: {why}", self.port), why),
                None => report(&why.to_string(), why),
            }
        }
    }
}

impl ossl::ChainVerifier for ContextDane {
    fn prepare(&self, ssl: &mut SslRef) -> Result<Vec<String>, Refusal> {
        if let Some(checked) = self.on_checked {
            checked(Some(&Refusal::NotChecked));
        }
        let Some(host) = ssl
            .servername(openssl::ssl::NameType::HOST_NAME)
            .map(str::to_string)
        else {
            remember(ssl, Some(&Refusal::NoServerName));
            self.report(None, &Refusal::NoServerName);
            return Err(Refusal::NoServerName);
        };
        let tlsa = ServerTlsa::lookup(&self.resolver, &host, self.port, self.policy);
        tlsa.configure(ssl)
            .inspect_err(|why| self.report(Some(&tlsa.host), why))?;
        Ok(tlsa.names)
    }

    fn accepted(&self, _ssl: &SslRef) {
        if let Some(checked) = self.on_checked {
            checked(None);
        }
    }

    fn rejected(&self, ssl: &SslRef, result: X509VerifyResult) {
        let host = ssl
            .servername(openssl::ssl::NameType::HOST_NAME)
            .unwrap_or("?");
        self.report(Some(host), &Refusal::CertificateRejected(result));
    }
}

impl ContextDane {
    /// Installs this on `ctx` (and switches peer verification on, without which OpenSSL would
    /// ignore a failed check), with the check of sessions offered for resumption
    /// ([`ResumptionCheck`]; it takes the context's info callback, and calls one set before).
    ///
    /// An info callback the program sets afterwards, on the context or on one `SSL`
    /// (`SSL_set_info_callback`, which OpenSSL calls instead of the context's), keeps the check
    /// from running on those connections: a session the program offers there is resumed
    /// unchecked. That does not fail the handshake; [`outcome`] reports it `NotChecked`, which
    /// the program must read to fail closed. Full handshakes are verified as always (the check
    /// of the chain is not an info callback).
    ///
    /// Once per context: a second call (or one on a context whose handshake hooks something
    /// else of this library took) fails before changing anything, so the first installation
    /// stays whole, its chain verifier with its own resumption check.
    pub fn install(self, ctx: &mut openssl::ssl::SslContextBuilder) -> Result<(), String> {
        let resumption = std::sync::Arc::new(ResumptionCheck {
            resolver: self.resolver.clone(),
            port: self.port,
            policy: self.policy,
        });
        // One lock for the whole installation: no other thread configures `ctx` between the
        // check and the last step.
        let lock = ossl::configuring();
        if ossl::has_handshake_hooks(&lock, ctx)? {
            return Err(
                "server authentication (or another handshake hook of this library) is \
                        already enabled on this context; the first configuration stays"
                    .into(),
            );
        }
        // Verification on first: should a later step fail, no handshake runs unverified.
        ctx.set_verify(SslVerifyMode::PEER);
        ossl::install_chain_verifier(&lock, ctx, self)?;
        ossl::set_handshake_hooks(&lock, ctx, resumption)
    }
}

/// A resumed session skips certificate verification, and with it the TLSA check: a session
/// (a TLS 1.3 ticket lives up to a week) would keep a server authenticated after its records
/// changed. So when a client's first handshake starts with a session to offer, the records are
/// looked up (from the cache, as a full handshake would) and the session is kept only when a
/// DANE-EE record designates the certificate its server had; otherwise (no DANE now, only
/// trust-anchor records, which need the chain a session does not keep, a refusal) it is
/// dropped and the handshake is a full one, verified as any other.
struct ResumptionCheck {
    resolver: std::sync::Arc<Resolver>,
    port: u16,
    policy: Policy,
}

impl ossl::HandshakeHooks for ResumptionCheck {
    fn started(&self, ssl: &mut SslRef) {
        if ossl::offered_session_peer(ssl).is_none() {
            return;
        }
        // Whatever an earlier handshake on this SSL (before SSL_clear) left counts no more.
        remember(ssl, Some(&Refusal::NotChecked));
        // A refusal is on the SSL (outcome) and its handshake fails: nothing to return it to.
        let _ = match ssl
            .servername(openssl::ssl::NameType::HOST_NAME)
            .map(str::to_string)
        {
            Some(host) => ServerTlsa::lookup(&self.resolver, &host, self.port, self.policy)
                .check_offered_session(ssl),
            None => drop_offered_session(ssl),
        };
    }

    fn done(&self, _ssl: &mut SslRef) {}
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_resolver::proto::rr::rdata::A;
    use hickory_resolver::proto::rr::{Name, RData};
    use openssl::ssl::{SslContext, SslMethod};

    use super::*;
    use crate::resolver::{Answer, Outcome};

    const HOST: &str = "broker.example.test.";
    const OWNER: &str = "_8883._tcp.broker.example.test.";

    fn address(proof: Proof, why: Option<&str>) -> Resolution {
        let answer = Answer {
            name: Name::from_ascii(HOST).unwrap(),
            rtype: RecordType::A,
            proof,
            outcome: Outcome::Records(vec![RData::A(A::new(127, 0, 0, 1))]),
            ttl: 300,
            why: why.map(str::to_string),
        };
        Resolution {
            steps: vec![Arc::new(answer)],
        }
    }

    fn tlsa_lookup(proof: Proof) -> OwnerLookup {
        OwnerLookup {
            owner: OWNER.into(),
            rtype: RecordType::TLSA,
            proof,
            summary: format!("1 record(s), {proof}"),
        }
    }

    fn record(mtype: u8, len: usize) -> Tlsa {
        Tlsa {
            usage: 3,
            selector: 1,
            mtype,
            data: vec![0xab; len],
        }
    }

    fn fail(found: Result<(), NoDane>) -> Refusal {
        match found {
            Err(NoDane::Fail(why)) => why,
            _ => panic!("not a failure"),
        }
    }

    fn absent(found: Result<(), NoDane>) -> Refusal {
        match found {
            Err(NoDane::Absent(why)) => why,
            _ => panic!("not an absence"),
        }
    }

    #[test]
    fn address_proofs_map_to_their_refusals() {
        assert!(address_verdict(HOST, &address(Proof::Secure, None)).is_ok());
        let insecure = absent(address_verdict(HOST, &address(Proof::Insecure, None)));
        assert!(
            matches!(&insecure, Refusal::Insecure(l) if l.owner == HOST),
            "{insecure}"
        );
        assert!(insecure
            .to_string()
            .contains("address records of broker.example.test. are insecure"));
        let bogus = fail(address_verdict(
            HOST,
            &address(Proof::Bogus, Some("no RRSIG")),
        ));
        assert!(
            matches!(&bogus, Refusal::Bogus(l) if l.rtype == RecordType::A),
            "{bogus}"
        );
        assert!(bogus.to_string().contains("are bogus") && bogus.to_string().contains("no RRSIG"));
        let unknown = fail(address_verdict(HOST, &address(Proof::Indeterminate, None)));
        assert!(matches!(unknown, Refusal::Indeterminate(_)), "{unknown}");
    }

    #[test]
    fn tlsa_answers_map_to_records_absence_or_refusal() {
        let usable = tlsa_verdict(tlsa_lookup(Proof::Secure), vec![record(1, 32)]);
        assert_eq!(usable.ok().flatten(), Some(vec![record(1, 32)]));
        // Secure, but a SHA-256 digest of the wrong length: none usable, no DANE.
        let unusable = tlsa_verdict(tlsa_lookup(Proof::Secure), vec![record(1, 5)]);
        let why = absent(unusable.map(|_| ()));
        assert_eq!(
            why,
            Refusal::NoneUsable {
                owner: OWNER.into(),
                count: 1
            }
        );
        // Securely none, or insecure: nothing at this owner, the next one is asked.
        assert_eq!(
            tlsa_verdict(tlsa_lookup(Proof::Secure), vec![]).ok(),
            Some(None)
        );
        let insecure = tlsa_verdict(tlsa_lookup(Proof::Insecure), vec![record(1, 32)]);
        assert_eq!(insecure.ok(), Some(None));
        let bogus = tlsa_verdict(tlsa_lookup(Proof::Bogus), vec![record(1, 32)]);
        assert_eq!(
            fail(bogus.map(|_| ())),
            Refusal::Bogus(tlsa_lookup(Proof::Bogus))
        );
        let unknown = tlsa_verdict(tlsa_lookup(Proof::Indeterminate), vec![]);
        assert!(matches!(
            fail(unknown.map(|_| ())),
            Refusal::Indeterminate(_)
        ));
    }

    #[test]
    fn the_policy_decides_only_what_an_absence_means() {
        let none = || Refusal::NoSecureRecords(vec![tlsa_lookup(Proof::Insecure)]);
        let bogus = || Refusal::Bogus(tlsa_lookup(Proof::Bogus));
        assert_eq!(decide(Ok(()), Policy::Require), Decision::Dane);
        assert_eq!(
            decide(Err(NoDane::Absent(none())), Policy::Opportunistic),
            Decision::Pkix(none())
        );
        let required = decide(Err(NoDane::Absent(none())), Policy::Require);
        let Decision::Refuse(why) = required else {
            panic!("{required:?}");
        };
        assert_eq!(why.cause(), &none());
        assert!(
            why.to_string().ends_with("; the policy requires DANE"),
            "{why}"
        );
        for policy in [Policy::Require, Policy::Opportunistic] {
            assert_eq!(
                decide(Err(NoDane::Fail(bogus())), policy),
                Decision::Refuse(bogus())
            );
        }
    }

    #[test]
    fn each_ssl_keeps_its_own_outcome() {
        let ctx = SslContext::builder(SslMethod::tls_client())
            .unwrap()
            .build();
        let mut refused = Ssl::new(&ctx).unwrap();
        let mut prepared = Ssl::new(&ctx).unwrap();
        let untouched = Ssl::new(&ctx).unwrap();
        let tlsa = |decision| ServerTlsa {
            host: HOST.into(),
            port: 8883,
            names: vec![HOST.into()],
            address_proof: Proof::Secure,
            lookups: Vec::new(),
            records: Vec::new(),
            decision,
        };
        let why = Refusal::Bogus(tlsa_lookup(Proof::Bogus));
        assert_eq!(
            tlsa(Decision::Refuse(why.clone())).configure(&mut refused),
            Err(why.clone())
        );
        let pkix = tlsa(Decision::Pkix(Refusal::NoSecureRecords(Vec::new())));
        assert_eq!(pkix.configure(&mut prepared), Ok(()));
        assert_eq!(outcome(&refused), Err(why));
        assert_eq!(
            outcome(&prepared),
            Err(Refusal::NotChecked),
            "prepared, but no handshake verified the server yet"
        );
        assert_eq!(outcome(&untouched), Err(Refusal::NotChecked));
    }

    /// A TLS 1.2 server for `broker.example.test` (a self-signed certificate) and a client
    /// context builder that trusts it, for handshakes over a socket pair in-process.
    struct Tls12 {
        server: SslContext,
        cert: X509,
    }

    impl Tls12 {
        fn new() -> Tls12 {
            use openssl::asn1::Asn1Time;
            use openssl::ec::{EcGroup, EcKey};
            use openssl::hash::MessageDigest;
            use openssl::nid::Nid;
            use openssl::pkey::PKey;
            use openssl::ssl::SslVersion;
            use openssl::x509::X509NameBuilder;

            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
            let mut name = X509NameBuilder::new().unwrap();
            name.append_entry_by_text("CN", "broker.example.test")
                .unwrap();
            let name = name.build();
            let mut b = X509::builder().unwrap();
            b.set_version(2).unwrap();
            b.set_subject_name(&name).unwrap();
            b.set_issuer_name(&name).unwrap();
            b.set_pubkey(&key).unwrap();
            b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
                .unwrap();
            b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
                .unwrap();
            b.sign(&key, MessageDigest::sha256()).unwrap();
            let cert = b.build();

            let mut server = SslContext::builder(SslMethod::tls_server()).unwrap();
            server.set_private_key(&key).unwrap();
            server.set_certificate(&cert).unwrap();
            server
                .set_max_proto_version(Some(SslVersion::TLS1_2))
                .unwrap();
            Tls12 {
                server: server.build(),
                cert,
            }
        }

        /// A client context (TLS 1.2, verifying the server against its certificate).
        fn client(&self) -> openssl::ssl::SslContextBuilder {
            let mut client = SslContext::builder(SslMethod::tls_client()).unwrap();
            client.cert_store_mut().add_cert(self.cert.clone()).unwrap();
            client.set_verify(SslVerifyMode::PEER);
            client
                .set_max_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
                .unwrap();
            client
        }

        /// The client's end of a handshake of `ssl` with the server, or its error.
        fn try_handshake(
            &self,
            ssl: Ssl,
        ) -> Result<openssl::ssl::SslStream<std::os::unix::net::UnixStream>, String> {
            let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
            let server = self.server.clone();
            let t = std::thread::spawn(move || {
                // The server's own result is the client's concern here.
                let _ = Ssl::new(&server).unwrap().accept(b);
            });
            let stream = ssl.connect(a).map_err(|e| e.to_string());
            t.join().unwrap();
            stream
        }

        fn handshake(&self, ssl: Ssl) -> openssl::ssl::SslStream<std::os::unix::net::UnixStream> {
            self.try_handshake(ssl).expect("handshake")
        }

        /// A verified full handshake with the server from `client`, and its session. Keep the
        /// connection while the session is used: an `SSL` freed without a shutdown makes its
        /// session unresumable.
        fn session(
            &self,
            client: &SslContext,
        ) -> (
            openssl::ssl::SslStream<std::os::unix::net::UnixStream>,
            openssl::ssl::SslSession,
        ) {
            let first = self.handshake(Ssl::new(client).unwrap());
            assert_eq!(first.ssl().verify_result(), X509VerifyResult::OK);
            let session = first.ssl().session().unwrap().to_owned();
            (first, session)
        }
    }

    /// A refusal (or no configuration at all) stays the outcome when the connection then
    /// resumes a session anyway: a resumed session must not turn either into OK.
    #[test]
    fn a_resumed_session_does_not_override_a_refusal() {
        let tls = Tls12::new();
        let client = tls.client().build();
        let handshake = |ssl: Ssl| tls.handshake(ssl);
        let (_first, session) = tls.session(&client);
        let mut prepared = Ssl::new(&client).unwrap();
        remember(&mut prepared, None);
        // SAFETY: a session of this context.
        unsafe { prepared.set_session(&session).unwrap() };
        let prepared = handshake(prepared);
        assert!(prepared.ssl().session_reused());
        assert_eq!(
            outcome(prepared.ssl()),
            Err(Refusal::NotChecked),
            "a session offered after the SSL was configured was resumed without our check"
        );

        let why = Refusal::Bogus(tlsa_lookup(Proof::Bogus));
        let mut refused = Ssl::new(&client).unwrap();
        let tlsa = ServerTlsa {
            host: HOST.into(),
            port: 8883,
            names: vec![HOST.into()],
            address_proof: Proof::Secure,
            lookups: Vec::new(),
            records: Vec::new(),
            decision: Decision::Refuse(why.clone()),
        };
        assert!(tlsa.configure(&mut refused).is_err());
        // SAFETY: a session of this context.
        unsafe { refused.set_session(&session).unwrap() };
        let refused = handshake(refused);
        let mut untouched = Ssl::new(&client).unwrap();
        // SAFETY: as above.
        unsafe { untouched.set_session(&session).unwrap() };
        let untouched = handshake(untouched);
        assert!(refused.ssl().session_reused() && untouched.ssl().session_reused());
        assert_eq!(
            (outcome(refused.ssl()), outcome(untouched.ssl())),
            (Err(why), Err(Refusal::NotChecked))
        );
    }

    /// A resolver whose server does not answer (nothing listens on the port), failing fast.
    fn dead_resolver() -> Arc<Resolver> {
        use crate::resolver::{ResolverConfig, TrustAnchor};
        let mut config =
            ResolverConfig::new("127.0.0.1:9".parse().unwrap(), TrustAnchor::iana_root());
        config.query_timeout = std::time::Duration::from_millis(100);
        config.lookup_timeout = std::time::Duration::from_millis(300);
        Arc::new(Resolver::new(config).unwrap())
    }

    fn context_dane(on_refusal: fn(&str, &Refusal)) -> ContextDane {
        ContextDane {
            resolver: dead_resolver(),
            port: 8883,
            policy: Policy::Require,
            on_refusal: Some(on_refusal),
            on_checked: None,
        }
    }

    /// When OpenSSL cannot drop a session that is not vouched for (`SSL_set_session` failed;
    /// injected here, as OpenSSL 3.0 fails it only when out of memory), the session is not
    /// resumed: the handshake is refused, and the refusal is the outcome.
    #[test]
    fn a_session_that_cannot_be_dropped_is_not_resumed_but_refused() {
        let tls = Tls12::new();
        let client = tls.client().build();
        let (_first, session) = tls.session(&client);
        let offer = || {
            let mut ssl = Ssl::new(&client).unwrap();
            // SAFETY: a session of this context.
            unsafe { ssl.set_session(&session).unwrap() };
            ssl
        };
        let resumed = tls.handshake(offer());
        assert!(resumed.ssl().session_reused(), "the session resumes");

        let mut ssl = offer();
        let why = refuse_unless_dropped(&mut ssl, Err("SSL_set_session(NULL) failed".into()))
            .unwrap_err();
        assert!(
            why.to_string().contains("SSL_set_session(NULL) failed"),
            "{why}"
        );
        assert_eq!(outcome(&ssl), Err(why));
        let refused = tls.try_handshake(ssl);
        assert!(refused.is_err(), "resumed although not vouched for");
    }

    /// A second installation on a context fails and leaves the first whole: the chain
    /// verifier that runs is the first one (it reports to its own callback).
    #[test]
    fn a_second_install_on_a_context_fails_and_leaves_the_first() {
        static REPORTS: std::sync::Mutex<Vec<&str>> = std::sync::Mutex::new(Vec::new());
        fn first(_: &str, _: &Refusal) {
            REPORTS.lock().unwrap().push("first");
        }
        fn second(_: &str, _: &Refusal) {
            REPORTS.lock().unwrap().push("second");
        }
        let tls = Tls12::new();
        let mut client = tls.client();
        context_dane(first).install(&mut client).unwrap();
        let again = context_dane(second).install(&mut client).unwrap_err();
        assert!(again.contains("already"), "{again}");
        let client = client.build();
        // No server name: the verifier refuses before any look-up, and says so.
        assert!(tls.try_handshake(Ssl::new(&client).unwrap()).is_err());
        assert_eq!(*REPORTS.lock().unwrap(), ["first"]);
    }

    type InfoCallback = unsafe extern "C" fn(*const openssl_sys::SSL, libc::c_int, libc::c_int);

    extern "C" {
        fn SSL_set_info_callback(ssl: *mut openssl_sys::SSL, cb: Option<InfoCallback>);
    }

    unsafe extern "C" fn program_info_callback(
        _ssl: *const openssl_sys::SSL,
        _kind: libc::c_int,
        _value: libc::c_int,
    ) {
    }

    /// An info callback the program sets on one `SSL` replaces, for that `SSL`, the context's
    /// callback that runs the resumption check: the offered session is resumed unchecked, and
    /// the outcome says `NotChecked` (the handshake itself is not refused). With the context's
    /// callback the same session is dropped and, the DNS not answering, the handshake refused.
    #[test]
    fn an_ssl_level_info_callback_leaves_a_resumed_session_not_checked() {
        use foreign_types::ForeignTypeRef;
        fn ignore(_: &str, _: &Refusal) {}
        let tls = Tls12::new();
        let plain = tls.client().build();
        let (_first, session) = tls.session(&plain);
        let mut client = tls.client();
        context_dane(ignore).install(&mut client).unwrap();
        let client = client.build();
        let offer = || {
            let mut ssl = Ssl::new(&client).unwrap();
            ssl.set_hostname("broker.example.test").unwrap();
            // SAFETY: a session with this server, from a context of the same method.
            unsafe { ssl.set_session(&session).unwrap() };
            ssl
        };

        assert!(
            tls.try_handshake(offer()).is_err(),
            "checked: no records (no DNS), no resumption, refused"
        );
        let ssl = offer();
        // SAFETY: a live SSL; the callback does nothing and lives as long as the program.
        unsafe { SSL_set_info_callback(ssl.as_ptr(), Some(program_info_callback)) };
        let unchecked = tls.handshake(ssl);
        assert!(unchecked.ssl().session_reused());
        assert_eq!(outcome(unchecked.ssl()), Err(Refusal::NotChecked));
    }

    extern "C" {
        fn SSL_renegotiate(ssl: *mut openssl_sys::SSL) -> libc::c_int;
    }

    /// A TLS 1.2 renegotiation the server asks for (HelloRequest) is a handshake no check of
    /// ours ran for: the outcome turns `NotChecked`, also after a first handshake that resumed a
    /// session the records vouched for (that session is resumed again, unchecked).
    #[test]
    fn a_renegotiation_the_server_asks_for_is_not_checked() {
        use foreign_types::ForeignTypeRef;
        use openssl::ssl::SslMode;
        use std::io::{Read, Write};

        let tls = Tls12::new();
        let client = tls.client();
        // The client's read returns after the server's HelloRequest, with no data
        // (SSL_CTX_clear_mode, a macro of SSL_CTX_ctrl).
        const SSL_CTRL_CLEAR_MODE: libc::c_int = 78;
        // SAFETY: a live context; a plain setter of its mode bits.
        unsafe {
            openssl_sys::SSL_CTX_ctrl(
                client.as_ptr(),
                SSL_CTRL_CLEAR_MODE,
                SslMode::AUTO_RETRY.bits() as libc::c_long,
                std::ptr::null_mut(),
            )
        };
        let client = client.build();
        let (_first, session) = tls.session(&client);
        let vouching = ServerTlsa {
            host: HOST.into(),
            port: 8883,
            names: vec![HOST.into()],
            address_proof: Proof::Secure,
            lookups: Vec::new(),
            records: vec![crate::tlsa::Tlsa::for_certificate(
                &tls.cert,
                Usage::DaneEe,
                tlsa::Selector::Spki,
                tlsa::Matching::Sha256,
            )
            .unwrap()],
            decision: Decision::Dane,
        };
        let mut ssl = Ssl::new(&client).unwrap();
        // SAFETY: a session of this context.
        unsafe { ssl.set_session(&session).unwrap() };
        vouching.configure(&mut ssl).unwrap();

        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let server = tls.server.clone();
        let renegotiating = std::thread::spawn(move || {
            let mut stream = Ssl::new(&server).unwrap().accept(b).expect("server side");
            // SAFETY: a live server SSL after its handshake.
            assert_eq!(unsafe { SSL_renegotiate(stream.ssl().as_ptr()) }, 1);
            stream.do_handshake().expect("HelloRequest sent");
            // The renegotiation runs in this read, which ends with the client's byte.
            let mut byte = [0u8];
            stream.read_exact(&mut byte).expect("the client's byte");
        });
        let mut stream = ssl.connect(a).expect("handshake");
        assert!(stream.ssl().session_reused());
        assert_eq!(outcome(stream.ssl()), Ok(()), "the vouched session resumed");
        let mut byte = [0u8];
        let read = stream.ssl_read(&mut byte);
        assert!(
            read.as_ref()
                .is_err_and(|e| e.code() == openssl::ssl::ErrorCode::WANT_READ),
            "the HelloRequest, and no data: {read:?}"
        );
        // The renegotiation runs before the byte goes out.
        stream.write_all(b"y").unwrap();
        renegotiating.join().unwrap();
        // SAFETY: a live SSL; SSL_total_renegotiations (SSL_CTRL_GET_TOTAL_RENEGOTIATIONS).
        let renegotiations =
            unsafe { openssl_sys::SSL_ctrl(stream.ssl().as_ptr(), 12, 0, std::ptr::null_mut()) };
        assert_eq!(renegotiations, 1, "the server's renegotiation ran");
        assert!(stream.ssl().session_reused(), "resuming the session again");
        assert_eq!(outcome(stream.ssl()), Err(Refusal::NotChecked));
    }
}
