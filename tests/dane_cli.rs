//! The `dane check-server` / `dane check-client` subcommands, parsed as the tool parses them.

#[path = "common/dns.rs"]
mod dns;
#[path = "common/pki.rs"]
mod pki;
#[path = "common/tls.rs"]
mod tls;

use clap::Parser;
use iotsafe_dane::dane::cli::{run, DaneCommand};
use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};

#[derive(Parser)]
struct Tool {
    #[command(subcommand)]
    cmd: DaneCommand,
}

fn exit_status(args: &[&str]) -> i32 {
    let mut argv = vec!["iotsafe-dane"];
    argv.extend_from_slice(args);
    run(Tool::try_parse_from(argv).expect("arguments").cmd)
}

#[test]
fn check_server_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = pki::leaf(dir.path(), "srv", "broker", &["broker.example.test"], None);
    let other = pki::leaf(
        dir.path(),
        "other",
        "broker",
        &["broker.example.test"],
        None,
    );
    let good = tls::TlsServer::start(&leaf.cert_path, &leaf.key_path, None);
    let bad = tls::TlsServer::start(&other.cert_path, &other.key_path, None);
    let record =
        Tlsa::for_certificate(&leaf.cert, Usage::DaneEe, Selector::Spki, Matching::Sha256).unwrap();
    let lines = [
        "broker 300 IN A 127.0.0.1".to_string(),
        format!("_{}._tcp.broker 300 IN TLSA {record}", good.port),
        format!("_{}._tcp.broker 300 IN TLSA {record}", bad.port),
    ];
    let extra: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("example.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&extra);
    let addr = dns.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let anchor = anchor.to_str().unwrap();
    let common = ["--resolver", &addr, "--trust-anchor", anchor];
    let port = good.port.to_string();
    let mut args = vec!["check-server", "broker.example.test", &port];
    args.extend_from_slice(&common);
    assert_eq!(exit_status(&args), 0);
    let port = bad.port.to_string();
    let mut args = vec!["check-server", "broker.example.test", &port];
    args.extend_from_slice(&common);
    assert_eq!(exit_status(&args), 1);
    // Without the private trust anchor the IANA root is used: nothing validates.
    let port = good.port.to_string();
    assert_eq!(
        exit_status(&[
            "check-server",
            "broker.example.test",
            &port,
            "--resolver",
            &addr
        ]),
        1
    );
}

#[test]
fn check_client_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
    let other = pki::leaf(dir.path(), "other", "other", &[], None);
    let record = Tlsa::for_certificate(
        &device.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
    let line = format!("sensor7._device 300 IN TLSA {record}");
    let dns = dns::TestDns::start(&[("iotregistry.test.", line.as_str())]);
    let addr = dns.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let args = |cert: &std::path::Path| {
        vec![
            "check-client".to_string(),
            "--cert".into(),
            cert.to_str().unwrap().into(),
            "--name".into(),
            "sensor7._device.iotregistry.test".into(),
            "--resolver".into(),
            addr.clone(),
            "--trust-anchor".into(),
            anchor.to_str().unwrap().into(),
            "--allowed-domain".into(),
            "iotregistry.test".into(),
        ]
    };
    let status = |v: Vec<String>| exit_status(&v.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(status(args(&device.cert_path)), 0);
    assert_eq!(status(args(&other.cert_path)), 1);
}
