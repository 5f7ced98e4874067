//! A private DNSSEC hierarchy served by a real knotd on loopback, for the DANE tests.
//!
//! One knotd serves the root `.`, the TLD `test.` and below it:
//! - `iotregistry.test.` and `example.test.`: signed, with their DS in `test.` (secure);
//! - `bogus.test.`: signed, but the DS in `test.` does not match its key (bogus);
//! - `insecure.test.`: unsigned and delegated without DS (provably insecure);
//! - `optout.test.`: signed with NSEC3 opt-out (no salt, no extra iterations), its DS in
//!   `test.`, and below it `secure.optout.test.`: signed, with its DS in `optout.test.`, and
//!   `plain.optout.test.`: unsigned, delegated without DS (insecure, proven by opt-out).
//!
//! The root's key is the trust anchor, as the IANA root is in real life (a trust anchor at a
//! zone below the root is not something the resolver handles).
//!
//! Bring-up is one pass, no reload: keys are generated offline with `keymgr` first, so the DS
//! records are known before the parent zones are written, then knotd starts and signs
//! everything on load. The keys (and their DS records) are made once per target directory and
//! copied into each test's own knotd database: `keymgr` is most of a bring-up's time, and the
//! keys are all that tests could share without seeing each other's records. Zones can be rewritten and reloaded during a test. knotd is killed when
//! the value is dropped, whatever the outcome of the test.
//!
//! The registry zones (`iotregistry.test.`, `example.test.`) also accept RFC 2136 dynamic
//! updates signed with this instance's TSIG key ([`TestDns::tsig_inline`] and the key files),
//! which knotd signs as it applies them. A test changes a zone either by updates or by
//! [`TestDns::set_records`], not both: that rewrites the zone file and reloads it, which
//! discards every update applied since.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The zones of the hierarchy, parent before child.
const SIGNED: [&str; 7] = [
    ".",
    "test.",
    "iotregistry.test.",
    "example.test.",
    "bogus.test.",
    "optout.test.",
    "secure.optout.test.",
];
/// The zones signed with NSEC3 opt-out.
const OPT_OUT: [&str; 1] = ["optout.test."];
const UNSIGNED: [&str; 2] = ["insecure.test.", "plain.optout.test."];
/// The zones that accept dynamic updates signed with the instance's TSIG key: TLSA records
/// below `_device` only (the README's configuration for a registry's primary).
const UPDATABLE: [&str; 2] = ["iotregistry.test.", "example.test."];
/// The name of the TSIG key updates are signed with (its secret is made per instance).
pub const TSIG_KEY_NAME: &str = "registry-key";
const CHILDREN_OF_TEST: [&str; 5] = [
    "iotregistry.test.",
    "example.test.",
    "bogus.test.",
    "insecure.test.",
    "optout.test.",
];

/// A running knotd with the test hierarchy.
pub struct TestDns {
    dir: tempfile::TempDir,
    /// knotd, started once the zone files are written (it loads each file once, at start).
    child: Option<Child>,
    port: u16,
    /// Extra records per zone (zone-file lines, owner relative to the zone or absolute).
    records: Mutex<BTreeMap<String, (u32, Vec<String>)>>,
    /// DS lines to put in `test.`, computed once at bring-up.
    ds_in_test: Vec<String>,
    /// DS lines to put in `optout.test.`.
    ds_in_optout: Vec<String>,
    ds_in_root: Vec<String>,
    root_dnskey: String,
    /// The TSIG key as `keymgr -t` printed it (knot's configuration syntax).
    tsig_knot: String,
    /// Keys of the caller's that knotd accepts beside its own, for the same updates.
    caller_keys: Vec<UpdateKey>,
}

/// A TSIG key made by the caller (with another tool) that the rig's knotd accepts for the same
/// updates as its own key.
#[derive(Clone, Debug)]
pub struct UpdateKey {
    pub name: String,
    /// knot's name for it, e.g. `hmac-sha256`.
    pub algorithm: String,
    /// base64.
    pub secret: String,
}

impl TestDns {
    /// Starts knotd with the hierarchy and the given extra records: `(zone, line)` pairs such as
    /// `("example.test.", "_8883._tcp.broker 300 IN TLSA 3 1 1 ab12...")`.
    pub fn start(extra: &[(&str, &str)]) -> TestDns {
        TestDns::start_with_update_keys(extra, &[])
    }

    /// As [`TestDns::start`], with knotd also accepting updates signed with `update_keys`.
    pub fn start_with_update_keys(extra: &[(&str, &str)], update_keys: &[UpdateKey]) -> TestDns {
        let dir = tempfile::Builder::new()
            .prefix("knot-")
            .tempdir()
            .expect("temp dir");
        for sub in ["db", "zones", "run"] {
            fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        let port = super::free_port();
        let conf = dir.path().join("knot.conf");
        let tsig_knot = run_ok(Command::new("keymgr").args(["-t", TSIG_KEY_NAME, "hmac-sha256"]));
        fs::write(&conf, knot_conf(dir.path(), port, &tsig_knot, update_keys))
            .expect("write knot.conf");

        let caller_keys = update_keys.to_vec();
        let keys = ZoneKeys::cached();
        copy_dir(&keys.db, &dir.path().join("db"));
        let ZoneKeys {
            ds_in_root,
            ds_in_test,
            ds_in_optout,
            root_dnskey,
            ..
        } = keys;

        let mut records = BTreeMap::new();
        for zone in SIGNED.iter().chain(UNSIGNED.iter()) {
            records.insert(zone.to_string(), (1u32, Vec::new()));
        }
        for (zone, line) in extra {
            let zone = fqdn(zone);
            records
                .get_mut(&zone)
                .unwrap_or_else(|| panic!("no zone {zone} in the test hierarchy"))
                .1
                .push(line.to_string());
        }

        let mut dns = TestDns {
            dir,
            child: None,
            port,
            records: Mutex::new(records),
            ds_in_test,
            ds_in_optout,
            ds_in_root,
            root_dnskey,
            tsig_knot,
            caller_keys,
        };
        for zone in SIGNED.iter().chain(UNSIGNED.iter()) {
            dns.write_zone(zone);
        }
        // The port was free when chosen; another test may bind it before knotd does.
        for _ in 0..5 {
            if dns.launch() {
                dns.wait_until_served();
                return dns;
            }
            dns.port = super::free_port();
            let text = knot_conf(dns.dir.path(), dns.port, &dns.tsig_knot, &dns.caller_keys);
            fs::write(&conf, text).expect("write knot.conf");
        }
        panic!("knotd found no free port in five tries");
    }

    /// Starts knotd; false when it could not bind its port (taken since it was chosen).
    fn launch(&mut self) -> bool {
        let log_path = self.dir.path().join("knotd.log");
        let log = fs::File::create(&log_path).expect("log");
        let mut child = Command::new("knotd")
            .arg("-c")
            .arg(self.conf())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("knotd (package knot) must be installed");
        // knotd binds before it loads zones: it either serves the SOA of `.` soon or exits.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                assert!(
                    log.contains("address already in use"),
                    "knotd exited:\n{log}"
                );
                return false;
            }
            if self.dig(".", "SOA").contains("\tSOA\t") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
        true
    }

    /// Every zone knotd serves, parent before child (`.` first).
    pub fn zones(&self) -> Vec<&'static str> {
        SIGNED.iter().chain(UNSIGNED.iter()).copied().collect()
    }

    /// The address knotd answers on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The trust anchor as zone-file text: the root's KSK DNSKEY.
    pub fn trust_anchor(&self) -> String {
        format!("{}\n", self.root_dnskey)
    }

    /// The trust anchor written to a file (for the command-line options).
    pub fn trust_anchor_file(&self) -> PathBuf {
        let path = self.dir.path().join("root.key");
        write_whole(&path, self.trust_anchor().as_bytes());
        path
    }

    /// A root key of another hierarchy (every instance shares the cached keys, so another
    /// instance's anchor would be this one's).
    pub fn unrelated_trust_anchor() -> String {
        let dir = tempfile::tempdir().expect("temp dir");
        ZoneKeys::generate(dir.path());
        fs::read_to_string(dir.path().join("root_dnskey")).expect("root key")
    }

    /// The TSIG key's secret (base64), as `keymgr -t` made it.
    pub fn tsig_secret(&self) -> String {
        self.tsig_knot
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret:"))
            .expect("a secret line in keymgr -t output")
            .trim()
            .to_string()
    }

    /// The TSIG key in the inline form `NAME:ALG:BASE64`.
    pub fn tsig_inline(&self) -> String {
        format!("{TSIG_KEY_NAME}:hmac-sha256:{}", self.tsig_secret())
    }

    /// The TSIG key written as `keymgr -t` prints it (knot's syntax, with its comment line).
    pub fn tsig_knot_file(&self) -> PathBuf {
        let path = self.dir.path().join("tsig-knot.conf");
        write_whole(&path, self.tsig_knot.as_bytes());
        path
    }

    /// The TSIG key written as BIND's `tsig-keygen` writes it.
    pub fn tsig_bind_file(&self) -> PathBuf {
        let path = self.dir.path().join("tsig-bind.key");
        let text = format!(
            "key \"{TSIG_KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{}\";\n}};\n",
            self.tsig_secret()
        );
        write_whole(&path, text.as_bytes());
        path
    }

    /// The root's DS records (`. IN DS ...`), to test DS trust anchors.
    pub fn root_ds(&self) -> Vec<String> {
        ds_of(&self.conf(), ".")
    }

    /// A directory private to this instance, removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Replaces the extra records of `zone`, reloads it and waits until knotd serves the new
    /// serial. The zone file is rewritten: dynamic updates applied to the zone since are lost
    /// (a test changes a zone by updates or by this, not both).
    pub fn set_records(&self, zone: &str, lines: &[&str]) {
        let zone = fqdn(zone);
        {
            let mut records = self.records.lock().unwrap();
            let entry = records.get_mut(&zone).expect("zone of the hierarchy");
            entry.0 += 1;
            entry.1 = lines.iter().map(|l| l.to_string()).collect();
        }
        self.write_zone(&zone);
        run_ok(
            Command::new("knotc")
                .arg("-c")
                .arg(self.conf())
                .args(["zone-reload", &zone]),
        );
        let serial = self.records.lock().unwrap()[&zone].0;
        self.wait_for(&zone, Some(serial));
    }

    /// Adds one record to `zone` (see [`TestDns::set_records`]).
    pub fn add_record(&self, zone: &str, line: &str) {
        let mut lines = self.records.lock().unwrap()[&fqdn(zone)].1.clone();
        lines.push(line.to_string());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        self.set_records(zone, &refs);
    }

    /// `kdig` against this server, for diagnostics in test failures.
    pub fn dig(&self, name: &str, rtype: &str) -> String {
        let out = Command::new("kdig")
            .args(["+tcp", "+dnssec", "+timeout=2", "+retry=0"])
            .arg("@127.0.0.1")
            .args(["-p", &self.port.to_string(), name, rtype])
            .output()
            .expect("kdig (package knot-dnsutils) must be installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("knot.conf")
    }

    fn write_zone(&self, zone: &str) {
        let records = self.records.lock().unwrap();
        let (serial, extra) = &records[zone];
        let mut text = format!(
            "$ORIGIN {zone}\n$TTL 300\n@ SOA ns.test. hostmaster.test. {serial} 3600 600 86400 5\n@ NS ns.test.\n"
        );
        match zone {
            "." => {
                text.push_str("test. NS ns.test.\nns.test. A 127.0.0.1\n");
                for ds in &self.ds_in_root {
                    text.push_str(&format!("{ds}\n"));
                }
            }
            "test." => {
                text.push_str("ns A 127.0.0.1\n");
                for child in CHILDREN_OF_TEST {
                    text.push_str(&format!("{child} NS ns.test.\n"));
                }
                for ds in &self.ds_in_test {
                    text.push_str(&format!("{ds}\n"));
                }
            }
            "optout.test." => {
                text.push_str("secure NS ns.test.\nplain NS ns.test.\n");
                for ds in &self.ds_in_optout {
                    text.push_str(&format!("{ds}\n"));
                }
            }
            _ => {}
        }
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        let file = self.dir.path().join("zones").join(zone_file(zone));
        fs::write(file, text).expect("write zone");
    }

    /// Waits until every zone is served (signed zones with their signatures): knotd loads and
    /// signs them asynchronously after it starts listening.
    fn wait_until_served(&self) {
        for zone in SIGNED.iter().chain(UNSIGNED.iter()) {
            self.wait_for(zone, None);
        }
    }

    fn wait_for(&self, zone: &str, serial: Option<u32>) {
        let signed = SIGNED.contains(&zone);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.dig(zone, "SOA");
            let soa = out
                .lines()
                .find(|l| !l.starts_with(';') && l.contains("\tSOA\t"));
            let serial_ok = match (soa, serial) {
                (Some(line), Some(want)) => line
                    .split_whitespace()
                    .nth(6)
                    .is_some_and(|s| s == want.to_string()),
                (Some(_), None) => true,
                (None, _) => false,
            };
            let signed_ok = !signed || out.contains("RRSIG\tSOA");
            if serial_ok && signed_ok {
                return;
            }
            if Instant::now() > deadline {
                let log = fs::read_to_string(self.dir.path().join("knotd.log")).unwrap_or_default();
                panic!(
                    "knotd does not serve {zone} (serial {serial:?}):\n{out}\nknotd log:\n{log}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// knotd's configuration; `tsig_knot` is the update key as `keymgr -t` printed it (a `key:`
/// section), allowed to update the [`UPDATABLE`] zones, as are `caller_keys`.
fn knot_conf(dir: &Path, port: u16, tsig_knot: &str, caller_keys: &[UpdateKey]) -> String {
    let d = dir.display();
    let mut zones = String::new();
    for zone in SIGNED {
        let template = if OPT_OUT.contains(&zone) {
            "    template: opt-out\n"
        } else {
            ""
        };
        let acl = if UPDATABLE.contains(&zone) {
            "    acl: registry-update\n"
        } else {
            ""
        };
        zones.push_str(&format!(
            "  - domain: \"{zone}\"\n    file: \"{}\"\n{template}{acl}",
            zone_file(zone)
        ));
    }
    let mut key: String = tsig_knot
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut acl_keys = TSIG_KEY_NAME.to_string();
    for caller in caller_keys {
        key.push_str(&format!(
            "  - id: {}\n    algorithm: {}\n    secret: {}\n",
            caller.name, caller.algorithm, caller.secret
        ));
        acl_keys.push_str(&format!(", {}", caller.name));
    }
    for zone in UNSIGNED {
        zones.push_str(&format!(
            "  - domain: \"{zone}\"\n    file: \"{}\"\n    template: unsigned\n",
            zone_file(zone)
        ));
    }
    format!(
        r#"server:
    rundir: "{d}/run"
    listen: 127.0.0.1@{port}
{key}acl:
  - id: registry-update
    key: [{acl_keys}]
    action: update
    update-type: [TLSA]
    update-owner: name
    update-owner-match: sub
    update-owner-name: [_device]
database:
    storage: "{d}/db"
log:
  - target: stderr
    any: warning
policy:
  - id: fast
    algorithm: ecdsap256sha256
    single-type-signing: on
    manual: on
    nsec3: off
  - id: opt-out
    algorithm: ecdsap256sha256
    single-type-signing: on
    manual: on
    nsec3: on
    nsec3-opt-out: on
    nsec3-iterations: 0
    nsec3-salt-length: 0
template:
  - id: default
    storage: "{d}/zones"
    dnssec-signing: on
    dnssec-policy: fast
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
  - id: opt-out
    storage: "{d}/zones"
    dnssec-signing: on
    dnssec-policy: opt-out
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
  - id: unsigned
    storage: "{d}/zones"
    journal-content: none
    zonefile-sync: -1
    zonefile-load: whole
zone:
{zones}"#
    )
}

fn zone_file(zone: &str) -> String {
    if zone == "." {
        "root.zone".into()
    } else {
        format!("{zone}zone")
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Zone keys made by `keymgr` once, under `target/<profile>/test-dns-keys-<zones>`, and what the
/// parents publish of them.
struct ZoneKeys {
    /// A knotd database directory holding only the keys (copied into each test's knotd).
    db: PathBuf,
    ds_in_root: Vec<String>,
    ds_in_test: Vec<String>,
    ds_in_optout: Vec<String>,
    root_dnskey: String,
}

impl ZoneKeys {
    /// The cached keys, made by the first test process that needs them (the others wait on a
    /// lock); a change of the zone list gets keys of its own.
    fn cached() -> ZoneKeys {
        // FNV-1a of the zone list: another hierarchy, other keys.
        let zones = SIGNED.join(" ");
        let hash = zones.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        let name = format!("test-dns-keys-{hash:016x}");
        let cache = super::target_dir().join(name);
        let lock = fs::File::create(cache.with_extension("lock")).expect("key cache lock");
        // SAFETY: flock on a descriptor this function owns; released when `lock` is closed.
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
            0
        );
        if !cache.join("complete").exists() {
            let _ = fs::remove_dir_all(&cache);
            ZoneKeys::generate(&cache);
            fs::write(cache.join("complete"), "").expect("mark key cache");
        }
        let read = |file: &str| -> Vec<String> {
            fs::read_to_string(cache.join(file))
                .expect("cached DS lines")
                .lines()
                .map(str::to_string)
                .collect()
        };
        ZoneKeys {
            db: cache.join("db"),
            ds_in_root: read("ds_in_root"),
            ds_in_test: read("ds_in_test"),
            ds_in_optout: read("ds_in_optout"),
            root_dnskey: read("root_dnskey").concat(),
        }
    }

    fn generate(cache: &Path) {
        for sub in ["db", "zones", "run"] {
            fs::create_dir_all(cache.join(sub)).expect("mkdir");
        }
        let conf = cache.join("knot.conf");
        // keymgr reads the configuration only for the database; knotd never runs on it.
        let key = run_ok(Command::new("keymgr").args(["-t", TSIG_KEY_NAME, "hmac-sha256"]));
        fs::write(&conf, knot_conf(cache, 53, &key, &[])).expect("write knot.conf");
        for zone in SIGNED {
            run_ok(Command::new("keymgr").arg("-c").arg(&conf).args([
                zone,
                "generate",
                "algorithm=13",
                "ksk=yes",
                "zsk=yes",
            ]));
        }
        let mut ds_in_test = Vec::new();
        for zone in ["iotregistry.test.", "example.test.", "optout.test."] {
            ds_in_test.extend(ds_of(&conf, zone));
        }
        // A DS that does not match the key of bogus.test.: flip the last digest digit.
        for line in ds_of(&conf, "bogus.test.") {
            let mut line = line;
            let last = line.pop().expect("DS line");
            line.push(if last == '0' { '1' } else { '0' });
            ds_in_test.push(line);
        }
        let write = |file: &str, lines: &[String]| {
            fs::write(cache.join(file), lines.join("\n")).expect("write key cache")
        };
        write("ds_in_root", &ds_of(&conf, "test."));
        write("ds_in_test", &ds_in_test);
        write("ds_in_optout", &ds_of(&conf, "secure.optout.test."));
        write("root_dnskey", &[root_ksk(&conf)]);
    }
}

/// Copies a directory tree (a knotd database: a few small files).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read key cache").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy key cache");
        }
    }
}

/// The SHA-256 DS line(s) of a zone's key, as `keymgr` prints them.
fn ds_of(conf: &Path, zone: &str) -> Vec<String> {
    let out = run_ok(
        Command::new("keymgr")
            .arg("-c")
            .arg(conf)
            .args([zone, "ds"]),
    );
    out.lines()
        .filter(|l| l.split_whitespace().nth(4) == Some("2"))
        .map(str::to_string)
        .collect()
}

fn root_ksk(conf: &Path) -> String {
    let out = run_ok(
        Command::new("keymgr")
            .arg("-c")
            .arg(conf)
            .args([".", "dnskey"]),
    );
    out.lines()
        .find(|l| l.contains("DNSKEY 257"))
        .expect("root KSK")
        .to_string()
}

/// Runs `knsupdate` (knot's nsupdate) with `script` on its standard input; its output, for
/// the caller to judge (the time it took is the caller's to measure around this call).
pub fn knsupdate(script: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new("knsupdate")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("knsupdate (package knot-dnsutils) must be installed");
    child
        .stdin
        .take()
        .expect("knsupdate's stdin")
        .write_all(script.as_bytes())
        .expect("write to knsupdate");
    child.wait_with_output().expect("knsupdate")
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is package knot installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `bytes` to `path` aside then renames it into place, so that a process reading the
/// file while it is written again (tests running the tool concurrently) sees it whole: a key
/// file or trust anchor.
fn write_whole(path: &Path, bytes: &[u8]) {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let aside = path.with_extension(format!("{}.{n}.new", std::process::id()));
    fs::write(&aside, bytes).expect("write a file of the rig");
    fs::rename(&aside, path).expect("rename a file of the rig into place");
}
