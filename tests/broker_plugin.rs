//! The mosquitto broker plugin end to end: a real mosquitto on loopback (`require_certificate
//! true`, the registry CA as its `cafile`, plugins/mosquitto loaded), a real knotd serving the
//! signed registry zone, and the unmodified `mosquitto_pub` / `mosquitto_sub` as devices (one
//! with its key on the simulated SIM, through the provider). Devices are admitted by the TLSA
//! record at their `_device` name, refused with the reason in the broker's log, and kicked
//! when their record goes.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use common::device::CardDevice;
use common::dns::TestDns;
use common::mqtt::{BareSession, Broker};
use common::pki::{self, Issued};
use common::registry;
use common::{free_port, stderr};
use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};

const REGISTRY: &str = "iotregistry.test.";
/// Revocation takes effect within the record's TTL and this (the plugin's revalidate_seconds).
const REVALIDATE_S: u64 = 1;

fn device_name(id: &str) -> String {
    format!("{id}._device.iotregistry.test")
}

/// The DANE-EE record line of a device (`3 1 1`, the SHA-256 of its key) with this TTL.
fn ee_line(id: &str, cert: &openssl::x509::X509, ttl: u32) -> String {
    format!("{id}._device {ttl} IN TLSA {}", pki::dane_ee_record(cert))
}

/// The registry CA, the broker's server certificate, and devices the CA issues.
struct Pki {
    dir: tempfile::TempDir,
    ca: Issued,
    server: Issued,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::ca(dir.path(), "registry-ca", "Registry CA");
        let server = pki::leaf(dir.path(), "server", "localhost", &["localhost"], None);
        Pki { dir, ca, server }
    }

    /// Devices `{prefix}1` ..= `{prefix}{count}`, each certified for its own device name.
    fn numbered_devices(&self, prefix: &str, count: usize) -> Vec<(String, Issued)> {
        (1..=count)
            .map(|i| {
                let id = format!("{prefix}{i}");
                let cert = self.device(&id, &[&device_name(&id)]);
                (id, cert)
            })
            .collect()
    }

    /// A device certificate from the registry CA naming `sans`.
    fn device(&self, file: &str, sans: &[&str]) -> Issued {
        pki::leaf(self.dir.path(), file, file, sans, Some(&self.ca))
    }

    /// The broker with the plugin, asking `dns`.
    fn broker(&self, dns: &TestDns, extra: &[(&str, &str)]) -> Broker {
        self.broker_with(dns, extra, "")
    }

    /// [`Pki::broker`] with more lines for the listener.
    fn broker_with(&self, dns: &TestDns, extra: &[(&str, &str)], listener: &str) -> Broker {
        let resolver = dns.addr().to_string();
        let anchor = dns.trust_anchor_file();
        let ca = self.ca.cert_path.display().to_string();
        let revalidate = REVALIDATE_S.to_string();
        let mut options = vec![
            ("resolver", resolver.as_str()),
            ("trust_anchor", anchor.to_str().unwrap()),
            ("allowed_domains", "iotregistry.test,bogus.test"),
            ("cafile", ca.as_str()),
            ("revalidate_seconds", revalidate.as_str()),
            ("lookup_timeout_ms", "3000"),
            // The tests name their clients by role (pub7, sub1) to find them in the log;
            // the default binding of client ids to device names has a test of its own.
            ("client_id", "any"),
        ];
        // An extra option replaces the default one of its name; an empty value removes it.
        options.retain(|(key, _)| !extra.iter().any(|(e, _)| e == key));
        options.extend(extra.iter().filter(|(_, value)| !value.is_empty()));
        Broker::start_with_plugin(
            free_port(),
            &self.server.cert_path,
            &self.server.key_path,
            &self.ca.cert_path,
            &common::built_mosquitto_plugin(),
            &options,
            listener,
        )
    }

    /// `mosquitto_pub` or `mosquitto_sub` connecting to `broker` as client `id` with this
    /// certificate and key file.
    fn client(&self, program: &str, broker: &Broker, id: &str, cert: &Path, key: &Path) -> Command {
        let mut c = Command::new(program);
        c.args(["-h", "localhost", "-p", &broker.port.to_string(), "-i", id])
            .arg("--cafile")
            .arg(&self.server.cert_path)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key);
        c
    }

    fn publish(&self, broker: &Broker, id: &str, device: &Issued) -> Output {
        self.client(
            "mosquitto_pub",
            broker,
            id,
            &device.cert_path,
            &device.key_path,
        )
        .args(["-t", "sensors/x", "-m", id, "-q", "1"])
        .output()
        .expect("mosquitto_pub (package mosquitto-clients)")
    }

    /// A subscriber to `sensors/#` that prints `count` messages, admitted and subscribed.
    fn subscribe(&self, broker: &Broker, id: &str, device: &Issued, count: u32) -> Child {
        let child = self
            .client(
                "mosquitto_sub",
                broker,
                id,
                &device.cert_path,
                &device.key_path,
            )
            .args(["-t", "sensors/#", "-C", &count.to_string(), "-W", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub (package mosquitto-clients)");
        broker.wait_for_line(20, &[id, "sensors/#"]);
        child
    }
}

fn assert_refused(out: &Output, broker: &Broker, id: &str, name: &str, reason: &str) -> String {
    assert!(
        !out.status.success(),
        "{id} ({name}) must be refused ({reason}); broker log:\n{}",
        broker.log()
    );
    let line = broker.wait_for_line(10, &[&format!("refused client {id} "), name, reason]);
    assert!(
        stderr(out).contains("not authorised") || stderr(out).contains("Connection Refused"),
        "{id}: mosquitto_pub reports the refusal: {}",
        stderr(out)
    );
    line
}

fn kill(mut child: Child) -> String {
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    common::stdout(&out)
}

/// A device publishes with its key on the (simulated) SIM, another whose record designates the
/// registry CA (DANE-TA: the chain comes from plugin_opt_cafile) publishes too, and a
/// subscriber receives both; each is admitted under its device name as MQTT username.
#[test]
fn registered_devices_publish_and_a_subscriber_receives_under_their_device_names() {
    let pki = Pki::new();
    let card = CardDevice::provision(pki.dir.path(), &pki.ca, "sensor7", &device_name("sensor7"));
    let card_cert = card.cert();
    let subscriber = pki.device("sensor1", &[&device_name("sensor1")]);
    let ta_device = pki.device("sensor8", &[&device_name("sensor8")]);
    let ta_record = Tlsa::for_certificate(
        &pki.ca.cert,
        Usage::DaneTa,
        Selector::Cert,
        Matching::Sha256,
    )
    .unwrap();
    let records = [
        ee_line("sensor1", &subscriber.cert, 300),
        ee_line("sensor7", &card_cert, 300),
        format!("sensor8._device 300 IN TLSA {ta_record}"),
    ];
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| (REGISTRY, r.as_str()))
            .collect::<Vec<_>>(),
    );
    let broker = pki.broker(&dns, &[]);

    let sub = pki.subscribe(&broker, "sub1", &subscriber, 2);
    let before = card.rig.trace().len();
    let out = card.publish(&broker, &pki.server.cert_path, "pub7", "21.5");
    assert!(
        out.status.success(),
        "card device: {}\n{}",
        stderr(&out),
        broker.log()
    );
    let signing = card.rig.signing_apdus_since(before);
    assert_eq!(signing, 2, "the handshake signature was made on the card");
    let out = pki.publish(&broker, "pub8", &ta_device);
    assert!(out.status.success(), "DANE-TA device: {}", stderr(&out));

    let sub = sub.wait_with_output().unwrap();
    assert_eq!(
        common::stdout(&sub),
        "21.5\npub8\n",
        "the subscriber received both: {}",
        stderr(&sub)
    );
    for (id, device) in [
        ("sub1", "sensor1"),
        ("pub7", "sensor7"),
        ("pub8", "sensor8"),
    ] {
        let name = device_name(device);
        broker.wait_for_line(
            5,
            &[&format!("admitted client {id} "), &format!("as {name} ")],
        );
        // mosquitto's own line: the username it now knows the client by.
        broker.wait_for_line(5, &[&format!("as {id} "), &format!("u'{name}'")]);
    }
}

/// Each reason a device is refused, with the reason in the broker's log: no record, a record
/// for another key, a bogus zone (broken chain of trust), a name outside allowed_domains, a
/// certificate without a device name, one naming more than 8.
#[test]
fn devices_without_a_matching_secure_record_are_refused_with_the_reason_logged() {
    let pki = Pki::new();
    let unlisted = pki.device("sensor3", &[&device_name("sensor3")]);
    let rekeyed = pki.device("sensor4", &[&device_name("sensor4")]);
    let stranger = pki.device("stranger", &[]);
    let bogus = pki.device("bogus", &["sensor5._device.bogus.test"]);
    let outside = pki.device("outside", &["sensor6._device.example.test"]);
    let nameless = pki.device("nameless", &["not-a-device.example.test.invalid_"]);
    let many_names: Vec<String> = (0..9).map(|i| device_name(&format!("m{i}"))).collect();
    let many = pki.device(
        "many",
        &many_names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let other_key = ee_line("sensor4", &stranger.cert, 300);
    let bogus_line = format!(
        "sensor5._device 300 IN TLSA {}",
        pki::dane_ee_record(&bogus.cert)
    );
    let outside_line = format!(
        "sensor6._device 300 IN TLSA {}",
        pki::dane_ee_record(&outside.cert)
    );
    let dns = TestDns::start(&[
        (REGISTRY, other_key.as_str()),
        ("bogus.test.", bogus_line.as_str()),
        ("example.test.", outside_line.as_str()),
    ]);
    let broker = pki.broker(&dns, &[]);

    let cases = [
        ("c3", &unlisted, device_name("sensor3"), "NO_RECORDS"),
        ("c4", &rekeyed, device_name("sensor4"), "NO_MATCH"),
        ("c5", &bogus, "sensor5._device.bogus.test".into(), "BOGUS"),
        (
            "c6",
            &outside,
            "sensor6._device.example.test".into(),
            "NOT_ALLOWED",
        ),
        ("c7", &nameless, String::new(), "NO_IDENTITY"),
        ("c8", &many, String::new(), "TOO_MANY_IDENTITIES"),
    ];
    for (id, device, name, reason) in cases {
        let out = pki.publish(&broker, id, device);
        let line = assert_refused(&out, &broker, id, &name, reason);
        println!("{line}");
        if reason == "BOGUS" {
            assert!(line.contains("bogus"), "the proof state is named: {line}");
        }
    }
    let log = broker.log();
    assert!(
        !log.contains("admitted client"),
        "nobody was admitted:\n{log}"
    );
}

/// A device's last will is published when its connection drops: mosquitto checks that publish
/// after telling the plugin of the disconnection, and the device was admitted.
#[test]
fn an_admitted_devices_will_is_delivered_when_it_drops() {
    let pki = Pki::new();
    let subscriber = pki.device("sensor1", &[&device_name("sensor1")]);
    let device = pki.device("sensor2", &[&device_name("sensor2")]);
    let records = [
        ee_line("sensor1", &subscriber.cert, 300),
        ee_line("sensor2", &device.cert, 300),
    ];
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| (REGISTRY, r.as_str()))
            .collect::<Vec<_>>(),
    );
    let broker = pki.broker(&dns, &[]);

    let sub = pki.subscribe(&broker, "sub1", &subscriber, 1);
    let mut dropped = pki
        .client(
            "mosquitto_sub",
            &broker,
            "will2",
            &device.cert_path,
            &device.key_path,
        )
        .args(["-t", "nothing/here", "--will-topic", "sensors/will"])
        .args(["--will-payload", "sensor2 gone", "--will-qos", "1"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    broker.wait_for_line(20, &["will2", "nothing/here"]);
    // SIGKILL: no DISCONNECT packet, so the broker sends the will.
    dropped.kill().unwrap();
    dropped.wait().unwrap();
    let out = sub.wait_with_output().unwrap();
    assert_eq!(
        common::stdout(&out),
        "sensor2 gone\n",
        "{}\n{}",
        stderr(&out),
        broker.log()
    );
}

/// Alongside mosquitto's own security: an acl_file keyed on the device name decides what an
/// admitted device may publish (plugin_opt_acl_defer), and a client of a listener without
/// certificates is left to mosquitto's password_file (plugin_opt_defer_without_certificate).
#[test]
fn an_acl_file_keyed_on_device_names_and_a_password_listener_work_alongside() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let device = pki.device("sensor1", &[&device_name("sensor1")]);
    let record = ee_line("sensor1", &device.cert, 300);
    let dns = TestDns::start(&[(REGISTRY, record.as_str())]);
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        format!(
            "user {}\ntopic write sensors/1/#\n\nuser operator\ntopic read sensors/#\n",
            device_name("sensor1")
        ),
    )
    .unwrap();
    let passwords = dir.join("passwords");
    common::ok(
        Command::new("mosquitto_passwd")
            .args(["-b", "-c"])
            .arg(&passwords)
            .args(["operator", "s3cret"])
            .output()
            .unwrap(),
    );
    let plain_port = free_port();
    let broker = pki.broker_with(
        &dns,
        &[("acl_defer", "true"), ("defer_without_certificate", "true")],
        &format!(
            "acl_file {}\npassword_file {}\nlistener {plain_port} 127.0.0.1\n",
            acl.display(),
            passwords.display()
        ),
    );

    let operator = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &plain_port.to_string(), "-i", "op"])
        .args([
            "-u",
            "operator",
            "-P",
            "s3cret",
            "-t",
            "sensors/#",
            "-C",
            "1",
            "-W",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    broker.wait_for_line(20, &["op", "sensors/#"]);
    let publish = |topic: &str| {
        pki.client(
            "mosquitto_pub",
            &broker,
            "pub1",
            &device.cert_path,
            &device.key_path,
        )
        .args(["-t", topic, "-m", topic, "-q", "1"])
        .output()
        .unwrap()
    };
    // Not in the device's ACL: dropped by mosquitto's acl_file.
    assert!(publish("sensors/2/temp").status.success());
    broker.wait_for_line(5, &["Denied PUBLISH from pub1", "sensors/2/temp"]);
    assert!(publish("sensors/1/temp").status.success());
    let out = operator.wait_with_output().unwrap();
    assert_eq!(
        common::stdout(&out),
        "sensors/1/temp\n",
        "{}\n{}",
        stderr(&out),
        broker.log()
    );
    // A wrong password is still refused by mosquitto's own check.
    let wrong = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &plain_port.to_string(),
            "-i",
            "op2",
        ])
        .args([
            "-u",
            "operator",
            "-P",
            "wrong",
            "-t",
            "sensors/x",
            "-m",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "{}", broker.log());
}

/// plugin_opt_client_id device (the default): a device connects only under its own name as
/// client id (or the name, "/" and a suffix). Another device's id is refused before any look-up,
/// so an admitted device can neither disconnect the holder of that id nor inherit its session
/// (mosquitto hands a client id's subscriptions and queued messages to whoever uses it next).
#[test]
fn a_device_cannot_take_over_another_devices_client_id() {
    let pki = Pki::new();
    let victim = pki.device("sensor1", &[&device_name("sensor1")]);
    let attacker = pki.device("sensor2", &[&device_name("sensor2")]);
    let records = [
        ee_line("sensor1", &victim.cert, 300),
        ee_line("sensor2", &attacker.cert, 300),
    ];
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| (REGISTRY, r.as_str()))
            .collect::<Vec<_>>(),
    );
    let broker = pki.broker(&dns, &[("client_id", "")]);
    let victim_id = device_name("sensor1");

    let sub = pki.subscribe(&broker, &victim_id, &victim, 1);
    // An admitted device (its record matches) under the victim's client id.
    let out = pki.publish(&broker, &victim_id, &attacker);
    assert_refused(
        &out,
        &broker,
        &victim_id,
        &device_name("sensor2"),
        "CLIENT_ID",
    );
    let out = pki.publish(&broker, "pub2", &attacker);
    assert_refused(&out, &broker, "pub2", &device_name("sensor2"), "CLIENT_ID");
    // The victim's session is still there: its own second connection reaches it.
    let own = format!("{victim_id}/pub");
    let out = pki.publish(&broker, &own, &victim);
    assert!(out.status.success(), "{}\n{}", stderr(&out), broker.log());
    let sub = sub.wait_with_output().unwrap();
    assert_eq!(common::stdout(&sub), format!("{own}\n"), "{}", stderr(&sub));
    let log = broker.log();
    assert!(
        !log.contains("already connected, closing old connection"),
        "no session was taken over:\n{log}"
    );
}

/// All device names of one certificate share one budget of plugin_opt_lookup_timeout_ms: here
/// each TLSA answer comes 1.7 s late (within the 2 s query and 3 s look-up time-outs). The first
/// name has no record; the second, with a matching record, would need 1.7 s more where only
/// about 1.3 s of the 3 s budget is left: it is given up (DNS_FAILURE) and the client refused,
/// instead of holding the broker's thread for both look-ups in full.
#[test]
fn the_device_names_of_one_certificate_share_one_look_up_budget() {
    use common::dnsproxy::{DnsProxy, Forgery};
    use hickory_resolver::proto::rr::RecordType;
    let pki = Pki::new();
    let device = pki.device(
        "sensor2",
        &[&device_name("sensor1"), &device_name("sensor2")],
    );
    let record = ee_line("sensor2", &device.cert, 300);
    let dns = TestDns::start(&[(REGISTRY, record.as_str())]);
    let proxy = DnsProxy::start(dns.addr());
    let late = Forgery::Late(std::time::Duration::from_millis(1700));
    for id in ["sensor1", "sensor2"] {
        proxy.forge(
            &format!("{}.", device_name(id)),
            RecordType::TLSA,
            late.clone(),
        );
    }
    let resolver = proxy.addr().to_string();
    let broker = pki.broker(
        &dns,
        &[
            ("resolver", resolver.as_str()),
            ("lookup_timeout_ms", "3000"),
        ],
    );

    let out = pki.publish(&broker, "pub2", &device);
    let line = assert_refused(
        &out,
        &broker,
        "pub2",
        &device_name("sensor2"),
        "DNS_FAILURE",
    );
    assert!(
        line.contains(&format!("{}: NO_RECORDS", device_name("sensor1"))),
        "the first name was looked up in full: {line}"
    );
}

/// plugin_opt_username keep with plugin_opt_acl_defer true would let the username the client
/// sent (never checked: the plugin admits at CONNECT) decide an acl_file keyed on device names:
/// the broker refuses to start, naming both.
#[test]
fn username_keep_with_acl_defer_stops_the_broker() {
    let conf = format!(
        "plugin {}\nplugin_opt_allowed_domains iotregistry.test\nplugin_opt_username keep\n\
         plugin_opt_acl_defer true\nlistener {} 127.0.0.1\n",
        common::built_mosquitto_plugin().display(),
        free_port()
    );
    assert_stops_the_broker(
        &conf,
        "plugin_opt_username keep and plugin_opt_acl_defer true",
    );
}

/// plugin_opt_username keep: the device is admitted by its record, and mosquitto knows it by
/// the username it sent.
#[test]
fn with_username_keep_the_clients_own_username_stays() {
    let pki = Pki::new();
    let device = pki.device("sensor1", &[&device_name("sensor1")]);
    let record = ee_line("sensor1", &device.cert, 300);
    let dns = TestDns::start(&[(REGISTRY, record.as_str())]);
    let broker = pki.broker(&dns, &[("username", "keep")]);
    let out = pki
        .client(
            "mosquitto_pub",
            &broker,
            "pub1",
            &device.cert_path,
            &device.key_path,
        )
        .args(["-u", "line-7-unit", "-t", "sensors/1", "-m", "x"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    broker.wait_for_line(5, &["admitted client pub1 ", "username kept"]);
    broker.wait_for_line(5, &["as pub1 ", "u'line-7-unit'"]);
}

/// `use_identity_as_username true` makes mosquitto skip the plugin at CONNECT: the client it
/// lets in that way was never admitted, so the plugin denies its publishes and subscriptions
/// (fail closed, whatever the rest of the configuration says).
#[test]
fn clients_that_bypass_the_plugin_at_connect_can_neither_publish_nor_subscribe() {
    let pki = Pki::new();
    let subscriber = pki.device("sensor1", &[&device_name("sensor1")]);
    let unlisted = pki.device("sensor3", &[&device_name("sensor3")]);
    let record = ee_line("sensor1", &subscriber.cert, 300);
    let dns = TestDns::start(&[(REGISTRY, record.as_str())]);
    let broker = pki.broker_with(&dns, &[], "use_identity_as_username true\n");

    // mosquitto never asked the plugin about this one: it is connected, but not admitted.
    let out = pki.publish(&broker, "bypass3", &unlisted);
    assert!(out.status.success(), "{}", stderr(&out));
    broker.wait_for_line(5, &["Denied PUBLISH from bypass3"]);
    let out = pki
        .client(
            "mosquitto_sub",
            &broker,
            "bypass3s",
            &unlisted.cert_path,
            &unlisted.key_path,
        )
        .args(["-t", "sensors/#", "-C", "1", "-W", "2"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("All subscription requests were denied"),
        "the subscription is refused: {}",
        stderr(&out)
    );
    assert!(common::stdout(&out).is_empty(), "{}", common::stdout(&out));
    let log = broker.log();
    assert!(
        !log.contains("admitted client bypass3"),
        "the plugin was not asked at CONNECT:\n{log}"
    );
}

/// Revocation by DNS, as a registry does it (`iotsafe registry`, signed updates to the zone's
/// primary): the record of a device with a live session is revoked; the session is kicked
/// within TTL + revalidate_seconds and the reconnect refused; the record published again, it
/// connects again. Then its record changes to another key (published beside it, the device's
/// own revoked; the answer it was admitted on expires): kicked again, refused with NO_MATCH.
#[test]
fn a_removed_or_changed_record_kicks_the_live_session_and_refuses_the_reconnect() {
    const TTL: u32 = 2;
    let pki = Pki::new();
    let device = pki.device("sensor9", &[&device_name("sensor9")]);
    let stranger = pki.device("stranger", &[]);
    let record = ee_line("sensor9", &device.cert, TTL);
    let dns = TestDns::start(&[(REGISTRY, record.as_str())]);
    let broker = pki.broker(&dns, &[]);
    let bound = u64::from(TTL) + REVALIDATE_S;
    let name = device_name("sensor9");
    let ttl = TTL.to_string();

    let sub = pki.subscribe(&broker, "sub9", &device, 1000);
    let removed = Instant::now();
    registry::change(&dns, "revoke", &name, &[]);
    broker.wait_for_line(bound + 5, &["kicked client sub9 ", "NO_RECORDS"]);
    println!(
        "kicked {:.1} s after the record was revoked (TTL {TTL} s + revalidate {REVALIDATE_S} s)",
        removed.elapsed().as_secs_f64()
    );
    kill(sub);
    let out = pki.publish(&broker, "pub9", &device);
    assert_refused(&out, &broker, "pub9", &name, "NO_RECORDS");

    // Published again: admitted once the denial's negative TTL (the zone's SOA minimum) ends.
    let cert = device.cert_path.to_str().unwrap();
    registry::change(&dns, "publish", &name, &["--cert", cert, "--ttl", &ttl]);
    common::wait_until(20, "the restored record to admit the device", || {
        pki.publish(&broker, "again9", &device).status.success()
    });

    let sub = pki.subscribe(&broker, "sub9b", &device, 1000);
    let other = stranger.cert_path.to_str().unwrap();
    registry::change(&dns, "publish", &name, &["--cert", other, "--ttl", &ttl]);
    let own = pki::dane_ee_record(&device.cert).to_string();
    registry::change(&dns, "revoke", &name, &["--record", &own]);
    broker.wait_for_line(bound + 5, &["kicked client sub9b ", "NO_MATCH"]);
    kill(sub);
    let out = pki.publish(&broker, "pub9b", &device);
    assert_refused(&out, &broker, "pub9b", &name, "NO_MATCH");
}

/// 100 distinct devices, each with its own record, connect (four at a time) and publish while
/// a subscriber keeps receiving, and a device with its key on the SIM connects three times
/// meanwhile: every one is admitted, every message arrives.
#[test]
fn a_hundred_devices_are_all_admitted_while_a_subscriber_keeps_receiving() {
    const DEVICES: usize = 100;
    let pki = Pki::new();
    let subscriber = pki.device("sensor0", &[&device_name("sensor0")]);
    let devices = pki.numbered_devices("unit", DEVICES);
    // A few connections with the key on the (simulated) SIM among them.
    let card = CardDevice::provision(pki.dir.path(), &pki.ca, "card0", &device_name("card0"));
    const CARD_CONNECTIONS: usize = 3;
    let mut records = vec![
        ee_line("sensor0", &subscriber.cert, 300),
        ee_line("card0", &card.cert(), 300),
    ];
    records.extend(devices.iter().map(|(id, d)| ee_line(id, &d.cert, 300)));
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| (REGISTRY, r.as_str()))
            .collect::<Vec<_>>(),
    );
    let broker = pki.broker(&dns, &[]);

    let sub = pki.subscribe(
        &broker,
        "sub0",
        &subscriber,
        (DEVICES + CARD_CONNECTIONS) as u32,
    );
    std::thread::scope(|s| {
        let (pki, broker, card) = (&pki, &broker, &card);
        s.spawn(move || {
            for i in 0..CARD_CONNECTIONS {
                let id = format!("card0-{i}");
                let out = card.publish(broker, &pki.server.cert_path, &id, &id);
                assert!(out.status.success(), "{id}: {}", stderr(&out));
            }
        });
        for chunk in devices.chunks(DEVICES / 4) {
            s.spawn(move || {
                for (id, device) in chunk {
                    let out = pki.publish(broker, id, device);
                    assert!(out.status.success(), "{id}: {}", stderr(&out));
                }
            });
        }
    });
    let out = sub.wait_with_output().unwrap();
    let mut received: Vec<String> = common::stdout(&out).lines().map(String::from).collect();
    received.sort();
    let mut expected: Vec<String> = devices.iter().map(|(id, _)| id.clone()).collect();
    expected.extend((0..CARD_CONNECTIONS).map(|i| format!("card0-{i}")));
    expected.sort();
    assert_eq!(received, expected, "{}", stderr(&out));
    let log = broker.log();
    assert_eq!(log.matches("admitted client unit").count(), DEVICES);
    assert_eq!(
        log.matches("as card0._device.iotregistry.test ").count(),
        CARD_CONNECTIONS
    );
    assert!(!log.contains("refused client"), "{log}");
}

/// plugin_opt_trust_ad: the broker takes the verdict of a validating resolver on loopback
/// (unbound, with the test root as its trust anchor) instead of validating itself.
#[test]
fn with_trust_ad_the_verdict_of_a_validating_resolver_admits_and_refuses() {
    let pki = Pki::new();
    let device = pki.device("sensor6", &[&device_name("sensor6")]);
    let unlisted = pki.device("sensor3", &[&device_name("sensor3")]);
    let record = ee_line("sensor6", &device.cert, 300);
    let dns = TestDns::start(&[(REGISTRY, record.as_str())]);
    let unbound = common::unbound::Unbound::start(&dns);
    let resolver = unbound.addr().to_string();
    let broker = pki.broker(
        &dns,
        &[
            ("resolver", resolver.as_str()),
            ("trust_ad", "true"),
            ("trust_anchor", ""),
        ],
    );
    broker.wait_for_line(5, &["AD bit trusted"]);
    let out = pki.publish(&broker, "pub6", &device);
    assert!(out.status.success(), "{}\n{}", stderr(&out), broker.log());
    broker.wait_for_line(5, &["admitted client pub6 ", &device_name("sensor6")]);
    let out = pki.publish(&broker, "pub3", &unlisted);
    assert_refused(&out, &broker, "pub3", &device_name("sensor3"), "NO_RECORDS");
}

/// The DNS stops answering: a failed re-validation is no verdict, so the session stays until
/// its record's TTL + revalidate_seconds have passed without a fresh one, and is then kicked
/// as unverified (fail closed), its reconnect refused for want of an answer.
#[test]
fn a_session_without_a_fresh_verdict_is_kicked_when_the_dns_stops_answering() {
    const TTL: u32 = 2;
    let pki = Pki::new();
    let device = pki.device("sensor5", &[&device_name("sensor5")]);
    let record = ee_line("sensor5", &device.cert, TTL);
    let dns = TestDns::start(&[(REGISTRY, record.as_str())]);
    let proxy = common::dnsproxy::DnsProxy::start(dns.addr());
    let resolver = proxy.addr().to_string();
    let broker = pki.broker(
        &dns,
        &[
            ("resolver", resolver.as_str()),
            ("lookup_timeout_ms", "500"),
        ],
    );

    let sub = pki.subscribe(&broker, "sub5", &device, 1000);
    drop(proxy); // the resolver's server is gone
    let line = broker.wait_for_line(
        u64::from(TTL) + REVALIDATE_S + 5,
        &["kicked client sub5 ", "no fresh verdict"],
    );
    assert!(!line.contains("NO_RECORDS"), "{line}");
    kill(sub);
    let out = pki.publish(&broker, "pub5", &device);
    assert_refused(
        &out,
        &broker,
        "pub5",
        &device_name("sensor5"),
        "DNS_FAILURE",
    );
}

/// A record that turns bogus (here: the name becomes an alias into a zone whose chain of trust
/// is broken) kicks the live session with the proof state named.
#[test]
fn a_record_turning_bogus_kicks_the_live_session() {
    const TTL: u32 = 2;
    let pki = Pki::new();
    let device = pki.device("sensor4", &[&device_name("sensor4")]);
    let record = ee_line("sensor4", &device.cert, TTL);
    let bogus_copy = format!(
        "sensor4._device 300 IN TLSA {}",
        pki::dane_ee_record(&device.cert)
    );
    let dns = TestDns::start(&[
        (REGISTRY, record.as_str()),
        ("bogus.test.", bogus_copy.as_str()),
    ]);
    let broker = pki.broker(&dns, &[]);

    let sub = pki.subscribe(&broker, "sub4", &device, 1000);
    dns.set_records(
        REGISTRY,
        &[&format!(
            "sensor4._device {TTL} IN CNAME sensor4._device.bogus.test."
        )],
    );
    broker.wait_for_line(
        u64::from(TTL) + REVALIDATE_S + 5,
        &["kicked client sub4 ", "BOGUS"],
    );
    kill(sub);
    let out = pki.publish(&broker, "pub4", &device);
    assert_refused(&out, &broker, "pub4", &device_name("sensor4"), "BOGUS");
}

/// CA discovery: with plugin_opt_ca_discovery, the broker warns at start-up about a CA of its
/// cafile that the registry does not publish, and, on re-validation, about one whose record
/// the registry withdrew.
#[test]
fn ca_discovery_warns_about_cas_no_longer_published() {
    const TTL: u32 = 2;
    let pki = Pki::new();
    let dir = pki.dir.path();
    let old_ca = pki::ca(dir, "old-ca", "Registry CA 2019");
    let cafile = pki::bundle(dir, "cafile.pem", &[&pki.ca.cert, &old_ca.cert]);
    let device = pki.device("sensor2", &[&device_name("sensor2")]);
    let device_line = ee_line("sensor2", &device.cert, TTL);
    let ca_line = format!(
        "_device {TTL} IN TLSA {}",
        Tlsa::for_certificate(&pki.ca.cert, Usage::DaneTa, Selector::Cert, Matching::Full).unwrap()
    );
    let dns = TestDns::start(&[
        (REGISTRY, device_line.as_str()),
        (REGISTRY, ca_line.as_str()),
    ]);
    let broker = pki.broker(
        &dns,
        &[
            ("cafile", cafile.to_str().unwrap()),
            ("ca_discovery", "_device.iotregistry.test"),
        ],
    );
    let warning = broker.wait_for_line(5, &["/CN=Registry CA 2019 ", "is not published at"]);
    assert!(
        !warning.contains("/CN=Registry CA of"),
        "the published CA is not named: {warning}"
    );

    // A live session keeps the re-validation going; the registry withdraws its CA.
    let sub = pki.subscribe(&broker, "sub2", &device, 1000);
    dns.set_records(REGISTRY, &[&device_line]);
    broker.wait_for_line(
        u64::from(TTL) + REVALIDATE_S + 5,
        &[
            "/CN=Registry CA of",
            "is not published at _device.iotregistry.test",
        ],
    );
    kill(sub);
}

/// Configurations the plugin cannot work under make the broker refuse to start, saying why.
#[test]
fn a_bad_option_or_per_listener_settings_stops_the_broker_with_a_line_naming_it() {
    let plugin = common::built_mosquitto_plugin();
    let port = free_port();
    let plugin_line = format!(
        "plugin {}\nplugin_opt_allowed_domains iotregistry.test\n",
        plugin.display()
    );
    let conf = |options: &str| format!("{plugin_line}{options}\nlistener {port} 127.0.0.1\n");
    let cases: [(String, &str); 6] = [
        (
            format!(
                "per_listener_settings true\nlistener {} 127.0.0.1\n{plugin_line}",
                free_port()
            ),
            "per_listener_settings true",
        ),
        (
            conf("plugin_opt_revalidate_seconds soon"),
            "plugin_opt_revalidate_seconds soon",
        ),
        (conf("plugin_opt_colour blue"), "plugin_opt_colour"),
        (
            conf("plugin_opt_client_id anything"),
            "plugin_opt_client_id anything",
        ),
        (
            conf("plugin_opt_identity_forms device,cn"),
            "plugin_opt_identity_forms",
        ),
        (
            conf("plugin_opt_trust_ad true\nplugin_opt_trust_anchor /nonexistent"),
            "plugin_opt_trust_ad",
        ),
    ];
    for (text, named) in cases {
        assert_stops_the_broker(&text, named);
    }
}

/// A reload (SIGHUP, as `systemctl reload` or logrotate sends) makes mosquitto re-check every
/// client it knows, offline persistent sessions included. Such a session has no TLS connection
/// and so no certificate; refusing it would make mosquitto 2.0.11 disconnect the already
/// disconnected session a second time (its connection count and session-expiry list then go
/// wrong). The plugin answers the reload's check without DNS: the offline session (not a live
/// client) is neither refused nor disconnected again, also when clients without a certificate
/// are left to other plugins (which would refuse a device's session), and under `username keep`
/// for a device that sent no username (mosquitto's own anonymous check, before any plugin,
/// would disconnect a session without one).
#[test]
fn a_reload_leaves_an_offline_persistent_session_alone() {
    for defer in ["false", "true"] {
        for username in ["device", "keep"] {
            reload_with_an_offline_session(&[
                ("defer_without_certificate", defer),
                ("username", username),
            ]);
        }
    }
}

/// A device `sensor1` and a probe `sensor2` with their records, and the broker with `options`.
fn two_devices_and_a_broker(
    pki: &Pki,
    options: &[(&str, &str)],
    listener: &str,
) -> (TestDns, Broker, Issued, Issued) {
    let device = pki.device("sensor1", &[&device_name("sensor1")]);
    let probe = pki.device("sensor2", &[&device_name("sensor2")]);
    let records = [
        ee_line("sensor1", &device.cert, 300),
        ee_line("sensor2", &probe.cert, 300),
    ];
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| (REGISTRY, r.as_str()))
            .collect::<Vec<_>>(),
    );
    let broker = pki.broker_with(&dns, options, listener);
    (dns, broker, device, probe)
}

/// `sensor1` connects as `off1` with a persistent session (MQTT 5, clean start off, session
/// expiry 600 s), subscribes, and its connection ends: the session stays, offline.
fn leave_an_offline_session(pki: &Pki, broker: &Broker, device: &Issued) {
    let persistent = pki
        .client(
            "mosquitto_sub",
            broker,
            "off1",
            &device.cert_path,
            &device.key_path,
        )
        .args(["-V", "mqttv5", "-c", "-x", "600", "-t", "sensors/#"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    broker.wait_for_line(20, &["off1", "sensors/#"]);
    kill(persistent);
    broker.wait_for_line(10, &["Client off1 closed its connection"]);
}

/// Reloads the broker, then has `probe` publish as `probe_id` (mosquitto handles a new
/// connection only after the reload's checks have run).
fn reload_and_probe(pki: &Pki, broker: &Broker, probe: &Issued, probe_id: &str) {
    let reloads = broker.log().matches("Reloading config.").count();
    broker.reload();
    common::wait_until(10, "the reload", || {
        broker.log().matches("Reloading config.").count() > reloads
    });
    let out = pki.publish(broker, probe_id, probe);
    assert!(out.status.success(), "{}\n{}", stderr(&out), broker.log());
    broker.wait_for_line(5, &[&format!("admitted client {probe_id} ")]);
}

/// How often the log says client `id` was disconnected or closed its connection.
fn disconnections(log: &str, id: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains(&format!("Client {id} "))
                && (l.contains("disconnected") || l.contains("closed its connection"))
        })
        .count()
}

fn reload_with_an_offline_session(options: &[(&str, &str)]) {
    let pki = Pki::new();
    let (_dns, broker, device, probe) = two_devices_and_a_broker(&pki, options, "");
    leave_an_offline_session(&pki, &broker, &device);
    reload_and_probe(&pki, &broker, &probe, "probe2");

    let log = broker.log();
    assert!(
        !log.contains("refused client off1 "),
        "{options:?}: the offline session was refused at the reload:\n{log}"
    );
    assert_eq!(
        disconnections(&log, "off1"),
        1,
        "{options:?}: the offline session was disconnected once, not again at the reload:\n{log}"
    );
}

/// Under `username keep`, a device that sent no username gets its device name as its
/// username: a reload (whose anonymous check comes before any plugin) leaves its live session
/// alone, and it keeps receiving.
#[test]
fn with_username_keep_a_device_without_a_username_keeps_its_session_at_a_reload() {
    let pki = Pki::new();
    let (_dns, broker, device, probe) = two_devices_and_a_broker(&pki, &[("username", "keep")], "");
    let sub = pki.subscribe(&broker, "sub1", &device, 1);
    reload_and_probe(&pki, &broker, &probe, "probe2");
    let out = sub.wait_with_output().unwrap();
    // The broker logs the subscriber's own disconnection after it has left.
    common::wait_until(5, "the subscriber's disconnection in the log", || {
        disconnections(&broker.log(), "sub1") >= 1
    });
    let log = broker.log();
    assert_eq!(
        disconnections(&log, "sub1"),
        1,
        "the subscriber was disconnected at the reload (and once more after its message):\n{log}"
    );
    assert_eq!(common::stdout(&out), "probe2\n", "{}\n{log}", stderr(&out));
    broker.wait_for_line(5, &["as sub1 ", &format!("u'{}'", device_name("sensor1"))]);
}

/// A broker restarted with `persistence true` (Debian's default) recreates the offline
/// sessions of devices from its database, sessions the plugin never saw disconnect: two
/// reloads afterwards neither refuse nor disconnect them, also when clients without a
/// certificate are left to other plugins. (An answer left to the others refused them, and
/// each reload disconnected them again.)
#[test]
fn reloads_after_a_restart_with_persistence_leave_offline_sessions_alone() {
    let pki = Pki::new();
    let store = tempfile::tempdir().unwrap();
    let persistence = format!(
        "persistence true\npersistence_location {}/\n",
        store.path().display()
    );
    let (_dns, mut broker, device, probe) =
        two_devices_and_a_broker(&pki, &[("defer_without_certificate", "true")], &persistence);
    leave_an_offline_session(&pki, &broker, &device);
    broker.restart();
    reload_and_probe(&pki, &broker, &probe, "probe2");
    reload_and_probe(&pki, &broker, &probe, "probe3");

    let log = broker.log();
    assert!(
        log.contains("Saving in-memory database"),
        "the broker saved its database when stopped:\n{log}"
    );
    assert!(
        !log.contains("refused client off1 "),
        "the restored session was refused:\n{log}"
    );
    assert_eq!(
        disconnections(&log, "off1"),
        1,
        "the restored offline session was disconnected (again) at a reload:\n{log}"
    );
}

/// The broker's log after its latest "Reloading config." line.
fn since_the_last_reload(log: &str) -> &str {
    log.rfind("Reloading config.").map_or("", |at| &log[at..])
}

/// Under `username keep` with clients without a certificate left to other plugins, a device
/// with a username of its own (no device shape) and a persistent session is kicked when its
/// record goes: its offline session is then neither refused nor disconnected a second time at
/// a reload (mosquitto 2.0.11 would corrupt its session-expiry list). A reload tells offline
/// sessions from live clients, whatever their usernames.
#[test]
fn a_device_kicked_under_username_keep_is_not_disconnected_again_at_a_reload() {
    const TTL: u32 = 2;
    let pki = Pki::new();
    let name = device_name("sensor1");
    let device = pki.device("sensor1", &[&name]);
    let probe = pki.device("sensor2", &[&device_name("sensor2")]);
    let records = [
        ee_line("sensor1", &device.cert, TTL),
        ee_line("sensor2", &probe.cert, 300),
    ];
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| (REGISTRY, r.as_str()))
            .collect::<Vec<_>>(),
    );
    let broker = pki.broker(
        &dns,
        &[("username", "keep"), ("defer_without_certificate", "true")],
    );
    let persistent = pki
        .client(
            "mosquitto_sub",
            &broker,
            &name,
            &device.cert_path,
            &device.key_path,
        )
        .args([
            "-V",
            "mqttv5",
            "-c",
            "-x",
            "3600",
            "-u",
            "u",
            "-t",
            "sensors/#",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    broker.wait_for_line(20, &[&name, "sensors/#"]);
    registry::change(&dns, "revoke", &name, &[]);
    broker.wait_for_line(
        u64::from(TTL) + REVALIDATE_S + 5,
        &[&format!("kicked client {name} ")],
    );
    kill(persistent);
    reload_and_probe(&pki, &broker, &probe, "probe2");

    let log = broker.log();
    let after = since_the_last_reload(&log);
    assert_eq!(
        disconnections(after, &name),
        0,
        "the kicked device's offline session was disconnected again at the reload:\n{log}"
    );
}

/// A connected client without a certificate on a password listener is checked again at a
/// reload by password_file (asked after the plugin), however much its username and client id
/// look like a device's: a legacy device removed from password_file is disconnected by the
/// reload, as without the plugin.
#[test]
fn a_reload_disconnects_a_password_client_removed_from_password_file() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let legacy = device_name("legacy1");
    let dns = TestDns::start(&[]);
    let passwords = dir.join("passwords");
    let set_password = |user: &str| {
        common::ok(
            Command::new("mosquitto_passwd")
                .args(["-b", "-c"])
                .arg(&passwords)
                .args([user, "pw"])
                .output()
                .unwrap(),
        )
    };
    set_password(&legacy);
    let acl = dir.join("acl");
    std::fs::write(&acl, format!("user {legacy}\ntopic read #\n")).unwrap();
    let plain_port = free_port();
    let broker = pki.broker_with(
        &dns,
        &[("defer_without_certificate", "true")],
        &format!(
            "acl_file {}\npassword_file {}\nlistener {plain_port} 127.0.0.1\n",
            acl.display(),
            passwords.display()
        ),
    );
    let mut subscriber = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &plain_port.to_string()])
        .args([
            "-i", &legacy, "-u", &legacy, "-P", "pw", "-t", "#", "-W", "60",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    broker.wait_for_line(20, &["Sending SUBACK to", &legacy]);

    set_password("operator");
    let reloads = broker.log().matches("Reloading config.").count();
    broker.reload();
    common::wait_until(10, "the reload", || {
        broker.log().matches("Reloading config.").count() > reloads
    });
    let exited = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        subscriber.try_wait().unwrap().is_some()
    });
    let _ = subscriber.kill();
    let _ = subscriber.wait();
    let log = broker.log();
    assert!(
        exited,
        "the client removed from password_file stayed connected after the reload:\n{log}"
    );
    assert!(
        disconnections(since_the_last_reload(&log), &legacy) >= 1,
        "the reload disconnected it:\n{log}"
    );
}

/// At a reload, connected devices are judged by the verdicts the plugin holds, not looked up
/// again on the broker's thread: with the DNS failing for their names (SERVFAIL) after their
/// answers left the cache, a reload kicks none of them. They stay until their TTL +
/// revalidate_seconds pass without a fresh verdict, as without a reload.
#[test]
fn a_reload_keeps_connected_devices_without_looking_them_up_again() {
    use common::dnsproxy::{DnsProxy, Forgery};
    use hickory_resolver::proto::op::ResponseCode;
    use hickory_resolver::proto::rr::RecordType;
    const TTL: u32 = 2;
    const DEVICES: usize = 3;
    let pki = Pki::new();
    let devices = pki.numbered_devices("sensor", DEVICES);
    let probe = pki.device("sensor9", &[&device_name("sensor9")]);
    let mut records = vec![ee_line("sensor9", &probe.cert, 300)];
    records.extend(devices.iter().map(|(id, d)| ee_line(id, &d.cert, TTL)));
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| (REGISTRY, r.as_str()))
            .collect::<Vec<_>>(),
    );
    let proxy = DnsProxy::start(dns.addr());
    let resolver = proxy.addr().to_string();
    let broker = pki.broker(
        &dns,
        &[
            ("resolver", resolver.as_str()),
            ("revalidate_seconds", "30"),
        ],
    );

    let subs: Vec<Child> = devices
        .iter()
        .map(|(id, device)| pki.subscribe(&broker, &format!("sub-{id}"), device, 1))
        .collect();
    let admitted = Instant::now();
    for (id, _) in &devices {
        proxy.forge(
            &format!("{}.", device_name(id)),
            RecordType::TLSA,
            Forgery::TruncatedThen(ResponseCode::ServFail),
        );
    }
    // Their answers leave the cache after the TTL; the plugin's own re-validation then meets
    // the failing DNS (no verdict: the sessions count until TTL + revalidate_seconds).
    std::thread::sleep(std::time::Duration::from_secs(u64::from(TTL) + 1));
    common::wait_until(10, "a re-validation to meet the failing DNS", || {
        proxy.forged() >= DEVICES
    });

    broker.reload();
    broker.wait_for_line(10, &["Reloading config."]);
    let out = pki.publish(&broker, "probe9", &probe);
    assert!(out.status.success(), "{}\n{}", stderr(&out), broker.log());
    assert!(
        admitted.elapsed().as_secs() < u64::from(TTL) + 30,
        "the test ran past the sessions' deadline"
    );
    // Every subscriber is still there: it receives the probe's message.
    for sub in subs {
        let out = sub.wait_with_output().unwrap();
        assert_eq!(
            common::stdout(&out),
            "probe9\n",
            "{}\n{}",
            stderr(&out),
            broker.log()
        );
    }
    let log = broker.log();
    for (id, _) in &devices {
        assert!(
            !log.contains(&format!("refused client sub-{id} "))
                && !log.contains(&format!("kicked client sub-{id} ")),
            "sub-{id} was judged again at the reload:\n{log}"
        );
    }
}

/// The CA publication at plugin_opt_ca_discovery (`2 0 0` records of the registry CA) must not
/// be readable as a device's records: were its name a device name of the accepted forms within
/// allowed_domains, any certificate of the registry CA naming it in a SAN (a device's CSR can
/// ask for one) would be admitted as that name. The broker refuses to start with such a name:
/// `_device.<domain>` with the service form on, or the registry domain itself (plain form).
#[test]
fn a_ca_discovery_name_that_reads_as_a_device_name_stops_the_broker() {
    let plugin = common::built_mosquitto_plugin();
    let pki = Pki::new();
    // Everything else in order (a real cafile): only the name can stop the broker.
    let cases = [
        ("device,plain,service", "_device.iotregistry.test"),
        ("device,plain", "iotregistry.test."),
    ];
    for (forms, name) in cases {
        let conf = format!(
            "plugin {}\nplugin_opt_allowed_domains iotregistry.test\n\
             plugin_opt_identity_forms {forms}\nplugin_opt_cafile {}\n\
             plugin_opt_lookup_timeout_ms 500\nplugin_opt_ca_discovery {name}\n\
             listener {} 127.0.0.1\n",
            plugin.display(),
            pki.ca.cert_path.display(),
            free_port()
        );
        let line = format!("plugin_opt_ca_discovery {name} is a device name");
        assert_stops_the_broker(&conf, &line);
    }
}

/// plugin_opt_allowed_domains longer than the plugin reads is refused at start, not cut short:
/// a cut list would leave out its last domains where the plugin checks a name itself (the
/// ca_discovery name), while the library, reading the whole list, admits them.
#[test]
fn allowed_domains_longer_than_the_plugin_reads_stops_the_broker() {
    let pki = Pki::new();
    let filler: Vec<String> = (0..100).map(|i| format!("filler{i:03}.test")).collect();
    let domains = format!("{},iotregistry.test", filler.join(","));
    assert!(domains.len() > 1100, "{}", domains.len());
    let conf = format!(
        "plugin {}\nplugin_opt_allowed_domains {domains}\nplugin_opt_identity_forms device,plain\n\
         plugin_opt_cafile {}\nplugin_opt_lookup_timeout_ms 500\n\
         plugin_opt_ca_discovery iotregistry.test\nlistener {} 127.0.0.1\n",
        common::built_mosquitto_plugin().display(),
        pki.ca.cert_path.display(),
        free_port()
    );
    assert_stops_the_broker(
        &conf,
        "plugin_opt_allowed_domains is longer than 1023 characters",
    );
}

/// mosquitto refuses to start with `conf`, and its log has `line` (naming the option).
fn assert_stops_the_broker(conf: &str, line: &str) {
    let (status, log) = Broker::refused_plugin_conf(conf);
    assert!(!status.success(), "must not start:\n{conf}\n{log}");
    assert!(log.contains(line), "the log names it ({line:?}):\n{log}");
}

/// Re-validation is fair: names whose DNS answers stall (an attacker's zone under a shared
/// allowed domain, whose server stalls after admission) do not hold up the re-validation of
/// the others. 32 admitted devices' answers come 4 s late (past lookup_timeout_ms 3000) once
/// their 2 s TTL has run out; a healthy device admitted after them (TTL 5 s,
/// revalidate_seconds 4: checked every 4 s, a deadline 9 s after each verdict) keeps its
/// session, while the stalled ones are kicked at their deadlines. (With one re-validation
/// after the other, the stalled names held the worker for 32 × 3 s, and the healthy device was
/// kicked as having no fresh verdict.)
#[test]
fn stalled_look_ups_do_not_starve_the_revalidation_of_other_devices() {
    use common::dnsproxy::{DnsProxy, Forgery};
    use hickory_resolver::proto::rr::RecordType;
    const SLOW: usize = 32;
    const WATCH_S: u64 = 12;
    let pki = Pki::new();
    let slow = pki.numbered_devices("slow", SLOW);
    let healthy = pki.device("sensor1", &[&device_name("sensor1")]);
    let mut records = vec![ee_line("sensor1", &healthy.cert, 5)];
    records.extend(slow.iter().map(|(id, d)| ee_line(id, &d.cert, 2)));
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| (REGISTRY, r.as_str()))
            .collect::<Vec<_>>(),
    );
    let proxy = DnsProxy::start(dns.addr());
    let resolver = proxy.addr().to_string();
    let broker = pki.broker(
        &dns,
        &[
            ("resolver", resolver.as_str()),
            ("lookup_timeout_ms", "3000"),
            ("revalidate_seconds", "4"),
        ],
    );

    // Sessions that do not reconnect once kicked: each reconnect would hold the broker's
    // thread for a whole look-up, and its ticks (the kicks) with it.
    let _slow_sessions: Vec<BareSession> = slow
        .iter()
        .map(|(id, device)| {
            BareSession::connect(
                broker.port,
                &device.cert_path,
                &device.key_path,
                &format!("sub-{id}"),
            )
            .unwrap_or_else(|| panic!("{id} admitted: {}", broker.log()))
        })
        .collect();
    for (id, _) in &slow {
        proxy.forge(
            &format!("{}.", device_name(id)),
            RecordType::TLSA,
            Forgery::Late(std::time::Duration::from_secs(4)),
        );
    }
    let sub = pki.subscribe(&broker, "sub-sensor1", &healthy, 1000);
    let watched = Instant::now();
    common::wait_until(10, "the stalled names to be asked again", || {
        proxy.forged() >= 1
    });
    while watched.elapsed().as_secs() < WATCH_S {
        let log = broker.log();
        assert!(
            !log.contains("kicked client sub-sensor1 "),
            "the healthy device was kicked after {:.1} s:\n{log}",
            watched.elapsed().as_secs_f64()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The stalled ones lost their sessions meanwhile (no fresh verdict): the check above saw
    // the plugin at work, not idle.
    broker.wait_for_line(5, &["kicked client sub-slow", "no fresh verdict"]);
    kill(sub);
}

/// Many connections of one device name (an attacker's `slowpoke`, 100 sessions with client ids
/// of its own) whose record has TTL 0 and whose answers come just under the fast look-up budget
/// do not starve the re-validation of the other devices: one look-up serves every connection of
/// a name, and no name is looked up more often than every quarter of revalidate_seconds. (With
/// one job per connection, each due again a second after its check, the fast workers kept
/// asking for the slow name, and the other devices waited behind its jobs.)
#[test]
fn many_connections_of_one_slow_name_do_not_starve_the_others() {
    use common::dnsproxy::{DnsProxy, Forgery};
    use hickory_resolver::proto::rr::RecordType;
    const SESSIONS: usize = 100;
    const WATCH_S: u64 = 16;
    let pki = Pki::new();
    let slowpoke = pki.device("slowpoke", &[&device_name("slowpoke")]);
    let healthy = pki.device("sensor1", &[&device_name("sensor1")]);
    let records = [
        ee_line("sensor1", &healthy.cert, 2),
        ee_line("slowpoke", &slowpoke.cert, 0),
    ];
    let dns = TestDns::start(
        &records
            .iter()
            .map(|r| (REGISTRY, r.as_str()))
            .collect::<Vec<_>>(),
    );
    let proxy = DnsProxy::start(dns.addr());
    let resolver = proxy.addr().to_string();
    // revalidate_seconds 8: a fast look-up may take 500 ms; sensor1 (TTL 2) has 8 s between
    // falling due and its deadline.
    let broker = pki.broker(
        &dns,
        &[
            ("resolver", resolver.as_str()),
            ("lookup_timeout_ms", "3000"),
            ("revalidate_seconds", "8"),
        ],
    );
    let _sessions: Vec<BareSession> = (1..=SESSIONS)
        .map(|i| {
            BareSession::connect(
                broker.port,
                &slowpoke.cert_path,
                &slowpoke.key_path,
                &format!("sp-{i}"),
            )
            .unwrap_or_else(|| panic!("sp-{i} admitted: {}", broker.log()))
        })
        .collect();
    proxy.forge(
        &format!("{}.", device_name("slowpoke")),
        RecordType::TLSA,
        Forgery::Late(std::time::Duration::from_millis(400)),
    );
    let sub = pki.subscribe(&broker, "sub-sensor1", &healthy, 1000);
    let watched = Instant::now();
    while watched.elapsed().as_secs() < WATCH_S {
        let log = broker.log();
        assert!(
            !log.contains("kicked client sub-sensor1 "),
            "the healthy device was kicked after {:.1} s:\n{log}",
            watched.elapsed().as_secs_f64()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The slow name was looked up about every 2.4 s (8 s / 4 + the 0.4 s answer; the resolver
    // may ask twice when an answer is late): at most 16 queries. With a job per session and
    // second, the workers kept asking (47 queries in a run on the old code; concurrent ones
    // are merged).
    let late = proxy.forged();
    println!("{late} slowed look-ups of slowpoke in {WATCH_S} s");
    assert!(
        (1..=WATCH_S as usize * 3 / 2).contains(&late),
        "{late} look-ups of the slow name in {WATCH_S} s"
    );
    let log = broker.log();
    assert!(
        !log.contains("kicked client sp-"),
        "the slow but answering name keeps its sessions:\n{log}"
    );
    kill(sub);
}
