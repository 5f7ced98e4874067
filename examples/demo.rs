//! The end-to-end demo behind `make demo`: a device whose key is generated on a simulated eSIM
//! (behind a real pcscd) and enrolled with `iotsafe enroll` is certified by a registry CA,
//! published by its TLSA record in a DNSSEC-signed zone (knotd) with `iotsafe registry publish`,
//! admitted by a real mosquitto with the iotsafe plugin, revoked with `iotsafe registry revoke`
//! (its live session kicked, its reconnect refused) and admitted again when the record is
//! published again. Each step prints one line: what happened and the evidence. Every claim is
//! checked before it is printed; the first one that does not hold stops the demo with a non-zero
//! exit status, after the daemons are stopped and the temporary files removed.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use common::card::CardRig;
use common::device::CardDevice;
use common::dns::TestDns;
use common::mqtt::Broker;
use common::{free_port, pki, stderr, stdout};
use iotsafe_dane::dane::tlsa::{Matching, Tlsa, Usage};

const REGISTRY: &str = "iotregistry.test.";
const DEVICE_ID: &str = "sensor7";
const DEVICE: &str = "sensor7._device.iotregistry.test";
const DASHBOARD: &str = "dashboard._device.iotregistry.test";
/// The card's key slot for the key pair the demo generates.
const KEY_OPTIONS: [&str; 2] = ["--key-id", "03"];
/// Short, so that revocation shows within seconds: it takes effect within the record's TTL
/// plus the plugin's revalidate_seconds.
const TTL_S: u32 = 2;
const REVALIDATE_S: u64 = 1;
const STEPS: u32 = 9;

fn main() {
    // A failed claim panics: the daemons and temp dirs are dropped on the way out, then the
    // process exits non-zero. The hook prints the reason as one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let why = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        eprintln!("demo: FAILED: {why}");
    }));
    let work = tempfile::Builder::new()
        .prefix("iotsafe-demo-")
        .tempdir()
        .expect("temp dir");
    let dir = work.path();

    let (device, public_pem) = enroll_on_card(dir);
    let ca = pki::ca(dir, "registry-ca", "Registry CA");
    issue_certificate(&device, &ca, &public_pem);

    let dashboard = pki::leaf(dir, "dashboard", "dashboard", &[DASHBOARD], Some(&ca));
    let zone = Zone::publish(&device, &dashboard);

    let server = pki::leaf(dir, "broker", "localhost", &["localhost"], None);
    let broker = start_broker(&zone.dns, &ca, &server);
    let server_ca = server.cert_path.as_path();
    publish_and_receive(&device, &broker, server_ca, &dashboard);
    revoke(&device, &broker, server_ca, &zone);
    restore(&device, &broker, server_ca, &zone);
    println!("demo: OK");
}

/// Steps 1 and 2: `iotsafe enroll --genkey` generates a new key pair on the card, writes the
/// key reference the provider reads, and signs the device's CSR with the card key through the
/// provider. The public key the card reads back (PEM).
fn enroll_on_card(dir: &Path) -> (CardDevice, String) {
    let rig = CardRig::start(&[]);
    let before = rig.trace().len();
    let (device, out) =
        CardDevice::enroll(rig, dir, DEVICE_ID, DEVICE, &KEY_OPTIONS, &["--genkey"]);
    let printed_record = checked(out);
    let trace = device.rig.trace();
    let generated = trace[before..]
        .iter()
        .filter(|line| line.get(2..4) == Some("B9"))
        .count();
    claim(generated == 1, "the key pair was generated on the card");
    claim(device.keyref.exists(), "the key reference was written");
    let public_pem = checked(
        device
            .rig
            .iotsafe(&[KEY_OPTIONS[0], KEY_OPTIONS[1], "pubkey"]),
    );
    step(
        1,
        format!(
            "key pair generated on the simulated eSIM (iotsafe --key-id 03 enroll --genkey: \
             {generated} GENERATE KEY PAIR of {} APDUs); key reference {}",
            trace.len() - before,
            file_name(&device.keyref)
        ),
    );
    check_request(&device, before, &public_pem, &printed_record);
    (device, public_pem)
}

/// Step 2's evidence: the CSR `iotsafe enroll` wrote was signed on the card, verifies, names
/// the device, holds the key the card reads back; the record printed is that key's `3 1 1`.
fn check_request(device: &CardDevice, before: usize, public_pem: &str, printed_record: &str) {
    let apdus = device.rig.signing_apdus_since(before);
    claim(apdus > 0, "the CSR was signed on the card");
    let verified = run(Command::new("openssl")
        .args(["req", "-verify", "-noout", "-text", "-in"])
        .arg(&device.csr_path));
    claim(
        verified.contains(&format!("DNS:{DEVICE}")),
        "the CSR names the device in its SAN",
    );
    let request_key = run(Command::new("openssl")
        .args(["req", "-noout", "-pubkey", "-in"])
        .arg(&device.csr_path));
    claim(
        request_key == public_pem,
        "the CSR holds the key pair the card generated (and reads back)",
    );
    let card_key = openssl::pkey::PKey::public_key_from_pem(public_pem.as_bytes())
        .and_then(|key| key.public_key_to_der())
        .expect("the generated public key");
    let record =
        Tlsa::for_public_key(&card_key, Usage::DaneEe, Matching::Sha256).expect("the key's record");
    claim(
        printed_record == format!("{DEVICE}. IN TLSA {record}\n"),
        &format!("iotsafe enroll printed the key's TLSA 3 1 1: {printed_record}"),
    );
    step(
        2,
        format!(
            "CSR for {DEVICE} signed on the card through the provider (iotsafe enroll, key \
             reference {}: {apdus} signing APDUs); openssl req -verify OK; record to publish \
             TLSA 3 1 1 of the card's key",
            file_name(&device.keyref)
        ),
    );
}

/// Step 3: the registry CA issues the certificate for the card's key.
fn issue_certificate(device: &CardDevice, ca: &pki::Issued, public_pem: &str) {
    device.issue(ca, DEVICE);
    run(Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&ca.cert_path)
        .arg(&device.cert_path));
    let cert = device.cert();
    let card_key = openssl::pkey::PKey::public_key_from_pem(public_pem.as_bytes())
        .expect("the generated public key");
    claim(
        cert.public_key().is_ok_and(|k| k.public_eq(&card_key)),
        "the certificate is for the key generated on the card",
    );
    let names: Vec<String> = cert
        .subject_alt_names()
        .into_iter()
        .flatten()
        .filter_map(|n| n.dnsname().map(str::to_string))
        .collect();
    claim(
        names == [DEVICE],
        "the certificate names the device (SAN copied from the CSR)",
    );
    step(
        3,
        format!(
            "registry CA issued {} (openssl x509 -req -extfile: the SAN the registry checked): openssl verify OK, \
             SAN DNS:{DEVICE}, the card's key",
            file_name(&device.cert_path)
        ),
    );
}

/// Step 4's evidence: `iotsafe dane check-client` validates the record (proof state secure).
fn check_client(dns: &TestDns, cert: &Path) -> String {
    let report = run(Command::new(common::workspace_binary("iotsafe"))
        .args(["dane", "check-client", "--cert"])
        .arg(cert)
        .args(["--name", DEVICE, "--resolver", &dns.addr().to_string()])
        .arg("--trust-anchor")
        .arg(dns.trust_anchor_file()));
    let proof = report
        .lines()
        .find(|l| l.contains(&format!("TLSA {DEVICE}: ")))
        .unwrap_or_default()
        .trim();
    claim(
        proof.ends_with("1 record(s), secure"),
        &format!("the record validates (proof state secure): {report}"),
    );
    let matched = report
        .lines()
        .find(|l| l.starts_with("AUTHENTICATED: TLSA 3 1 1 "))
        .unwrap_or_default();
    claim(
        matched.contains("(DANE-EE) matched the certificate"),
        &format!("the record matches the device certificate: {report}"),
    );
    format!("{proof}; (DANE-EE) matched the certificate")
}

/// Step 5: mosquitto with the plugin, the registry CA as its cafile.
fn start_broker(dns: &TestDns, ca: &pki::Issued, server: &pki::Issued) -> Broker {
    let resolver = dns.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let cafile = ca.cert_path.display().to_string();
    let revalidate = REVALIDATE_S.to_string();
    let options = [
        ("resolver", resolver.as_str()),
        ("trust_anchor", anchor.to_str().expect("UTF-8 path")),
        ("allowed_domains", "iotregistry.test"),
        ("cafile", cafile.as_str()),
        ("revalidate_seconds", revalidate.as_str()),
    ];
    let broker = Broker::start_with_plugin(
        free_port(),
        &server.cert_path,
        &server.key_path,
        &ca.cert_path,
        &common::built_mosquitto_plugin(),
        &options,
        "",
    );
    let started = broker.wait_for_line(5, &["devices admitted by DNSSEC-validated TLSA"]);
    step(
        5,
        format!(
            "mosquitto on port {} with the plugin (per_listener_settings false, registry CA as cafile); broker: {}",
            broker.port,
            log_text(&started)
        ),
    );
    broker
}

/// Step 6: a subscriber (unmodified mosquitto_sub) receives what the device's unmodified
/// mosquitto_pub, its key on the card, publishes; the broker knows the device by its name.
fn publish_and_receive(
    device: &CardDevice,
    broker: &Broker,
    server_ca: &Path,
    dashboard: &pki::Issued,
) {
    let mut subscriber = Running::spawn(
        Command::new("mosquitto_sub")
            .args([
                "-h",
                "localhost",
                "-p",
                &broker.port.to_string(),
                "-i",
                DASHBOARD,
            ])
            .arg("--cafile")
            .arg(server_ca)
            .arg("--cert")
            .arg(&dashboard.cert_path)
            .arg("--key")
            .arg(&dashboard.key_path)
            .args(["-t", "sensors/#", "-C", "1", "-W", "30"]),
    );
    broker.wait_for_line(20, &["dashboard", "sensors/#"]);
    let before = device.rig.trace().len();
    let message = "temperature=21.5";
    let out = device.publish(
        broker,
        server_ca,
        "sensor7._device.iotregistry.test/pub",
        message,
    );
    claim(
        out.status.success(),
        &format!("the device publishes: {}", stderr(&out)),
    );
    let apdus = device.rig.signing_apdus_since(before);
    claim(apdus > 0, "the TLS handshake was signed on the card");
    let received = subscriber.finish();
    claim(
        stdout(&received) == format!("{message}\n"),
        &format!(
            "the subscriber receives the message (got {:?})",
            stdout(&received)
        ),
    );
    broker.wait_for_line(
        5,
        &[
            "admitted client sensor7._device.iotregistry.test/pub ",
            DEVICE,
        ],
    );
    let username = broker.wait_for_line(
        5,
        &[
            "as sensor7._device.iotregistry.test/pub ",
            &format!("u'{DEVICE}'"),
        ],
    );
    step(
        6,
        format!(
            "mosquitto_pub with the card key ({apdus} signing APDUs) published {message:?}, mosquitto_sub received it; broker: {}",
            log_text(&username)
        ),
    );
}

/// The registry's signed zone in knotd, with the subscriber's record; the device's is
/// published, revoked and published again the way a registry does it: `iotsafe registry`
/// (DNS UPDATE signed with TSIG, knotd signing the change), each change waited for until the
/// validating resolver sees it secure.
struct Zone {
    dns: TestDns,
    device_cert: std::path::PathBuf,
}

impl Zone {
    /// Step 4: the device's record published, and shown to validate.
    fn publish(device: &CardDevice, dashboard: &pki::Issued) -> Zone {
        let dashboard_line = format!(
            "dashboard._device 300 IN TLSA {}",
            pki::dane_ee_record(&dashboard.cert)
        );
        let dns = TestDns::start(&[(REGISTRY, dashboard_line.as_str())]);
        let zone = Zone {
            dns,
            device_cert: device.cert_path.clone(),
        };
        let seen = zone.set_device_record(true);
        let proof = check_client(&zone.dns, &device.cert_path);
        step(
            4,
            format!(
                "iotsafe registry publish {DEVICE} --cert (DNS UPDATE signed with TSIG to the \
                 zone's knotd, which signs it): TLSA 3 1 1 (SHA-256 of the card's key), TTL \
                 {TTL_S} s, {seen}; iotsafe dane check-client: {proof}"
            ),
        );
        zone
    }

    /// Publishes (`iotsafe registry publish`) or revokes (`iotsafe registry revoke`) the
    /// device's record; returns the tool's line saying when the validating resolver saw the
    /// change secure.
    fn set_device_record(&self, present: bool) -> String {
        let ttl = TTL_S.to_string();
        let cert = self.device_cert.to_string_lossy().into_owned();
        let out = if present {
            common::registry::change(
                &self.dns,
                "publish",
                DEVICE,
                &["--cert", &cert, "--ttl", &ttl],
            )
        } else {
            common::registry::change(&self.dns, "revoke", DEVICE, &[])
        };
        let seen = out
            .lines()
            .find(|line| line.starts_with("seen secure"))
            .unwrap_or_default()
            .to_string();
        claim(
            !seen.is_empty(),
            "iotsafe registry waited until the change was seen secure",
        );
        seen
    }
}

/// Steps 7 and 8: the record removed while the device holds a live session (mosquitto_sub,
/// card key): the broker kicks it, and refuses the device's reconnect for NO_RECORDS.
fn revoke(device: &CardDevice, broker: &Broker, server_ca: &Path, zone: &Zone) {
    let before = device.rig.trace().len();
    let live = Running::spawn(
        device
            .client(
                "mosquitto_sub",
                broker,
                server_ca,
                "sensor7._device.iotregistry.test/live",
            )
            .args(["-t", "commands/sensor7"]),
    );
    broker.wait_for_line(
        20,
        &[
            "admitted client sensor7._device.iotregistry.test/live ",
            DEVICE,
        ],
    );
    broker.wait_for_line(
        20,
        &["sensor7._device.iotregistry.test/live", "commands/sensor7"],
    );
    let apdus = device.rig.signing_apdus_since(before);
    claim(
        apdus > 0,
        "the live session's handshake was signed on the card",
    );

    let removed = Instant::now();
    let seen = zone.set_device_record(false);
    let kicked = broker.wait_for_line(
        u64::from(TTL_S) + REVALIDATE_S + 5,
        &[
            "kicked client sensor7._device.iotregistry.test/live ",
            "NO_RECORDS",
        ],
    );
    broker.wait_for_line(
        5,
        &[
            "Client sensor7._device.iotregistry.test/live ",
            "disconnected",
        ],
    );
    drop(live);
    step(
        7,
        format!(
            "iotsafe registry revoke {DEVICE} ({seen}): the device's live session \
             (mosquitto_sub, card key: {apdus} signing APDUs) kicked {:.1} s after the revoke \
             began; broker: {}",
            removed.elapsed().as_secs_f64(),
            log_text(&kicked)
        ),
    );

    let refused = expect_refusal(
        &device.publish(
            broker,
            server_ca,
            "sensor7._device.iotregistry.test/retry",
            "retry",
        ),
        broker,
        "sensor7._device.iotregistry.test/retry",
        "NO_RECORDS",
    );
    step(
        8,
        format!(
            "the device's reconnect (mosquitto_pub, card key) refused for NO_RECORDS; broker: {}",
            log_text(&refused)
        ),
    );
}

/// Step 9: the record put back, the device is admitted again.
fn restore(device: &CardDevice, broker: &Broker, server_ca: &Path, zone: &Zone) {
    let restored = Instant::now();
    let seen = zone.set_device_record(true);
    let refused_meanwhile = reconnect_until_admitted(device, broker, server_ca);
    let admitted = broker.wait_for_line(
        5,
        &[&format!(
            "admitted client sensor7._device.iotregistry.test/back{refused_meanwhile} "
        )],
    );
    step(
        9,
        format!(
            "iotsafe registry publish again ({seen}): the device connects again {:.1} s after it began ({refused_meanwhile} \
             attempts refused meanwhile, each for NO_RECORDS: the denial's negative TTL); broker: {}",
            restored.elapsed().as_secs_f64(),
            log_text(&admitted)
        ),
    );
}

/// The device reconnects (every 500 ms, for at most 20 s) until admitted: the broker
/// may hold the denial for its negative TTL (the zone's SOA minimum, 5 s), and each refusal
/// meanwhile must be that one. The number of refused attempts.
fn reconnect_until_admitted(device: &CardDevice, broker: &Broker, server_ca: &Path) -> usize {
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    for attempt in 0.. {
        let id = format!("sensor7._device.iotregistry.test/back{attempt}");
        let out = device.publish(broker, server_ca, &id, "back");
        if out.status.success() {
            broker.wait_for_line(5, &[&format!("admitted client {id} "), DEVICE]);
            return attempt;
        }
        expect_refusal(&out, broker, &id, "NO_RECORDS");
        claim(
            Instant::now() < deadline,
            "the restored record admits the device within 20 s",
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    unreachable!()
}

/// A connection that must be refused for `reason`, and only for it: the broker's refusal line.
fn expect_refusal(out: &Output, broker: &Broker, client_id: &str, reason: &str) -> String {
    claim(
        !out.status.success(),
        &format!("{client_id} must be refused ({reason})"),
    );
    let line = broker.wait_for_line(10, &[&format!("refused client {client_id} ")]);
    claim(
        line.contains(DEVICE) && line.contains(reason),
        &format!("{client_id} must be refused for {reason} at {DEVICE}, the broker said: {line}"),
    );
    claim(
        stderr(out).contains("not authorised"),
        &format!("mosquitto_pub reports the refusal: {}", stderr(out)),
    );
    line
}

/// A client process killed when dropped, on success or failure.
struct Running(Option<Child>);

impl Running {
    fn spawn(command: &mut Command) -> Running {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto-clients must be installed");
        Running(Some(child))
    }

    /// Waits for the process to end by itself; its output.
    fn finish(&mut self) -> Output {
        let child = self.0.take().expect("running");
        child.wait_with_output().expect("client output")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn step(number: u32, text: String) {
    println!("[{number}/{STEPS}] {text}");
}

/// Stops the demo (non-zero exit, everything cleaned up) when a claim does not hold.
fn claim(holds: bool, what: &str) {
    assert!(holds, "{what}: does not hold");
}

/// Runs a command that must succeed; its standard output.
fn run(command: &mut Command) -> String {
    let program = command.get_program().to_string_lossy().into_owned();
    checked(
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}")),
    )
}

fn checked(out: Output) -> String {
    claim(
        out.status.success(),
        &format!(
            "command failed ({}): {}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        ),
    );
    stdout(&out)
}

/// A broker log line without mosquitto's timestamp.
fn log_text(line: &str) -> &str {
    line.split_once(": ").map_or(line, |(_, rest)| rest)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}
