//! The broker plugin fails closed when MOSQ_EVT_TICK stops arriving: an admitted identity whose
//! record is gone, or whose verdict is older than its TTL + revalidate_seconds, is denied
//! publishing and subscribing although no tick ever collected the verdict or kicked the client.
//!
//! mosquitto 2.0.11 ticks as long as it runs, so these tests load the real built plugin into
//! tests/c/plugin_harness.c, a unit-test fake of the broker that never fires MOSQ_EVT_TICK,
//! against a real knotd serving the signed registry zone. The real-broker tests of the plugin
//! are in tests/broker_plugin.rs. The same harness also shows what a reload's re-checks answer
//! clients a real broker cannot readily produce: a websocket CONNECT inside the reload's
//! window, and an offline session after tens of thousands of others have come and gone.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::dns::TestDns;
use common::dnsproxy::DnsProxy;
use common::pki::{self, Issued};

const REGISTRY: &str = "iotregistry.test.";
const DEVICE: &str = "sensor1._device.iotregistry.test";
/// The device name, as plugin_opt_client_id device (the default) binds it.
const CLIENT_ID: &str = DEVICE;
/// mosquitto's MOSQ_ERR_SUCCESS and MOSQ_ERR_ACL_DENIED.
const ALLOWED: i32 = 0;
const DENIED: i32 = 12;
/// How far the harness's 20 ms polling (two ACL checks each) may lag behind an instant on a
/// busy machine.
const POLL_SLACK_S: f64 = 0.5;

/// tests/c/plugin_harness.c, built with its broker functions exported to the plugin it loads.
fn build_harness(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = dir.join("plugin_harness");
    let built = Command::new("gcc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-rdynamic"])
        .arg("-o")
        .arg(&out)
        .arg(root.join("tests/c/plugin_harness.c"))
        .args(["-ldl", "-lcrypto", "-lpthread"])
        .output()
        .expect("gcc");
    assert!(built.status.success(), "{}", common::stderr(&built));
    out
}

/// A device certificate from the registry CA, its DANE-EE record in the signed zone.
struct Rig {
    dir: tempfile::TempDir,
    ca: Issued,
    device: Issued,
    dns: TestDns,
}

impl Rig {
    fn new(ttl: u32) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::ca(dir.path(), "registry-ca", "Registry CA");
        let device = pki::leaf(dir.path(), "sensor1", "sensor1", &[DEVICE], Some(&ca));
        let dns = TestDns::start(&[(REGISTRY, &record(&device, ttl))]);
        Rig {
            dir,
            ca,
            device,
            dns,
        }
    }

    /// The plugin in the harness, asking the DNS server at `resolver`.
    fn harness(&self, resolver: &str, revalidate_s: u64) -> Harness {
        self.harness_with(resolver, revalidate_s, &[])
    }

    /// [`Rig::harness`] with more options (`KEY=VALUE`).
    fn harness_with(&self, resolver: &str, revalidate_s: u64, extra: &[&str]) -> Harness {
        let anchor = self.dns.trust_anchor_file();
        let mut options = vec![
            format!("resolver={resolver}"),
            format!("trust_anchor={}", anchor.display()),
            "allowed_domains=iotregistry.test".to_string(),
            format!("cafile={}", self.ca.cert_path.display()),
            format!("revalidate_seconds={revalidate_s}"),
            "lookup_timeout_ms=300".to_string(),
        ];
        options.extend(extra.iter().map(|o| o.to_string()));
        Harness::start(self.dir.path(), &self.device.cert_path, &options)
    }
}

fn record(device: &Issued, ttl: u32) -> String {
    format!(
        "sensor1._device {ttl} IN TLSA {}",
        pki::dane_ee_record(&device.cert)
    )
}

/// The harness process and what it printed besides its replies.
struct Harness {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    log: Vec<String>,
    kicked: Vec<String>,
}

/// An admission: when the BASIC_AUTH call began and ended (CLOCK_MONOTONIC seconds), and the
/// TTL the plugin logged for its answer.
struct Admission {
    began: f64,
    ended: f64,
    ttl: f64,
}

/// The result of the harness's `watch`: the last instant both a publish and a subscribe were
/// allowed, the first one either was denied, the verdicts of the last check, and whether a
/// check was allowed again after a denial.
#[derive(Debug)]
struct Watch {
    allowed_until: f64,
    denied_from: Option<f64>,
    publish: i32,
    subscribe: i32,
    allowed_again: bool,
}

impl Harness {
    fn start(dir: &Path, cert: &Path, options: &[String]) -> Harness {
        let mut child = Command::new(build_harness(dir))
            .arg(common::built_mosquitto_plugin())
            .arg(cert)
            .arg(CLIENT_ID)
            .args(options)
            // The plugin finds libiotsafe_dane.so.0 as an installed one would, by the loader.
            .env("LD_LIBRARY_PATH", common::built_library_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("plugin harness");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut h = Harness {
            child,
            stdin,
            stdout,
            log: Vec::new(),
            kicked: Vec::new(),
        };
        let init = h.reply();
        assert_eq!(
            init,
            "init 0 tick_registered=1",
            "the plugin starts and relies on ticks; log:\n{}",
            h.log.join("\n")
        );
        h
    }

    /// The next reply line, keeping log and kick lines aside.
    fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).expect("harness output");
            assert!(n > 0, "the harness ended; log:\n{}", self.log.join("\n"));
            let line = line.trim_end().to_string();
            if let Some(text) = line.strip_prefix("log ") {
                self.log.push(text.to_string());
            } else if let Some(client) = line.strip_prefix("kick ") {
                self.kicked.push(client.to_string());
            } else {
                return line;
            }
        }
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("harness input");
        self.reply()
    }

    fn now(&mut self) -> f64 {
        let reply = self.ask("now");
        reply.strip_prefix("now ").unwrap().parse().unwrap()
    }

    /// The client connects and is admitted.
    fn admit(&mut self) -> Admission {
        let reply = self.ask("auth");
        let fields: Vec<&str> = reply.split(' ').collect();
        assert_eq!(
            fields[..2],
            ["auth", "0"],
            "admitted; log:\n{}",
            self.log.join("\n")
        );
        let admitted = self
            .log
            .iter()
            .find(|l| l.contains(&format!("admitted client {CLIENT_ID} ")))
            .expect("the admission's log line");
        let ttl = admitted
            .split("answer valid ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a TTL in {admitted}"));
        Admission {
            began: fields[2].parse().unwrap(),
            ended: fields[3].parse().unwrap(),
            ttl,
        }
    }

    /// ACL checks every 20 ms for at most `seconds`, until one is denied.
    fn watch(&mut self, seconds: f64) -> Watch {
        let reply = self.ask(&format!("watch {seconds}"));
        let field = |key: &str| {
            reply
                .split(' ')
                .find_map(|f| f.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{key} in {reply}"))
                .to_string()
        };
        let denied_from = field("denied_from");
        Watch {
            allowed_until: field("allowed_until").parse().unwrap(),
            denied_from: (denied_from != "none").then(|| denied_from.parse().unwrap()),
            publish: field("publish").parse().unwrap(),
            subscribe: field("subscribe").parse().unwrap(),
            allowed_again: field("allowed_again") == "1",
        }
    }

    /// Sets up the second client and has the plugin check it at CONNECT (or, after
    /// `reload`, at the reload): the callback's result.
    fn auth_other(&mut self, id: &str, username: &str, protocol: &str, cert: &str) -> i32 {
        assert_eq!(
            self.ask(&format!("other {id} {username} {protocol} {cert}")),
            "other ok"
        );
        let reply = self.ask("auth-other");
        reply
            .strip_prefix("auth-other ")
            .and_then(|rc| rc.parse().ok())
            .unwrap_or_else(|| panic!("auth-other RC: {reply}"))
    }

    fn command(&mut self, command: &str, expected: &str) {
        let reply = self.ask(command);
        assert_eq!(reply, expected, "log:\n{}", self.log.join("\n"));
    }

    /// No tick ran, so no client was kicked, whatever the verdicts.
    fn assert_no_kick(&mut self) {
        assert_eq!(self.ask("kicks"), "kicks 0");
        assert!(self.kicked.is_empty(), "{:?}", self.kicked);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Denied both ways, for good.
fn assert_denied(watch: &Watch) {
    assert_eq!(
        (watch.publish, watch.subscribe),
        (DENIED, DENIED),
        "{watch:?}"
    );
    assert!(!watch.allowed_again, "{watch:?}");
}

/// (a) The device's record is removed: the worker's re-validation finds no record, and from
/// then on the identity's publishes and subscribes are denied, well before its TTL +
/// revalidate_seconds, with no tick to collect the verdict and no kick.
#[test]
fn a_removed_record_denies_publish_and_subscribe_without_a_tick() {
    const TTL: u32 = 1;
    const REVALIDATE_S: u64 = 6;
    let rig = Rig::new(TTL);
    let mut harness = rig.harness(&rig.dns.addr().to_string(), REVALIDATE_S);
    harness.admit();

    rig.dns.set_records(REGISTRY, &[]);
    let removed = harness.now();
    let watch = harness.watch((u64::from(TTL) + REVALIDATE_S + 2) as f64);
    let denied = watch
        .denied_from
        .unwrap_or_else(|| panic!("still allowed after the record was removed: {watch:?}"));
    println!(
        "denied {:.2} s after the record's removal",
        denied - removed
    );
    assert_denied(&watch);
    // The cached answer runs out within TTL, the worker looks again within a second of that:
    // a denial by the deadline alone would come REVALIDATE_S later.
    assert!(
        denied - removed <= f64::from(TTL) + 1.0 + 1.5,
        "denied {:.2} s after the removal, not by the re-validation's verdict: {watch:?}",
        denied - removed
    );
    harness.assert_no_kick();
}

/// (b) The DNS is gone: a failed re-validation is no verdict, so the identity stays allowed
/// until its answer's TTL + revalidate_seconds have passed, and is denied from then on, with
/// no tick and no kick.
#[test]
fn without_dns_or_ticks_an_admission_counts_until_ttl_plus_revalidate_seconds() {
    const TTL: u32 = 2;
    const REVALIDATE_S: u64 = 2;
    let rig = Rig::new(TTL);
    let proxy = DnsProxy::start(rig.dns.addr());
    let mut harness = rig.harness(&proxy.addr().to_string(), REVALIDATE_S);
    let admission = harness.admit();
    drop(proxy); // the resolver's server is gone

    let grace = admission.ttl + REVALIDATE_S as f64;
    let watch = harness.watch(grace + 4.0);
    let denied = watch.denied_from.unwrap_or_else(|| {
        panic!(
            "still allowed {:.1} s after the admission: {watch:?}",
            grace + 4.0
        )
    });
    println!(
        "allowed until {:.2} s, denied from {:.2} s after the admission (TTL {} s + {REVALIDATE_S} s)",
        watch.allowed_until - admission.began,
        denied - admission.began,
        admission.ttl
    );
    assert_denied(&watch);
    assert!(
        watch.allowed_until >= admission.began + grace - POLL_SLACK_S,
        "allowed only {:.2} s of the {grace} s: {watch:?}",
        watch.allowed_until - admission.began
    );
    // A re-validation from the cache just before the answer ran out may count its last
    // second again.
    assert!(
        denied <= admission.ended + grace + 1.0 + POLL_SLACK_S,
        "denied only {:.2} s after the admission (grace {grace} s): {watch:?}",
        denied - admission.began
    );
    harness.assert_no_kick();
}

/// (c) The control: with the record in place the worker keeps re-validating, and the identity
/// stays allowed well past its TTL + revalidate_seconds without a tick; the tests above do not
/// pass by denying everything.
#[test]
fn with_the_record_in_place_an_admission_stays_allowed_without_a_tick() {
    const TTL: u32 = 1;
    const REVALIDATE_S: u64 = 1;
    let rig = Rig::new(TTL);
    let mut harness = rig.harness(&rig.dns.addr().to_string(), REVALIDATE_S);
    let admission = harness.admit();

    let past = f64::from(TTL) + REVALIDATE_S as f64 + 3.0;
    let watch = harness.watch(past);
    assert_eq!(watch.denied_from, None, "{watch:?}");
    assert_eq!((watch.publish, watch.subscribe), (ALLOWED, ALLOWED));
    assert!(
        watch.allowed_until >= admission.ended + past - POLL_SLACK_S,
        "{watch:?}"
    );
    harness.assert_no_kick();
}

/// mosquitto's MOSQ_ERR_AUTH and MOSQ_ERR_PLUGIN_DEFER.
const AUTH: i32 = 11;
const DEFER: i32 = 17;

/// At a reload mosquitto 2.0.11 re-checks every client, then serves its websocket listeners
/// before the tick that ends the reload's window: a websocket CONNECT without a certificate
/// arriving then is answered as at CONNECT (refused, or left to the other plugins with
/// defer_without_certificate), not as an offline session. An offline session (a client not
/// connected) is accepted; after the tick a CONNECT is a CONNECT again.
#[test]
fn at_a_reload_a_websocket_connect_without_a_certificate_is_answered_as_at_connect() {
    let rig = Rig::new(300);
    for (defer, expected) in [("false", AUTH), ("true", DEFER)] {
        let option = format!("defer_without_certificate={defer}");
        let mut harness = rig.harness_with(&rig.dns.addr().to_string(), 60, &[&option]);
        harness.command("reload", &format!("reload {DEFER}"));
        assert_eq!(
            harness.auth_other("intruder", DEVICE, "ws", "none"),
            expected,
            "defer {defer}: a websocket CONNECT inside the reload's window; log:\n{}",
            harness.log.join("\n")
        );
        assert_eq!(
            harness.auth_other(DEVICE, DEVICE, "tcp", "none"),
            ALLOWED,
            "defer {defer}: a device's offline session at the reload"
        );
        harness.command("tick", "tick 0");
        assert_eq!(
            harness.auth_other(DEVICE, DEVICE, "tcp", "none"),
            expected,
            "defer {defer}: after the tick, a CONNECT without a certificate"
        );
    }
}

/// At a reload, a client without a certificate is judged by whether it is connected, not by
/// the shape of its session: a connected one is answered as at CONNECT (left to the other
/// plugins, so password_file can revoke it, however device-like its username and client id),
/// and once it has disconnected its offline session is accepted (a refusal would disconnect it
/// a second time).
#[test]
fn at_a_reload_a_connected_client_without_a_certificate_is_answered_as_at_connect() {
    let rig = Rig::new(300);
    let mut harness = rig.harness_with(
        &rig.dns.addr().to_string(),
        60,
        &["defer_without_certificate=true"],
    );
    assert_eq!(harness.auth_other(DEVICE, DEVICE, "tcp", "none"), DEFER);
    harness.command("reload", &format!("reload {DEFER}"));
    assert_eq!(
        harness.auth_other(DEVICE, DEVICE, "tcp", "none"),
        DEFER,
        "a connected client without a certificate, with a device's username, at the reload"
    );
    harness.command("tick", "tick 0");
    harness.command("disconnect-other", "disconnect-other 0");
    harness.command("reload", &format!("reload {DEFER}"));
    assert_eq!(
        harness.auth_other(DEVICE, DEVICE, "tcp", "none"),
        ALLOWED,
        "its offline session at the next reload"
    );
}

/// No table of sessions decides a reload's answer: under username keep (a username of the
/// client's own, no device shape), a device's offline session is accepted at a reload however
/// many other sessions came and went after it, and so is every other offline session.
#[test]
fn under_username_keep_an_offline_session_is_accepted_however_many_came_and_went() {
    const CHURNED: usize = 65536;
    let rig = Rig::new(300);
    let mut harness = rig.harness_with(
        &rig.dns.addr().to_string(),
        60,
        &[
            "username=keep",
            "defer_without_certificate=true",
            "client_id=any",
        ],
    );
    assert_eq!(
        harness.auth_other("victim", "own-name", "tcp", "cert"),
        ALLOWED
    );
    harness.command("disconnect-other", "disconnect-other 0");
    harness.command(
        &format!("churn {CHURNED}"),
        &format!("churn admitted={CHURNED}"),
    );

    harness.command("reload", &format!("reload {DEFER}"));
    assert_eq!(
        harness.auth_other("victim", "own-name", "tcp", "none"),
        ALLOWED,
        "the first offline session after {CHURNED} others; log tail:\n{}",
        harness.log[harness.log.len().saturating_sub(5)..].join("\n")
    );
    assert_eq!(
        harness.auth_other("churn/1", "churn", "tcp", "none"),
        ALLOWED,
        "an offline session of the churn"
    );
}
