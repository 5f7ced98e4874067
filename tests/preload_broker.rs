//! `iotsafe-run --broker`: the Debian package's own mosquitto, never rebuilt, admits a device
//! whose certificate no CA issued (self-issued with the key on the simulated card, by
//! `openssl req -x509`) because the `3 1 1` TLSA record at the device's name matches it, and
//! refuses the device once that record is removed. The name reaches a plugin in the same
//! process (tests/c/identity_plugin.c) through `iotsafe_dane_handshake_identity` on the
//! certificate mosquitto hands it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::card::CardRig;
use common::{dns, mqtt, ok, pki};
use openssl::x509::X509;

const DEVICE: &str = "sensor7._device.iotregistry.test";

struct Rig {
    card: CardRig,
    /// The device's self-issued certificate (SAN: DEVICE) and its key reference.
    cert: PathBuf,
    keyref: PathBuf,
    /// The broker's own certificate: also its `cafile`, which did not issue the device's.
    broker_cert: pki::Issued,
    plugin: PathBuf,
    launcher: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let launcher = common::built_adapter("iotsafe-run", "preload");
        common::built_adapter("libiotsafe_preload.so", "preload");
        let card = CardRig::start(&[]);
        let dir = card.dir.path().to_path_buf();
        let (cert, keyref) = (dir.join("dev.pem"), dir.join("dev.keyref.pem"));
        ok(card.iotsafe(&["keyref", "--out", keyref.to_str().unwrap()]));
        let req = card
            .command("openssl")
            .env("OPENSSL_CONF", common::example_openssl_conf())
            .env("OPENSSL_MODULES", common::built_library_dir())
            .args([
                "req",
                "-x509",
                "-new",
                "-days",
                "30",
                "-subj",
                "/CN=sensor7",
            ])
            .args(["-addext", &format!("subjectAltName=DNS:{DEVICE}")])
            .arg("-key")
            .arg(&keyref)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl req");
        assert!(
            req.status.success(),
            "self-issued certificate with the card key: {}",
            common::stderr(&req)
        );
        let broker_cert = pki::leaf(&dir, "broker", "broker", &["localhost"], None);
        let plugin = build_plugin(&dir);
        Rig {
            card,
            cert,
            keyref,
            broker_cert,
            plugin,
            launcher,
        }
    }

    /// The device's `3 1 1` record, as the registry would publish it.
    fn device_record(&self) -> String {
        let cert = X509::from_pem(&std::fs::read(&self.cert).unwrap()).unwrap();
        format!("sensor7._device 300 IN TLSA {}", pki::dane_ee_record(&cert))
    }

    /// mosquitto through `iotsafe-run --broker --allowed-domains iotregistry.test`, requiring
    /// client certificates, with the identity plugin.
    fn broker(&self, dns: &dns::TestDns, port: u16) -> mqtt::Broker {
        self.broker_with(dns, port, &["--allowed-domains", "iotregistry.test"])
    }

    /// The same with the launcher's `options` instead of the allowed domains.
    fn broker_with(&self, dns: &dns::TestDns, port: u16, options: &[&str]) -> mqtt::Broker {
        let mut launcher = Command::new(&self.launcher);
        launcher
            .args(["--broker", "--resolver", &dns.addr().to_string()])
            .args(options)
            .arg("--trust-anchor")
            .arg(dns.trust_anchor_file())
            .arg("mosquitto")
            .env_remove("OPENSSL_CONF");
        // Client certificates required and checked against `cafile` (which cannot vouch for
        // the device), no `use_identity_as_username`: the plugin names the client.
        let conf = format!(
            "require_certificate true\ncafile {}\nplugin {}\n",
            self.broker_cert.cert_path.display(),
            self.plugin.display()
        );
        mqtt::Broker::start_via(
            launcher,
            port,
            &self.broker_cert.cert_path,
            &self.broker_cert.key_path,
            None,
            &conf,
        )
    }

    /// The unmodified mosquitto_pub as the device: its certificate and card key (no launcher).
    fn publish(&self, port: u16) -> Output {
        self.card
            .command("mosquitto_pub")
            .env("OPENSSL_CONF", common::example_openssl_conf())
            .env("OPENSSL_MODULES", common::built_library_dir())
            .args(["-h", "localhost", "-p", &port.to_string(), "-i", "sensor7"])
            .args(["-t", "sensors/7", "-m", "21.5", "-q", "1"])
            .arg("--cafile")
            .arg(&self.broker_cert.cert_path)
            .arg("--cert")
            .arg(&self.cert)
            .arg("--key")
            .arg(&self.keyref)
            .output()
            .expect("mosquitto_pub")
    }
}

/// Whether the broker's log comes to contain `line` within a few seconds: the broker logs a
/// refusal after its handshake step returns, by when the client may have seen the refusal and
/// ended.
fn logs(broker: &mqtt::Broker, line: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.log().contains(line) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// tests/c/identity_plugin.c, built against the checked-in header and the built library.
fn build_plugin(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = common::built_library_dir();
    let out = dir.join("identity_plugin.so");
    let built = Command::new("gcc")
        .args([
            "-std=gnu11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fPIC",
            "-shared",
        ])
        .arg(format!("-I{}", root.join("include").display()))
        .arg("-o")
        .arg(&out)
        .arg(root.join("tests/c/identity_plugin.c"))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-liotsafe_dane", "-lcrypto"])
        .output()
        .expect("gcc");
    assert!(built.status.success(), "{}", common::stderr(&built));
    out
}

#[test]
fn mosquitto_through_the_launcher_admits_a_self_issued_device_by_its_tlsa_record() {
    let rig = Rig::new();
    let record = rig.device_record();
    let dns = dns::TestDns::start(&[("iotregistry.test.", record.as_str())]);
    let port = common::free_port();

    // Without the launcher, stock mosquitto refuses the device: no CA issued its certificate.
    let plain = mqtt::Broker::start_with(
        port,
        &rig.broker_cert.cert_path,
        &rig.broker_cert.key_path,
        Some(&rig.broker_cert.cert_path),
    );
    let out = rig.publish(port);
    assert!(!out.status.success(), "PKIX refuses: {}", plain.log());
    drop(plain);

    let broker = rig.broker(&dns, port);
    let out = rig.publish(port);
    assert!(
        out.status.success(),
        "admitted by its record: {}\nbroker: {}",
        common::stderr(&out),
        broker.log()
    );
    let log = broker.log();
    assert!(
        log.contains(&format!("identity plugin: DANE identity {DEVICE}")),
        "the plugin read the name from the certificate: {log}"
    );
    assert!(
        log.contains(&format!("u'{DEVICE}'")),
        "the name is the client's user name: {log}"
    );
}

#[test]
fn mosquitto_through_the_launcher_refuses_the_device_once_its_record_is_removed() {
    let rig = Rig::new();
    let record = rig.device_record();
    let dns = dns::TestDns::start(&[("iotregistry.test.", record.as_str())]);
    let port = common::free_port();
    let broker = rig.broker(&dns, port);
    assert!(rig.publish(port).status.success(), "{}", broker.log());
    drop(broker);

    dns.set_records("iotregistry.test.", &[]);
    // A broker process that never saw the record (the cache of the first one would keep it
    // until its TTL ran out).
    let broker = rig.broker(&dns, port);
    let out = rig.publish(port);
    assert!(!out.status.success(), "no record, no admission");
    let logged = logs(
        &broker,
        &format!("iotsafe-run: TLS client refused (NO_RECORDS): device identity {DEVICE}"),
    );
    let log = broker.log();
    assert!(
        !log.contains("identity plugin"),
        "refused in the handshake, before any plugin: {log}"
    );
    assert!(logged, "the reason is logged: {log}");
}

/// Both ends through the launcher: the device's mosquitto_pub is given no certificate or key
/// at all; `--device-identity` presents the card's certificate and key and names the device in
/// the `dane_clientid` extension, which the broker verifies by the TLSA record at that name.
#[test]
fn a_device_started_with_device_identity_presents_the_card_and_names_itself() {
    let rig = Rig::new();
    let record = rig.device_record();
    let dns = dns::TestDns::start(&[("iotregistry.test.", record.as_str())]);
    let port = common::free_port();
    let broker = rig.broker(&dns, port);

    let publish = |launcher_options: &[&str]| {
        rig.card
            .command(&rig.launcher)
            .env_remove("OPENSSL_CONF")
            .env_remove("OPENSSL_MODULES")
            // The broker has no TLSA record: its certificate is checked by PKIX.
            .args([
                "--policy",
                "opportunistic",
                "--resolver",
                &dns.addr().to_string(),
            ])
            .arg("--trust-anchor")
            .arg(dns.trust_anchor_file())
            .args(launcher_options)
            .arg("mosquitto_pub")
            .args(["-h", "localhost", "-p", &port.to_string(), "-i", "sensor7"])
            .args(["-t", "sensors/7", "-m", "21.5", "-q", "1"])
            .arg("--cafile")
            .arg(&rig.broker_cert.cert_path)
            .output()
            .expect("mosquitto_pub")
    };
    let out = publish(&["--device-identity", DEVICE]);
    assert!(
        out.status.success(),
        "admitted: {}\nbroker: {}",
        common::stderr(&out),
        broker.log()
    );
    assert!(
        broker
            .log()
            .contains(&format!("identity plugin: DANE identity {DEVICE}")),
        "{}",
        broker.log()
    );

    // Without the option the program presents no certificate, and the broker refuses it.
    let out = publish(&[]);
    assert!(!out.status.success(), "{}", broker.log());
}

#[test]
fn mosquitto_through_the_launcher_refuses_a_device_whose_record_names_another_key() {
    let rig = Rig::new();
    let stranger = pki::leaf(rig.card.dir.path(), "stranger", "stranger", &[DEVICE], None);
    let record = format!(
        "sensor7._device 300 IN TLSA {}",
        pki::dane_ee_record(&stranger.cert)
    );
    let dns = dns::TestDns::start(&[("iotregistry.test.", record.as_str())]);
    let port = common::free_port();
    let broker = rig.broker(&dns, port);
    let out = rig.publish(port);
    assert!(!out.status.success(), "{}", broker.log());
    let logged = logs(
        &broker,
        &format!("iotsafe-run: TLS client refused (NO_MATCH): device identity {DEVICE}"),
    );
    let log = broker.log();
    assert!(logged && !log.contains("identity plugin"), "{log}");
}

/// `--broker` admits device names only in the domains it was given. Without any, every client
/// is refused: any signed domain could otherwise vouch for a certificate naming any device (an
/// attacker's own domain, with a record for the attacker's key). A device outside them is
/// refused before any DNS query.
#[test]
fn the_broker_admits_device_names_only_in_its_allowed_domains() {
    let rig = Rig::new();
    let record = rig.device_record();
    let dns = dns::TestDns::start(&[("iotregistry.test.", record.as_str())]);
    let port = common::free_port();
    let broker = rig.broker_with(&dns, port, &[]);
    let out = rig.publish(port);
    assert!(!out.status.success(), "no allowed domains, no admission");
    let logged = logs(
        &broker,
        "broker mode needs the domains device names must be in",
    );
    let log = broker.log();
    assert!(logged && !log.contains("identity plugin"), "{log}");
    drop(broker);

    let broker = rig.broker_with(&dns, port, &["--allowed-domains", "elsewhere.test"]);
    let out = rig.publish(port);
    assert!(!out.status.success(), "outside the allowed domains");
    let logged = logs(
        &broker,
        &format!("iotsafe-run: TLS client refused (NOT_ALLOWED): device identity {DEVICE}"),
    );
    assert!(logged, "{}", broker.log());
}

/// Under opportunistic, a connection the shim cannot look up (here: to an IP address, so no
/// server name) is left to the program's own checks, which may be none: the card's identity is
/// not presented to such a server, so the card signs nothing for it and the broker never sees
/// the device's certificate.
#[test]
fn the_card_is_not_presented_to_a_server_dane_did_not_authenticate() {
    let rig = Rig::new();
    let record = rig.device_record();
    let dns = dns::TestDns::start(&[("iotregistry.test.", record.as_str())]);
    let port = common::free_port();
    let broker = rig.broker(&dns, port);

    let before = rig.card.trace().len();
    let out = rig
        .card
        .command(&rig.launcher)
        .env_remove("OPENSSL_CONF")
        .env_remove("OPENSSL_MODULES")
        .args([
            "--policy",
            "opportunistic",
            "--resolver",
            &dns.addr().to_string(),
        ])
        .arg("--trust-anchor")
        .arg(dns.trust_anchor_file())
        .args(["--device-identity", DEVICE])
        .arg("mosquitto_pub")
        // An address, not a name; --insecure: the program checks the chain, not the name.
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-i", "sensor7"])
        .args(["-t", "sensors/7", "-m", "21.5", "--insecure"])
        .arg("--cafile")
        .arg(&rig.broker_cert.cert_path)
        .output()
        .expect("mosquitto_pub");
    assert_eq!(
        rig.card.signing_apdus_since(before),
        0,
        "the card signed for a server DANE did not authenticate: {}",
        broker.log()
    );
    assert!(
        !out.status.success() && !broker.log().contains("identity plugin: DANE identity"),
        "the broker saw the device: {}",
        broker.log()
    );
    assert!(
        common::stderr(&out).contains("the card's identity is not presented"),
        "{}",
        common::stderr(&out)
    );
}
