//! The workload behind `make leaks` (scripts/leak-check.sh), run under valgrind or alone:
//!
//! - `leak_check handshakes N`: N TLS 1.3 mutual-authentication handshakes in this process,
//!   the client's key on the simulated card (behind a real pcscd) through the provider that
//!   openssl.cnf loads, the server in a thread of the same process;
//! - `leak_check verify N`: N `iotsafe_dane_verify_client` calls through the C API against a
//!   knotd-signed zone (authenticated, wrong certificate, name outside the allowed domains, NULL
//!   certificate in turn), with a fresh handle every 500 calls so that the DNS look-up and the
//!   handle's life are repeated too;
//! - `leak_check leaky N`: loses 64 bytes N times, to show that the check sees a growing leak.
//!
//! Everything is released before the end, so what valgrind still finds lost is a leak. Prints
//! `LEAKCHECK rss_kb_warm <kB>` after the first tenth of the work and `LEAKCHECK rss_kb_end <kB>`
//! at the end, for the resident-size check of runs too long for valgrind.

#[path = "../tests/common/mod.rs"]
mod common;

use std::ffi::{CStr, CString};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use common::card::CardRig;
use common::dns::TestDns;
use common::pki;
use foreign_types::ForeignType;
use iotsafe_dane::capi::*;
use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};
use openssl::ssl::{SslAcceptor, SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;

const DEVICE: &str = "sensor7._device.iotregistry.test";
const CALLS_PER_HANDLE: usize = 500;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(count)) = (args.get(1), args.get(2).and_then(|n| n.parse().ok())) else {
        eprintln!("usage: leak_check handshakes|verify|leaky <count>");
        std::process::exit(2);
    };
    match mode.as_str() {
        "handshakes" => handshakes(count),
        "verify" => verify(count),
        "leaky" => leaky(count),
        _ => {
            eprintln!("unknown mode {mode}");
            std::process::exit(2);
        }
    }
}

/// Resident set size of this process, in kB.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `one` `count` times; reports the resident size after the first tenth and at the end.
fn repeat(count: usize, mut one: impl FnMut(usize)) {
    let warm = (count / 10).max(1);
    for i in 0..count {
        one(i);
        if i + 1 == warm {
            println!("LEAKCHECK rss_kb_warm {}", rss_kb());
        }
    }
    println!("LEAKCHECK rss_kb_end {}", rss_kb());
}

fn handshakes(count: usize) {
    std::env::set_var("OPENSSL_MODULES", common::built_library_dir());
    std::env::set_var("OPENSSL_CONF", common::example_openssl_conf());
    openssl::init();
    let rig = CardRig::start(&[]);
    let dir = rig.dir.path().to_path_buf();
    let (keyref, card_cert) = (dir.join("dev.keyref.pem"), dir.join("dev.pem"));
    for (what, out) in [("keyref", &keyref), ("cert", &card_cert)] {
        let done = rig.iotsafe(&[what, "--out", out.to_str().unwrap()]);
        assert!(done.status.success(), "iotsafe {what}: {done:?}");
    }
    let card_x509 = X509::from_pem(&std::fs::read(&card_cert).unwrap()).unwrap();
    let server = pki::leaf(&dir, "server", "server", &[], None);

    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(&server.key).unwrap();
    acceptor.set_certificate(&server.cert).unwrap();
    acceptor.cert_store_mut().add_cert(card_x509).unwrap();
    acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let acceptor = Arc::new(acceptor.build());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let serving = std::thread::spawn(move || {
        for _ in 0..count {
            let (stream, _) = listener.accept().unwrap();
            let mut tls = acceptor.accept(stream).expect("server handshake");
            std::io::Write::write_all(&mut tls, b"k").unwrap();
            let _ = tls.shutdown();
        }
    });

    let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
    connector
        .set_min_proto_version(Some(SslVersion::TLS1_3))
        .unwrap();
    connector
        .set_certificate_file(&card_cert, SslFiletype::PEM)
        .unwrap();
    connector
        .set_private_key_file(&keyref, SslFiletype::PEM)
        .unwrap();
    connector.cert_store_mut().add_cert(server.cert).unwrap();
    let connector = connector.build();
    repeat(count, |_| {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut config = connector.configure().unwrap();
        config.set_verify_hostname(false);
        let mut tls = config.connect("server", stream).expect("card handshake");
        let mut byte = [0u8; 1];
        std::io::Read::read_exact(&mut tls, &mut byte).unwrap();
    });
    serving.join().unwrap();
    drop(connector);
    drop(rig);
    println!("LEAKCHECK handshakes {count}");
}

fn leaky(count: usize) {
    repeat(count, |_| {
        std::mem::forget(std::hint::black_box(vec![0u8; 64]))
    });
    println!("LEAKCHECK leaky {count}");
}

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn verify(count: usize) {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[DEVICE], None);
    let stranger = pki::leaf(dir.path(), "stranger", "x", &[], None);
    let record = Tlsa::for_certificate(
        &device.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
    let line = format!("sensor7._device 300 IN TLSA {record}");
    let dns = TestDns::start(&[("iotregistry.test.", line.as_str())]);
    let addr = c(&dns.addr().to_string());
    let anchor = c(dns.trust_anchor_file().to_str().unwrap());
    let (name, outside, domains) = (
        c(DEVICE),
        c("sensor7._device.evil.test"),
        c("iotregistry.test"),
    );
    let new_handle = || {
        // SAFETY: NUL-terminated strings that outlive the call.
        let handle = unsafe { iotsafe_dane_new(addr.as_ptr(), anchor.as_ptr()) };
        assert!(!handle.is_null(), "iotsafe_dane_new: {}", last_error());
        // SAFETY: a live handle and a NUL-terminated list.
        assert_eq!(
            unsafe { iotsafe_dane_set_allowed_domains(handle, domains.as_ptr()) },
            1
        );
        handle
    };
    let mut handle = new_handle();
    repeat(count, |i| {
        if i > 0 && i % CALLS_PER_HANDLE == 0 {
            // SAFETY: the handle made by `new_handle`, not used after this.
            unsafe { iotsafe_dane_free(handle) };
            handle = new_handle();
        }
        let (cert, name, expected) = match i % 4 {
            0 => (device.cert.as_ptr(), &name, 1),
            1 => (stranger.cert.as_ptr(), &name, 0),
            2 => (device.cert.as_ptr(), &outside, 0),
            _ => (std::ptr::null_mut(), &name, -1),
        };
        // SAFETY: a live handle, a live X509 or NULL, a NUL-terminated name.
        let rc = unsafe {
            iotsafe_dane_verify_client(handle, cert, std::ptr::null_mut(), name.as_ptr())
        };
        assert_eq!(rc, expected, "call {i}: {}", last_error());
    });
    // SAFETY: the last handle, not used after this.
    unsafe { iotsafe_dane_free(handle) };
    drop(dns);
    println!("LEAKCHECK verify_client {count}");
}

fn last_error() -> String {
    // SAFETY: the library's thread-local message, valid until the next call on this thread.
    unsafe { CStr::from_ptr(iotsafe_dane_last_error()) }
        .to_string_lossy()
        .into_owned()
}
