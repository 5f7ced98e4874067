//! The headline case: MQTT clients (the unmodified `mosquitto_pub`, a plain Paho C program) do
//! mutual TLS with a real mosquitto broker using a key that never leaves the (simulated) SIM;
//! only `OPENSSL_CONF` (and `OPENSSL_MODULES`, for an uninstalled provider) differ from a
//! software-key set-up.

mod common;

use std::path::Path;
use std::process::Output;

use common::card::CardRig;
use common::mqtt::Broker;
use common::{free_port, ok, pki, stderr};
use iotsafe_dane::provider::uri::keyref_pem;

fn mosquitto_pub(rig: &CardRig, port: u16, ca: &Path, cert: &Path, key: &Path) -> Output {
    mosquitto_pub_with(rig, &[], port, ca, cert, key)
}

fn mosquitto_pub_with(
    rig: &CardRig,
    extra: &[&str],
    port: u16,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Output {
    rig.command("mosquitto_pub")
        .args(extra)
        .env("OPENSSL_CONF", common::example_openssl_conf())
        .env("OPENSSL_MODULES", common::built_library_dir())
        .args([
            "-h",
            "localhost",
            "-p",
            &port.to_string(),
            "-t",
            "sensors/7",
            "-m",
            "21.5",
            "-q",
            "1",
        ])
        .arg("--cafile")
        .arg(ca)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .output()
        .expect("mosquitto_pub (package mosquitto-clients)")
}

#[test]
fn mosquitto_pub_with_a_card_key_is_admitted_by_a_broker_requiring_client_certificates() {
    let rig = CardRig::start(&[]);
    let dir = rig.dir.path();
    let (cert, keyref) = (dir.join("dev.pem"), dir.join("dev.keyref.pem"));
    ok(rig.iotsafe(&["cert", "--out", cert.to_str().unwrap()]));
    ok(rig.iotsafe(&["keyref", "--out", keyref.to_str().unwrap()]));
    let broker_cert = pki::leaf(dir, "broker", "broker", &["localhost"], None);
    // The device's certificate is self-signed: the broker trusts it as its client CA.
    let broker = Broker::start_with(
        free_port(),
        &broker_cert.cert_path,
        &broker_cert.key_path,
        Some(&cert),
    );

    let before = rig.trace().len();
    let out = mosquitto_pub(&rig, broker.port, &broker_cert.cert_path, &cert, &keyref);
    assert!(
        out.status.success(),
        "mosquitto_pub failed: {}\nbroker: {}",
        stderr(&out),
        broker.log()
    );
    assert!(
        broker.log().contains("u'iotsafe-sim device'"),
        "the broker saw the card's certificate (CN as user name): {}",
        broker.log()
    );
    let signing = rig.trace()[before..]
        .iter()
        .filter(|l| matches!(l.get(2..4), Some("2A" | "2B")))
        .count();
    assert_eq!(signing, 2, "one handshake signature, two APDUs");

    // A key that is not the certificate's is refused before anything reaches the broker.
    let stranger = pki::leaf(dir, "stranger", "stranger", &[], None);
    let out = mosquitto_pub(
        &rig,
        broker.port,
        &broker_cert.cert_path,
        &cert,
        &stranger.key_path,
    );
    assert!(
        !out.status.success(),
        "a key that does not match the certificate must fail"
    );
}

/// A card failure while loading the key names its reason in the broker's log (a broker whose
/// own key is on the card) and in `mosquitto_pub -d`: a missing key, then no card.
#[test]
fn card_failures_reach_the_broker_log_and_mosquitto_pub() {
    let mut rig = CardRig::start(&[]);
    let dir = rig.dir.path().to_path_buf();
    let (cert, keyref) = (dir.join("dev.pem"), dir.join("dev.keyref.pem"));
    ok(rig.iotsafe(&["cert", "--out", cert.to_str().unwrap()]));
    ok(rig.iotsafe(&["keyref", "--out", keyref.to_str().unwrap()]));
    let absent = dir.join("absent.keyref.pem");
    std::fs::write(&absent, keyref_pem("iotsafe:key-id=07")).unwrap();
    let conf = common::example_openssl_conf();
    let modules = common::built_library_dir();
    let env = [
        ("OPENSSL_CONF", conf.as_os_str()),
        ("OPENSSL_MODULES", modules.as_os_str()),
    ];
    let broker_cert = pki::leaf(&dir, "broker", "broker", &["localhost"], None);
    let broker = Broker::start(free_port(), &broker_cert.cert_path, &broker_cert.key_path);
    // mosquitto prints each error's reason string, without its detail.
    let reason = "object not found on the IoT SAFE applet";
    let log = Broker::refuses_to_start(&cert, &absent, &env);
    assert!(log.contains(reason), "broker log: {log}");
    let printed = publish(&rig, &broker, &broker_cert.cert_path, &cert, &absent);
    assert!(printed.contains(reason), "mosquitto_pub -d: {printed}");

    rig.stop_sim();
    let reason = "cannot reach the IoT SAFE applet";
    let log = Broker::refuses_to_start(&cert, &keyref, &env);
    assert!(log.contains(reason), "broker log: {log}");
    let printed = publish(&rig, &broker, &broker_cert.cert_path, &cert, &keyref);
    assert!(printed.contains(reason), "mosquitto_pub -d: {printed}");
}

/// `mosquitto_pub -d` that must fail: what it printed.
fn publish(rig: &CardRig, broker: &Broker, ca: &Path, cert: &Path, key: &Path) -> String {
    let out = mosquitto_pub_with(rig, &["-d"], broker.port, ca, cert, key);
    assert!(!out.status.success(), "no key, no connection");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
}

/// Paho C takes the client certificate and key from one keyStore file: the certificate first,
/// the key reference after it (`iotsafe keyref --with-cert`).
#[test]
fn paho_client_with_a_combined_keystore_file_is_admitted() {
    let rig = CardRig::start(&[]);
    let dir = rig.dir.path();
    let keystore = dir.join("dev.keystore.pem");
    ok(rig.iotsafe(&["keyref", "--with-cert", "--out", keystore.to_str().unwrap()]));
    let paho = dir.join("paho_pub");
    let built = std::process::Command::new("cc")
        .arg("-o")
        .arg(&paho)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("c-examples/paho_pub.c"))
        .arg("-lpaho-mqtt3cs")
        .output()
        .expect("cc");
    assert!(
        built.status.success(),
        "cannot build paho_pub: {}",
        stderr(&built)
    );
    let broker_cert = pki::leaf(dir, "broker", "broker", &["localhost"], None);
    let device_cert = dir.join("dev.pem");
    ok(rig.iotsafe(&["cert", "--out", device_cert.to_str().unwrap()]));
    let broker = Broker::start_with(
        free_port(),
        &broker_cert.cert_path,
        &broker_cert.key_path,
        Some(&device_cert),
    );

    let out = rig
        .command(&paho)
        .env("OPENSSL_CONF", common::example_openssl_conf())
        .env("OPENSSL_MODULES", common::built_library_dir())
        .arg(format!("ssl://localhost:{}", broker.port))
        .arg(&broker_cert.cert_path)
        .arg(&keystore)
        .args(["sensors/7", "21.5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "paho_pub failed: {}\nbroker: {}",
        stderr(&out),
        broker.log()
    );
    assert!(
        broker.log().contains("u'iotsafe-sim device'"),
        "{}",
        broker.log()
    );
}
