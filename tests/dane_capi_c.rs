//! The C API called from C: tests/c/capi_peer.c, compiled here against the checked-in header
//! and the built library, makes its SSL_CTX and SSL objects with OpenSSL's C API (`SSL_new`),
//! as mosquitto and a preload shim do, and runs both ends of mutual DANE over a socketpair
//! against a real knotd. Together the steps below call every function of the header.

mod common;

use common::{dns, pki, unbound};

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};

const NAME: &str = "sensor7._device.iotregistry.test";
/// A device whose record designates its CA (DANE-TA), not its own key.
const TA_NAME: &str = "sensor8._device.iotregistry.test";

/// Builds the C peer against include/iotsafe_dane.h and the built libiotsafe_dane.so.
fn build_peer(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = common::built_library_dir();
    let exe = dir.join("capi_peer");
    let out = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-I"])
        .arg(root.join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(root.join("tests/c/capi_peer.c"))
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-liotsafe_dane", "-lssl", "-lcrypto", "-lpthread"])
        .output()
        .expect("a C compiler (cc)");
    assert!(
        out.status.success(),
        "cannot build capi_peer.c:\n{}",
        common::stderr(&out)
    );
    exe
}

/// Knotd with the device's record (TTL `device_ttl`), a DANE-TA record for `TA_NAME` and the
/// server's record at port 8883 (and servers whose records refuse it: `other.example.test` with
/// a record for another key, `notlsa.example.test` with none, `broker.bogus.test` and
/// `broker.insecure.test`), the certificates (`dev`, `stranger`, `srv`, and `tadev` with
/// its CA after it in the file), and the built C peer.
struct Rig {
    dir: tempfile::TempDir,
    dns: dns::TestDns,
    exe: PathBuf,
}

impl Rig {
    fn new(device_ttl: u32) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let exe = build_peer(d);
        let device = pki::leaf(d, "dev", "dev", &[NAME], None);
        let stranger = pki::leaf(d, "stranger", "x", &[], None);
        let server = pki::leaf(d, "srv", "broker", &["broker.example.test"], None);
        let ca = pki::ca(d, "ca", "Registry CA");
        let ta_device = pki::leaf(d, "tadev", "dev8", &[TA_NAME], Some(&ca));
        pki::bundle(d, "tadev.crt", &[&ta_device.cert, &ca.cert]);
        let record = |cert| pki::dane_ee_record(cert).to_string();
        let ta_line = format!(
            "sensor8._device 300 IN TLSA {}",
            Tlsa::for_certificate(&ca.cert, Usage::DaneTa, Selector::Spki, Matching::Sha256)
                .unwrap()
        );
        let device_line = format!(
            "sensor7._device {device_ttl} IN TLSA {}",
            record(&device.cert)
        );
        let server_line = format!("_8883._tcp.broker 300 IN TLSA {}", record(&server.cert));
        let other_line = format!("_8883._tcp.other 300 IN TLSA {}", record(&stranger.cert));
        let dns = dns::TestDns::start(&[
            ("iotregistry.test.", device_line.as_str()),
            ("iotregistry.test.", ta_line.as_str()),
            ("example.test.", "broker 300 IN A 127.0.0.1"),
            ("example.test.", server_line.as_str()),
            ("example.test.", "other 300 IN A 127.0.0.1"),
            ("example.test.", other_line.as_str()),
            ("example.test.", "notlsa 300 IN A 127.0.0.1"),
            ("bogus.test.", "broker 300 IN A 127.0.0.1"),
            ("insecure.test.", "broker 300 IN A 127.0.0.1"),
        ]);
        Rig { dir, dns, exe }
    }

    /// The server's record at port 8883 now designates a new key (`base`), not the server's.
    fn give_the_server_record_to_another_key(&self, base: &str) {
        let other = pki::leaf(self.dir.path(), base, "x", &[], None);
        let record = format!(
            "_8883._tcp.broker 300 IN TLSA {}",
            pki::dane_ee_record(&other.cert)
        );
        self.dns
            .set_records("example.test.", &["broker 300 IN A 127.0.0.1", &record]);
    }

    /// A certificate's base path (`<base>.crt`, `<base>.key`).
    fn cert(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn start(&self, missing: &str, steps: &[String]) -> Peer {
        self.start_with_env(missing, steps, &[])
    }

    fn start_with_env(&self, missing: &str, steps: &[String], env: &[(&str, String)]) -> Peer {
        let mut child = Command::new(&self.exe)
            .arg(format!("{}.crt", self.cert("srv")))
            .arg(format!("{}.key", self.cert("srv")))
            .arg(missing)
            .arg(NAME)
            .args(steps)
            .env("IOTSAFE_DANE_RESOLVER", self.dns.addr().to_string())
            .env("IOTSAFE_DANE_TRUST_ANCHOR", self.dns.trust_anchor_file())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run capi_peer");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stdin = child.stdin.take();
        Peer {
            child,
            stdout,
            stdin,
            seen: Vec::new(),
        }
    }

    /// Runs all `steps` and returns their lines; the program must exit normally.
    fn run(&self, missing: &str, steps: &[String]) -> Vec<Line> {
        let mut peer = self.start(missing, steps);
        let lines = (0..steps.len()).map(|_| peer.line()).collect();
        peer.finish();
        lines
    }
}

/// A running C peer, read line by line.
struct Peer {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stdin: Option<ChildStdin>,
    seen: Vec<String>,
}

impl Peer {
    /// The next line; a crashed or exited program fails the test with what it printed.
    fn line(&mut self) -> Line {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).expect("read capi_peer");
        if n == 0 {
            let status = self.child.wait().unwrap();
            let mut err = String::new();
            std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err).ok();
            panic!(
                "capi_peer ended ({status}) after:\n{}\nstderr:\n{err}",
                self.seen.join("")
            );
        }
        self.seen.push(line.clone());
        Line(line.trim_end().to_string())
    }

    /// Lets a `wait` step go on.
    fn proceed(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "capi_peer must exit normally, not {status}, after:\n{}",
            self.seen.join("")
        );
    }
}

/// One output line of the C peer: `<step> key=value ...`.
#[derive(Debug)]
struct Line(String);

impl Line {
    /// A space-free field.
    fn get(&self, key: &str) -> &str {
        let start = self
            .0
            .find(&format!(" {key}="))
            .unwrap_or_else(|| panic!("no {key} in {}", self.0))
            + key.len()
            + 2;
        self.0[start..].split(' ').next().unwrap()
    }

    fn server_error(&self) -> &str {
        let start = self.0.find(" server_error=").unwrap() + " server_error=".len();
        let end = self.0.find(" client_error=").unwrap();
        &self.0[start..end]
    }

    fn accepted(&self) -> bool {
        self.get("server") == "ok" && self.get("client") == "ok"
    }
}

fn step(kind: &str, value: &str) -> String {
    format!("{kind}={value}")
}

#[test]
fn c_server_survives_client_certificates_in_every_missing_mode() {
    let rig = Rig::new(300);
    let (dev, stranger) = (rig.cert("dev"), rig.cert("stranger"));
    for missing in ["refuse", "from-cert", "optional"] {
        let lines = rig.run(
            missing,
            &[
                step("full", &dev),
                step("full", &stranger),
                step("anon", &dev),
            ],
        );
        let [device, impostor, anonymous] = &lines[..] else {
            unreachable!()
        };
        assert!(device.accepted(), "{missing}: {device:?}");
        assert_eq!(device.get("identity"), NAME, "{missing}: {device:?}");
        assert_eq!(
            device.get("later"),
            NAME,
            "{missing}: still there after a KeyUpdate and more data: {device:?}"
        );
        assert!(!impostor.accepted(), "{missing}: {impostor:?}");
        assert!(
            impostor.server_error().contains("does not match"),
            "{missing}: the reason is kept: {impostor:?}"
        );
        match missing {
            "refuse" => assert!(!anonymous.accepted(), "{anonymous:?}"),
            "from-cert" => assert_eq!(anonymous.get("identity"), NAME, "{anonymous:?}"),
            _ => {
                assert!(anonymous.accepted(), "{anonymous:?}");
                assert_eq!(anonymous.get("identity"), "-", "{anonymous:?}");
            }
        }
    }
}

#[test]
fn c_server_reports_x509_v_ok_for_a_dane_authenticated_client() {
    let rig = Rig::new(300);
    for missing in ["refuse", "from-cert"] {
        let lines = rig.run(missing, &[step("full", &rig.cert("dev"))]);
        assert!(lines[0].accepted(), "{:?}", lines[0]);
        assert_eq!(
            lines[0].get("verify"),
            "0",
            "{missing}: SSL_get_verify_result is X509_V_OK: {:?}",
            lines[0]
        );
    }
    // A chain with errors above the leaf (its CA is trusted by the record, not by OpenSSL).
    let lines = rig.run("from-cert", &[step("anon", &rig.cert("tadev"))]);
    assert!(lines[0].accepted(), "{:?}", lines[0]);
    assert_eq!(lines[0].get("identity"), TA_NAME, "{:?}", lines[0]);
    assert_eq!(lines[0].get("verify"), "0", "DANE-TA: {:?}", lines[0]);
    // Without an identity (optional), OpenSSL's own verdict stands: self-signed (18).
    let lines = rig.run("optional", &[step("anon", &rig.cert("stranger"))]);
    assert!(lines[0].accepted(), "{:?}", lines[0]);
    assert_eq!(lines[0].get("verify"), "18", "{:?}", lines[0]);
}

#[test]
fn allowed_domains_set_after_the_context_apply_to_its_handshakes() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let lines = rig.run(
        "refuse",
        &[
            step("full", &dev),
            step("domains", "elsewhere.test"),
            "queries".into(),
            step("full", &dev),
            "queries".into(),
            step("domains", "iotregistry.test"),
            step("full", &dev),
        ],
    );
    assert!(lines[0].accepted(), "{:?}", lines[0]);
    assert_eq!(lines[1].0, "domains rc=1");
    let refused = &lines[3];
    assert!(
        !refused.accepted(),
        "a later restriction applies: {refused:?}"
    );
    assert!(
        refused.server_error().contains("allowed domains"),
        "{refused:?}"
    );
    assert_eq!(
        lines[2].0.replace("queries=", ""),
        lines[4].0.replace("queries=", ""),
        "no DNS query for a name outside the allowed domains"
    );
    assert!(lines[6].accepted(), "{:?}", lines[6]);
}

#[test]
fn tls13_resumption_stops_when_the_device_record_is_removed() {
    // A short TTL, so that the resolver's cached answer expires soon after the removal.
    const TTL: u64 = 2;
    let rig = Rig::new(TTL as u32);
    let dev = rig.cert("dev");
    let mut peer = rig.start(
        "refuse",
        &[
            step("full", &dev),
            step("resume", &dev),
            "wait".into(),
            step("resume", &dev),
            step("full", &dev),
        ],
    );
    let first = peer.line();
    assert!(first.accepted(), "{first:?}");
    assert_eq!(first.get("reused"), "0");
    let resumed = peer.line();
    assert!(resumed.accepted(), "{resumed:?}");
    assert_eq!(resumed.get("reused"), "1", "resumption works: {resumed:?}");
    assert_eq!(resumed.get("identity"), NAME, "{resumed:?}");
    assert_eq!(resumed.get("verify"), "0", "{resumed:?}");

    assert_eq!(peer.line().0, "waiting");
    rig.dns.set_records("iotregistry.test.", &[]);
    assert!(
        !rig.dns.dig(NAME, "TLSA").contains("\tTLSA\t"),
        "the record is gone"
    );
    // The cached answer lives for the record's TTL: that much revocation delay is by design.
    std::thread::sleep(Duration::from_secs(TTL) + Duration::from_millis(300));
    peer.proceed();

    let after = peer.line();
    assert!(
        !after.accepted(),
        "a saved ticket must not outlive the record: {after:?}"
    );
    assert_eq!(after.get("reused"), "0", "{after:?}");
    let full = peer.line();
    assert!(!full.accepted(), "{full:?}");
    peer.finish();
}

/// Client side: a session saved while the server's record designated its key is not resumed
/// once the record names another key; the handshake is a full one and is refused.
#[test]
fn a_client_does_not_resume_a_session_its_servers_records_no_longer_vouch_for() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let mut peer = rig.start(
        "refuse",
        &[
            step("full", &dev),
            step("resume", &dev),
            "wait".into(),
            "flush".into(),
            step("resume", &dev),
        ],
    );
    let first = peer.line();
    assert!(first.accepted(), "{first:?}");
    let resumed = peer.line();
    assert_eq!(resumed.get("reused"), "1", "resumption works: {resumed:?}");
    assert_eq!(resumed.get("client"), "ok", "{resumed:?}");

    assert_eq!(peer.line().0, "waiting");
    rig.give_the_server_record_to_another_key("stranger2");
    peer.proceed();
    assert!(peer.line().0.starts_with("flush"));
    let after = peer.line();
    assert_eq!(after.get("reused"), "0", "{after:?}");
    assert_eq!(after.get("client"), "failed", "{after:?}");
    assert_eq!(after.get("client_reason"), "NO_MATCH", "{after:?}");
    peer.finish();
}

/// The same with iotsafe_dane_ssl_enable on one SSL, the session offered before it: resumed
/// while the record designates the server's key, dropped (a full handshake, refused) once it
/// names another key.
#[test]
fn a_per_ssl_client_resumes_only_while_the_record_vouches_for_the_session() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let mut peer = rig.start(
        "refuse",
        &[
            step("perssl", &dev),
            step("perssl-resume", &dev),
            "wait".into(),
            "flush".into(),
            step("perssl-resume", &dev),
        ],
    );
    assert!(peer.line().accepted());
    let resumed = peer.line();
    assert_eq!(resumed.get("reused"), "1", "resumption works: {resumed:?}");
    assert_eq!(resumed.get("client_reason"), "OK", "{resumed:?}");

    assert_eq!(peer.line().0, "waiting");
    rig.give_the_server_record_to_another_key("stranger3");
    peer.proceed();
    assert!(peer.line().0.starts_with("flush"));
    let after = peer.line();
    assert_eq!(after.get("reused"), "0", "{after:?}");
    assert_eq!(after.get("client"), "failed", "{after:?}");
    assert_eq!(after.get("client_reason"), "NO_MATCH", "{after:?}");
    peer.finish();
}

#[test]
fn every_other_entry_point_from_c() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let ca = rig.dir.path().join("stranger.crt");
    let lines = rig.run(
        "refuse",
        &[
            step("perssl", &dev),
            step("verify", &format!("{dev}.crt")),
            step("verify", &format!("{dev}.crt:{}", ca.display())),
            step("verify", &format!("{}.crt", rig.cert("stranger"))),
            step("ca-file", &ca.display().to_string()),
            step("full", &dev),
            "queries".into(),
            "bad-new".into(),
            "again".into(),
            step("full", &dev),
        ],
    );
    assert!(lines[0].accepted(), "per-SSL server auth: {:?}", lines[0]);
    assert_eq!(lines[0].get("identity"), NAME);
    assert_eq!(lines[1].0, "verify rc=1 reason=OK error=");
    assert_eq!(lines[2].0, "verify rc=1 reason=OK error=");
    assert!(
        lines[3].0.starts_with("verify rc=0 reason=NO_MATCH error=")
            && lines[3].0.contains("does not match"),
        "{:?}",
        lines[3]
    );
    assert_eq!(lines[4].0, "ca-file rc=1");
    assert!(lines[5].accepted(), "{:?}", lines[5]);
    let queries: u64 = lines[6].0.trim_start_matches("queries=").parse().unwrap();
    assert!(queries > 0, "{:?}", lines[6]);
    assert!(
        lines[7].0.starts_with("bad-new null=1 error=") && lines[7].0.contains("not ADDR:PORT"),
        "{:?}",
        lines[7]
    );
    // Configuring a context twice is an error, and leaves the first configuration working.
    assert!(
        lines[8].0.starts_with("again server=-1 client=-1 error=")
            && lines[8].0.contains("already"),
        "{:?}",
        lines[8]
    );
    assert!(lines[9].accepted(), "{:?}", lines[9]);
    assert_eq!(lines[9].get("identity"), NAME);
}

/// A broker plugin and the preload shim in one process each make their handle with
/// iotsafe_dane_shared: the second finds the first's answers in the one cache (no query of its
/// own), while a handle from iotsafe_dane_new looks up again.
#[test]
fn shared_handles_share_one_resolver_and_cache() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let lines = rig.run("refuse", &[step("shared", &format!("{dev}.crt"))]);
    let count = |key: &str| -> i64 { lines[0].get(key).parse().unwrap() };
    assert!(count("first") > 0, "{:?}", lines[0]);
    assert_eq!(count("shim_before"), count("first"), "{:?}", lines[0]);
    assert_eq!(count("second"), count("first"), "{:?}", lines[0]);
    assert!(count("separate") > 0, "{:?}", lines[0]);
}

/// iotsafe_dane_shared_ex: default options share the iotsafe_dane_shared resolver, another
/// look-up time-out gets its own; bad arguments give NULL with a reason.
#[test]
fn shared_handles_with_options_share_only_with_the_same_options() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let lines = rig.run("refuse", &[step("shared-ex", &format!("{dev}.crt"))]);
    let line = &lines[0];
    let count = |key: &str| -> i64 { line.get(key).parse().unwrap() };
    assert!(count("first") > 0, "{line:?}");
    assert_eq!(count("plain"), count("first"), "one cache: {line:?}");
    assert!(count("other_timeout") > 0, "{line:?}");
    for refused in ["bad_flag", "ad_with_anchor", "too_long", "ad_remote"] {
        assert_eq!(line.get(refused), "1", "{refused}: {line:?}");
    }
    assert!(line.0.contains("loopback"), "{line:?}");
}

/// IOTSAFE_DANE_TRUST_AD: a validating resolver's AD bit (unbound, trusting the test zones'
/// root) authenticates the device, with no trust anchor file in the process.
#[test]
fn a_handle_trusting_the_ad_bit_authenticates_through_unbound() {
    let rig = Rig::new(300);
    let unbound = unbound::Unbound::start(&rig.dns);
    let dev = rig.cert("dev");
    let mut peer = rig.start_with_env(
        "refuse",
        &[step("trust-ad", &format!("{dev}.crt"))],
        &[("IOTSAFE_DANE_AD_RESOLVER", unbound.addr().to_string())],
    );
    let line = peer.line();
    peer.finish();
    assert_eq!(line.get("rc"), "1", "{line:?}");
    assert_eq!(line.get("reason"), "OK", "{line:?}");
    assert!(line.get("queries").parse::<i64>().unwrap() > 0, "{line:?}");
}

/// The thread's last reason (for callers whose library frees the SSL first) is read once and
/// is NOT_CHECKED before anything was decided: an OK is never taken for a later connection.
#[test]
fn the_threads_last_reason_is_read_once() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let lines = rig.run(
        "refuse",
        &[
            "thread-reason".into(),
            step("verify", &format!("{dev}.crt")),
            "thread-reason".into(),
        ],
    );
    assert_eq!(
        lines[0].0, "thread-reason=NOT_CHECKED",
        "nothing decided yet"
    );
    assert_eq!(lines[1].0, "verify rc=1 reason=OK error=");
    assert_eq!(
        lines[2].0, "thread-reason=NOT_CHECKED",
        "read once, by the verify step"
    );
}

/// A trust anchor file replaced in place (a root key roll-over) is not served by the resolver
/// made from its old text: shared handles are keyed by the anchor's text, not its file name.
#[test]
fn a_replaced_trust_anchor_file_gets_a_resolver_of_its_own() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let lines = rig.run("refuse", &[step("anchor-roll", &format!("{dev}.crt"))]);
    let count = |key: &str| -> i64 { lines[0].get(key).parse().unwrap() };
    assert!(count("first") > 0, "{:?}", lines[0]);
    assert_eq!(count("after_before_use"), 0, "{:?}", lines[0]);
    assert!(count("second") > 0, "{:?}", lines[0]);
}

#[test]
fn clearing_the_cache_ends_resumption_at_once() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let mut peer = rig.start(
        "refuse",
        &[
            step("full", &dev),
            "wait".into(),
            step("resume", &dev),
            "flush".into(),
            step("resume", &dev),
        ],
    );
    assert!(peer.line().accepted());
    assert_eq!(peer.line().0, "waiting");
    rig.dns.set_records("iotregistry.test.", &[]);
    peer.proceed();
    // Within the record's TTL the cached answer still stands, by design.
    let cached = peer.line();
    assert!(cached.accepted(), "{cached:?}");
    assert_eq!(cached.get("reused"), "1", "{cached:?}");
    assert_eq!(peer.line().0, "flush rc=1");
    let after = peer.line();
    assert!(
        !after.accepted(),
        "revoked once the cache is cleared: {after:?}"
    );
    assert_eq!(after.get("reused"), "0", "{after:?}");
    assert!(
        after.server_error().contains("NXDOMAIN") || after.server_error().contains("NODATA"),
        "the reason names the missing record: {after:?}"
    );
    peer.finish();
}

#[test]
fn a_cleared_ssl_decides_its_next_client_anew() {
    let rig = Rig::new(300);
    let (dev, stranger) = (rig.cert("dev"), rig.cert("stranger"));
    // The same server SSL, SSL_clear between the handshakes.
    let lines = rig.run(
        "refuse",
        &[
            step("reuse", &dev),
            step("reuse", &stranger),
            step("reuse", &dev),
        ],
    );
    assert!(lines[0].accepted(), "{:?}", lines[0]);
    assert_eq!(lines[0].get("identity"), NAME);
    let impostor = &lines[1];
    assert!(
        !impostor.accepted(),
        "another certificate on the cleared SSL is not the earlier device: {impostor:?}"
    );
    assert_eq!(impostor.get("identity"), "-", "{impostor:?}");
    assert!(
        impostor.server_error().contains("does not match"),
        "its own verdict, not the earlier one: {impostor:?}"
    );
    assert!(lines[2].accepted(), "{:?}", lines[2]);
    assert_eq!(lines[2].get("identity"), NAME);

    // Identities optional: a client without a name after an authenticated one has none.
    let lines = rig.run(
        "optional",
        &[step("reuse", &dev), step("reuse-anon", &stranger)],
    );
    assert_eq!(lines[0].get("identity"), NAME, "{:?}", lines[0]);
    let anonymous = &lines[1];
    assert!(anonymous.accepted(), "{anonymous:?}");
    assert_eq!(anonymous.get("identity"), "-", "{anonymous:?}");
    assert_eq!(
        anonymous.get("verify"),
        "18",
        "OpenSSL's own verdict (self-signed), not the earlier X509_V_OK: {anonymous:?}"
    );
}

#[test]
fn a_renegotiated_certificate_is_decided_anew() {
    let rig = Rig::new(300);
    let (dev, stranger) = (rig.cert("dev"), rig.cert("stranger"));
    // TLS 1.2, identities from the certificate; the server allows client renegotiation, and
    // the device renegotiates with another certificate (no DANE identity in it).
    let lines = rig.run(
        "from-cert",
        &[
            step("reneg", &format!("{dev}+{stranger}")),
            step("reneg", &format!("{dev}+{dev}")),
        ],
    );
    let swapped = &lines[0];
    assert!(swapped.accepted(), "{swapped:?}");
    assert_eq!(swapped.get("identity"), NAME, "{swapped:?}");
    assert_eq!(
        swapped.get("after"),
        "-",
        "the renegotiation with another certificate is refused, not taken for {NAME}: \
         {swapped:?}"
    );
    assert!(
        swapped.server_error().contains("certificate verify failed"),
        "refused by the verification: {swapped:?}"
    );
    let same = &lines[1];
    assert_eq!(
        same.get("after"),
        NAME,
        "the same certificate renegotiates (verified again): {same:?}"
    );
}

/// Runs a `handshake` with the device's certificate after the application switched the
/// server's session cache back on (`server-cache`), removes the device's record and, after a
/// flush of our cache, resumes with `resumption`: the resumed handshake's line, which the
/// application's cache has let through, and the still-running peer.
fn resume_from_the_applications_cache(
    rig: &Rig,
    missing: &str,
    handshake: &str,
    resumption: &str,
) -> (Peer, Line) {
    let dev = rig.cert("dev");
    let mut peer = rig.start(
        missing,
        &[
            "server-cache".into(),
            step(handshake, &dev),
            "wait".into(),
            "flush".into(),
            step(resumption, &dev),
        ],
    );
    assert_eq!(peer.line().0, "server-cache");
    let first = peer.line();
    assert!(first.accepted(), "{first:?}");
    assert_eq!(first.get("identity"), NAME, "{first:?}");
    assert_eq!(peer.line().0, "waiting");
    rig.dns.set_records("iotregistry.test.", &[]);
    peer.proceed();
    assert_eq!(peer.line().0, "flush rc=1");
    let resumed = peer.line();
    assert!(resumed.accepted(), "{resumed:?}");
    (peer, resumed)
}

#[test]
fn a_session_resumed_past_our_check_carries_no_identity() {
    let rig = Rig::new(300);
    // The application switches the server's session cache back on after enabling: TLS 1.3
    // stateful tickets resume from that cache, without the ticket check.
    let (peer, resumed) = resume_from_the_applications_cache(&rig, "refuse", "full", "resume");
    assert_eq!(
        resumed.get("reused"),
        "1",
        "the application's cache resumed the session: {resumed:?}"
    );
    assert_eq!(
        resumed.get("identity"),
        "-",
        "a session resumed without the re-check has no identity: {resumed:?}"
    );
    assert_eq!(
        resumed.get("verify"),
        "50",
        "nor X509_V_OK (X509_V_ERR_APPLICATION_VERIFICATION): {resumed:?}"
    );
    peer.finish();
}

#[test]
fn a_tls12_session_resumed_by_id_past_our_check_carries_no_identity() {
    let rig = Rig::new(300);
    // TLS 1.2 (identities from the certificate), the server's session cache back on: the
    // client resumes by session id, which no ticket check sees.
    let (peer, resumed) =
        resume_from_the_applications_cache(&rig, "from-cert", "anon12", "resume12");
    assert_eq!(resumed.get("reused"), "1", "resumed by id: {resumed:?}");
    assert_eq!(resumed.get("identity"), "-", "{resumed:?}");
    assert_eq!(resumed.get("verify"), "50", "{resumed:?}");
    peer.finish();
}

#[test]
fn a_context_is_configured_once_even_from_two_threads() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let mut peer = rig.start(
        "refuse",
        &["again-other".into(), step("race", &dev), step("full", &dev)],
    );
    let again = peer.line();
    assert!(
        again.0.starts_with("again-other server=-1 error=") && again.0.contains("already"),
        "a second enable, with another code point, is refused: {again:?}"
    );
    assert_eq!(peer.line().0, "race-config failed=0");
    let raced = peer.line();
    assert!(raced.accepted(), "both configurations hold: {raced:?}");
    assert_eq!(raced.get("identity"), NAME);
    let full = peer.line();
    assert!(full.accepted(), "the first configuration stands: {full:?}");
    assert_eq!(full.get("identity"), NAME);
    peer.finish();
}

#[test]
fn the_applications_info_callback_is_kept_and_replacing_ours_fails_closed() {
    let rig = Rig::new(300);
    let dev = rig.cert("dev");
    let lines = rig.run(
        "refuse",
        &[
            step("full", &dev),
            step("reuse", &dev),
            "app-info".into(),
            "info-after".into(),
            step("full", &dev),
            step("reuse", &rig.cert("stranger")),
        ],
    );
    assert!(lines[0].accepted(), "{:?}", lines[0]);
    assert!(lines[1].accepted(), "{:?}", lines[1]);
    assert_eq!(
        lines[2].0, "app-info starts=2",
        "the callback set before enabling still sees every handshake"
    );
    let refused = &lines[4];
    assert!(
        !refused.accepted(),
        "without our handshake hook nothing is trusted: {refused:?}"
    );
    assert!(
        refused.server_error().contains("info callback"),
        "the reason says what happened: {refused:?}"
    );
    // The SSL reused after an authenticated handshake keeps that handshake's state, which
    // nothing cleared: it is not taken for another certificate.
    let stale = &lines[5];
    assert!(!stale.accepted(), "{stale:?}");
    assert_eq!(stale.get("identity"), "-", "{stale:?}");
}

/// Why each end refused, by `iotsafe_dane_last_reason` on its own `SSL`, read in C as a broker
/// plugin reads it: on the server's, why the device's identity failed; on the client's, why
/// the server's authentication failed (through the context, and per `SSL`).
#[test]
fn each_ssl_tells_the_reason_of_its_refusal() {
    let rig = Rig::new(300);
    let (dev, stranger) = (rig.cert("dev"), rig.cert("stranger"));
    let lines = rig.run(
        "refuse",
        &[
            step("full", &dev),
            step("full", &stranger),
            step("client-name", "sensor7._device.bogus.test"),
            step("full", &dev),
            step("client-name", "nobody._device.iotregistry.test"),
            step("full", &dev),
            step("client-name", NAME),
            step("domains", "elsewhere.test"),
            step("full", &dev),
            step("domains", ""),
            step("host", "other.example.test"),
            step("full", &dev),
            step("perssl", &dev),
            step("host", "broker.bogus.test"),
            step("full", &dev),
            step("host", "notlsa.example.test"),
            step("full", &dev),
            step("perssl", &dev),
            step("host", "broker.insecure.test"),
            step("full", &dev),
            step("host", "broker.example.test"),
            step("full", &dev),
            step("resume", &dev),
        ],
    );
    let reasons = |i: usize| {
        let line: &Line = &lines[i];
        (line.get("server_reason"), line.get("client_reason"))
    };
    assert!(lines[0].accepted(), "{:?}", lines[0]);
    assert_eq!(reasons(0), ("OK", "OK"));
    // The device: a record for another key; its server was authenticated all the same.
    assert!(!lines[1].accepted(), "{:?}", lines[1]);
    assert_eq!(reasons(1), ("NO_MATCH", "OK"), "{:?}", lines[1]);
    assert_eq!(reasons(3).0, "BOGUS", "{:?}", lines[3]);
    assert_eq!(reasons(5).0, "NO_RECORDS", "{:?}", lines[5]);
    assert_eq!(reasons(8).0, "NOT_ALLOWED", "{:?}", lines[8]);
    // The server: a record for another key, found by the context's callback and by OpenSSL's
    // own DANE on an SSL enabled by iotsafe_dane_ssl_enable.
    assert_eq!(reasons(11).1, "NO_MATCH", "{:?}", lines[11]);
    assert!(!lines[11].accepted(), "{:?}", lines[11]);
    assert_eq!(reasons(12).1, "NO_MATCH", "{:?}", lines[12]);
    assert_eq!(reasons(14).1, "BOGUS", "{:?}", lines[14]);
    assert_eq!(reasons(16).1, "NO_RECORDS", "{:?}", lines[16]);
    // Refused by iotsafe_dane_ssl_enable before any handshake.
    assert_eq!(reasons(17).1, "NO_RECORDS", "{:?}", lines[17]);
    assert!(
        lines[17].0.contains("client_error=") && lines[17].0.contains("requires DANE"),
        "{:?}",
        lines[17]
    );
    assert_eq!(reasons(19).1, "INSECURE", "{:?}", lines[19]);
    // A resumed session: no certificate in this handshake, the verdict of the one it came from.
    assert!(lines[21].accepted(), "{:?}", lines[21]);
    assert_eq!(lines[22].get("reused"), "1", "{:?}", lines[22]);
    assert_eq!(reasons(22), ("OK", "OK"), "{:?}", lines[22]);
}

/// What a broker needs from C: how long a verdict holds (the record's TTL, counting down in
/// the cache), and the device names a certificate carries, filtered by form.
#[test]
fn a_verdict_tells_its_ttl_and_a_certificate_its_identities() {
    let rig = Rig::new(120);
    let dev = rig.cert("dev");
    pki::leaf(
        rig.dir.path(),
        "multi",
        "cn-is-never-an-identity.example.test",
        &[
            "sensor9._device.iotregistry.test",
            "_mqtt-client.dev9.iotregistry.test",
            "dev9.iotregistry.test",
            "*.wildcard.test",
        ],
        None,
    );
    let multi = rig.cert("multi.crt");
    let lines = rig.run(
        "refuse",
        &[
            step("verify-ttl", &format!("{dev}.crt")),
            step("verify-ttl", &format!("{}.crt", rig.cert("stranger"))),
            step("identities", &format!("7:{multi}")),
            step("identities", &format!("2:{multi}")),
            step("identities", &format!("5:{multi}")),
            step("identities", &format!("0:{multi}")),
            step("verify-within", &format!("{}.crt", rig.cert("stranger"))),
            step("verify-within", &format!("{dev}.crt")),
        ],
    );
    let valid_for: u32 = lines[0].get("valid_for").parse().unwrap();
    assert_eq!(lines[0].get("rc"), "1", "{:?}", lines[0]);
    assert!(
        (100..=120).contains(&valid_for),
        "the record's TTL (120 s), less the time since it was fetched: {:?}",
        lines[0]
    );
    assert_eq!(lines[1].get("rc"), "0", "{:?}", lines[1]);
    assert_eq!(lines[1].get("reason"), "NO_MATCH", "{:?}", lines[1]);
    // The same verdicts under a caller's budget (iotsafe_dane_verify_client_within).
    assert_eq!(
        (lines[6].get("rc"), lines[6].get("reason")),
        ("0", "NO_MATCH"),
        "{:?}",
        lines[6]
    );
    assert_eq!(
        (lines[7].get("rc"), lines[7].get("reason")),
        ("1", "OK"),
        "{:?}",
        lines[7]
    );
    assert!(
        lines[1].get("valid_for").parse::<u32>().unwrap() <= 120,
        "{:?}",
        lines[1]
    );
    assert_eq!(
        lines[2].0,
        "identities 0=sensor9._device.iotregistry.test 1=_mqtt-client.dev9.iotregistry.test \
         2=dev9.iotregistry.test end=0 tiny=-1 error=buffer of 4 bytes too small for \
         sensor9._device.iotregistry.test"
    );
    assert!(
        lines[3]
            .0
            .starts_with("identities 0=sensor9._device.iotregistry.test end=0 tiny=-1"),
        "{:?}",
        lines[3]
    );
    assert!(
        lines[4].0.starts_with(
            "identities 0=_mqtt-client.dev9.iotregistry.test 1=dev9.iotregistry.test end=0"
        ),
        "{:?}",
        lines[4]
    );
    assert!(
        lines[5]
            .0
            .starts_with("identities end=-1 tiny=-1 error=identity forms 0x0"),
        "{:?}",
        lines[5]
    );
}
