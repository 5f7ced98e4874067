//! The C API: the checked-in header is current and compiles, and the functions work on real
//! OpenSSL objects against a real knotd.

mod common;

use common::{dns, pki, tls};

use std::ffi::{CStr, CString};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;

use foreign_types::{ForeignType, ForeignTypeRef};
use iotsafe_dane::capi::*;
use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};
use openssl::ssl::{Ssl, SslAcceptor, SslConnector, SslContext, SslMethod, SslVerifyMode};

const NAME: &str = "sensor7._device.iotregistry.test";

fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(iotsafe_dane_last_error()) }
        .to_string_lossy()
        .into_owned()
}

#[test]
fn header_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fresh = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("cbindgen")
        .current_dir(root)
        .args(["--config", "cbindgen.toml", "--output"])
        .arg(fresh.path())
        .arg("src/capi/mod.rs")
        .output()
        .expect("cbindgen (Debian package cbindgen) must be installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh = std::fs::read_to_string(fresh.path()).unwrap();
    let checked_in = std::fs::read_to_string(root.join("include/iotsafe_dane.h")).unwrap();
    assert!(
        fresh == checked_in,
        "include/iotsafe_dane.h is stale: run `cbindgen --config cbindgen.toml --output include/iotsafe_dane.h src/capi/mod.rs`"
    );
}

#[test]
fn header_compiles_as_c() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("use.c");
    std::fs::write(
        &src,
        "#include <iotsafe_dane.h>\nint main(void) { iotsafe_dane *d = iotsafe_dane_new(0, 0); iotsafe_dane_free(d); return IOTSAFE_DANE_REQUIRE; }\n",
    )
    .unwrap();
    let out = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Werror", "-fsyntax-only", "-I"])
        .arg(root.join("include"))
        .arg(&src)
        .output()
        .expect("a C compiler");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Env {
    _dir: tempfile::TempDir,
    _dns: dns::TestDns,
    device: pki::Issued,
    stranger: pki::Issued,
    server: pki::Issued,
    handle: *mut IotsafeDane,
}

impl Drop for Env {
    fn drop(&mut self) {
        unsafe { iotsafe_dane_free(self.handle) };
    }
}

fn env(extra: &[String]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let device = pki::leaf(d, "dev", "dev", &[NAME], None);
    let stranger = pki::leaf(d, "stranger", "x", &[], None);
    let server = pki::leaf(d, "srv", "broker", &["broker.example.test"], None);
    let record = Tlsa::for_certificate(
        &device.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
    let line = format!("sensor7._device 300 IN TLSA {record}");
    let mut lines: Vec<(&str, &str)> = vec![("iotregistry.test.", line.as_str())];
    lines.extend(extra.iter().map(|l| ("example.test.", l.as_str())));
    let dns = dns::TestDns::start(&lines);
    let addr = c(&dns.addr().to_string());
    let anchor = c(dns.trust_anchor_file().to_str().unwrap());
    let handle = unsafe { iotsafe_dane_new(addr.as_ptr(), anchor.as_ptr()) };
    assert!(!handle.is_null(), "{}", last_error());
    Env {
        _dir: dir,
        _dns: dns,
        device,
        stranger,
        server,
        handle,
    }
}

#[test]
fn verify_client_and_allowed_domains() {
    let e = env(&[]);
    let name = c(NAME);
    let domains = c("iotregistry.test");
    unsafe {
        assert_eq!(
            iotsafe_dane_set_allowed_domains(e.handle, domains.as_ptr()),
            1
        );
        let evil = c("sensor7._device.evil.test");
        let rc = iotsafe_dane_verify_client(
            e.handle,
            e.device.cert.as_ptr(),
            std::ptr::null_mut(),
            evil.as_ptr(),
        );
        assert_eq!(rc, 0);
        assert!(last_error().contains("allowed domains"), "{}", last_error());
        assert_eq!(iotsafe_dane_queries_sent(e.handle), 0);
        let rc = iotsafe_dane_verify_client(
            e.handle,
            e.device.cert.as_ptr(),
            std::ptr::null_mut(),
            name.as_ptr(),
        );
        assert_eq!(rc, 1, "{}", last_error());
        let rc = iotsafe_dane_verify_client(
            e.handle,
            e.stranger.cert.as_ptr(),
            std::ptr::null_mut(),
            name.as_ptr(),
        );
        assert_eq!(rc, 0);
        assert!(last_error().contains("does not match"), "{}", last_error());
        // Errors are -1 with a message, never a crash.
        assert_eq!(
            iotsafe_dane_verify_client(
                e.handle,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                name.as_ptr()
            ),
            -1
        );
        assert!(last_error().contains("NULL"));
        assert_eq!(
            iotsafe_dane_verify_client(
                std::ptr::null(),
                e.device.cert.as_ptr(),
                std::ptr::null_mut(),
                name.as_ptr()
            ),
            -1
        );
    }
}

/// `x._device.foo\.iotregistry.test` is the name `x._device.<foo.iotregistry>.test.`, in `test.`:
/// an attacker's secure record there must not pass `iotregistry.test`. Refused with the name in
/// the error, no DNS query; bad syntax is refused the same way; normal names still work.
#[test]
fn verify_client_refuses_names_that_are_not_host_names() {
    let e = env(&[]);
    let record = Tlsa::for_certificate(
        &e.stranger.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
    e._dns.add_record(
        "test.",
        &format!("x._device.foo\\.iotregistry 300 IN TLSA {record}"),
    );
    let domains = c("iotregistry.test");
    let verify = |cert: &openssl::x509::X509, name: &str| unsafe {
        let name = c(name);
        iotsafe_dane_verify_client(e.handle, cert.as_ptr(), std::ptr::null_mut(), name.as_ptr())
    };
    unsafe {
        // A domain that is not a domain name is refused, naming it; the list stays as it was.
        let bad = c(r"foo\.iotregistry.test, iotregistry.test");
        assert_eq!(iotsafe_dane_set_allowed_domains(e.handle, bad.as_ptr()), -1);
        assert!(
            last_error().contains(r"foo\.iotregistry.test"),
            "{}",
            last_error()
        );
        assert_eq!(
            iotsafe_dane_set_allowed_domains(e.handle, domains.as_ptr()),
            1
        );
    }
    let escaped = r"x._device.foo\.iotregistry.test";
    assert_eq!(verify(&e.stranger.cert, escaped), 0, "{}", last_error());
    assert!(last_error().contains(escaped), "{}", last_error());
    assert!(last_error().contains("no DNS query"), "{}", last_error());
    for bad in [
        r"x._device.iotregistry\046test",
        "x y._device.iotregistry.test",
        "x.._device.iotregistry.test",
        "x!._device.iotregistry.test",
        "-x._device.iotregistry.test",
        "s\u{e9}nsor._device.iotregistry.test",
    ] {
        assert_eq!(verify(&e.device.cert, bad), 0, "{bad}: {}", last_error());
        assert!(last_error().contains(bad), "{}", last_error());
    }
    assert_eq!(unsafe { iotsafe_dane_queries_sent(e.handle) }, 0);
    assert_eq!(verify(&e.device.cert, NAME), 1, "{}", last_error());
    assert_eq!(
        verify(&e.device.cert, &format!("{}.", NAME.to_uppercase())),
        1
    );
}

#[test]
fn ssl_enable_authenticates_a_server_per_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = pki::leaf(dir.path(), "srv", "broker", &["broker.example.test"], None);
    let other = pki::leaf(dir.path(), "oth", "broker", &["broker.example.test"], None);
    let good = tls::TlsServer::start(&server.cert_path, &server.key_path, None);
    let bad = tls::TlsServer::start(&other.cert_path, &other.key_path, None);
    let record = Tlsa::for_certificate(
        &server.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
    let e = env(&[
        "broker 300 IN A 127.0.0.1".into(),
        format!("_{}._tcp.broker 300 IN TLSA {record}", good.port),
        format!("_{}._tcp.broker 300 IN TLSA {record}", bad.port),
    ]);
    let ctx = SslContext::builder(SslMethod::tls_client())
        .unwrap()
        .build();
    let host = c("broker.example.test");
    let connect = |port: u16| -> bool {
        let mut ssl = Ssl::new(&ctx).unwrap();
        ssl.set_hostname("broker.example.test").unwrap();
        let rc = unsafe {
            iotsafe_dane_ssl_enable(
                e.handle,
                ssl.as_ptr(),
                host.as_ptr(),
                port,
                IOTSAFE_DANE_REQUIRE,
            )
        };
        assert_eq!(rc, 1, "{}", last_error());
        ssl.connect(TcpStream::connect(("127.0.0.1", port)).unwrap())
            .is_ok()
    };
    assert!(connect(good.port));
    assert!(!connect(bad.port));
    // No records at this port: refused before connecting under `require`.
    let ssl = Ssl::new(&ctx).unwrap();
    let rc = unsafe {
        iotsafe_dane_ssl_enable(
            e.handle,
            ssl.as_ptr(),
            host.as_ptr(),
            1,
            IOTSAFE_DANE_REQUIRE,
        )
    };
    assert_eq!(rc, 0);
    assert!(
        last_error().contains("_1._tcp.broker.example.test"),
        "{}",
        last_error()
    );
}

#[test]
fn clientid_handshake_through_the_c_api() {
    let e = env(&[]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate(&e.server.cert).unwrap();
    acceptor.set_private_key(&e.server.key).unwrap();
    let acceptor = acceptor.build();
    let rc = unsafe {
        iotsafe_dane_ctx_enable_clientid_server(
            e.handle,
            acceptor.context().as_ptr(),
            0,
            IOTSAFE_DANE_CLIENTID_REFUSE,
        )
    };
    assert_eq!(rc, 1, "{}", last_error());

    let server = thread::spawn(move || -> Option<String> {
        let (stream, _) = listener.accept().unwrap();
        let mut tls = acceptor.accept(stream).ok()?;
        let mut buf = [0u8; 2];
        tls.read_exact(&mut buf).ok()?;
        let mut name = [0 as std::ffi::c_char; 256];
        let rc = unsafe {
            iotsafe_dane_peer_identity(tls.ssl().as_ptr(), name.as_mut_ptr(), name.len())
        };
        (rc == 1).then(|| {
            unsafe { CStr::from_ptr(name.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        })
    });
    let mut connector = SslConnector::builder(SslMethod::tls_client()).unwrap();
    connector.set_verify(SslVerifyMode::NONE);
    connector.set_certificate(&e.device.cert).unwrap();
    connector.set_private_key(&e.device.key).unwrap();
    let connector = connector.build();
    let name = c(NAME);
    let rc = unsafe {
        iotsafe_dane_ctx_enable_clientid_client(connector.context().as_ptr(), name.as_ptr(), 0)
    };
    assert_eq!(rc, 1, "{}", last_error());
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = connector
        .configure()
        .unwrap()
        .verify_hostname(false)
        .connect("broker.example.test", stream)
        .unwrap();
    tls.write_all(b"hi").unwrap();
    assert_eq!(server.join().unwrap().as_deref(), Some(NAME));
}

#[test]
fn ctx_enable_server_auth_covers_every_connection_of_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let server = pki::leaf(
        dir.path(),
        "srv",
        "broker",
        &["broker.example.test", "plain.example.test"],
        None,
    );
    let other = pki::leaf(dir.path(), "oth", "broker", &["broker.example.test"], None);
    let good = tls::TlsServer::start(&server.cert_path, &server.key_path, None);
    let bad = tls::TlsServer::start(&other.cert_path, &other.key_path, None);
    let record = Tlsa::for_certificate(
        &server.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
    let e = env(&[
        "broker 300 IN A 127.0.0.1".into(),
        "plain 300 IN A 127.0.0.1".into(),
        format!("_8883._tcp.broker 300 IN TLSA {record}"),
    ]);
    // As a library would: one context, configured once, then plain SSL objects with SNI. The
    // records sit at port 8883; the test servers listen elsewhere, as a port forward would.
    let ctx = SslContext::builder(SslMethod::tls_client())
        .unwrap()
        .build();
    let rc = unsafe {
        iotsafe_dane_ctx_enable_server_auth(e.handle, ctx.as_ptr(), 8883, IOTSAFE_DANE_REQUIRE)
    };
    assert_eq!(rc, 1, "{}", last_error());
    let connect = |sni: &str, port: u16| -> bool {
        let mut ssl = Ssl::new(&ctx).unwrap();
        ssl.set_hostname(sni).unwrap();
        ssl.connect(TcpStream::connect(("127.0.0.1", port)).unwrap())
            .is_ok()
    };
    assert!(
        connect("broker.example.test", good.port),
        "{}",
        last_error()
    );
    assert!(!connect("broker.example.test", bad.port));
    // No TLSA records for this name: refused under `require`, with the reason kept.
    assert!(!connect("plain.example.test", good.port));
    assert!(
        last_error().contains("_8883._tcp.plain.example.test"),
        "{}",
        last_error()
    );
}
