//! The C examples of c-examples/dane, built with their Makefile against the library and run
//! against a real knotd, a real mosquitto broker and `openssl s_server` peers. The examples
//! resolve the broker's address through the system (getaddrinfo), so they run with a private
//! /etc/hosts in a mount namespace of their own (`unshare -m`, as root like the other rigs).

mod common;

use common::{dns, mqtt, pki, tls};

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};

const HOST: &str = "broker.example.test";

/// Builds both examples into `out` with `make -C c-examples/dane` against the built library.
fn build_examples(out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    make(root, &common::built_library_dir(), out);
}

fn make(root: &Path, lib: &Path, out: &Path) {
    let made = Command::new("make")
        .arg("-C")
        .arg(root.join("c-examples/dane"))
        .arg(format!("OUT={}", out.display()))
        .arg(format!("LIBDIR={}", lib.display()))
        .output()
        .expect("make");
    assert!(
        made.status.success(),
        "make -C c-examples/dane failed:\n{}{}",
        common::stdout(&made),
        common::stderr(&made)
    );
}

/// The DNS, the certificates and the built examples of one test.
struct Rig {
    dir: tempfile::TempDir,
    dns: dns::TestDns,
    /// The key the TLSA records designate.
    good: pki::Issued,
    /// Another key for the same names.
    other: pki::Issued,
    /// Ports with `_<port>._tcp.broker` TLSA records designating `good`.
    ports: Vec<u16>,
}

impl Rig {
    fn new(tlsa_ports: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        build_examples(d);
        let good = pki::leaf(d, "good", "broker", &[HOST], None);
        let other = pki::leaf(d, "other", "broker", &[HOST], None);
        let record =
            Tlsa::for_certificate(&good.cert, Usage::DaneEe, Selector::Spki, Matching::Sha256)
                .unwrap();
        let ports: Vec<u16> = (0..tlsa_ports).map(|_| common::free_port()).collect();
        let mut lines = vec!["broker 300 IN A 127.0.0.1".to_string()];
        for port in &ports {
            lines.push(format!("_{port}._tcp.broker 300 IN TLSA {record}"));
        }
        let extra: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| ("example.test.", l.as_str()))
            .collect();
        let dns = dns::TestDns::start(&extra);
        Rig {
            dir,
            dns,
            good,
            other,
            ports,
        }
    }

    /// Runs an example with the resolver and trust anchor in its environment and the broker's
    /// name resolvable by the system.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.dir.path().join(program);
        let mut cmd = common::with_hosts(self.dir.path(), &[(HOST, "127.0.0.1")], &exe);
        cmd.args(args)
            .env("IOTSAFE_DANE_RESOLVER", self.dns.addr().to_string())
            .env("IOTSAFE_DANE_TRUST_ANCHOR", self.dns.trust_anchor_file())
            .env_remove("IOTSAFE_DANE_POLICY")
            .stdin(Stdio::null());
        run_with_timeout(cmd, Duration::from_secs(30))
    }
}

fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run example (needs unshare from util-linux)");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{cmd:?} did not finish in {limit:?}: {}",
                common::stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `mosquitto_sub` waiting for one message on `topic` (TLS, certificate not checked: it is the
/// test's own observer, not the subject).
struct Subscriber {
    child: Child,
}

impl Subscriber {
    fn start(broker: &mqtt::Broker, cafile: &Path, topic: &str) -> Subscriber {
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .arg("--cafile")
            .arg(cafile)
            .args([
                "--insecure",
                "-i",
                "observer",
                "-t",
                topic,
                "-C",
                "1",
                "-W",
                "20",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub (Debian package mosquitto-clients) must be installed");
        common::wait_until(10, "the observer's subscription", || {
            broker.log().contains("Received SUBSCRIBE from observer")
        });
        Subscriber { child }
    }

    fn message(self) -> String {
        let out = self.child.wait_with_output().unwrap();
        common::stdout(&out).trim().to_string()
    }
}

#[test]
fn libmosquitto_example_publishes_to_the_broker_the_tlsa_record_names() {
    let rig = Rig::new(1);
    let port = rig.ports[0];
    let broker = mqtt::Broker::start(port, &rig.good.cert_path, &rig.good.key_path);
    let observer = Subscriber::start(&broker, &rig.good.cert_path, "sensors/7");

    let out = rig.run(
        "mqtt_dane_pub",
        &[HOST, &port.to_string(), "sensors/7", "21.5 C"],
    );
    assert!(
        out.status.success(),
        "the example must publish to the authenticated broker:\n{}\nbroker log:\n{}\nDNS:\n{}",
        common::stderr(&out),
        broker.log(),
        rig.dns.dig(&format!("_{port}._tcp.{HOST}"), "TLSA")
    );
    assert!(common::stdout(&out).contains("published to sensors/7"));
    assert_eq!(
        observer.message(),
        "21.5 C",
        "the subscriber got the message"
    );
    assert!(
        broker.log().contains("'sensors/7'"),
        "the broker logged the PUBLISH: {}",
        broker.log()
    );
}

#[test]
fn libmosquitto_example_refuses_a_broker_with_another_key() {
    let rig = Rig::new(1);
    let port = rig.ports[0];
    let broker = mqtt::Broker::start(port, &rig.other.cert_path, &rig.other.key_path);

    let out = rig.run(
        "mqtt_dane_pub",
        &[HOST, &port.to_string(), "sensors/7", "21.5 C"],
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "refused: {err}");
    assert!(
        err.contains("cannot connect")
            && err.to_lowercase().contains("no matching dane tlsa records"),
        "a clear reason: {err}"
    );
    assert!(err.contains("DANE NO_MATCH: "), "the reason code: {err}");
    assert!(!common::stdout(&out).contains("published"));
    assert!(
        !broker.log().contains("Received PUBLISH"),
        "nothing reached the broker: {}",
        broker.log()
    );
}

#[test]
fn libmosquitto_example_refuses_a_broker_without_tlsa_records() {
    let rig = Rig::new(0);
    let port = common::free_port();
    let _broker = mqtt::Broker::start(port, &rig.good.cert_path, &rig.good.key_path);

    let out = rig.run(
        "mqtt_dane_pub",
        &[HOST, &port.to_string(), "sensors/7", "21.5 C"],
    );
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "refused: {err}");
    assert!(
        err.contains("policy requires DANE"),
        "the reason names the missing records: {err}"
    );
    assert!(err.contains("DANE NO_RECORDS: "), "the reason code: {err}");
}

/// `openssl s_server` with `cert`, and a TLSA record for its port designating the rig's good
/// key (the port is chosen by TlsServer, so the record is added afterwards).
fn server_with_records(rig: &Rig, cert: &pki::Issued) -> tls::TlsServer {
    let server = tls::TlsServer::start(&cert.cert_path, &cert.key_path, None);
    let record = Tlsa::for_certificate(
        &rig.good.cert,
        Usage::DaneEe,
        Selector::Spki,
        Matching::Sha256,
    )
    .unwrap();
    rig.dns.add_record(
        "example.test.",
        &format!("_{}._tcp.broker 300 IN TLSA {record}", server.port),
    );
    server
}

#[test]
fn openssl_example_authenticates_the_server_by_tlsa() {
    let rig = Rig::new(0);
    let server = server_with_records(&rig, &rig.good);
    let out = rig.run("dane_client", &[HOST, &server.port.to_string()]);
    assert!(
        out.status.success(),
        "authenticated: {}",
        common::stderr(&out)
    );
    let stdout = common::stdout(&out);
    assert!(
        stdout.contains("authenticated by TLSA 3 1 1") && stdout.contains("at depth 0"),
        "{stdout}"
    );
}

#[test]
fn openssl_example_refuses_a_server_with_another_key() {
    let rig = Rig::new(0);
    let server = server_with_records(&rig, &rig.other);
    let out = rig.run("dane_client", &[HOST, &server.port.to_string()]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "refused: {err}");
    assert!(
        err.contains("not authenticated (NO_MATCH)")
            && err.to_lowercase().contains("no matching dane tlsa records"),
        "{err}"
    );
    assert!(!common::stdout(&out).contains("authenticated by"));
}

#[test]
fn openssl_example_refuses_before_the_handshake_without_records() {
    let rig = Rig::new(0);
    let server = tls::TlsServer::start(&rig.good.cert_path, &rig.good.key_path, None);
    let out = rig.run("dane_client", &[HOST, &server.port.to_string()]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "refused: {err}");
    assert!(
        err.contains("refused before the handshake (NO_RECORDS)"),
        "{err}"
    );
}
