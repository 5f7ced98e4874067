//! The checks behind `iotsafe dane check-server|check-client`, as library functions returning
//! reports, so that the command-line tool, the tests and other front ends run the same code.

use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use hickory_resolver::proto::rr::RData;
use openssl::ssl::{Ssl, SslContext, SslMethod};

use crate::resolver::Resolver;
use crate::server::{self, Authority, Decision, Policy, ServerTlsa};

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
