//! The `iotsafe dane ...` subcommands: their arguments, and the reports of the checks the `dane`
//! crate runs (`dane::check`, `dane::client`).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use dane::ca_discovery;
use dane::check::check_server;
use dane::client::ClientVerifier;
use dane::name::DomainName;
use dane::resolver::{ResolveError, Resolver, ResolverConfig, TrustAnchor, Validation};
use dane::server::Policy;

/// `--policy`: what to do when a server has no secure TLSA records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    /// No secure usable records: the server is refused.
    Require,
    /// No secure usable records: the program's own PKIX checks decide.
    Opportunistic,
}

impl From<PolicyArg> for Policy {
    fn from(arg: PolicyArg) -> Self {
        match arg {
            PolicyArg::Require => Policy::Require,
            PolicyArg::Opportunistic => Policy::Opportunistic,
        }
    }
}

/// `iotsafe dane <command>`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum DaneCommand {
    /// Connect to HOST PORT over TLS and authenticate the server by its TLSA records
    /// (_PORT._tcp.HOST). Exit status 0 only when the server is authenticated.
    CheckServer {
        host: String,
        port: u16,
        /// What to do when the server has no secure TLSA records.
        #[arg(long, value_enum, default_value = "require")]
        policy: PolicyArg,
        /// CA certificates (PEM) for the PKIX usages 0 and 1 and the opportunistic fallback;
        /// the system's store when absent.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        #[command(flatten)]
        dns: DnsArgs,
    },
    /// Verify a device certificate against the TLSA records at its DANE client identity
    /// OWNER. Exit status 0 only when the device is authenticated.
    CheckClient {
        /// The device certificate (PEM).
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// Intermediate/CA certificates the device sends after its certificate (PEM).
        #[arg(long, value_name = "FILE")]
        chain: Option<PathBuf>,
        /// The device's DANE client identity (TLSA owner name), e.g. sensor7._device.example.com.
        #[arg(long, value_name = "OWNER")]
        name: String,
        /// Domains whose names may be looked up (repeatable); any name when absent.
        #[arg(long = "allowed-domain", value_name = "DOMAIN", value_parser = domain_arg)]
        allowed_domains: Vec<String>,
        /// CA certificates (PEM) for the PKIX usages 0 and 1.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        #[command(flatten)]
        dns: DnsArgs,
    },
    /// Write the CA certificates a registry publishes at DOMAIN (TLSA 0 0 0 / 2 0 0 records,
    /// draft-wilson-dane-pkix-cd) to FILE, for a broker's cafile. Only a DNSSEC-secure answer
    /// is accepted: bogus, insecure or failed look-ups write nothing and exit non-zero.
    FetchCa {
        /// The name the CA records are published at, e.g. _device.iotregistry.example.
        domain: String,
        /// Where the PEM certificates go (replaced).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        dns: DnsArgs,
    },
}

/// How to reach and trust the DNS.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DnsArgs {
    /// The DNS server asked for every name, the server's address included
    /// (default: the first nameserver of /etc/resolv.conf).
    #[arg(long, value_name = "ADDR:PORT")]
    pub resolver: Option<SocketAddr>,
    /// Root trust anchor: zone-file lines of DNSKEY or DS records
    /// (default: the IANA root keys).
    #[arg(long, value_name = "FILE", conflicts_with = "trust_ad")]
    pub trust_anchor: Option<PathBuf>,
    /// Do not validate; trust the AD bit of the resolver (which must be on loopback).
    #[arg(long)]
    pub trust_ad: bool,
    /// Seconds a whole DNS look-up may take.
    #[arg(long, default_value_t = 5)]
    pub dns_timeout: u64,
}

impl DnsArgs {
    /// The resolver these options describe.
    pub fn resolver(&self) -> Result<Resolver, ResolveError> {
        let server = match self.resolver {
            Some(addr) => addr,
            None => system_nameserver(),
        };
        let anchor = match &self.trust_anchor {
            Some(path) => TrustAnchor::from_file(path)?,
            None => TrustAnchor::iana_root(),
        };
        let mut config = ResolverConfig::new(server, anchor);
        if self.trust_ad {
            config.validation = Validation::TrustAdBit;
        }
        config.lookup_timeout = Duration::from_secs(self.dns_timeout.max(1));
        // Each query may take half the look-up (a retry fits), never less than the default:
        // a slow path to the resolver is waited for as long as the user allows.
        config.query_timeout = config.query_timeout.max(config.lookup_timeout / 2);
        Resolver::new(config)
    }
}

impl DnsArgs {
    /// When answers are bogus because the DNS server strips DNSSEC records (a resolver that
    /// does not pass them on), what to use instead. Asked only after a bogus answer, and only
    /// when validating here (with `--trust-ad` the resolver validates).
    pub fn unsigned_resolver_hint(&self) -> Option<String> {
        if self.trust_ad {
            return None;
        }
        let server = self.resolver.unwrap_or_else(system_nameserver);
        match returns_signatures(server) {
            Some(false) => Some(format!(
                "the DNS server {server} returns no DNSSEC signatures (no RRSIG with the root's \
                 DNSKEY): it does not pass DNSSEC records on, so no answer can be validated; \
                 use a validating resolver on loopback with --trust-ad, or --resolver one that \
                 returns signatures"
            )),
            _ => None,
        }
    }
}

/// Whether `server` answers the root's DNSKEY, asked with the DO bit, with its signature;
/// `None` when it does not answer in 2 s.
fn returns_signatures(server: SocketAddr) -> Option<bool> {
    use hickory_resolver::proto::op::{Edns, Message, Query};
    use hickory_resolver::proto::rr::{Name, RecordType};
    let mut query = Message::query();
    query.add_query(Query::query(Name::root(), RecordType::DNSKEY));
    query.metadata.recursion_desired = true;
    let mut edns = Edns::new();
    edns.enable_dnssec();
    edns.set_max_payload(4096);
    query.edns = Some(edns);
    let bytes = query.to_vec().ok()?;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(local).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    socket.send_to(&bytes, server).ok()?;
    let mut buf = vec![0u8; 65535];
    let len = socket.recv(&mut buf).ok()?;
    let response = Message::from_vec(&buf[..len]).ok()?;
    Some(
        response
            .answers
            .iter()
            .any(|r| r.record_type() == RecordType::RRSIG),
    )
}

/// An allowed domain as given, once it is known to be a domain name.
fn domain_arg(text: &str) -> Result<String, String> {
    DomainName::parse(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

fn system_nameserver() -> SocketAddr {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    conf.lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53)))
}

/// `fetch-ca`: the report, and whether the file was written.
fn fetch_ca(resolver: &Resolver, domain: &str, out: &Path) -> (bool, String) {
    let published = match ca_discovery::fetch(resolver, domain) {
        Ok(p) => p,
        Err(why) => return (false, format!("NOT WRITTEN: {why}")),
    };
    let mut pem = Vec::new();
    for ca in &published.cas {
        match ca.to_pem() {
            Ok(bytes) => pem.extend(bytes),
            Err(e) => return (false, format!("NOT WRITTEN: {e}")),
        }
    }
    match write_atomically(out, &pem) {
        Ok(()) => (true, format!("{published}wrote {}", out.display())),
        Err(e) => (false, format!("NOT WRITTEN: {}: {e}", out.display())),
    }
}

/// Writes `bytes` to a temporary file beside `out` and renames it over `out`: a broker reading
/// its cafile sees the old file or the new one, never a truncated one, and a failed write
/// leaves the old file as it was.
pub(crate) fn write_atomically(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = out
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{}.tmp", std::process::id()));
    let temp = out.with_file_name(temp_name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, out));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// What a subcommand found: a report (authenticated or not), or an error before any check.
enum Outcome {
    Report { authenticated: bool, text: String },
    Error(String),
}

/// Runs one subcommand, prints its report, and returns the process exit status: the report
/// on stdout; on failure, one line on stderr starting with `iotsafe:` (the report's verdict,
/// or the error).
pub fn run(cmd: DaneCommand) -> i32 {
    let dns = match &cmd {
        DaneCommand::CheckServer { dns, .. }
        | DaneCommand::CheckClient { dns, .. }
        | DaneCommand::FetchCa { dns, .. } => dns.clone(),
    };
    match outcome(cmd) {
        Outcome::Report {
            authenticated: true,
            text,
        } => {
            println!("{text}");
            0
        }
        Outcome::Report { text, .. } => {
            println!("{text}");
            eprintln!("iotsafe: {}", verdict(&text));
            if text.contains("bogus") {
                if let Some(hint) = dns.unsigned_resolver_hint() {
                    eprintln!("iotsafe: {hint}");
                }
            }
            1
        }
        Outcome::Error(message) => {
            eprintln!("iotsafe: {message}");
            1
        }
    }
}

/// A report's verdict (from its `AUTHENTICATED` or `NOT AUTHENTICATED` on) on one line.
pub fn verdict(report: &str) -> String {
    let start = report
        .find("NOT AUTHENTICATED")
        .or_else(|| report.find("AUTHENTICATED"))
        .unwrap_or(0);
    report[start..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn outcome(cmd: DaneCommand) -> Outcome {
    let report = |authenticated: bool, text: String| Outcome::Report {
        authenticated,
        text,
    };
    match cmd {
        DaneCommand::CheckServer {
            host,
            port,
            policy,
            ca_file,
            dns,
        } => match dns.resolver() {
            Ok(r) => {
                let check = check_server(&r, &host, port, policy.into(), ca_file.as_deref());
                report(check.authenticated(), check.to_string())
            }
            Err(e) => Outcome::Error(e.to_string()),
        },
        DaneCommand::CheckClient {
            cert,
            chain,
            name,
            allowed_domains,
            ca_file,
            dns,
        } => match dns.resolver() {
            Ok(r) => {
                let verifier = ClientVerifier::new(allowed_domains, ca_file);
                match verifier.verify_files(&r, &name, &cert, chain.as_deref()) {
                    Ok(v) => report(v.authenticated(), v.to_string()),
                    Err(e) => Outcome::Error(e),
                }
            }
            Err(e) => Outcome::Error(e.to_string()),
        },
        DaneCommand::FetchCa { domain, out, dns } => match dns.resolver() {
            Ok(r) => match fetch_ca(&r, &domain, &out) {
                (true, text) => report(true, text),
                (false, why) => Outcome::Error(why),
            },
            Err(e) => Outcome::Error(e.to_string()),
        },
    }
}
