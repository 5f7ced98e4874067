//! The preload shim's cost, for `make bench` (after the release build of the library, the shim
//! and the launcher):
//! - `shim_handshake_ratio`: TLS handshakes per second of a plain OpenSSL client
//!   (tests/c/shim_client.c) started through `iotsafe-run` (DANE by the server's `3 1 1` record,
//!   warm cache) over the same client without it (PKIX against the CA that issued the server's
//!   certificate), in alternating runs of the same process; goal >= 0.95.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{dns, pki, tls};

use std::path::{Path, PathBuf};
use std::process::Command;

const HOST: &str = "broker.example.test";
const HANDSHAKES: usize = 300;
const ROUNDS: usize = 5;

fn main() {
    let launcher = common::built_adapter("iotsafe-run", "preload");
    common::built_adapter("libiotsafe_preload.so", "preload");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = pki::ca(d, "ca", "Bench CA");
    let server_cert = pki::leaf(d, "srv", "broker", &[HOST], Some(&ca));
    let server = tls::TlsServer::start(&server_cert.cert_path, &server_cert.key_path, None);
    let record = pki::dane_ee_record(&server_cert.cert);
    let tlsa = format!("_{}._tcp.broker 300 IN TLSA {record}", server.port);
    let dns = dns::TestDns::start(&[
        ("example.test.", "broker 300 IN A 127.0.0.1"),
        ("example.test.", tlsa.as_str()),
    ]);
    let client = build_client(d);
    let args = [
        format!("sni:{HOST}"),
        server.port.to_string(),
        "pkix".to_string(),
        format!("repeat={HANDSHAKES}"),
    ];

    let plain = || {
        let mut cmd = Command::new(&client);
        cmd.args(&args);
        cmd
    };
    let shimmed = || {
        let mut cmd = Command::new(&launcher);
        cmd.args(["--quiet", "--resolver", &dns.addr().to_string()])
            .arg("--trust-anchor")
            .arg(dns.trust_anchor_file())
            .arg(&client)
            .args(&args);
        cmd
    };
    let (mut plain_rates, mut shim_rates) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        plain_rates.push(rate(plain(), &ca.cert_path));
        shim_rates.push(rate(shimmed(), &ca.cert_path));
    }
    let (plain, shim) = (median(plain_rates), median(shim_rates));
    println!("BENCH shim_handshakes_per_s {shim:.1}");
    println!("BENCH plain_handshakes_per_s {plain:.1}");
    println!("BENCH shim_handshake_ratio {:.3}", shim / plain);
}

/// The handshakes per second `cmd` reports; the client trusts `ca` (SSL_CERT_FILE), as PKIX
/// without the launcher needs.
fn rate(mut cmd: Command, ca: &Path) -> f64 {
    let out = cmd
        .env("SSL_CERT_FILE", ca)
        .env_remove("LD_PRELOAD")
        .env_remove("OPENSSL_CONF")
        .output()
        .expect("run the client");
    let stdout = common::stdout(&out);
    assert!(
        out.status.success(),
        "{cmd:?}: {stdout}{}",
        common::stderr(&out)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("handshakes/s: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in {stdout}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn build_client(dir: &Path) -> PathBuf {
    let exe = dir.join("shim_client");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/shim_client.c");
    let built = Command::new("gcc")
        .args(["-O2", "-std=gnu11", "-o"])
        .arg(&exe)
        .arg(source)
        .args(["-lssl", "-lcrypto"])
        .output()
        .expect("gcc");
    assert!(built.status.success(), "{}", common::stderr(&built));
    exe
}
