//! The iotsafe provider with the SIM behind a modem's AT port (`modem=` in the key reference),
//! with the real `openssl` tool as the application.

mod common;

use std::process::{Command, Output};

use common::modem::ModemRig;

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

#[test]
fn provider_signs_through_a_modem_with_two_at_commands() {
    let rig = ModemRig::start(&[]);
    let dir = rig.dir.path().to_path_buf();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    ok(rig.iotsafe(&["keyref", "--out", &path("dev.keyref.pem")]));
    ok(rig.iotsafe(&["pubkey", "--out", &path("pub.pem")]));
    assert!(std::fs::read_to_string(path("dev.keyref.pem"))
        .unwrap()
        .contains("IOTSAFE KEY REFERENCE"));

    let modules = common::built_library_dir();
    let openssl = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .env("OPENSSL_CONF", common::example_openssl_conf())
            .env("OPENSSL_MODULES", &modules)
            .output()
            .unwrap()
    };
    let public = ok(openssl(&[
        "pkey",
        "-in",
        &path("dev.keyref.pem"),
        "-pubout",
    ]));
    assert_eq!(public, std::fs::read_to_string(path("pub.pem")).unwrap());

    std::fs::write(path("data"), b"over the air").unwrap();
    let before = rig.trace().len();
    ok(openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &path("dev.keyref.pem"),
        "-out",
        &path("sig"),
        &path("data"),
    ]));
    let signing: Vec<String> = rig.trace()[before..]
        .iter()
        .filter(|l| matches!(l.get(2..4), Some("2A" | "2B")))
        .cloned()
        .collect();
    assert_eq!(signing.len(), 2, "{signing:?}");
    let verified = ok(Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-verify",
            &path("pub.pem"),
            "-signature",
            &path("sig"),
            &path("data"),
        ])
        .output()
        .unwrap());
    assert!(verified.contains("Verified OK"));
}
