//! The `iotsafe` tool against a simulated eSIM behind a real pcscd, with the real `openssl`
//! tool checking what the card produced.

mod common;

use std::time::{Duration, Instant};

use common::card::CardRig;
use common::{digest_hex, ok, openssl, stderr, stdout};

/// Signs a message on the rig's card with `hash` and checks it with `openssl dgst -verify`.
fn sign_and_verify(rig: &CardRig, tool_args: &[&str], hash: &str) {
    common::sign_and_verify(
        rig.dir.path(),
        &|args| rig.iotsafe(&[tool_args, args].concat()),
        hash,
    );
}

#[test]
fn sha256_signature_verifies_with_openssl() {
    let rig = CardRig::start(&[]);
    sign_and_verify(&rig, &[], "sha256");
}

#[test]
fn sha384_signature_verifies_with_openssl() {
    let rig = CardRig::start(&[]);
    sign_and_verify(&rig, &[], "sha384");
}

#[test]
fn proprietary_class_and_long_signature_length_style() {
    let rig = CardRig::start(&["--cla-style", "80", "--sig-len", "long"]);
    sign_and_verify(&rig, &["--cla-style", "80"], "sha256");
    assert!(
        rig.trace()
            .iter()
            .any(|line| line.starts_with("812B") && line.contains(" 330040")),
        "the card answered with 33 00 40 on CLA 81"
    );
}

#[test]
fn interindustry_class_and_short_signature_length_style() {
    let rig = CardRig::start(&["--cla-style", "00", "--sig-len", "short"]);
    sign_and_verify(&rig, &["--cla-style", "00"], "sha256");
    assert!(rig
        .trace()
        .iter()
        .any(|line| line.starts_with("012B") && line.contains(" 3340")));
}

#[test]
fn wrong_class_convention_is_a_clear_error() {
    let rig = CardRig::start(&["--cla-style", "80"]);
    let out = rig.iotsafe(&["--cla-style", "00", "random", "8"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("class not supported (SW 6E00)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unknown_key_id_is_reported_as_not_found() {
    let rig = CardRig::start(&[]);
    let out = rig.iotsafe(&["--key-id", "07", "sign", "--digest", &"00".repeat(32)]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains("private key id 07 not found on the applet (SW 6A82)"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "one line on stderr: {message}");
}

#[test]
fn certificate_holds_the_cards_public_key() {
    let rig = CardRig::start(&[]);
    let cert = rig.dir.path().join("cert.pem");
    ok(rig.iotsafe(&["cert", "--out", cert.to_str().unwrap()]));
    let from_cert = ok(openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]));
    let from_card = ok(rig.iotsafe(&["pubkey"]));
    assert_eq!(from_cert, from_card);
}

#[test]
fn tlsa_record_matches_openssls_digest_of_the_key() {
    let rig = CardRig::start(&[]);
    let cert = rig.dir.path().join("cert.pem");
    ok(rig.iotsafe(&["cert", "--out", cert.to_str().unwrap()]));
    let spki = rig.dir.path().join("spki.der");
    let pem = ok(openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]));
    let pem_file = rig.dir.path().join("pub.pem");
    std::fs::write(&pem_file, pem).unwrap();
    ok(openssl(&[
        "pkey",
        "-pubin",
        "-in",
        pem_file.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        spki.to_str().unwrap(),
    ]));
    let expected = digest_hex("sha256", &spki);

    let record = ok(rig.iotsafe(&["tlsa", "--name", "sensor7._device.iotregistry.test"]));
    assert_eq!(
        record.trim(),
        format!("sensor7._device.iotregistry.test. IN TLSA 3 1 1 {expected}")
    );
    let full = ok(rig.iotsafe(&[
        "tlsa",
        "--name",
        "x.test.",
        "--selector",
        "0",
        "--mtype",
        "2",
    ]));
    let der = rig.dir.path().join("cert.der");
    ok(openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]));
    assert_eq!(
        full.trim(),
        format!("x.test. IN TLSA 3 0 2 {}", digest_hex("sha512", &der))
    );
}

/// The SHA-256 of a PEM public key's DER SubjectPublicKeyInfo, by the `openssl` tool.
fn spki_sha256(rig: &CardRig, public_pem: &str) -> String {
    let pem_file = rig.dir.path().join("spki-input.pem");
    std::fs::write(&pem_file, public_pem).unwrap();
    let spki = rig.dir.path().join("spki-input.der");
    ok(openssl(&[
        "pkey",
        "-pubin",
        "-in",
        pem_file.to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        spki.to_str().unwrap(),
    ]));
    digest_hex("sha256", &spki)
}

/// `--key-id 03 tlsa` is the record of key 03 (read from the card), never of the device
/// certificate's key; a selector 0 record of a certificate that holds another key is refused.
#[test]
fn tlsa_record_is_the_selected_keys() {
    let rig = CardRig::start(&[]);
    let key3 = ok(rig.iotsafe(&["--key-id", "03", "genkey"]));
    let record = ok(rig.iotsafe(&["--key-id", "03", "tlsa", "--name", "x.test"]));
    assert_eq!(
        record.trim(),
        format!("x.test. IN TLSA 3 1 1 {}", spki_sha256(&rig, &key3))
    );
    let device = ok(rig.iotsafe(&["tlsa", "--name", "x.test"]));
    assert_ne!(record, device, "key 03's record, not key 01's");

    let out = rig.iotsafe(&[
        "--key-id",
        "03",
        "tlsa",
        "--name",
        "x.test",
        "--selector",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "the certificate in file id 02 holds another public key than private key id 03"
        ),
        "{}",
        stderr(&out)
    );
}

/// `keyref --with-cert` writes a certificate only together with its own key's reference.
#[test]
fn keyref_with_another_keys_certificate_is_refused() {
    let rig = CardRig::start(&[]);
    ok(rig.iotsafe(&["--key-id", "03", "genkey"]));
    let file = rig.dir.path().join("k3.keyref.pem");
    let out = rig.iotsafe(&[
        "--key-id",
        "03",
        "keyref",
        "--with-cert",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds another public key than private key id 03"),
        "{}",
        stderr(&out)
    );
    assert!(!file.exists(), "no file written");
    // The device key's own certificate is accepted.
    ok(rig.iotsafe(&["keyref", "--with-cert", "--out", file.to_str().unwrap()]));
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.starts_with("-----BEGIN CERTIFICATE-----"),
        "{written}"
    );
}

/// `genkey` on a name the card already uses is refused; with `--force` the key is replaced
/// and the tool says that the certificate no longer matches and which records must change.
#[test]
fn genkey_replaces_an_existing_key_only_with_force() {
    let rig = CardRig::start(&[]);
    let before = ok(rig.iotsafe(&["pubkey"]));
    let old_record = ok(rig.iotsafe(&["tlsa", "--name", "x.test"]));
    let out = rig.iotsafe(&["genkey"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("private key id 01 already exists on the applet")
            && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ok(rig.iotsafe(&["pubkey"])), before, "the key is untouched");

    let out = rig.iotsafe(&["genkey", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new = stdout(&out);
    assert_ne!(new, before);
    assert_eq!(ok(rig.iotsafe(&["pubkey"])), new);
    let message = stderr(&out);
    assert!(
        message.contains("the certificate in file id 02 holds the replaced key"),
        "{message}"
    );
    let old_data = old_record.split_whitespace().last().unwrap();
    let new_data = spki_sha256(&rig, &new);
    assert!(
        message.contains(&format!(
            "TLSA 3 1 1 {old_data} becomes TLSA 3 1 1 {new_data}"
        )),
        "{message}"
    );
    let out = rig.iotsafe(&["tlsa", "--name", "x.test", "--selector", "0"]);
    assert!(
        stderr(&out).contains("holds another public key than private key id 01"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn objects_info_random_and_readers() {
    let rig = CardRig::start(&[]);
    let objects = ok(rig.iotsafe(&["objects"]));
    assert!(
        objects
            .lines()
            .any(|l| l.starts_with("private key") && l.contains("id 01")),
        "{objects}"
    );
    assert!(
        objects
            .lines()
            .any(|l| l.starts_with("public key") && l.contains("id 01")),
        "{objects}"
    );
    assert!(
        objects
            .lines()
            .any(|l| l.starts_with("file") && l.contains("id 02") && l.contains("size")),
        "{objects}"
    );
    ok(rig.iotsafe(&["info"]));
    let random = ok(rig.iotsafe(&["random", "300"]));
    assert_eq!(
        random.trim().len(),
        600,
        "300 bytes in hex, fetched in two GET RANDOMs"
    );
    assert!(ok(rig.iotsafe(&["readers"])).contains("card present"));
    // Objects by label: the simulator's default labels.
    assert_eq!(
        ok(rig.iotsafe(&["--key-label", "DEVICE", "pubkey"])),
        ok(rig.iotsafe(&["pubkey"]))
    );
    assert_eq!(
        ok(rig.iotsafe(&["--cert-label", "DEVICE-CERT", "cert"])),
        ok(rig.iotsafe(&["cert"]))
    );
    let out = rig.iotsafe(&["--cert-label", "NOPE", "cert"]);
    assert!(
        stderr(&out).contains("file label \"NOPE\" not found on the applet (SW 6A82)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn generated_key_is_the_one_the_card_then_uses() {
    let rig = CardRig::start(&[]);
    let generated = ok(rig.iotsafe(&["--key-id", "03", "genkey"]));
    assert!(generated.starts_with("-----BEGIN PUBLIC KEY-----"));
    let read_back = ok(rig.iotsafe(&["--key-id", "03", "pubkey"]));
    assert_eq!(generated, read_back);
    assert_ne!(
        read_back,
        ok(rig.iotsafe(&["pubkey"])),
        "a new key, not the device key"
    );
    sign_and_verify(&rig, &["--key-id", "03"], "sha256");
}

#[test]
fn no_reader_matching_the_filter_is_a_clear_error() {
    let rig = CardRig::start(&[]);
    let out = rig.iotsafe(&["--reader", "No Such Reader", "info"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no reader matching 'No Such Reader'"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("Virtual PCD"),
        "the message lists the readers there are"
    );
}

#[test]
fn card_pulled_during_a_signature_fails_cleanly_and_the_next_command_works() {
    let mut rig = CardRig::start(&[]);
    let pubkey_before = ok(rig.iotsafe(&["pubkey"]));
    rig.stop_sim();
    rig.start_sim_with(&["--apdu-latency-ms", "700"]);

    let mut signer = rig
        .command(common::workspace_binary("iotsafe"))
        .args(["sign", "--digest", &"11".repeat(32)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Pull the card once the signing session has been opened.
    common::wait_until(30, "COMPUTE SIGNATURE INIT", || {
        if signer.try_wait().unwrap().is_some() {
            let mut message = String::new();
            std::io::Read::read_to_string(signer.stderr.as_mut().unwrap(), &mut message).unwrap();
            panic!("the signer ended before the card was pulled: {message}");
        }
        rig.trace().iter().any(|l| l[2..].starts_with("2A00"))
    });
    rig.stop_sim();
    let pulled = Instant::now();
    let deadline = pulled + Duration::from_secs(20);
    while signer.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the tool hangs after the card was pulled"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = signer.wait_with_output().unwrap();
    assert!(!out.status.success(), "no signature without a card");
    let message = stderr(&out);
    assert!(
        message.contains("no card in reader 'Virtual PCD 00 00'")
            || message.contains("the card in reader 'Virtual PCD 00 00' was reset"),
        "a message about the card: {message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");

    rig.start_sim();
    assert_eq!(
        ok(rig.iotsafe(&["pubkey"])),
        pubkey_before,
        "the same card (state) is back"
    );
    sign_and_verify(&rig, &[], "sha256");
}

#[test]
fn t0_style_card_with_get_response() {
    let rig = CardRig::start(&["--t0", "--cla-style", "80", "--sig-len", "long"]);
    sign_and_verify(&rig, &["--cla-style", "80"], "sha256");
    let trace = rig.trace();
    assert!(
        trace
            .iter()
            .any(|l| l.starts_with("812B") && l.ends_with(" 6143")),
        "the UPDATE was answered with 61 43, as the ZARIOT card does: {trace:#?}"
    );
    assert!(
        trace.iter().any(|l| l.starts_with("81C0000043 330040")),
        "GET RESPONSE fetched the signature"
    );
}

#[test]
fn paged_object_list_is_read_whole() {
    let rig = CardRig::start(&["--page-size", "16"]);
    let objects = ok(rig.iotsafe(&["objects"]));
    assert_eq!(objects.lines().count(), 3, "{objects}");
    let pages = rig
        .trace()
        .iter()
        .filter(|l| l[2..].starts_with("CB01"))
        .count();
    assert!(
        pages >= 2,
        "the card paged the list with 6300 ({pages} GET DATA)"
    );
}

#[test]
fn random_count_is_capped_with_a_clear_error() {
    let rig = CardRig::start(&[]);
    for count in ["99999999999999", "18446744073709551616", "65537"] {
        let out = rig.iotsafe(&["random", count]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{count}: a usage error, not a crash"
        );
        assert!(
            stderr(&out).contains("at most 65536 bytes per call"),
            "{count}: {}",
            stderr(&out)
        );
    }
    let help = ok(rig.iotsafe(&["random", "--help"]));
    assert!(help.contains("N at most 65536"), "{help}");
    let most = ok(rig.iotsafe(&["random", "65536"]));
    assert_eq!(most.trim().len(), 2 * 65536);
}

/// A broken or hostile card announces a certificate file of FFFFFFFFFF bytes (tag 20): a
/// clear error naming the file and the size, not an allocation abort.
#[test]
fn a_card_announcing_a_huge_file_is_refused_clearly() {
    let rig = CardRig::start(&["--file-size", "FFFFFFFFFF"]);
    let out = rig.iotsafe(&["cert"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error, not a crash: {}",
        stderr(&out)
    );
    let message = stderr(&out);
    assert!(
        message.contains("GET DATA (file id 02)")
            && message.contains("announces 1099511627775 bytes (tag 20)")
            && message.contains("more than the 16384 bytes"),
        "{message}"
    );
    assert!(
        !rig.trace().iter().any(|line| line.get(2..4) == Some("B0")),
        "no READ FILE was sent"
    );
}

/// An ordinary SIM (no IoT SAFE AID answers SELECT) is reported as such, naming the reader
/// and the AIDs tried, not as "no card" in another (empty) slot of the reader.
#[test]
fn a_card_without_the_applet_is_named_as_such() {
    let rig = CardRig::start(&["--aid", "A0000000871002"]);
    let out = rig.iotsafe(&["info"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.starts_with(
            "iotsafe: IoT SAFE applet not found: the card in reader 'Virtual PCD 00 00' has none"
        ) && message.contains("A0000005590010 (SW 6A82)"),
        "{message}"
    );
    assert!(!message.contains("no card"), "{message}");
}

/// `--modem PATH` that cannot be used names the modem path, not a smart-card reader.
#[test]
fn a_missing_modem_is_named_as_a_modem() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("ttyUSB9");
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, "").unwrap();
    for (path, detail) in [
        (&absent, "cannot open modem"),
        (&plain, "is not a terminal"),
    ] {
        let out = std::process::Command::new(common::workspace_binary("iotsafe"))
            .args(["--modem", path.to_str().unwrap(), "info"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let message = stderr(&out);
        assert!(
            message.starts_with("iotsafe: no modem: ")
                && message.contains(path.to_str().unwrap())
                && message.contains(detail),
            "{message}"
        );
        assert!(!message.contains("smart-card reader"), "{message}");
    }
}

/// Every failure is one line on stderr starting with `iotsafe:`, the dane subcommands' too
/// (their report stays on stdout); an empty owner name is refused before the card is used.
#[test]
fn every_error_line_starts_with_the_tools_name() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_cert = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_a_cert, "hello\n").unwrap();
    let runs: [&[&str]; 3] = [
        &["tlsa", "--name", ""],
        &[
            "dane",
            "check-client",
            "--cert",
            not_a_cert.to_str().unwrap(),
            "--name",
            "sensor7._device.example",
            "--resolver",
            "127.0.0.1:9",
        ],
        &[
            "dane",
            "check-server",
            "",
            "443",
            "--resolver",
            "127.0.0.1:9",
        ],
    ];
    for args in runs {
        let out = std::process::Command::new(common::workspace_binary("iotsafe"))
            .args(args)
            .env("PCSCLITE_CSOCK_NAME", dir.path().join("no-pcscd"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let message = stderr(&out);
        assert!(
            !message.is_empty() && message.lines().all(|l| l.starts_with("iotsafe: ")),
            "{args:?}: {message}"
        );
    }
    let out = std::process::Command::new(common::workspace_binary("iotsafe"))
        .args(["tlsa", "--name", ""])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("--name: '' is not a host name: empty name"),
        "{}",
        stderr(&out)
    );
}
