//! The C API: the checked-in header is current and compiles, and the functions work on real
//! OpenSSL objects against a real knotd.

mod common;

use common::capi::{self, c, last_error};
use common::escaped::{self, EscapedHostRig};
use common::{dns, pki, tls};

use std::ffi::CStr;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;

use foreign_types::{ForeignType, ForeignTypeRef};
use iotsafe_dane::capi::*;
use openssl::ssl::{
    Ssl, SslAcceptor, SslConnector, SslContext, SslMethod, SslSession, SslVerifyMode,
};
use openssl::x509::X509VerifyResult;

const NAME: &str = "sensor7._device.iotregistry.test";

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
    dns: dns::TestDns,
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
    env_with_ttl(300, extra)
}

/// [`env`] with the device record's TTL chosen.
fn env_with_ttl(device_ttl: u32, extra: &[String]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let device = pki::leaf(d, "dev", "dev", &[NAME], None);
    let stranger = pki::leaf(d, "stranger", "x", &[], None);
    let server = pki::leaf(d, "srv", "broker", &["broker.example.test"], None);
    let record = pki::dane_ee_record(&device.cert);
    let line = format!("sensor7._device {device_ttl} IN TLSA {record}");
    let mut lines: Vec<(&str, &str)> = vec![("iotregistry.test.", line.as_str())];
    lines.extend(extra.iter().map(|l| ("example.test.", l.as_str())));
    let dns = dns::TestDns::start(&lines);
    let handle = capi::new_handle(dns.addr(), &dns.trust_anchor_file());
    Env {
        _dir: dir,
        dns,
        device,
        stranger,
        server,
        handle,
    }
}

/// The device as a TLS client: its certificate and key, its name sent in the `dane_clientid`
/// extension (the default code point), the server not verified.
fn device_connector(e: &Env) -> SslConnector {
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
    connector
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

/// A C API user whose code runs inside a tokio runtime (an async broker calling the library
/// from a task): verifying a device there works, as it does on a plain thread, and the first
/// caller's look-up is not left stuck for the next one.
#[test]
fn verify_client_from_inside_a_tokio_runtime() {
    let e = env(&[]);
    let handle = e.handle as usize;
    let cert = e.device.cert.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let verify = move || {
        let name = c(NAME);
        // SAFETY: the handle lives in `e` until the end of the test; the certificate is ours.
        let rc = unsafe {
            iotsafe_dane_verify_client(
                handle as *const IotsafeDane,
                cert.as_ptr(),
                std::ptr::null_mut(),
                name.as_ptr(),
            )
        };
        (rc, last_error())
    };
    let (rc, error) = runtime.block_on(async { verify.clone()() });
    assert_eq!(rc, 1, "inside a runtime: {error}");
    unsafe { iotsafe_dane_clear_cache(e.handle) };
    let (rc, error) = verify();
    assert_eq!(rc, 1, "then on a plain thread: {error}");
}

/// `x._device.foo\.iotregistry.test` is the name `x._device.<foo.iotregistry>.test.`, in `test.`:
/// an attacker's secure record there must not pass `iotregistry.test`. Refused with the name in
/// the error, no DNS query; bad syntax is refused the same way; normal names still work.
#[test]
fn verify_client_refuses_names_that_are_not_host_names() {
    let e = env(&[]);
    let record = pki::dane_ee_record(&e.stranger.cert);
    e.dns.add_record(
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
    let record = pki::dane_ee_record(&server.cert);
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
    let connector = device_connector(&e);
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
    let record = pki::dane_ee_record(&server.cert);
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

/// What the server saw of one connection.
#[derive(Debug)]
struct Served {
    accepted: bool,
    identity: Option<String>,
    verify: X509VerifyResult,
    reused: bool,
}

/// A `dane_clientid` server configured through the C API with `missing`, accepting
/// `connections` connections one after the other.
fn serve(
    e: &Env,
    missing: std::ffi::c_int,
    connections: usize,
) -> (u16, thread::JoinHandle<Vec<Served>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_certificate(&e.server.cert).unwrap();
    acceptor.set_private_key(&e.server.key).unwrap();
    // As servers that resume sessions of verified clients do.
    acceptor.set_session_id_context(b"dane_capi").unwrap();
    let acceptor = acceptor.build();
    let rc = unsafe {
        iotsafe_dane_ctx_enable_clientid_server(e.handle, acceptor.context().as_ptr(), 0, missing)
    };
    assert_eq!(rc, 1, "{}", last_error());
    let server = thread::spawn(move || {
        (0..connections)
            .map(|_| {
                let (stream, _) = listener.accept().unwrap();
                let ssl = Ssl::new(acceptor.context()).unwrap();
                match ssl.accept(stream) {
                    Ok(mut tls) => {
                        let mut name = [0 as std::ffi::c_char; 256];
                        let rc = unsafe {
                            iotsafe_dane_peer_identity(
                                tls.ssl().as_ptr(),
                                name.as_mut_ptr(),
                                name.len(),
                            )
                        };
                        let identity = (rc == 1).then(|| {
                            unsafe { CStr::from_ptr(name.as_ptr()) }
                                .to_string_lossy()
                                .into_owned()
                        });
                        let served = Served {
                            accepted: true,
                            identity,
                            verify: tls.ssl().verify_result(),
                            reused: tls.ssl().session_reused(),
                        };
                        let _ = tls.write_all(b"k");
                        let _ = tls.read(&mut [0u8; 1]);
                        served
                    }
                    Err(err) => {
                        let ssl = match &err {
                            openssl::ssl::HandshakeError::Failure(s) => Some(s.ssl()),
                            _ => None,
                        };
                        Served {
                            accepted: false,
                            identity: None,
                            verify: ssl.map_or(X509VerifyResult::OK, |s| s.verify_result()),
                            reused: ssl.is_some_and(|s| s.session_reused()),
                        }
                    }
                }
            })
            .collect()
    });
    (port, server)
}

/// The device as a client, offering `session`: the session to resume next time and whether
/// this one was resumed, or `None` when the server refused it.
fn dial(e: &Env, port: u16, session: Option<&SslSession>) -> Option<(SslSession, bool)> {
    let connector = device_connector(e);
    let mut config = connector.configure().unwrap().verify_hostname(false);
    if let Some(session) = session {
        unsafe { config.set_session(session).unwrap() };
    }
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut tls = config.connect("broker.example.test", stream).ok()?;
    // TLS 1.3: the server's verdict on the certificate, and its tickets, come after connect.
    tls.read_exact(&mut [0u8; 1]).ok()?;
    let reused = tls.ssl().session_reused();
    let session = tls.ssl().session()?.to_owned();
    let _ = tls.shutdown();
    Some((session, reused))
}

#[test]
fn a_dane_authenticated_client_verifies_as_x509_v_ok() {
    let e = env(&[]);
    let (port, server) = serve(&e, IOTSAFE_DANE_CLIENTID_REFUSE, 1);
    assert!(dial(&e, port, None).is_some());
    let served = server.join().unwrap();
    assert!(served[0].accepted, "{served:?}");
    assert_eq!(served[0].verify, X509VerifyResult::OK, "{served:?}");
}

#[test]
fn allowed_domains_set_after_enabling_the_server_apply() {
    let e = env(&[]);
    let (port, server) = serve(&e, IOTSAFE_DANE_CLIENTID_REFUSE, 1);
    let elsewhere = c("elsewhere.test");
    assert_eq!(
        unsafe { iotsafe_dane_set_allowed_domains(e.handle, elsewhere.as_ptr()) },
        1
    );
    assert!(
        dial(&e, port, None).is_none(),
        "the later restriction applies"
    );
    let served = server.join().unwrap();
    assert!(!served[0].accepted, "{served:?}");
    assert_eq!(unsafe { iotsafe_dane_queries_sent(e.handle) }, 0);
}

#[test]
fn a_saved_ticket_does_not_outlive_the_device_record() {
    let e = env(&[]);
    let (port, server) = serve(&e, IOTSAFE_DANE_CLIENTID_REFUSE, 4);
    let (session, reused) = dial(&e, port, None).expect("full handshake");
    assert!(!reused);
    let (session, reused) = dial(&e, port, Some(&session)).expect("resumed");
    assert!(reused, "resumption works while the record exists");

    e.dns.set_records("iotregistry.test.", &[]);
    // The resolver keeps the answer for its TTL (that much revocation delay is by design, and
    // its expiry is tested on the resolver's clock): here it is flushed instead of waited out.
    assert_eq!(unsafe { iotsafe_dane_clear_cache(e.handle) }, 1);
    let resumed = dial(&e, port, Some(&session));
    assert!(resumed.is_none(), "the saved ticket must not resume");
    assert!(dial(&e, port, None).is_none(), "nor a full handshake");
    let served = server.join().unwrap();
    assert_eq!(served[1].identity.as_deref(), Some(NAME), "{served:?}");
    assert_eq!(served[1].verify, X509VerifyResult::OK, "{served:?}");
    assert!(!served[2].accepted && !served[2].reused, "{served:?}");
}

/// `openssl s_client` as the device over TLS 1.2 (`extra` options), saving its session to
/// `sess_out` (when the server made it resumable) and offering `sess_in` (when saved): whether
/// the session was resumed, and its output.
fn s_client_tls12(
    e: &Env,
    port: u16,
    extra: &[&str],
    sess_in: Option<&Path>,
    sess_out: &Path,
) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-tls1_2",
    ])
    .args(extra)
    .arg("-cert")
    .arg(&e.device.cert_path)
    .arg("-key")
    .arg(&e.device.key_path)
    .arg("-sess_out")
    .arg(sess_out)
    .stdin(std::process::Stdio::null());
    // No file: the server gave no resumable session to save.
    if let Some(path) = sess_in.filter(|p| p.exists()) {
        cmd.arg("-sess_in").arg(path);
    }
    let out = cmd.output().expect("openssl s_client");
    let text = format!("{}{}", common::stdout(&out), common::stderr(&out));
    (text.contains("Reused, TLSv1.2"), text)
}

#[test]
fn tls12_sessions_do_not_outlive_the_device_record() {
    let e = env(&[]);
    let (port, server) = serve(&e, IOTSAFE_DANE_CLIENTID_FROM_CERT, 5);
    let dir = tempfile::tempdir().unwrap();
    let by_id = dir.path().join("by-id.pem");
    let by_ticket = dir.path().join("by-ticket.pem");
    let scratch = dir.path().join("scratch.pem");
    s_client_tls12(&e, port, &["-no_ticket"], None, &by_id);
    s_client_tls12(&e, port, &[], None, &by_ticket);
    let (reused, out) = s_client_tls12(&e, port, &[], Some(&by_ticket), &scratch);
    assert!(
        reused,
        "a TLS 1.2 ticket resumes while the record exists: {out}"
    );

    e.dns.set_records("iotregistry.test.", &[]);
    // The resolver keeps the answer for its TTL (that much revocation delay is by design, and
    // its expiry is tested on the resolver's clock): here it is flushed instead of waited out.
    assert_eq!(unsafe { iotsafe_dane_clear_cache(e.handle) }, 1);
    let (reused, out) = s_client_tls12(&e, port, &["-no_ticket"], Some(&by_id), &scratch);
    assert!(
        !reused,
        "no resumption by session id after the removal: {out}"
    );
    let (reused, out) = s_client_tls12(&e, port, &[], Some(&by_ticket), &scratch);
    assert!(!reused, "no resumption by ticket after the removal: {out}");
    let served = server.join().unwrap();
    assert!(served[..3].iter().all(|s| s.accepted), "{served:?}");
    assert!(
        served[3..].iter().all(|s| !s.accepted && !s.reused),
        "{served:?}"
    );
}

/// The C API takes the server's host name as text too (the `host` of `iotsafe_dane_ssl_enable`,
/// the SNI of a context's connections): `broker\.example.test` is not a host name, and looking
/// it up (as `broker.example` in `test.`, where its holder published an address and a TLSA
/// record for its own server) would authenticate a server the PKIX check and the caller know
/// by another name. Both entry points refuse it, naming it, before any DNS query.
#[test]
fn escaped_server_host_names_are_refused() {
    let EscapedHostRig { server, dns, .. } = &EscapedHostRig::start();
    let handle = capi::new_handle(dns.addr(), &dns.trust_anchor_file());
    let host = escaped::HOST;
    let refused = |error: &str| {
        error.contains(&format!("'{host}' is not a host name")) && error.contains("no DNS query")
    };

    let ctx = SslContext::builder(SslMethod::tls_client())
        .unwrap()
        .build();
    let ssl = Ssl::new(&ctx).unwrap();
    let c_host = c(host);
    let rc = unsafe {
        iotsafe_dane_ssl_enable(
            handle,
            ssl.as_ptr(),
            c_host.as_ptr(),
            server.port,
            IOTSAFE_DANE_OPPORTUNISTIC,
        )
    };
    assert_eq!(rc, 0, "refused");
    assert!(refused(&last_error()), "{}", last_error());

    let ctx = SslContext::builder(SslMethod::tls_client())
        .unwrap()
        .build();
    let rc = unsafe {
        iotsafe_dane_ctx_enable_server_auth(handle, ctx.as_ptr(), server.port, IOTSAFE_DANE_REQUIRE)
    };
    assert_eq!(rc, 1, "{}", last_error());
    let mut ssl = Ssl::new(&ctx).unwrap();
    ssl.set_hostname(host).unwrap();
    let connected = ssl
        .connect(TcpStream::connect(("127.0.0.1", server.port)).unwrap())
        .is_ok();
    assert!(!connected, "the server is not authenticated");
    assert!(refused(&last_error()), "{}", last_error());
    unsafe { iotsafe_dane_free(handle) };
}
