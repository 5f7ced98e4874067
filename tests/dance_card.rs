//! The whole product in one handshake: a device whose key never leaves its (simulated) SIM
//! connects with TLS 1.3, names itself in the `dane_clientid` extension, and the server admits it
//! because the TLSA record at that name, DNSSEC-validated from the root of a real signed zone,
//! matches the certificate. A device naming someone else's identity is refused.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::thread;

use common::card::CardRig;
use common::{dns, ok, pki};
use iotsafe_dane::dane::client::ClientVerifier;
use iotsafe_dane::dane::clientid_ext::{
    enable_client, enable_server, peer_identity, ClientIdServer, MissingName, DEFAULT_CODE_POINT,
};
use iotsafe_dane::dane::resolver::{Resolver, ResolverConfig};
use openssl::ssl::{SslAcceptor, SslConnector, SslFiletype, SslMethod, SslVerifyMode};

const DEVICE: &str = "sensor7._device.iotregistry.test";
const OTHER: &str = "sensor8._device.iotregistry.test";

/// One handshake: the card's certificate and key reference, claiming `name`. Returns the
/// identity the server authenticated, or why the connection failed.
fn connect(
    resolver: Arc<Resolver>,
    server: &pki::Issued,
    cert: &Path,
    keyref: &Path,
    name: &str,
) -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate(&server.cert).unwrap();
    acceptor.set_private_key(&server.key).unwrap();
    let policy = ClientIdServer {
        resolver,
        verifier: ClientVerifier::new(vec!["iotregistry.test".into()], None).into(),
        code_point: DEFAULT_CODE_POINT,
        missing: MissingName::Refuse,
        tls13_only: true,
    };
    enable_server(&mut acceptor, Arc::new(policy)).unwrap();
    let acceptor = acceptor.build();
    let server = thread::spawn(move || -> Result<String, String> {
        let (stream, _) = listener.accept().unwrap();
        let mut tls = acceptor.accept(stream).map_err(|e| e.to_string())?;
        let mut hello = [0u8; 5];
        tls.read_exact(&mut hello).map_err(|e| e.to_string())?;
        tls.write_all(b"hello").map_err(|e| e.to_string())?;
        let identity = peer_identity(tls.ssl())
            .filter(|v| v.authenticated())
            .map(|v| v.name.clone());
        identity.ok_or_else(|| "no authenticated identity".to_string())
    });

    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    connector
        .set_certificate_file(cert, SslFiletype::PEM)
        .unwrap();
    // The application loads its key as from any PEM file: the provider resolves the reference.
    connector
        .set_private_key_file(keyref, SslFiletype::PEM)
        .expect("key reference");
    enable_client(&mut connector, name, DEFAULT_CODE_POINT).unwrap();
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client = connector
        .build()
        .configure()
        .unwrap()
        .verify_hostname(false)
        .connect("broker", stream);
    if let Ok(mut tls) = client {
        // TLS 1.3: the server's verdict on the client arrives after the client's last flight.
        let _ = tls.write_all(b"hello");
        let mut reply = [0u8; 5];
        let _ = tls.read_exact(&mut reply);
    }
    server.join().unwrap()
}

#[test]
fn device_with_its_key_on_the_sim_is_admitted_by_its_tlsa_record() {
    std::env::set_var("OPENSSL_MODULES", common::built_library_dir());
    std::env::set_var("OPENSSL_CONF", common::example_openssl_conf());
    openssl::init();
    let card = CardRig::start(&[]);
    let dir = card.dir.path();
    let (cert, keyref) = (dir.join("dev.pem"), dir.join("dev.keyref.pem"));
    ok(card.iotsafe(&["cert", "--out", cert.to_str().unwrap()]));
    ok(card.iotsafe(&["keyref", "--out", keyref.to_str().unwrap()]));

    // The registry publishes the device's record as `iotsafe tlsa` prints it; another device's
    // name carries a record of another key.
    let record = ok(card.iotsafe(&["tlsa", "--name", DEVICE]));
    let rdata = record.split(" IN TLSA ").nth(1).unwrap().trim().to_string();
    let stranger = pki::leaf(dir, "stranger", "stranger", &[], None);
    let other = iotsafe_dane::dane::tlsa::Tlsa::for_certificate(
        &stranger.cert,
        iotsafe_dane::dane::tlsa::Usage::DaneEe,
        iotsafe_dane::dane::tlsa::Selector::Spki,
        iotsafe_dane::dane::tlsa::Matching::Sha256,
    )
    .unwrap();
    let lines = [
        format!("sensor7._device 300 IN TLSA {rdata}"),
        format!("sensor8._device 300 IN TLSA {other}"),
    ];
    let zone: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("iotregistry.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&zone);
    let resolver = Arc::new(
        Resolver::new(ResolverConfig::new(
            dns.addr(),
            dns.trust_anchor().parse().unwrap(),
        ))
        .unwrap(),
    );
    let server = pki::leaf(dir, "server", "broker", &["broker"], None);

    let before = card.trace().len();
    assert_eq!(
        connect(resolver.clone(), &server, &cert, &keyref, DEVICE),
        Ok(DEVICE.to_string())
    );
    let signing = card.trace()[before..]
        .iter()
        .filter(|l| matches!(l.get(2..4), Some("2A" | "2B")))
        .count();
    assert_eq!(signing, 2, "the handshake's one signature, on the card");

    let refused = connect(resolver, &server, &cert, &keyref, OTHER);
    assert!(
        refused.is_err(),
        "claiming another device's name must fail: {refused:?}"
    );
}
