//! The end-to-end demo behind `make demo`: a simulated eSIM behind a real pcscd, a private
//! DNSSEC-signed hierarchy served by knotd, and the `iotsafe` and `openssl` tools as a user
//! would run them. Every command is printed before it runs; the demo stops at the first step
//! that does not go as it should.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{exit, Command};

use common::card::CardRig;
use common::dns::TestDns;
use common::mqtt::Broker;
use common::tls::TlsServer;
use common::{free_port, pki, workspace_binary};
use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};

const DEVICE: &str = "sensor7._device.iotregistry.test";
const BROKER: &str = "broker.example.test";

fn main() {
    step("Plugging a simulated eSIM into a private pcscd (vpcd reader)");
    let card = CardRig::start(&[]);
    let work = card.dir.path();
    let iotsafe = |args: &[&str]| run(card.command(workspace_binary("iotsafe")).args(args));
    iotsafe(&["readers"]);
    iotsafe(&["objects"]);
    let cert = path(work, "device.pem");
    iotsafe(&["cert", "--out", &cert]);
    run(Command::new("openssl").args(["x509", "-in", &cert, "-noout", "-subject", "-dates"]));

    step("Signing on the card, verifying with openssl");
    let public = path(work, "device.pub.pem");
    iotsafe(&["pubkey", "--out", &public]);
    let message = path(work, "message.txt");
    std::fs::write(&message, "temperature=21.5\n").unwrap();
    let digest = run(Command::new("openssl").args(["dgst", "-sha256", "-r", &message]));
    let digest = digest
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    let signature = path(work, "message.sig");
    iotsafe(&[
        "sign", "--digest", &digest, "--hash", "sha256", "--out", &signature,
    ]);
    run(Command::new("openssl").args([
        "dgst",
        "-sha256",
        "-verify",
        &public,
        "-signature",
        &signature,
        &message,
    ]));

    step("Publishing the device's and the broker's TLSA records in a DNSSEC-signed zone (knotd)");
    let device_record = iotsafe(&["tlsa", "--name", DEVICE]);
    let device_rdata = device_record
        .split(" IN TLSA ")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string();
    let broker_cert = pki::leaf(work, "broker", BROKER, &[BROKER], None);
    let broker = TlsServer::start(&broker_cert.cert_path, &broker_cert.key_path, None);
    let broker_rdata = Tlsa::for_certificate(
        &broker_cert.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .expect("the broker's TLSA record");
    let device_line = format!("sensor7._device 5 IN TLSA {device_rdata}");
    let broker_lines = [
        "broker 300 IN A 127.0.0.1".to_string(),
        format!("_{}._tcp.broker 300 IN TLSA {broker_rdata}", broker.port),
    ];
    let mut records = vec![("iotregistry.test.", device_line.as_str())];
    records.extend(broker_lines.iter().map(|l| ("example.test.", l.as_str())));
    let dns = TestDns::start(&records);
    let resolver = dns.addr().to_string();
    let anchor = dns.trust_anchor_file().to_string_lossy().into_owned();
    println!("  private root's key (the trust anchor): {anchor}");
    let dane = |args: &[&str]| {
        let mut command = Command::new(workspace_binary("iotsafe"));
        command
            .arg("dane")
            .args(args)
            .args(["--resolver", &resolver, "--trust-anchor", &anchor]);
        command
    };

    step("Authenticating the device by its TLSA record (DANCE)");
    run(&mut dane(&[
        "check-client",
        "--cert",
        &cert,
        "--name",
        DEVICE,
    ]));

    step("Authenticating the broker by its TLSA record (DANE)");
    run(&mut dane(&[
        "check-server",
        BROKER,
        &broker.port.to_string(),
    ]));

    step("The device publishes over mutual TLS to a real mosquitto broker: unmodified mosquitto_pub, key on the card");
    let keyref = path(work, "device.keyref.pem");
    iotsafe(&["keyref", "--out", &keyref]);
    run(Command::new("cat").arg(&keyref));
    let mqtt_cert = pki::leaf(work, "mqtt-broker", "broker", &["localhost"], None);
    let mqtt = Broker::start_with(
        free_port(),
        &mqtt_cert.cert_path,
        &mqtt_cert.key_path,
        Some(Path::new(&cert)),
    );
    let (openssl_conf, modules) = (common::example_openssl_conf(), common::built_library_dir());
    println!(
        "$ export OPENSSL_CONF={} OPENSSL_MODULES={}",
        openssl_conf.display(),
        modules.display()
    );
    let signed_before = card.trace().len();
    run(card
        .command("mosquitto_pub")
        .env("OPENSSL_CONF", &openssl_conf)
        .env("OPENSSL_MODULES", &modules)
        .args([
            "-h",
            "localhost",
            "-p",
            &mqtt.port.to_string(),
            "-t",
            "sensors/7",
            "-m",
            "21.5",
            "-q",
            "1",
        ])
        .args([
            "--cafile",
            &mqtt_cert.cert_path.to_string_lossy(),
            "--cert",
            &cert,
            "--key",
            &keyref,
        ]));
    let connected = mqtt
        .log()
        .lines()
        .find(|l| l.contains("New client connected"))
        .unwrap_or_default()
        .to_string();
    println!(
        "  broker: {}",
        connected
            .split_once(": ")
            .map_or(connected.as_str(), |(_, rest)| rest)
    );
    let apdus = card.trace()[signed_before..]
        .iter()
        .filter(|l| matches!(l.get(2..4), Some("2A" | "2B")))
        .count();
    println!("  the card signed the handshake with {apdus} APDUs");

    step("Revoking the device: its TLSA record is removed from the zone");
    dns.set_records("iotregistry.test.", &[]);
    expect_refusal(dane(&["check-client", "--cert", &cert, "--name", DEVICE]));

    println!("\ndemo: OK");
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// Runs a command as the demo's user would, printing it and its output; stops the demo when it
/// fails.
fn run(command: &mut Command) -> String {
    let out = show_and_run(command);
    if !out.status.success() {
        eprintln!("demo: the step above failed ({})", out.status);
        exit(1);
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must be refused (non-zero exit).
fn expect_refusal(mut command: Command) {
    let out = show_and_run(&mut command);
    if out.status.success() {
        eprintln!("demo: the step above should have been refused");
        exit(1);
    }
    println!("  (refused, as it should be)");
}

fn show_and_run(command: &mut Command) -> std::process::Output {
    let program = Path::new(command.get_program())
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!("$ {program} {}", args.join(" "));
    let out = command.output().unwrap_or_else(|e| {
        eprintln!("demo: cannot run {program}: {e}");
        exit(1)
    });
    print!("{}", indent(&String::from_utf8_lossy(&out.stdout)));
    print!("{}", indent(&String::from_utf8_lossy(&out.stderr)));
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
