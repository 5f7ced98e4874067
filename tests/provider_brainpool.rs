//! A card whose keys are on brainpoolP256r1 (key type 23): the provider takes the curve from
//! the applet's key attributes, so the key is a brainpool key to every OpenSSL program.
//! (OpenSSL 3.0 signs TLS 1.3 handshakes with brainpool keys only from 3.2 on: TLS 1.2 here.)

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::card::CardRig;
use common::{free_port, ok, stderr, stdout};

fn with_provider(rig: &CardRig, program: &str) -> Command {
    let mut command = rig.command(program);
    command
        .env("OPENSSL_CONF", common::example_openssl_conf())
        .env("OPENSSL_MODULES", common::built_library_dir());
    command
}

#[test]
fn brainpool_card_key_signs_certificates_and_tls12_handshakes() {
    let rig = CardRig::start(&["--curve", "brainpoolP256r1"]);
    let path = |name: &str| rig.dir.path().join(name).to_string_lossy().into_owned();
    ok(rig.iotsafe(&["keyref", "--out", &path("dev.keyref.pem")]));
    ok(rig.iotsafe(&["cert", "--out", &path("dev.pem")]));
    assert!(ok(rig.iotsafe(&["objects"])).contains("type brainpoolP256r1"));

    // The key OpenSSL loads through the provider is the card's brainpool key.
    let from_card = ok(rig.iotsafe(&["pubkey"]));
    let through_provider = ok(with_provider(&rig, "openssl")
        .args(["pkey", "-in", &path("dev.keyref.pem"), "-pubout"])
        .output()
        .unwrap());
    assert_eq!(through_provider, from_card);
    std::fs::write(path("pub.pem"), &from_card).unwrap();
    let text = ok(Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in", &path("pub.pem")])
        .output()
        .unwrap());
    assert!(text.contains("ASN1 OID: brainpoolP256r1"), "{text}");

    // A self-signed certificate made with the card key verifies.
    ok(with_provider(&rig, "openssl")
        .args([
            "req",
            "-x509",
            "-key",
            &path("dev.keyref.pem"),
            "-subj",
            "/CN=sensor-bp",
            "-days",
            "2",
        ])
        .args(["-out", &path("self.pem")])
        .output()
        .unwrap());
    let verified = ok(Command::new("openssl")
        .args(["verify", "-CAfile", &path("self.pem"), &path("self.pem")])
        .output()
        .unwrap());
    assert!(verified.contains(": OK"), "{verified}");

    // Mutual TLS 1.2 with the card key, against a server that accepts brainpool.
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
            &path("srv.key"),
            "-out",
            &path("srv.pem"),
            "-subj",
            "/CN=server",
            "-days",
            "2",
        ])
        .output()
        .unwrap());
    let port = free_port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-tls1_2",
            "-groups",
            "P-256:brainpoolP256r1",
        ])
        .args([
            "-cert",
            &path("srv.pem"),
            "-key",
            &path("srv.key"),
            "-Verify",
            "1",
            "-CAfile",
            &path("dev.pem"),
        ])
        .stdin(Stdio::piped()) // open: s_server ends at end of input
        .stdout(std::fs::File::create(path("server.out")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // s_server says ACCEPT once it listens (a probe connection would end it).
    while !std::fs::read_to_string(path("server.out"))
        .unwrap_or_default()
        .contains("ACCEPT")
    {
        assert!(Instant::now() < deadline, "s_server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = with_provider(&rig, "openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_2",
            "-groups",
            "P-256:brainpoolP256r1",
        ])
        .args([
            "-cert",
            &path("dev.pem"),
            "-key",
            &path("dev.keyref.pem"),
            "-CAfile",
            &path("srv.pem"),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _ = server.kill();
    let _ = server.wait();
    let seen = std::fs::read_to_string(path("server.out")).unwrap();
    assert!(
        client.status.success(),
        "{}{}",
        stdout(&client),
        stderr(&client)
    );
    assert!(
        stdout(&client).contains("Verify return code: 0 (ok)"),
        "{}",
        stdout(&client)
    );
    assert!(
        seen.contains("CN = iotsafe-sim device"),
        "the server saw the card's certificate: {seen}"
    );
}

/// `genkey` prints the new key on the curve the card names for it (not P-256 by assumption),
/// and the provider loads the same key through a key reference.
#[test]
fn a_key_generated_on_a_brainpool_card_is_a_brainpool_key() {
    let rig = CardRig::start(&["--curve", "brainpoolP256r1"]);
    let path = |name: &str| rig.dir.path().join(name).to_string_lossy().into_owned();
    let generated = ok(rig.iotsafe(&["--key-id", "03", "genkey"]));
    assert_eq!(generated, ok(rig.iotsafe(&["--key-id", "03", "pubkey"])));
    std::fs::write(path("new.pem"), &generated).unwrap();
    let text = ok(Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in", &path("new.pem")])
        .output()
        .unwrap());
    assert!(text.contains("ASN1 OID: brainpoolP256r1"), "{text}");
    ok(rig.iotsafe(&["--key-id", "03", "keyref", "--out", &path("new.keyref.pem")]));
    let through_provider = ok(with_provider(&rig, "openssl")
        .args(["pkey", "-in", &path("new.keyref.pem"), "-pubout"])
        .output()
        .unwrap());
    assert_eq!(through_provider, generated);
}
