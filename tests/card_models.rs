//! The host against the simulator playing the cards found in the field: an applet that
//! answers only Thales' AID, a UICC with logical channels up to 19 (our channel is the last
//! one), and an applet that keeps the public key in an object of its own. Each with the
//! `iotsafe` tool and the provider (a TLS server whose key is on the card), through a real
//! pcscd.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::card::CardRig;
use common::{ok, stderr, stdout};

/// Signs with the tool (`tool_args` naming the objects) and checks the signature with openssl.
fn tool_sign_and_verify(rig: &CardRig, tool_args: &[&str]) {
    common::sign_and_verify(
        rig.dir.path(),
        &|args| rig.iotsafe(&[tool_args, args].concat()),
        "sha256",
    );
}

fn path(rig: &CardRig, name: &str) -> PathBuf {
    rig.dir.path().join(name)
}

/// `openssl s_server` with the card's certificate and key (through the provider); killed on
/// drop.
struct CardServer {
    child: Child,
    port: u16,
}

impl CardServer {
    fn start(rig: &CardRig, cert: &Path, keyref: &Path) -> CardServer {
        let port = common::free_port();
        let child = rig
            .command("openssl")
            .env("OPENSSL_CONF", common::example_openssl_conf())
            .env("OPENSSL_MODULES", common::built_library_dir())
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(keyref)
            .args(["-tls1_3", "-quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(path(rig, "s_server.log")).unwrap(),
            ))
            .spawn()
            .expect("openssl s_server");
        // A connection that sends nothing costs the server nothing but a failed accept.
        common::wait_until(10, "s_server listening", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        CardServer { child, port }
    }
}

impl Drop for CardServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS 1.3 handshake with a software client that trusts only the card's certificate: the
/// server's CertificateVerify is signed by the card through the provider.
fn provider_tls_server_handshake(rig: &CardRig, tool_args: &[&str]) {
    let cert = path(rig, "dev.pem");
    let keyref = path(rig, "dev.keyref.pem");
    ok(rig.iotsafe(&[tool_args, &["cert", "--out", cert.to_str().unwrap()]].concat()));
    ok(rig.iotsafe(&[tool_args, &["keyref", "--out", keyref.to_str().unwrap()]].concat()));
    let server = CardServer::start(rig, &cert, &keyref);
    let signatures_before = signing_apdus(rig).len();
    let client = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.port),
        ])
        .arg("-CAfile")
        .arg(&cert)
        .args(["-verify_return_error", "-tls1_3"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let log = std::fs::read_to_string(path(rig, "s_server.log")).unwrap_or_default();
    drop(server);
    assert!(
        client.status.success() && stdout(&client).contains("Verify return code: 0 (ok)"),
        "handshake failed: {}{}\nserver: {log}",
        stdout(&client),
        stderr(&client)
    );
    assert!(
        signing_apdus(rig).len() > signatures_before,
        "the card signed the handshake"
    );
}

/// COMPUTE SIGNATURE INIT/UPDATE lines of the card's trace.
fn signing_apdus(rig: &CardRig) -> Vec<String> {
    rig.trace()
        .into_iter()
        .filter(|line| matches!(line.get(2..4), Some("2A" | "2B")))
        .collect()
}

/// A card with only Thales' applet works with the host's default configuration: the GSMA
/// AID is tried first (6A82), then Thales'.
#[test]
fn a_thales_only_card_with_the_default_configuration() {
    let rig = CardRig::start(&["--aid", "thales"]);
    tool_sign_and_verify(&rig, &[]);
    provider_tls_server_handshake(&rig, &[]);
    let trace = rig.trace();
    assert!(
        trace
            .iter()
            .any(|l| l.starts_with("01A4040007A0000005590010 ") && l.ends_with(" 6A82")),
        "GSMA AID refused: {trace:#?}"
    );
    assert!(
        trace.iter().any(
            |l| l.starts_with("01A404000FA00000003053F12401770101495341 ") && l.ends_with(" 9000")
        ),
        "Thales AID selected: {trace:#?}"
    );
}

/// Opens `count` logical channels from the basic channel, as other applications on the card
/// would, and leaves them open.
fn occupy_channels(count: usize) {
    let context = pcsc::Context::establish(pcsc::Scope::User).expect("PC/SC context");
    let readers = context.list_readers_owned().expect("readers");
    let reader = readers.first().expect("a reader");
    let card = context
        .connect(reader, pcsc::ShareMode::Shared, pcsc::Protocols::ANY)
        .expect("connect to the card");
    let mut buffer = [0u8; 258];
    for n in 1..=count {
        let answer = card
            .transmit(&[0x00, 0x70, 0x00, 0x00, 0x01], &mut buffer)
            .expect("MANAGE CHANNEL");
        assert_eq!(answer, [n as u8, 0x90, 0x00], "channel {n} opened");
    }
    card.disconnect(pcsc::Disposition::LeaveCard)
        .map_err(|(_, e)| e)
        .expect("disconnect, leaving the card as it is");
}

/// A UICC with channels 0..19 whose channels 1..18 are taken: the host gets channel 19 and
/// addresses it with the further interindustry class byte 4F (C0..CF in the proprietary
/// style), for the tool and for the provider.
fn channel_nineteen_of_a_uicc(style: &str, cla: &str) {
    {
        let rig = CardRig::start(&["--channels", "20", "--cla-style", style]);
        occupy_channels(18);
        let tool_args = ["--cla-style", style];
        tool_sign_and_verify(&rig, &tool_args);
        provider_tls_server_handshake(&rig, &tool_args);
        let trace = rig.trace();
        assert!(
            trace
                .iter()
                .any(|l| l.starts_with("0070000001 13") && l.ends_with("9000")),
            "channel 19 given: {trace:#?}"
        );
        assert!(
            trace
                .iter()
                .any(|l| l.starts_with("4FA4040007A0000005590010 ") && l.ends_with(" 9000")),
            "SELECT on channel 19: {trace:#?}"
        );
        let signing = signing_apdus(&rig);
        assert!(!signing.is_empty());
        assert!(
            signing
                .iter()
                .all(|l| l.starts_with(cla) && l.ends_with("9000")),
            "every signature APDU on channel 19 with CLA {cla}: {signing:#?}"
        );
        // The tool gives the channel back (from the basic channel) when it is done.
        assert!(
            trace.iter().any(|l| l == "00708013 9000"),
            "channel 19 closed: {trace:#?}"
        );
    }
}

// (One test per process: libpcsclite reads the rig's socket path once per process.)
#[test]
fn channel_nineteen_of_a_uicc_interindustry_class() {
    channel_nineteen_of_a_uicc("00", "4F");
}

#[test]
fn channel_nineteen_of_a_uicc_proprietary_class() {
    channel_nineteen_of_a_uicc("80", "CF");
}

/// An applet that keeps the public key in an object of its own (id 03, label DEVICE-PUB):
/// the object list shows both, the host names the public key with `--pub-id`/`pub-id=` (the
/// private key's id has no public key), and signs with private key 01.
#[test]
fn a_public_key_in_an_object_of_its_own() {
    let rig = CardRig::start(&["--layout", "separate"]);
    let objects = ok(rig.iotsafe(&["objects"]));
    let lines: Vec<&str> = objects.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("private") && l.contains("id 01  label \"DEVICE\"")),
        "{objects}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("public") && l.contains("id 03  label \"DEVICE-PUB\"")),
        "{objects}"
    );
    // Without naming it, the tool says where the public keys are rather than guessing.
    for command in [&["pubkey"][..], &["keyref", "--out", "/dev/null"]] {
        let without = rig.iotsafe(command);
        assert!(!without.status.success());
        assert!(
            stderr(&without).contains("public key id 01 not found")
                && stderr(&without).contains(
                    "the card's public keys: id 03 label \"DEVICE-PUB\" (name the key's own \
                     with --pub-id or --pub-label)"
                ),
            "{command:?}: {}",
            stderr(&without)
        );
    }
    tool_sign_and_verify(&rig, &["--pub-id", "03"]);
    let by_label = ok(rig.iotsafe(&["--pub-label", "DEVICE-PUB", "pubkey"]));
    let by_id = ok(rig.iotsafe(&["--pub-id", "03", "pubkey"]));
    assert_eq!(by_label, by_id);
    provider_tls_server_handshake(&rig, &["--pub-id", "03"]);
    // The key reference names the public key object, so the provider finds it.
    let keyref = std::fs::read_to_string(path(&rig, "dev.keyref.pem")).unwrap();
    let body: String = keyref.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = openssl::base64::decode_block(&body).unwrap();
    let uri = String::from_utf8_lossy(&der);
    assert!(uri.contains("pub-id=03"), "{uri}");
}
