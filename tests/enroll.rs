//! `iotsafe enroll` against a simulated eSIM behind a real pcscd: the request it writes is
//! checked by the real `openssl` tool, its key is the card's, its record the key's `3 1 1`, and
//! the registry CA's certificate for it (`openssl x509 -req`) works in mutual TLS with the card
//! key through the provider.

mod common;

use std::path::{Path, PathBuf};

use common::card::CardRig;
use common::device::CardDevice;
use common::modem::{ModemRig, CHANNELS};
use common::mqtt::Broker;
use common::{free_port, ok, openssl, pki, stderr, stdout};
use openssl::pkey::PKey;

const NAME: &str = "sensor7._device.example.test";

fn path(rig: &CardRig, file: &str) -> PathBuf {
    rig.dir.path().join(file)
}

/// `openssl req -verify` of the request; its text.
fn verified_request(csr: &Path) -> String {
    let out = openssl(&[
        "req",
        "-verify",
        "-noout",
        "-text",
        "-in",
        csr.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "openssl req -verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("verify OK"), "{}", stderr(&out));
    stdout(&out)
}

/// The public key (PEM) of a request, as `openssl req -pubkey` prints it.
fn request_key(csr: &Path) -> String {
    ok(openssl(&[
        "req",
        "-noout",
        "-pubkey",
        "-in",
        csr.to_str().unwrap(),
    ]))
}

/// The card's public key (PEM) as `iotsafe pubkey` reads it.
fn card_key(rig: &CardRig, key_options: &[&str]) -> String {
    ok(rig.iotsafe(&[key_options, &["pubkey"]].concat()))
}

/// The zone-file line of the DANE-EE `3 1 1` record of a public key (PEM): the SHA-256 of its
/// SubjectPublicKeyInfo, computed here.
fn expected_record_line(name: &str, public_pem: &str) -> String {
    let spki = PKey::public_key_from_pem(public_pem.as_bytes())
        .unwrap()
        .public_key_to_der()
        .unwrap();
    let hash = openssl::sha::sha256(&spki);
    format!(
        "{name}. IN TLSA 3 1 1 {}\n",
        iotsafe_dane::hex::encode(&hash).to_lowercase()
    )
}

#[test]
fn the_request_is_signed_on_the_card_through_the_provider_and_names_the_device() {
    let rig = CardRig::start(&[]);
    let debug_log = path(&rig, "provider.log");
    let csr = path(&rig, "dev.csr");
    let before = rig.trace().len();
    let out = rig
        .command(common::workspace_binary("iotsafe"))
        .env("IOTSAFE_DEBUG_LOG", &debug_log)
        .args(["enroll", "--name", NAME, "--csr-out"])
        .arg(&csr)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        rig.signing_apdus_since(before) > 0,
        "the card signed the request"
    );
    let log = std::fs::read_to_string(&debug_log).unwrap_or_default();
    assert!(
        log.contains("decoder: key reference iotsafe:") && log.contains("sign sha256 digest"),
        "the provider decoded the key reference and signed: {log}"
    );

    let text = verified_request(&csr);
    assert!(text.contains(&format!("DNS:{NAME}")), "{text}");
    assert!(text.contains("Subject: CN = sensor7"), "{text}");
    let public = card_key(&rig, &[]);
    assert_eq!(
        request_key(&csr),
        public,
        "the request holds the card's key"
    );
    assert_eq!(stdout(&out), expected_record_line(NAME, &public));
    let steps = stderr(&out);
    for needle in [
        "openssl x509 -req",
        "-extfile",
        &format!("iotsafe registry publish {NAME}"),
    ] {
        assert!(
            steps.contains(needle),
            "next steps lack {needle:?}: {steps}"
        );
    }
}

#[test]
fn genkey_makes_the_pair_on_the_card_and_replaces_one_only_with_force() {
    let rig = CardRig::start(&[]);
    let key_03 = ["--key-id", "03"];
    let enroll = |csr: &str, extra: &[&str]| {
        let csr = path(&rig, csr);
        let args = [
            &key_03[..],
            &["enroll", "--name", NAME, "--genkey", "--csr-out"],
            &[csr.to_str().unwrap()],
            extra,
        ]
        .concat();
        (rig.iotsafe(&args), csr)
    };

    let (out, first_csr) = enroll("first.csr", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("generated private key id 03"),
        "{}",
        stderr(&out)
    );
    let generated = card_key(&rig, &key_03);
    verified_request(&first_csr);
    assert_eq!(request_key(&first_csr), generated);
    assert_eq!(stdout(&out), expected_record_line(NAME, &generated));

    let (out, refused_csr) = enroll("refused.csr", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.starts_with("iotsafe: private key id 03 already exists")
            && message.contains("add --force")
            && message.lines().count() == 1,
        "{message}"
    );
    assert!(!refused_csr.exists(), "no request written when refused");
    assert_eq!(card_key(&rig, &key_03), generated, "the key was kept");

    let (out, forced_csr) = enroll("forced.csr", &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let replaced = card_key(&rig, &key_03);
    assert_ne!(replaced, generated, "--force generated a new key");
    verified_request(&forced_csr);
    assert_eq!(request_key(&forced_csr), replaced);
    assert_eq!(stdout(&out), expected_record_line(NAME, &replaced));
    // The old key's record must go at once (the key is gone from the card: a rollover's
    // overlap would keep it admitted for nobody legitimate).
    let steps = stderr(&out);
    for needle in [
        format!("iotsafe registry publish {NAME} --cert device.crt"),
        format!("iotsafe registry revoke {NAME} --record"),
        "at once".to_string(),
    ] {
        assert!(
            steps.contains(&needle),
            "next steps lack {needle:?}: {steps}"
        );
    }
    assert!(!steps.contains("rotate"), "{steps}");
}

#[test]
fn a_name_not_of_the_device_form_is_refused_in_one_line_before_the_card_is_used() {
    let rig = CardRig::start(&[]);
    let csr = path(&rig, "dev.csr");
    for (name, reason) in [
        (
            "sensor7.example.test",
            "is not of the DANCE device form <id>._device.<domain> (add --plain-name",
        ),
        ("_mqtt-client.sensor7.example.test", "_<service> owner name"),
        ("sensor7._device.exa\\.mple.test", "--name: "),
        ("sensor7._device..test", "--name: "),
    ] {
        let before = rig.trace().len();
        let out = rig.iotsafe(&["enroll", "--name", name, "--csr-out", csr.to_str().unwrap()]);
        let message = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {message}");
        assert!(
            message.starts_with("iotsafe: --name")
                && message.contains(reason)
                && message.lines().count() == 1,
            "{name}: {message}"
        );
        assert_eq!(rig.trace().len(), before, "{name}: the card was not used");
        assert!(!csr.exists(), "{name}: no request written");
    }
    let plain = "sensor7.example.test";
    let out = rig.iotsafe(&[
        "enroll",
        "--name",
        plain,
        "--plain-name",
        "--csr-out",
        csr.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(verified_request(&csr).contains(&format!("DNS:{plain}")));
}

#[test]
fn an_output_file_in_a_missing_directory_is_refused_before_the_card_is_used() {
    let rig = CardRig::start(&[]);
    let missing = path(&rig, "missing");
    let csr = missing.join("dev.csr");
    let before = rig.trace().len();
    let out = rig.iotsafe(&[
        "--key-id",
        "03",
        "enroll",
        "--genkey",
        "--name",
        NAME,
        "--csr-out",
        csr.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "iotsafe: --csr-out {}: no directory {}\n",
            csr.display(),
            missing.display()
        )
    );
    assert_eq!(rig.trace().len(), before, "the card was not used");
}

/// A directory that exists but cannot be written in (procfs: not even root creates files
/// there) is refused before the card is used, so --genkey makes no key for a request that
/// could not be written.
#[test]
fn an_output_directory_that_cannot_be_written_is_refused_before_the_card_is_used() {
    let rig = CardRig::start(&[]);
    let csr = Path::new("/proc/iotsafe-enroll-test.csr");
    let before = rig.trace().len();
    let out = rig.iotsafe(&[
        "--key-id",
        "03",
        "enroll",
        "--genkey",
        "--name",
        NAME,
        "--csr-out",
        csr.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot write in /proc") && err.contains("nothing was done on the card"),
        "{err}"
    );
    assert_eq!(rig.trace().len(), before, "the card was not used");
}

#[test]
fn the_registry_cas_certificate_for_the_request_works_in_mutual_tls_with_the_card_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::ca(dir.path(), "registry-ca", "Registry CA");
    let (device, out) =
        CardDevice::enroll(CardRig::start(&[]), dir.path(), "sensor7", NAME, &[], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    device.issue(&ca, NAME);
    let cert = device.cert();
    let sans: Vec<String> = cert
        .subject_alt_names()
        .into_iter()
        .flatten()
        .filter_map(|n| n.dnsname().map(str::to_string))
        .collect();
    assert_eq!(sans, [NAME], "the CA copied the subjectAltName");

    let server = pki::leaf(dir.path(), "broker", "localhost", &["localhost"], None);
    let broker = Broker::start_with(
        free_port(),
        &server.cert_path,
        &server.key_path,
        Some(&ca.cert_path),
    );
    let before = device.rig.trace().len();
    let published = device.publish(&broker, &server.cert_path, "sensor7", "enrolled");
    assert!(published.status.success(), "{}", stderr(&published));
    assert!(
        device.rig.signing_apdus_since(before) > 0,
        "the handshake was signed on the card"
    );
}

/// Through a modem's AT port named on the tool's command line only (no `IOTSAFE_MODEM`): the
/// tool's built-in provider reaches the SIM through the same modem, by AT commands.
#[test]
fn the_request_is_signed_on_a_sim_behind_a_modem_named_on_the_command_line() {
    let rig = ModemRig::start(CHANNELS.sim_args);
    let csr = rig.dir.path().join("dev.csr");
    let before = rig.at_commands().len();
    let out = rig
        .command()
        .env_remove("IOTSAFE_MODEM")
        .args(["enroll", "--name", NAME, "--csr-out"])
        .arg(&csr)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (apdus, _) = rig.apdu_commands_since(before, &CHANNELS);
    assert!(apdus > 0, "APDUs went by {}", CHANNELS.apdu_command);
    assert!(verified_request(&csr).contains(&format!("DNS:{NAME}")));
    let public = ok(rig.iotsafe(&["pubkey"]));
    assert_eq!(request_key(&csr), public, "the request holds the SIM's key");
    assert_eq!(stdout(&out), expected_record_line(NAME, &public));
}
