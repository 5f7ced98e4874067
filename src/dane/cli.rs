//! The `iotsafe dane ...` subcommands: clap arguments, and the checks behind them as library
//! functions returning reports (so tests and other front ends use the same code).

use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_resolver::proto::rr::RData;
use openssl::ssl::{Ssl, SslContext, SslMethod};

use super::name::DomainName;
use super::resolver::{ResolveError, Resolver, ResolverConfig, TrustAnchor, Validation};
use super::server::{self, Authority, Decision, Policy, ServerTlsa};

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
        policy: Policy,
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
        Resolver::new(config)
    }
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

/// Runs one subcommand, prints its report, and returns the process exit status.
pub fn run(cmd: DaneCommand) -> i32 {
    let (ok, report) = match cmd {
        DaneCommand::CheckServer {
            host,
            port,
            policy,
            ca_file,
            dns,
        } => match dns.resolver() {
            Ok(r) => {
                let check = check_server(&r, &host, port, policy, ca_file.as_deref());
                (check.authenticated(), check.to_string())
            }
            Err(e) => (false, e.to_string()),
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
                let verifier = super::client::ClientVerifier::new(allowed_domains, ca_file);
                match verifier.verify_files(&r, &name, &cert, chain.as_deref()) {
                    Ok(v) => (v.authenticated(), v.to_string()),
                    Err(e) => (false, e),
                }
            }
            Err(e) => (false, e.to_string()),
        },
    };
    if ok {
        println!("{report}");
        0
    } else {
        eprintln!("{report}");
        1
    }
}

/// The result of `check-server`: the DNS facts, where it connected, and the verdict.
#[derive(Debug)]
pub struct ServerCheck {
    pub tlsa: ServerTlsa,
    pub address: Option<SocketAddr>,
    pub result: Result<Authority, String>,
}

impl ServerCheck {
    pub fn authenticated(&self) -> bool {
        self.result.is_ok()
    }
}

impl fmt::Display for ServerCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.tlsa)?;
        if let Some(addr) = self.address {
            writeln!(f, "  connected to {addr}")?;
        }
        match &self.result {
            Ok(Authority::Tlsa { record, depth }) => write!(
                f,
                "AUTHENTICATED: TLSA {record} ({}) matched the certificate at depth {depth}",
                record.usage().map_or("?", |u| u.name())
            ),
            Ok(Authority::Pkix) => write!(f, "AUTHENTICATED: by PKIX and host name (no DANE)"),
            Err(why) => write!(f, "NOT AUTHENTICATED: {why}"),
        }
    }
}

/// Looks up `host`'s TLSA records and address with `resolver`, connects, and authenticates the
/// server over TLS.
pub fn check_server(
    resolver: &Resolver,
    host: &str,
    port: u16,
    policy: Policy,
    ca_file: Option<&Path>,
) -> ServerCheck {
    let tlsa = ServerTlsa::lookup(resolver, host, port, policy);
    let mut address = None;
    let result = connect(resolver, &tlsa, &mut address, ca_file);
    ServerCheck {
        tlsa,
        address,
        result,
    }
}

fn connect(
    resolver: &Resolver,
    tlsa: &ServerTlsa,
    address: &mut Option<SocketAddr>,
    ca_file: Option<&Path>,
) -> Result<Authority, String> {
    if let Decision::Refuse(why) = &tlsa.decision {
        return Err(why.to_string());
    }
    let host = tlsa.host.trim_end_matches('.').to_string();
    // Cached by the TLSA decision's own address look-up.
    let addresses = resolver
        .resolve(&host, hickory_resolver::proto::rr::RecordType::A)
        .map_err(|e| e.to_string())?;
    let ip = addresses
        .records()
        .iter()
        .find_map(|r| match r {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .ok_or_else(|| format!("{host} has no IPv4 address"))?;
    let addr = SocketAddr::new(ip, tlsa.port);
    *address = Some(addr);
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));

    let mut ctx = SslContext::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    match ca_file {
        Some(path) => ctx.set_ca_file(path),
        None => ctx.set_default_verify_paths(),
    }
    .map_err(|e| format!("CA certificates: {e}"))?;
    let ctx = ctx.build();
    let mut ssl = Ssl::new(&ctx).map_err(|e| e.to_string())?;
    ssl.set_hostname(&host).map_err(|e| e.to_string())?;
    tlsa.configure(&mut ssl)
        .map_err(|why| tlsa.refusal_message(&why))?;
    match ssl.connect(stream) {
        Ok(tls) => server::authority(tls.ssl(), &tlsa.decision).map_err(|why| why.to_string()),
        Err(e) => {
            let verify = match &e {
                openssl::ssl::HandshakeError::Failure(mid) => Some(mid.ssl().verify_result()),
                _ => None,
            };
            let verify = verify
                .filter(|v| *v != openssl::x509::X509VerifyResult::OK)
                .map(|v| format!(": certificate verification failed: {}", v.error_string()))
                .unwrap_or_default();
            Err(format!("TLS handshake with {addr} failed{verify} ({e})"))
        }
    }
}
