//! The iotsafe provider through a real pcscd and the simulated applet, with the real
//! `openssl` tool and plain C programs as the applications.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::card::CardRig;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A card, the files an application uses, and a software CA for the peers.
struct Setup {
    rig: CardRig,
    dir: PathBuf,
}

impl Setup {
    fn new(sim_args: &[&str]) -> Setup {
        let rig = CardRig::start(sim_args);
        let dir = rig.dir.path().to_path_buf();
        let s = Setup { rig, dir };
        ok(s.rig
            .iotsafe(&["keyref", "--out", &s.path("dev.keyref.pem")]));
        ok(s.rig
            .iotsafe(&["keyref", "--with-cert", "--out", &s.path("combined.pem")]));
        ok(s.rig.iotsafe(&["cert", "--out", &s.path("dev.pem")]));
        ok(s.rig.iotsafe(&["pubkey", "--out", &s.path("pub.pem")]));
        for name in ["srv", "other"] {
            ok(Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                ])
                .args([
                    "-keyout",
                    &s.path(&format!("{name}.key")),
                    "-out",
                    &s.path(&format!("{name}.pem")),
                ])
                .args(["-subj", &format!("/CN={name}"), "-days", "2"])
                .output()
                .unwrap());
        }
        s
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// A command with the provider configured (OPENSSL_CONF only, plus where modules are).
    fn with_provider(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = self.rig.command(program);
        command
            .env("OPENSSL_CONF", common::example_openssl_conf())
            .env("OPENSSL_MODULES", common::built_library_dir())
            .env("IOTSAFE_DEBUG_LOG", self.path("provider.log"));
        command
    }

    fn openssl(&self, args: &[&str]) -> Output {
        self.with_provider("openssl")
            .args(args)
            .output()
            .expect("run openssl")
    }

    /// Number of COMPUTE SIGNATURE APDUs (INIT 2A, UPDATE 2B) in the trace so far.
    fn signature_apdus(&self) -> usize {
        self.rig
            .trace()
            .iter()
            .filter(|line| matches!(line.get(2..4), Some("2A" | "2B")))
            .count()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `openssl s_server` with `cert`/`key`, requiring a client certificate signed by `ca`.
fn s_server(
    setup: &Setup,
    port: u16,
    cert: &str,
    key: &str,
    ca: &str,
    version: &str,
) -> std::process::Child {
    let child = setup
        .with_provider("openssl")
        .args([
            "s_server",
            "-accept",
            &port.to_string(),
            "-naccept",
            "1",
            version,
        ])
        .args(["-cert", cert, "-key", key, "-Verify", "1", "-CAfile", ca])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start s_server");
    // (A probe connection would use up the single accept: wait for the listening socket.)
    let listening = format!(":{port:04X} ");
    common::wait_until(10, "s_server", || {
        ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
            std::fs::read_to_string(table).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.contains(&listening) && l.contains(" 0A "))
            })
        })
    });
    child
}

fn s_client(setup: &Setup, port: u16, cert: &str, key: &str, ca: &str, version: &str) -> Output {
    let mut child = setup
        .with_provider("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version,
        ])
        .args([
            "-cert",
            cert,
            "-key",
            key,
            "-CAfile",
            ca,
            "-verify_return_error",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start s_client");
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn finish(server: std::process::Child) -> String {
    let mut server = server;
    drop(server.stdin.take());
    let out = server.wait_with_output().unwrap();
    text(&out.stdout) + &text(&out.stderr)
}

/// Mutual TLS with the client's key on the card; exactly 2 signature APDUs per handshake.
fn card_client_handshake(version: &str, expected: &str) {
    let s = Setup::new(&[]);
    let port = free_port();
    let server = s_server(
        &s,
        port,
        &s.path("srv.pem"),
        &s.path("srv.key"),
        &s.path("dev.pem"),
        version,
    );
    let before = s.signature_apdus();
    let client = s_client(
        &s,
        port,
        &s.path("dev.pem"),
        &s.path("dev.keyref.pem"),
        &s.path("srv.pem"),
        version,
    );
    let client_out = text(&client.stdout);
    let server_out = finish(server);
    assert!(
        client.status.success(),
        "s_client failed: {client_out}{}",
        text(&client.stderr)
    );
    assert!(
        client_out.contains(&format!("Protocol  : {expected}")) || client_out.contains(expected),
        "{client_out}"
    );
    assert!(
        server_out.contains("subject=CN = iotsafe-sim device")
            || server_out.contains("iotsafe-sim"),
        "the server saw no client certificate: {server_out}"
    );
    assert!(server_out.contains("verify return:1"), "{server_out}");
    assert_eq!(
        s.signature_apdus() - before,
        2,
        "APDUs of the handshake signature"
    );
}

#[test]
fn provider_mutual_tls13_with_card_client_key() {
    card_client_handshake("-tls1_3", "TLSv1.3");
}

#[test]
fn provider_mutual_tls12_with_card_client_key() {
    card_client_handshake("-tls1_2", "TLSv1.2");
}

#[test]
fn provider_server_key_on_the_card() {
    let s = Setup::new(&[]);
    for (version, expected) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let port = free_port();
        let server = s_server(
            &s,
            port,
            &s.path("dev.pem"),
            &s.path("dev.keyref.pem"),
            &s.path("srv.pem"),
            version,
        );
        let client = s_client(
            &s,
            port,
            &s.path("srv.pem"),
            &s.path("srv.key"),
            &s.path("dev.pem"),
            version,
        );
        let server_out = finish(server);
        assert!(
            client.status.success(),
            "{}{}\nserver: {server_out}",
            text(&client.stdout),
            text(&client.stderr)
        );
        assert!(text(&client.stdout).contains(expected));
        assert!(text(&client.stdout).contains("Verify return code: 0 (ok)"));
    }
}

#[test]
fn provider_pkey_pubout_is_the_card_public_key() {
    let s = Setup::new(&[]);
    let card = std::fs::read_to_string(s.path("pub.pem")).unwrap();
    for input in [
        s.path("dev.keyref.pem"),
        s.path("combined.pem"),
        "iotsafe:key-id=01".to_string(),
    ] {
        let printed = ok(s.openssl(&["pkey", "-in", &input, "-pubout"]));
        assert_eq!(printed, card, "public key of {input}");
    }
    let text_form = ok(s.openssl(&[
        "pkey",
        "-in",
        &s.path("dev.keyref.pem"),
        "-pubout",
        "-text",
        "-noout",
    ]));
    assert!(
        text_form.contains("Public-Key: (256 bit)") && text_form.contains("prime256v1"),
        "{text_form}"
    );
}

#[test]
fn provider_csr_and_self_signed_certificate_verify() {
    let s = Setup::new(&[]);
    let key = s.path("dev.keyref.pem");
    ok(s.openssl(&[
        "req",
        "-new",
        "-key",
        &key,
        "-subj",
        "/CN=sensor7",
        "-out",
        &s.path("dev.csr"),
    ]));
    let verified = s.openssl(&["req", "-in", &s.path("dev.csr"), "-verify", "-noout"]);
    assert!(
        verified.status.success() && text(&verified.stderr).contains("verify OK")
            || text(&verified.stdout).contains("verify OK")
    );
    // The CSR carries the card's public key.
    let csr_key = ok(Command::new("openssl")
        .args(["req", "-in", &s.path("dev.csr"), "-pubkey", "-noout"])
        .output()
        .unwrap());
    assert_eq!(csr_key, std::fs::read_to_string(s.path("pub.pem")).unwrap());

    ok(s.openssl(&[
        "req",
        "-x509",
        "-key",
        &key,
        "-subj",
        "/CN=self",
        "-days",
        "2",
        "-out",
        &s.path("self.pem"),
    ]));
    let out = ok(Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &s.path("self.pem"),
            &s.path("self.pem"),
        ])
        .output()
        .unwrap());
    assert!(out.contains(": OK"), "{out}");
    // It does not verify under another key.
    let other = Command::new("openssl")
        .args([
            "verify",
            "-CAfile",
            &s.path("other.pem"),
            &s.path("self.pem"),
        ])
        .output()
        .unwrap();
    assert!(
        !other.status.success(),
        "a certificate must not verify under another key"
    );
}

#[test]
fn provider_combined_file_is_both_certificate_and_key() {
    let s = Setup::new(&[]);
    let port = free_port();
    let server = s_server(
        &s,
        port,
        &s.path("srv.pem"),
        &s.path("srv.key"),
        &s.path("dev.pem"),
        "-tls1_3",
    );
    let combined = s.path("combined.pem");
    let client = s_client(
        &s,
        port,
        &combined,
        &combined,
        &s.path("srv.pem"),
        "-tls1_3",
    );
    let server_out = finish(server);
    assert!(
        client.status.success(),
        "{}{}",
        text(&client.stdout),
        text(&client.stderr)
    );
    assert!(server_out.contains("verify return:1"), "{server_out}");
}

fn build_c_examples(dir: &Path) -> (PathBuf, PathBuf) {
    let mut built = Vec::new();
    for name in ["tls_client", "tls_server"] {
        let exe = dir.join(name);
        let status = Command::new("cc")
            .arg("-o")
            .arg(&exe)
            .arg(workspace().join(format!("c-examples/{name}.c")))
            .args(["-lssl", "-lcrypto"])
            .status()
            .expect("cc");
        assert!(status.success(), "cannot build {name}");
        built.push(exe);
    }
    (built[0].clone(), built[1].clone())
}

/// The C server once it says it listens (its first line), so that the client does not race it.
fn listening(mut server: std::process::Child) -> std::process::Child {
    use std::io::BufRead;
    let stdout = server.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufReader::new(stdout);
    let mut first = String::new();
    lines
        .read_line(&mut first)
        .expect("the server's first line");
    assert_eq!(first.trim(), "listening", "the C server did not start");
    server.stdout = Some(lines.into_inner());
    server
}

#[test]
fn provider_c_examples_mutual_tls_with_only_openssl_conf() {
    let s = Setup::new(&[]);
    let (client, server) = build_c_examples(&s.dir);
    for version in ["tls1.3", "tls1.2"] {
        let port = free_port();
        // Server: software key; client: the card's key, loaded from the key-reference file.
        let srv = s
            .rig
            .command(&server)
            .args([
                &port.to_string(),
                &s.path("srv.pem"),
                &s.path("srv.key"),
                &s.path("dev.pem"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let srv = listening(srv);
        let out = s
            .with_provider(&client)
            .args([
                "127.0.0.1",
                &port.to_string(),
                &s.path("dev.pem"),
                &s.path("dev.keyref.pem"),
                &s.path("srv.pem"),
                version,
            ])
            .output()
            .unwrap();
        let server_out = srv.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "client: {}{}\nserver: {}",
            text(&out.stdout),
            text(&out.stderr),
            text(&server_out.stderr)
        );
        assert!(text(&out.stdout).contains("hello from the server"));
        assert!(
            text(&server_out.stdout).contains("iotsafe-sim device"),
            "{}",
            text(&server_out.stdout)
        );
    }
    // And the reverse: the C server's key on the card.
    let port = free_port();
    let srv = s
        .with_provider(&server)
        .args([
            &port.to_string(),
            &s.path("dev.pem"),
            &s.path("dev.keyref.pem"),
            &s.path("srv.pem"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let srv = listening(srv);
    let out = s
        .rig
        .command(&client)
        .args([
            "127.0.0.1",
            &port.to_string(),
            &s.path("srv.pem"),
            &s.path("srv.key"),
            &s.path("dev.pem"),
        ])
        .output()
        .unwrap();
    let server_out = srv.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "client: {}\nserver: {}",
        text(&out.stderr),
        text(&server_out.stderr)
    );
}

#[test]
fn provider_check_private_key_refuses_another_keys_certificate() {
    let s = Setup::new(&[]);
    let (client, _) = build_c_examples(&s.dir);
    // The certificate of another key with the card's key reference: refused before connecting.
    let out = s
        .with_provider(&client)
        .args([
            "127.0.0.1",
            "1",
            &s.path("other.pem"),
            &s.path("dev.keyref.pem"),
            &s.path("srv.pem"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("key values mismatch") || err.contains("does not match"),
        "no clear mismatch error: {err}"
    );
    assert!(
        err.contains("certificate and key reference belong to different keys")
            && err.contains("is not the one of private key id 01 on the IoT SAFE applet"),
        "the provider names the card's key: {err}"
    );
    // The matching certificate passes the same check (and then fails only to connect).
    let out = s
        .with_provider(&client)
        .args([
            "127.0.0.1",
            "1",
            &s.path("dev.pem"),
            &s.path("dev.keyref.pem"),
            &s.path("srv.pem"),
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        !err.contains("does not match") && err.contains("connect"),
        "{err}"
    );
}

#[test]
fn provider_errors_are_clear_and_never_hang() {
    let s = Setup::new(&[]);
    let cases = [
        ("iotsafe:key-id=07", "not found"),
        (
            "iotsafe:reader=NoSuchReader;key-id=01",
            "no reader matching 'NoSuchReader'",
        ),
        ("iotsafe:colour=blue", "invalid iotsafe URI"),
    ];
    for (uri, expected) in cases {
        let started = std::time::Instant::now();
        let out = s.openssl(&["pkey", "-in", uri, "-pubout"]);
        assert!(!out.status.success(), "{uri} must fail");
        assert!(
            text(&out.stderr).contains(expected),
            "{uri}: {}",
            text(&out.stderr)
        );
        assert!(started.elapsed().as_secs() < 10, "{uri} took too long");
    }
    // The same through a key-reference file and SSL_CTX_use_PrivateKey_file.
    let bad = s.path("absent.keyref.pem");
    std::fs::write(
        &bad,
        iotsafe_dane::provider::uri::keyref_pem("iotsafe:key-id=07"),
    )
    .unwrap();
    let (client, _) = build_c_examples(&s.dir);
    let out = s
        .with_provider(&client)
        .args([
            "127.0.0.1",
            "1",
            &s.path("dev.pem"),
            &bad,
            &s.path("srv.pem"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("cannot load the private key"), "{err}");
    assert!(err.contains("not found"), "the reason is lost: {err}");

    // A bad setting in the environment: the application learns which and why.
    let out = s
        .with_provider(&client)
        .env("IOTSAFE_CLA_STYLE", "42")
        .args([
            "127.0.0.1",
            "1",
            &s.path("dev.pem"),
            &s.path("dev.keyref.pem"),
            &s.path("srv.pem"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid IoT SAFE provider configuration")
            && err.contains("IOTSAFE_CLA_STYLE"),
        "{err}"
    );
}

#[test]
fn provider_two_processes_sign_at_once() {
    let s = Setup::new(&[]);
    let data = s.path("data.txt");
    std::fs::write(&data, b"telemetry").unwrap();
    let children: Vec<_> = (0..2)
        .map(|n| {
            let script = format!(
                "for i in $(seq 1 15); do openssl dgst -sha256 -sign {} -out {}.$i {} || exit 1; done",
                s.path("dev.keyref.pem"),
                s.path(&format!("sig{n}")),
                data
            );
            s.with_provider("sh").args(["-c", &script]).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    for n in 0..2 {
        for i in 1..=15 {
            let out = Command::new("openssl")
                .args([
                    "dgst",
                    "-sha256",
                    "-verify",
                    &s.path("pub.pem"),
                    "-signature",
                ])
                .arg(s.path(&format!("sig{n}.{i}")))
                .arg(&data)
                .output()
                .unwrap();
            assert!(
                text(&out.stdout).contains("Verified OK"),
                "signature {n}.{i}"
            );
        }
    }
}

/// The store hands its private key to the provider's key management by reference (no
/// key-reference DER for the decoder to parse back); a key-reference file still goes through
/// the decoder. Both keys sign with the real `openssl` tool and verify with the card's
/// public key.
#[test]
fn provider_store_hands_its_key_over_by_reference_and_files_use_the_decoder() {
    let s = Setup::new(&[]);
    let data = s.path("data.bin");
    std::fs::write(&data, b"signed by the card through the store").unwrap();
    let log = || std::fs::read_to_string(s.path("provider.log")).unwrap_or_default();
    let sign_and_verify = |key: &str| {
        let signature = s.path("data.sig");
        ok(s.openssl(&["dgst", "-sha256", "-sign", key, "-out", &signature, &data]));
        let verified = ok(s.openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            &s.path("pub.pem"),
            "-signature",
            &signature,
            &data,
        ]));
        assert!(verified.contains("Verified OK"), "{key}: {verified}");
    };

    sign_and_verify("iotsafe:key-id=01");
    let store_log = log();
    assert!(
        store_log.contains("store: private key of iotsafe:key-id=01 handed over by reference"),
        "{store_log}"
    );
    assert!(
        !store_log.contains("decoder: key reference"),
        "the store path needs no decoder: {store_log}"
    );

    sign_and_verify(&s.path("dev.keyref.pem"));
    let file_log = log();
    assert!(
        file_log[store_log.len()..].contains("decoder: key reference iotsafe:"),
        "{file_log}"
    );
}

#[test]
fn provider_store_serves_certificate_public_key_and_private_key() {
    let s = Setup::new(&[]);
    let subject = ok(s.openssl(&["x509", "-in", "iotsafe:type=cert", "-noout", "-subject"]));
    assert!(subject.contains("iotsafe-sim device"), "{subject}");
    let public = ok(s.openssl(&["pkey", "-pubin", "-in", "iotsafe:type=public"]));
    assert_eq!(public, std::fs::read_to_string(s.path("pub.pem")).unwrap());
    let listing = ok(s.openssl(&["storeutl", "iotsafe:"]));
    assert!(
        listing.contains("0: Pkey") && listing.contains("1: Certificate"),
        "{listing}"
    );
    let absent = s.openssl(&["x509", "-in", "iotsafe:cert-id=09;type=cert", "-noout"]);
    assert!(!absent.status.success());
    assert!(
        text(&absent.stderr).contains("file id 09 not found"),
        "{}",
        text(&absent.stderr)
    );
}

/// `dh-peer-id` in a URI survives the store's hand-over (the key object, by reference): ECDH
/// puts the peer's point into the slot named, not the default one.
#[test]
fn provider_ecdh_through_a_uri_uses_its_peer_slot() {
    let s = Setup::new(&[]);
    let secret = s.path("secret.bin");
    let peer =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(s.path("srv.key")).unwrap())
            .unwrap();
    std::fs::write(s.path("srv.pub"), peer.public_key_to_pem().unwrap()).unwrap();
    ok(s.openssl(&[
        "pkeyutl",
        "-derive",
        "-inkey",
        "iotsafe:key-id=01;dh-peer-id=11",
        "-peerkey",
        &s.path("srv.pub"),
        "-out",
        &secret,
    ]));
    let put_slots: Vec<String> = s
        .rig
        .trace()
        .iter()
        .filter(|line| line.get(2..4) == Some("24"))
        .filter_map(|line| line.split(' ').next().map(|c| c[10..].to_string()))
        .collect();
    assert_eq!(put_slots, ["850111"], "PUT PUBLIC KEY INIT data");
    // The same secret as the peer computes in software.
    let peer =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(s.path("srv.key")).unwrap())
            .unwrap();
    let card_public =
        openssl::pkey::PKey::public_key_from_pem(&std::fs::read(s.path("pub.pem")).unwrap())
            .unwrap();
    let mut software = openssl::derive::Deriver::new(&peer).unwrap();
    software.set_peer(&card_public).unwrap();
    assert_eq!(
        std::fs::read(&secret).unwrap(),
        software.derive_to_vec().unwrap()
    );
}

/// A card that announces a certificate file of FFFFFFFFFF bytes: the provider reports a
/// clear error instead of aborting the application.
#[test]
fn provider_refuses_a_huge_certificate_file_clearly() {
    let rig = CardRig::start(&["--file-size", "FFFFFFFFFF"]);
    let out = rig
        .command("openssl")
        .env("OPENSSL_CONF", common::example_openssl_conf())
        .env("OPENSSL_MODULES", common::built_library_dir())
        .args(["x509", "-in", "iotsafe:type=cert", "-noout", "-subject"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "an error, not a crash");
    let message = text(&out.stderr);
    assert!(
        message.contains("announces 1099511627775 bytes (tag 20)")
            && message.contains("file id 02"),
        "{message}"
    );
}
