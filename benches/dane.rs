//! DANE figures for `make bench`, one `BENCH name value` line each, measured against a real knotd on
//! loopback:
//! - `dane_verify_us_warm`: verifying a device certificate for a name whose TLSA answer is
//!   cached (the cost per CONNECT at a broker);
//! - `dane_lookup_ms_cold`: a TLSA look-up with empty caches, validated from the root down;
//! - `dns_queries_per_cold_lookup`: the queries that look-up sends (each RRset once);
//! - `handshake_rate_ratio_dane_vs_pkix`: TLS handshakes per second with DANE server
//!   authentication (warm cache) over the same with PKIX, measured in the same run.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{dns, pki};

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::RecordType;
use iotsafe_dane::dane::client::ClientVerifier;
use iotsafe_dane::dane::resolver::{Resolver, ResolverConfig};
use iotsafe_dane::dane::server::{Policy, ServerTlsa};
use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};
use openssl::ssl::{Ssl, SslAcceptor, SslContext, SslMethod, SslVerifyMode};

const DEVICE: &str = "sensor7._device.iotregistry.test";

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = pki::ca(d, "ca", "Bench CA");
    let server = pki::leaf(d, "srv", "broker", &["broker.example.test"], Some(&ca));
    let device = pki::leaf(d, "dev", "dev", &[DEVICE], None);
    let ca_file = pki::bundle(d, "ca.pem", &[&ca.cert]);

    let (port, _server) = tls_server(&server);
    let dev_rec = Tlsa::for_certificate(
        &device.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
    let srv_rec = Tlsa::for_certificate(
        &server.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
    let lines = [
        format!("sensor7._device 300 IN TLSA {dev_rec}"),
        "broker 300 IN A 127.0.0.1".to_string(),
        format!("_{port}._tcp.broker 300 IN TLSA {srv_rec}"),
    ];
    let dns = dns::TestDns::start(&[
        ("iotregistry.test.", lines[0].as_str()),
        ("example.test.", lines[1].as_str()),
        ("example.test.", lines[2].as_str()),
    ]);
    let resolver = Resolver::new(ResolverConfig::new(
        dns.addr(),
        dns.trust_anchor().parse().unwrap(),
    ))
    .unwrap();

    // Cold look-ups: median of several, each with both caches emptied.
    let mut cold = Vec::new();
    let mut queries = 0;
    for _ in 0..21 {
        resolver.clear_cache();
        let before = resolver.queries_sent();
        let start = Instant::now();
        let res = resolver.resolve(DEVICE, RecordType::TLSA).unwrap();
        cold.push(start.elapsed());
        queries = resolver.queries_sent() - before;
        assert_eq!(res.records().len(), 1);
    }
    cold.sort();
    println!(
        "BENCH dane_lookup_ms_cold {:.3}",
        cold[cold.len() / 2].as_secs_f64() * 1e3
    );
    println!("BENCH dns_queries_per_cold_lookup {queries}");

    // Warm verification.
    let verifier = ClientVerifier::new(vec!["iotregistry.test".into()], None);
    assert!(verifier
        .verify(&resolver, DEVICE, &device.cert, &[])
        .authenticated());
    let n = 20_000;
    let start = Instant::now();
    for _ in 0..n {
        assert!(verifier
            .verify(&resolver, DEVICE, &device.cert, &[])
            .authenticated());
    }
    println!(
        "BENCH dane_verify_us_warm {:.2}",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );

    // Handshake rates, alternating blocks so that both see the same machine load.
    let mut pkix_ctx = SslContext::builder(SslMethod::tls_client()).unwrap();
    pkix_ctx.set_ca_file(&ca_file).unwrap();
    let pkix_ctx = pkix_ctx.build();
    let dane_ctx = SslContext::builder(SslMethod::tls_client())
        .unwrap()
        .build();
    let (mut t_pkix, mut t_dane) = (Duration::ZERO, Duration::ZERO);
    let per_block = 50;
    let blocks = 6;
    for _ in 0..blocks {
        let start = Instant::now();
        for _ in 0..per_block {
            let mut ssl = Ssl::new(&pkix_ctx).unwrap();
            ssl.set_hostname("broker.example.test").unwrap();
            ssl.param_mut().set_host("broker.example.test").unwrap();
            ssl.set_verify(SslVerifyMode::PEER);
            ssl.connect(TcpStream::connect(("127.0.0.1", port)).unwrap())
                .unwrap();
        }
        t_pkix += start.elapsed();
        let start = Instant::now();
        for _ in 0..per_block {
            let mut ssl = Ssl::new(&dane_ctx).unwrap();
            ssl.set_hostname("broker.example.test").unwrap();
            let tlsa = ServerTlsa::lookup(&resolver, "broker.example.test", port, Policy::Require);
            tlsa.configure(&mut ssl).unwrap();
            ssl.connect(TcpStream::connect(("127.0.0.1", port)).unwrap())
                .unwrap();
        }
        t_dane += start.elapsed();
    }
    println!(
        "BENCH handshake_rate_ratio_dane_vs_pkix {:.3}",
        t_pkix.as_secs_f64() / t_dane.as_secs_f64()
    );
}

/// A TLS server on loopback that completes handshakes until the process ends.
fn tls_server(cert: &pki::Issued) -> (u16, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate(&cert.cert).unwrap();
    acceptor.set_private_key(&cert.key).unwrap();
    let acceptor = Arc::new(acceptor.build());
    let handle = thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = acceptor.accept(stream);
        }
    });
    (port, handle)
}
