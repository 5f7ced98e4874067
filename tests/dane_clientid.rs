//! The `dane_clientid` extension in real TLS 1.3 handshakes (OpenSSL on both ends, loopback).

mod common;

use common::{dns, pki};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use iotsafe_dane::dane::client::ClientVerifier;
use iotsafe_dane::dane::clientid_ext::{
    enable_client, enable_server, peer_identity, received_name, ClientIdServer, MissingName,
    DEFAULT_CODE_POINT, MAX_CERT_IDENTITIES,
};
use iotsafe_dane::dane::resolver::{Clock, Resolver, ResolverConfig};
use openssl::ssl::{
    HandshakeError, SslAcceptor, SslConnector, SslMethod, SslVerifyMode, SslVersion,
};

const NAME: &str = "sensor7._device.iotregistry.test";

struct Setup {
    _dir: tempfile::TempDir,
    _dns: dns::TestDns,
    resolver: Arc<Resolver>,
    server: pki::Issued,
    device: pki::Issued,
    stranger: pki::Issued,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = pki::leaf(d, "srv", "broker", &["broker.example.test"], None);
    let device = pki::leaf(d, "dev", "dev", &[NAME], None);
    let stranger = pki::leaf(d, "stranger", "x", &[], None);
    let record = pki::dane_ee_record(&device.cert);
    let line = format!("sensor7._device 300 IN TLSA {record}");
    let dns = dns::TestDns::start(&[("iotregistry.test.", line.as_str())]);
    let resolver = Resolver::new(ResolverConfig::new(
        dns.addr(),
        dns.trust_anchor().parse().unwrap(),
    ))
    .unwrap();
    Setup {
        _dir: dir,
        _dns: dns,
        resolver: Arc::new(resolver),
        server,
        device,
        stranger,
    }
}

/// What the server saw: handshake result, the name received, the authenticated name.
type Seen = Result<(Option<String>, Option<String>), String>;

fn handshake(
    s: &Setup,
    missing: MissingName,
    tls13_only: bool,
    client_cert: &pki::Issued,
    client_name: Option<&str>,
    client_max: Option<SslVersion>,
) -> (Seen, bool) {
    let config = ClientIdServer {
        resolver: s.resolver.clone(),
        verifier: registry_verifier().into(),
        code_point: DEFAULT_CODE_POINT,
        missing,
        tls13_only,
    };
    handshake_with(s, config, client_cert, client_name, client_max)
}

fn handshake_with(
    s: &Setup,
    config: ClientIdServer,
    client_cert: &pki::Issued,
    client_name: Option<&str>,
    client_max: Option<SslVersion>,
) -> (Seen, bool) {
    let device = Device {
        cert: client_cert,
        name: client_name,
        max: client_max,
    };
    handshake_on(s, config, &device, ServerThread::Plain)
}

/// The client side of a handshake.
struct Device<'a> {
    cert: &'a pki::Issued,
    name: Option<&'a str>,
    max: Option<SslVersion>,
}

/// Where the server's handshake runs.
#[derive(Clone, Copy)]
enum ServerThread {
    Plain,
    /// In a task of a tokio runtime, as in an async server.
    InsideTokio,
}

fn handshake_on(
    s: &Setup,
    config: ClientIdServer,
    device: &Device,
    thread: ServerThread,
) -> (Seen, bool) {
    let (client_cert, client_name, client_max) = (device.cert, device.name, device.max);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate(&s.server.cert).unwrap();
    acceptor.set_private_key(&s.server.key).unwrap();
    enable_server(&mut acceptor, Arc::new(config)).unwrap();
    let acceptor = acceptor.build();
    let serve = move || -> Seen {
        let (stream, _) = listener.accept().unwrap();
        let mut tls = acceptor.accept(stream).map_err(|e| match &e {
            // The server's own account of a refusal: the verification kept on the SSL.
            HandshakeError::Failure(mid) => match peer_identity(mid.ssl()) {
                Some(v) => format!("{e}: {v}"),
                None => e.to_string(),
            },
            _ => e.to_string(),
        })?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        tls.write_all(b"hello").unwrap();
        let ssl = tls.ssl();
        let authenticated = peer_identity(ssl)
            .filter(|v| v.authenticated())
            .map(|v| v.name.clone());
        Ok((received_name(ssl).map(str::to_string), authenticated))
    };
    let server = thread::spawn(move || match thread {
        ServerThread::Plain => serve(),
        ServerThread::InsideTokio => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move { serve() }),
    });

    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    connector.set_certificate(&client_cert.cert).unwrap();
    connector.set_private_key(&client_cert.key).unwrap();
    connector.set_max_proto_version(client_max).unwrap();
    if let Some(name) = client_name {
        enable_client(&mut connector, name, DEFAULT_CODE_POINT).unwrap();
    }
    let connector = connector.build();
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_ok = match connector
        .configure()
        .unwrap()
        .verify_hostname(false)
        .connect("broker.example.test", stream)
    {
        Ok(mut tls) => {
            // In TLS 1.3 the server judges the client certificate after the client's side of
            // the handshake is done: only a round trip shows the verdict.
            tls.write_all(b"hello").is_ok() && {
                let mut buf = [0u8; 5];
                tls.read_exact(&mut buf).is_ok()
            }
        }
        Err(_) => false,
    };
    (server.join().unwrap(), client_ok)
}

#[test]
fn name_in_extension_authenticates_the_device() {
    let s = setup();
    let (seen, client_ok) = handshake(&s, MissingName::Refuse, true, &s.device, Some(NAME), None);
    assert_eq!(seen, Ok((Some(NAME.to_string()), Some(NAME.to_string()))));
    assert!(client_ok);
}

#[test]
fn wrong_key_for_the_name_is_refused_in_the_handshake() {
    let s = setup();
    let (seen, client_ok) = handshake(&s, MissingName::Refuse, true, &s.stranger, Some(NAME), None);
    assert!(seen.is_err(), "{seen:?}");
    assert!(!client_ok);
}

#[test]
fn client_without_extension_is_handled_by_policy() {
    let s = setup();
    let (seen, _) = handshake(&s, MissingName::Refuse, true, &s.device, None, None);
    assert!(seen.is_err(), "refuse: {seen:?}");
    let (seen, _) = handshake(
        &s,
        MissingName::FromCertificate,
        true,
        &s.device,
        None,
        None,
    );
    assert_eq!(
        seen,
        Ok((None, Some(NAME.to_string()))),
        "identity from the SAN"
    );
    let (seen, _) = handshake(
        &s,
        MissingName::Unauthenticated,
        true,
        &s.stranger,
        None,
        None,
    );
    assert_eq!(seen, Ok((None, None)), "completes without an identity");
}

#[test]
fn tls12_is_refused_when_identities_are_required() {
    let s = setup();
    let (seen, client_ok) = handshake(
        &s,
        MissingName::Refuse,
        true,
        &s.device,
        Some(NAME),
        Some(SslVersion::TLS1_2),
    );
    assert!(seen.is_err(), "{seen:?}");
    assert!(!client_ok);
}

/// A name sent in the extension with an escaped dot (`foo\.iotregistry` is one label, so the
/// name lies in `test.`) must not pass the allowed domain `iotregistry.test` even though an
/// attacker published a secure record for it there: refused in the handshake, the refusal
/// naming the name, and no identity for the peer.
#[test]
fn escaped_dot_in_the_extension_name_is_refused() {
    let s = setup();
    let record = pki::dane_ee_record(&s.stranger.cert);
    s._dns.add_record(
        "test.",
        &format!("x._device.foo\\.iotregistry 300 IN TLSA {record}"),
    );
    let escaped = r"x._device.foo\.iotregistry.test";
    let (seen, client_ok) = handshake(
        &s,
        MissingName::Refuse,
        true,
        &s.stranger,
        Some(escaped),
        None,
    );
    let why = seen.expect_err("the escaped name must be refused");
    assert!(why.contains(escaped), "{why}");
    assert!(why.contains("no DNS query"), "{why}");
    assert!(!client_ok);
    // The same device under its real name still gets in.
    let (seen, _) = handshake(&s, MissingName::Refuse, true, &s.device, Some(NAME), None);
    assert_eq!(seen, Ok((Some(NAME.to_string()), Some(NAME.to_string()))));
}

/// A DNS server that never answers: a UDP socket nobody reads and a TCP listener nobody
/// accepts on, on one loopback port.
struct SilentDns {
    _udp: UdpSocket,
    _tcp: TcpListener,
    addr: SocketAddr,
}

impl SilentDns {
    fn start() -> SilentDns {
        let port = common::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        SilentDns {
            _udp: UdpSocket::bind(addr).unwrap(),
            _tcp: TcpListener::bind(addr).unwrap(),
            addr,
        }
    }
}

/// A resolver asking `silent`, each look-up given up after `LOOKUP_TIMEOUT`.
fn silent_resolver(s: &Setup, silent: &SilentDns) -> Arc<Resolver> {
    let mut config = ResolverConfig::new(silent.addr, s._dns.trust_anchor().parse().unwrap());
    config.query_timeout = LOOKUP_TIMEOUT / 2;
    config.lookup_timeout = LOOKUP_TIMEOUT;
    Arc::new(Resolver::new(config).unwrap())
}

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A certificate naming `count` device identities (`n0._device.iotregistry.test`, ...), in
/// `dir` as `file`.
fn cert_with_identities(dir: &tempfile::TempDir, file: &str, count: usize) -> pki::Issued {
    let names: Vec<String> = (0..count)
        .map(|i| format!("n{i}._device.iotregistry.test"))
        .collect();
    let sans: Vec<&str> = names.iter().map(String::as_str).collect();
    pki::leaf(dir.path(), file, file, &sans, None)
}

/// The verifier of the tests: identities in `iotregistry.test`.
fn registry_verifier() -> ClientVerifier {
    ClientVerifier::new(vec!["iotregistry.test".into()], None)
}

/// A TLS 1.3 server taking the identities from the certificate, looking them up with
/// `resolver`.
fn from_cert_server(resolver: Arc<Resolver>, verifier: ClientVerifier) -> ClientIdServer {
    ClientIdServer {
        resolver,
        verifier: verifier.into(),
        code_point: DEFAULT_CODE_POINT,
        missing: MissingName::FromCertificate,
        tls13_only: true,
    }
}

/// FROM_CERT with a certificate naming 20 identities, in a zone whose server drops queries:
/// refused at once (more identities than a certificate may name), without a DNS query, the
/// refusal saying why; not 20 look-ups in a row holding the server.
#[test]
fn from_cert_refuses_a_certificate_with_too_many_identities_without_dns() {
    let s = setup();
    let silent = SilentDns::start();
    let resolver = silent_resolver(&s, &silent);
    let dir = tempfile::tempdir().unwrap();
    let cert = cert_with_identities(&dir, "many", 20);
    let config = from_cert_server(resolver.clone(), registry_verifier());
    let start = Instant::now();
    let (seen, client_ok) = handshake_with(&s, config, &cert, None, None);
    let took = start.elapsed();
    let why = seen.expect_err("a certificate with 20 identities must be refused");
    assert!(!client_ok);
    assert!(why.contains("20 DANE identities"), "{why}");
    assert!(why.contains("at most 8"), "{why}");
    assert!(took < 3 * LOOKUP_TIMEOUT, "the handshake took {took:?}");
    assert_eq!(resolver.queries_sent(), 0);
}

/// FROM_CERT with as many identities as a certificate may name, in a zone whose server drops
/// queries: all the look-ups share one time budget, so the handshake ends (refused, saying the
/// budget is spent) within a small multiple of it instead of one time-out per identity.
#[test]
fn from_cert_lookups_share_one_time_budget() {
    let s = setup();
    let silent = SilentDns::start();
    let resolver = silent_resolver(&s, &silent);
    let dir = tempfile::tempdir().unwrap();
    let cert = cert_with_identities(&dir, "eight", MAX_CERT_IDENTITIES);
    let budget = LOOKUP_TIMEOUT;
    let config = from_cert_server(resolver, registry_verifier().with_time_budget(budget));
    let start = Instant::now();
    let (seen, client_ok) = handshake_with(&s, config, &cert, None, None);
    let took = start.elapsed();
    let why = seen.expect_err("no identity can be looked up");
    assert!(!client_ok);
    assert!(why.contains("time budget"), "{why}");
    assert!(took < 3 * budget, "the handshake took {took:?}");
}

/// The server's verification runs inside a tokio runtime (an async server doing its TLS
/// handshakes in tasks): the device is authenticated as anywhere else, the look-up done on the
/// resolver's own thread.
#[test]
fn a_server_inside_a_tokio_runtime_authenticates_the_device() {
    let s = setup();
    let config = ClientIdServer {
        resolver: s.resolver.clone(),
        verifier: registry_verifier().into(),
        code_point: DEFAULT_CODE_POINT,
        missing: MissingName::Refuse,
        tls13_only: true,
    };
    let device = Device {
        cert: &s.device,
        name: Some(NAME),
        max: None,
    };
    let (seen, client_ok) = handshake_on(&s, config, &device, ServerThread::InsideTokio);
    assert_eq!(seen, Ok((Some(NAME.into()), Some(NAME.into()))));
    assert!(client_ok);
}

/// A clock that panics at its `fault_at`-th reading from now on (counted from 0), once: a fault
/// inside the resolver, in the middle of a handshake's verify callback.
struct FaultyClock {
    reads: AtomicUsize,
    fault_at: AtomicUsize,
}

impl FaultyClock {
    fn new() -> Self {
        Self {
            reads: AtomicUsize::new(0),
            fault_at: AtomicUsize::new(usize::MAX),
        }
    }

    fn fail_at_read(&self, n: usize) {
        self.reads.store(0, Ordering::SeqCst);
        self.fault_at.store(n, Ordering::SeqCst);
    }
}

impl Clock for FaultyClock {
    fn now(&self) -> Instant {
        let read = self.reads.fetch_add(1, Ordering::SeqCst);
        if read == self.fault_at.load(Ordering::SeqCst) {
            self.fault_at.store(usize::MAX, Ordering::SeqCst);
            panic!("injected fault in the resolver's clock");
        }
        Instant::now()
    }
}

/// A panic inside the callback path (here in the resolver, while the look-up of the device's
/// name is in flight) fails that handshake with an alert and an error that says so, on the
/// server's OpenSSL error queue; the process goes on, and the next handshake with the same
/// name is decided normally at once (the abandoned look-up does not hold it).
#[test]
fn a_panic_in_the_verify_callback_fails_the_handshake_not_the_process() {
    let s = setup();
    let clock = Arc::new(FaultyClock::new());
    let resolver = Resolver::with_clock(
        ResolverConfig::new(s._dns.addr(), s._dns.trust_anchor().parse().unwrap()),
        clock.clone(),
    )
    .unwrap();
    let resolver = Arc::new(resolver);
    let server = || ClientIdServer {
        resolver: resolver.clone(),
        verifier: registry_verifier().into(),
        code_point: DEFAULT_CODE_POINT,
        missing: MissingName::Refuse,
        tls13_only: true,
    };
    // Read 0: the cache probe; read 1: the probe again once this look-up leads the flight.
    clock.fail_at_read(1);
    let (seen, client_ok) = handshake_with(&s, server(), &s.device, Some(NAME), None);
    let error = seen.expect_err("the handshake fails");
    assert!(!client_ok);
    assert!(
        error.contains("internal error (panic) in the certificate verify callback"),
        "{error}"
    );
    assert!(error.contains("injected fault"), "{error}");

    let start = Instant::now();
    let (seen, client_ok) = handshake_with(&s, server(), &s.device, Some(NAME), None);
    assert_eq!(seen, Ok((Some(NAME.into()), Some(NAME.into()))));
    assert!(client_ok);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}
