//! The `dane_clientid` extension in real TLS 1.3 handshakes (OpenSSL on both ends, loopback).

mod common;

use common::{dns, pki};

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use iotsafe_dane::dane::client::ClientVerifier;
use iotsafe_dane::dane::clientid_ext::{
    enable_client, enable_server, peer_identity, received_name, ClientIdServer, MissingName,
    DEFAULT_CODE_POINT,
};
use iotsafe_dane::dane::resolver::{Resolver, ResolverConfig};
use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};
use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode, SslVersion};

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
    let record = Tlsa::for_certificate(
        &device.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
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
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate(&s.server.cert).unwrap();
    acceptor.set_private_key(&s.server.key).unwrap();
    let config = Arc::new(ClientIdServer {
        resolver: s.resolver.clone(),
        verifier: ClientVerifier::new(vec!["iotregistry.test".into()], None).into(),
        code_point: DEFAULT_CODE_POINT,
        missing,
        tls13_only,
    });
    enable_server(&mut acceptor, config).unwrap();
    let acceptor = acceptor.build();
    let server = thread::spawn(move || -> Seen {
        let (stream, _) = listener.accept().unwrap();
        let mut tls = acceptor.accept(stream).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        tls.write_all(b"hello").unwrap();
        let ssl = tls.ssl();
        let authenticated = peer_identity(ssl)
            .filter(|v| v.authenticated())
            .map(|v| v.name.clone());
        Ok((received_name(ssl).map(str::to_string), authenticated))
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
