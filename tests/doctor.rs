//! `iotsafe doctor` against a simulated eSIM behind a real pcscd, the real `openssl` tool and
//! the provider: all fine, then one test per problem it detects.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::card::CardRig;
use common::{ok, stderr, stdout};

/// The doctor with the provider configured as a user would (OPENSSL_CONF, OPENSSL_MODULES).
fn doctor(rig: &CardRig, args: &[&str]) -> Command {
    let mut command = rig.command(common::workspace_binary("iotsafe"));
    command
        .env("OPENSSL_CONF", common::example_openssl_conf())
        .env("OPENSSL_MODULES", common::built_library_dir())
        .args(args)
        .arg("doctor");
    command
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run iotsafe doctor")
}

/// The doctor found exactly the problem `check` with `detail` (and says what to do).
fn finds(out: &Output, check: &str, detail: &str) {
    let report = stdout(out);
    assert_eq!(out.status.code(), Some(1), "{report}{}", stderr(out));
    let line = report
        .lines()
        .find(|l| l.starts_with("PROBLEM") && l.contains(check))
        .unwrap_or_else(|| panic!("no {check} problem in: {report}"));
    assert!(line.contains(detail), "{line}\n{report}");
    assert!(report.contains("do: "), "{report}");
}

fn keyref(rig: &CardRig) -> PathBuf {
    let file = rig.dir.path().join("dev.keyref.pem");
    ok(rig.iotsafe(&["keyref", "--out", file.to_str().unwrap()]));
    file
}

#[test]
fn doctor_on_a_working_setup_says_ok_everywhere() {
    let rig = CardRig::start(&[]);
    let file = keyref(&rig);
    let out = run(doctor(&rig, &[]).args(["--keyref", file.to_str().unwrap()]));
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    for check in [
        "pcscd",
        "applet",
        "key",
        "certificate",
        "openssl",
        "provider",
        "keyref",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "{check}: {report}"
        );
    }
    assert!(
        report.contains("AID A0000005590010, CLA style 00"),
        "{report}"
    );
    assert!(!report.contains("PROBLEM"), "{report}");
}

#[test]
fn doctor_finds_no_pcscd() {
    let rig = CardRig::start(&[]);
    let out = run(doctor(&rig, &[]).env("PCSCLITE_CSOCK_NAME", rig.dir.path().join("no-pcscd")));
    finds(&out, "pcscd", "PC/SC daemon");
}

#[test]
fn doctor_finds_a_card_without_the_applet() {
    let rig = CardRig::start(&["--aid", "A0000000871002"]);
    finds(
        &run(&mut doctor(&rig, &[])),
        "applet",
        "IoT SAFE applet not found",
    );
}

#[test]
fn doctor_finds_a_missing_key() {
    let rig = CardRig::start(&[]);
    finds(
        &run(&mut doctor(&rig, &["--key-id", "07"])),
        "key",
        "key id 07 not found",
    );
}

#[test]
fn doctor_finds_a_certificate_of_another_key() {
    let rig = CardRig::start(&[]);
    ok(rig.iotsafe(&["genkey", "--force"]));
    finds(
        &run(&mut doctor(&rig, &[])),
        "certificate",
        "holds another public key than the selected key",
    );
}

#[test]
fn doctor_finds_a_provider_that_is_not_loaded() {
    let rig = CardRig::start(&[]);
    let conf = rig.dir.path().join("no-provider.cnf");
    std::fs::write(&conf, "# nothing\n").unwrap();
    let out = run(doctor(&rig, &[]).env("OPENSSL_CONF", &conf));
    finds(&out, "provider", "does not load the iotsafe provider");
    let out = run(doctor(&rig, &[]).env("OPENSSL_MODULES", rig.dir.path()));
    finds(&out, "openssl", "no iotsafe.so in");
}

#[test]
fn doctor_finds_an_openssl_cnf_mistake() {
    let rig = CardRig::start(&[]);
    let example = std::fs::read_to_string(common::example_openssl_conf()).unwrap();
    let conf = rig.dir.path().join("openssl.cnf");
    std::fs::write(
        &conf,
        example.replace("[iotsafe_sect]\n", "[iotsafe_sect]\nreadr = Virtual PCD\n"),
    )
    .unwrap();
    let out = run(doctor(&rig, &[]).env("OPENSSL_CONF", &conf));
    finds(&out, "provider key", "unknown key 'readr'");
}

#[test]
fn doctor_finds_a_broken_or_foreign_key_reference() {
    let rig = CardRig::start(&[]);
    let file = keyref(&rig);
    let good = std::fs::read_to_string(&file).unwrap();
    let broken = rig.dir.path().join("broken.keyref.pem");
    std::fs::write(&broken, good.replacen('M', "!", 1)).unwrap();
    let out = run(doctor(&rig, &[]).args(["--keyref", broken.to_str().unwrap()]));
    finds(&out, "keyref", "not valid base64");

    ok(rig.iotsafe(&["--key-id", "03", "genkey"]));
    let other = rig.dir.path().join("k3.keyref.pem");
    ok(rig.iotsafe(&["--key-id", "03", "keyref", "--out", other.to_str().unwrap()]));
    let out = run(doctor(&rig, &[]).args(["--keyref", other.to_str().unwrap()]));
    finds(&out, "keyref", "loads another key than the selected one");
}

/// `--name OWNER`: the device's TLSA records found in a real signed zone, validated, and
/// matching the card's key; a name whose record is another key's is a problem.
#[test]
fn doctor_checks_the_devices_tlsa_records() {
    let rig = CardRig::start(&[]);
    let record = ok(rig.iotsafe(&["tlsa", "--name", "sensor7._device.iotregistry.test"]));
    let rdata = record.split(" IN TLSA ").nth(1).unwrap().trim().to_string();
    let other = format!("3 1 1 {}", "ab".repeat(32));
    let lines = [
        format!("sensor7._device 300 IN TLSA {rdata}"),
        format!("sensor8._device 300 IN TLSA {other}"),
    ];
    let zone: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("iotregistry.test.", l.as_str()))
        .collect();
    let dns = common::dns::TestDns::start(&zone);
    let resolver = dns.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let dns_args = |name: &'static str| {
        [
            "--name".to_string(),
            name.to_string(),
            "--resolver".to_string(),
            resolver.clone(),
            "--trust-anchor".to_string(),
            anchor.to_str().unwrap().to_string(),
        ]
    };
    let out = run(doctor(&rig, &[]).args(dns_args("sensor7._device.iotregistry.test")));
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("tlsa") && l.contains("sensor7")),
        "{report}"
    );
    let out = run(doctor(&rig, &[]).args(dns_args("sensor8._device.iotregistry.test")));
    finds(
        &out,
        "tlsa",
        "sensor8._device.iotregistry.test: NOT AUTHENTICATED",
    );
}

/// Through a modem the doctor says which AT commands carry the APDUs: AT+CGLA on a channel the
/// modem opened, or AT+CSIM when the modem opens none.
#[test]
fn doctor_names_the_modems_channel_mode() {
    for (sim_args, route) in [
        (&[][..], "APDUs by AT+CCHO/AT+CGLA"),
        (&["--modem-refuse-ccho", "absent"][..], "APDUs by AT+CSIM"),
    ] {
        let rig = common::modem::ModemRig::start(sim_args);
        let out = Command::new(common::workspace_binary("iotsafe"))
            .env("IOTSAFE_MODEM", rig.port())
            .env("OPENSSL_CONF", common::example_openssl_conf())
            .env("OPENSSL_MODULES", common::built_library_dir())
            .arg("doctor")
            .output()
            .unwrap();
        let report = stdout(&out);
        assert!(out.status.success(), "{report}{}", stderr(&out));
        let applet = report
            .lines()
            .find(|l| l.starts_with("ok") && l.contains("applet"))
            .unwrap_or_else(|| panic!("{report}"));
        assert!(applet.contains(route), "{applet}");
        assert!(
            !report.contains("pcscd"),
            "no PC/SC check for a modem: {report}"
        );
    }
}
