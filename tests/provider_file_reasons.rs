//! Every failure of a key-reference file names its reason through OpenSSL's file store
//! (`openssl pkey -in FILE`, `openssl req -key FILE`), not only through
//! `SSL_CTX_use_PrivateKey_file` or an `iotsafe:` URI: the real `openssl` tool against a
//! simulated eSIM behind a real pcscd.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::card::CardRig;
use common::{ok, stderr};
use iotsafe_dane::provider::uri::keyref_pem;

/// A card rig, its key-reference file and a provider configuration.
struct Files {
    rig: CardRig,
}

impl Files {
    fn new() -> Files {
        let rig = CardRig::start(&[]);
        let files = Files { rig };
        ok(files
            .rig
            .iotsafe(&["keyref", "--out", &files.path("dev.keyref.pem")]));
        files
    }

    fn path(&self, name: &str) -> String {
        self.rig.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `openssl ARGS` with the provider configured by `conf`.
    fn openssl_with(&self, conf: &Path, args: &[&str]) -> Command {
        let mut command = self.rig.command("openssl");
        command
            .env("OPENSSL_CONF", conf)
            .env("OPENSSL_MODULES", common::built_library_dir())
            .args(args);
        command
    }

    fn pkey(&self, file: &str) -> Output {
        self.openssl_with(
            &common::example_openssl_conf(),
            &["pkey", "-in", file, "-pubout"],
        )
        .output()
        .unwrap()
    }

    /// The example configuration with `extra` lines in the provider's section.
    fn conf_with(&self, extra: &str) -> PathBuf {
        let example = std::fs::read_to_string(common::example_openssl_conf()).unwrap();
        let conf = example.replace("[iotsafe_sect]\n", &format!("[iotsafe_sect]\n{extra}\n"));
        PathBuf::from(self.write("openssl.cnf", &conf))
    }
}

/// A failed `openssl` run whose stderr holds `reason`, and not only OpenSSL's generic
/// "unsupported".
fn fails_with(out: Output, what: &str, reason: &str) {
    let message = stderr(&out);
    assert!(!out.status.success(), "{what}: must fail");
    assert!(
        message.contains(reason),
        "{what}: no '{reason}' in: {message}"
    );
}

#[test]
fn a_missing_key_or_reader_is_named_through_the_file_store() {
    let files = Files::new();
    let absent = files.write("absent.keyref.pem", &keyref_pem("iotsafe:key-id=07"));
    fails_with(
        files.pkey(&absent),
        "key id 07",
        "key id 07 not found on the applet",
    );
    let reader = files.write(
        "reader.keyref.pem",
        &keyref_pem("iotsafe:reader=NoSuchReader;key-id=01"),
    );
    fails_with(
        files.pkey(&reader),
        "wrong reader",
        "no reader matching 'NoSuchReader'",
    );
    // `openssl req -key FILE` goes the same way.
    let out = files
        .openssl_with(
            &common::example_openssl_conf(),
            &["req", "-new", "-key", &absent, "-subj", "/CN=x"],
        )
        .output()
        .unwrap();
    fails_with(out, "req -key", "key id 07 not found on the applet");
    // `openssl s_client -key FILE` too, before any connection.
    ok(files
        .rig
        .iotsafe(&["cert", "--out", &files.path("dev.pem")]));
    let out = files
        .openssl_with(
            &common::example_openssl_conf(),
            &[
                "s_client",
                "-connect",
                "127.0.0.1:1",
                "-cert",
                &files.path("dev.pem"),
                "-key",
                &absent,
            ],
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    fails_with(out, "s_client -key", "key id 07 not found on the applet");
}

#[test]
fn no_card_and_no_pcscd_are_named_through_the_file_store() {
    let mut files = Files::new();
    let keyref = files.path("dev.keyref.pem");
    let out = files
        .openssl_with(
            &common::example_openssl_conf(),
            &["pkey", "-in", &keyref, "-pubout"],
        )
        .env("PCSCLITE_CSOCK_NAME", files.path("no-pcscd.comm"))
        .output()
        .unwrap();
    fails_with(out, "no pcscd", "cannot reach the IoT SAFE applet");
    files.rig.stop_sim();
    fails_with(files.pkey(&keyref), "no card", "no card in reader");
}

#[test]
fn a_damaged_key_reference_file_says_how() {
    let files = Files::new();
    let good = std::fs::read_to_string(files.path("dev.keyref.pem")).unwrap();
    let truncated: String = good.lines().take(2).map(|l| format!("{l}\n")).collect();
    let body = good.find('\n').unwrap() + 1;
    let mut flipped = good.clone().into_bytes();
    flipped[body] = if flipped[body] == b'A' { b'B' } else { b'A' };
    let not_base64 = good.replacen('M', "!", 1);
    for (name, text, reason) in [
        (
            "truncated",
            truncated,
            "truncated: no -----END IOTSAFE KEY REFERENCE----- line",
        ),
        (
            "flipped",
            String::from_utf8(flipped).unwrap(),
            "does not hold an IoT SAFE key reference",
        ),
        ("not-base64", not_base64, "not valid base64"),
    ] {
        let file = files.write(&format!("{name}.keyref.pem"), &text);
        fails_with(files.pkey(&file), name, reason);
    }
}

/// An unknown key, an invalid value and an unwritable debug log in openssl.cnf are named
/// (key and value) at the first key load, through a key-reference file and a URI alike.
#[test]
fn openssl_cnf_mistakes_are_named_on_every_path() {
    let files = Files::new();
    let keyref = files.path("dev.keyref.pem");
    for (line, reason) in [
        (
            "readr = Virtual PCD",
            "unknown key 'readr' (= 'Virtual PCD')",
        ),
        ("cla-style = 42", "cla-style must be 00 or 80"),
        ("key-id = zz", "key-id"),
        (
            "debug-log = /nonexistent-dir/iotsafe.log",
            "cannot open '/nonexistent-dir/iotsafe.log'",
        ),
    ] {
        let conf = files.conf_with(line);
        for input in [keyref.as_str(), "iotsafe:key-id=01"] {
            let out = files
                .openssl_with(&conf, &["pkey", "-in", input, "-pubout"])
                .output()
                .unwrap();
            let message = stderr(&out);
            assert!(!out.status.success(), "{line} with {input}: must fail");
            assert!(
                message.contains("invalid IoT SAFE provider configuration")
                    && message.contains(reason),
                "{line} with {input}: no '{reason}' in: {message}"
            );
        }
    }
}

#[test]
fn a_good_key_reference_file_still_loads() {
    let files = Files::new();
    let from_file = ok(files.pkey(&files.path("dev.keyref.pem")));
    assert_eq!(from_file, ok(files.rig.iotsafe(&["pubkey"])));
}

/// `openssl pkey -in FILE -text -noout` prints the public key and where the private key is.
#[test]
fn pkey_text_of_a_key_reference_says_where_the_private_key_is() {
    let files = Files::new();
    let out = files
        .openssl_with(
            &common::example_openssl_conf(),
            &[
                "pkey",
                "-in",
                &files.path("dev.keyref.pem"),
                "-text",
                "-noout",
            ],
        )
        .output()
        .unwrap();
    let text = ok(out);
    assert!(
        text.contains("pub:") && text.contains("ASN1 OID: prime256v1"),
        "{text}"
    );
    assert!(
        text.contains(
            "Private key: on the IoT SAFE applet (private key id 01, reader 'Virtual PCD 00 00')"
        ),
        "{text}"
    );
}
