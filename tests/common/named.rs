//! A real BIND `named` on loopback as the primary of the zone its caller configures, killed on
//! drop. Started as a plain foreground process (`-g`) with everything in a temp dir: no system
//! service, no control channel, no user switch.
//!
//! It stands apart from the knotd hierarchy of [`super::dns::TestDns`], with a private root of
//! its own: named also serves `.` (signed by `dnssec-policy default` too), delegating the
//! caller's zone, whose DS it is sent by an update once named has made the zone's key. A
//! validating resolver asking named with the root's key as trust anchor
//! ([`Named::trust_anchor_file`]) thus sees the caller's zone secure.
#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Named {
    // Before `dir`: fields drop in order, named is killed before its files are removed.
    child: Running,
    dir: tempfile::TempDir,
    port: u16,
}

/// The key the fixture sends the DS of the caller's zone to the root with.
const ROOT_KEY_FILE: &str = "root-ds.key";
const ROOT_KEY_NAME: &str = "root-ds";

/// named's process, killed when dropped (also when a wait for it fails the test).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Named {
    /// Starts named with `statements` (the zone `zone` and its keys: named.conf text that names
    /// its files relative to the working directory) after options and a root zone of its own,
    /// in a temp dir holding `files` (name, content); waits until `zone` is served signed and
    /// its DS is in the root.
    pub fn start(files: &[(&str, &str)], statements: &str, zone: &str) -> Named {
        let dir = tempfile::Builder::new()
            .prefix("named-")
            .tempdir()
            .expect("temp dir");
        for (name, content) in files {
            fs::write(dir.path().join(name), content).expect("write named's file");
        }
        let root_key = run_ok(Command::new("tsig-keygen").arg(ROOT_KEY_NAME));
        fs::write(dir.path().join(ROOT_KEY_FILE), &root_key).expect("write root key");
        fs::write(dir.path().join("root.db"), root_zone(zone)).expect("write root zone");
        // The port was free when chosen; another test may bind it before named does.
        for _ in 0..5 {
            let port = super::free_port();
            let conf = dir.path().join("named.conf");
            fs::write(&conf, config(dir.path(), port, statements)).expect("write named.conf");
            check_config(&conf);
            let mut child = Running(launch(dir.path(), &conf));
            if wait_until_signed(dir.path(), port, &mut child.0, zone)
                && wait_until_signed(dir.path(), port, &mut child.0, ".")
            {
                let named = Named { child, dir, port };
                named.send_ds_to_root(zone, &root_key);
                return named;
            }
        }
        panic!("named found no free port in five tries");
    }

    /// The address named answers on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The root's key (its DNSKEY with flags 257) as zone-file text in a file: the trust anchor.
    pub fn trust_anchor_file(&self) -> PathBuf {
        let keys = self.dig(".", "DNSKEY");
        let ksk = keys
            .lines()
            .find(|l| !l.starts_with(';') && l.contains("\tDNSKEY\t257 "))
            .unwrap_or_else(|| panic!("no root DNSKEY 257 served:\n{keys}"));
        let path = self.dir.path().join("root-anchor.key");
        fs::write(&path, format!("{ksk}\n")).expect("write trust anchor");
        path
    }

    /// Adds the DS of `zone`'s key (the one named made for `dnssec-policy`, in its working
    /// directory) to the root by an update signed with `root_key`, and checks that the root
    /// serves it signed.
    fn send_ds_to_root(&self, zone: &str, root_key: &str) {
        let prefix = format!("K{}.+", zone.trim_end_matches('.'));
        let key_files: Vec<PathBuf> = fs::read_dir(self.dir.path())
            .expect("named's dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".key")
            })
            .collect();
        let [key_file] = &key_files[..] else {
            panic!("one key for {zone} expected, named made {key_files:?}");
        };
        let ds = run_ok(Command::new("dnssec-dsfromkey").arg("-2").arg(key_file));
        let ds = ds.trim().replacen(" IN DS ", " 300 IN DS ", 1);
        let secret = root_key
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret \"")?.strip_suffix("\";"))
            .expect("a secret in tsig-keygen's output");
        let script = format!(
            "server 127.0.0.1 {}\nkey hmac-sha256:{ROOT_KEY_NAME} {secret}\nzone .\nupdate add {ds}\nsend\n",
            self.port
        );
        let out = super::dns::knsupdate(&script);
        assert!(
            out.status.success(),
            "the root refused the DS of {zone}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let served = self.dig(zone, "DS");
        assert!(served.contains("RRSIG\tDS"), "{served}");
    }

    /// named's log so far.
    pub fn log(&self) -> String {
        log(self.dir.path())
    }

    /// `kdig +dnssec` against named (TCP): the answer as text.
    pub fn dig(&self, name: &str, rtype: &str) -> String {
        dig(self.port, name, rtype)
    }
}

/// The private root: itself at 127.0.0.1, and `zone` delegated to it (its DS comes later).
fn root_zone(zone: &str) -> String {
    format!(
        "$TTL 300\n@ SOA a.root. hostmaster.root. 1 3600 600 86400 300\n@ NS a.root.\n\
         a.root. A 127.0.0.1\n{}. NS a.root.\n",
        zone.trim_end_matches('.')
    )
}

/// Options for a private primary: only loopback on `port`, no recursion, no control channel,
/// no pid file, its working directory (keys, journals) the temp dir; the root zone, signed,
/// taking DS records by updates signed with the fixture's key.
fn config(dir: &Path, port: u16, statements: &str) -> String {
    format!(
        r#"options {{
    directory "{}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file none;
    recursion no;
    dnssec-validation no;
}};
controls {{ }};
include "{ROOT_KEY_FILE}";
zone "." {{
    type primary;
    file "root.db";
    dnssec-policy default;
    update-policy {{ grant {ROOT_KEY_NAME} subdomain . DS; }};
}};
{statements}
"#,
        dir.display()
    )
}

/// `named-checkconf`: a configuration named would refuse fails here with its message.
fn check_config(conf: &Path) {
    let out = Command::new("named-checkconf")
        .arg(conf)
        .current_dir(conf.parent().expect("conf in a dir"))
        .output()
        .expect("named-checkconf (package bind9) must be installed");
    assert!(
        out.status.success(),
        "named.conf refused: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a copy of named from `dir`: the distribution's AppArmor profile, where it is enforced,
/// attaches to `/usr/sbin/named` by path and confines it to `/etc/bind` and `/var/cache/bind`,
/// which would refuse this private instance its temp dir.
fn launch(dir: &Path, conf: &Path) -> Child {
    let installed = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("named"))
        .find(|p| p.is_file())
        .expect("named (package bind9) must be installed");
    let copy = dir.join("named");
    if !copy.exists() {
        fs::copy(&installed, &copy).expect("copy named");
    }
    let log = fs::File::create(dir.join("named.log")).expect("log");
    Command::new(&copy)
        .arg("-g")
        .arg("-c")
        .arg(conf)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("named (package bind9) must be installed")
}

fn log(dir: &Path) -> String {
    fs::read_to_string(dir.join("named.log")).unwrap_or_default()
}

fn dig(port: u16, name: &str, rtype: &str) -> String {
    let out = Command::new("kdig")
        .args(["+tcp", "+dnssec", "+timeout=2", "+retry=0"])
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string(), name, rtype])
        .output()
        .expect("kdig (package knot-dnsutils) must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `zone`'s SOA is served with its RRSIG (named makes the zone's key and signs the
/// zone after loading it). False when named could not bind its port; a named that exits
/// otherwise, or never signs, fails the test with its log.
fn wait_until_signed(dir: &Path, port: u16, child: &mut Child, zone: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            let log = log(dir);
            // What named says, before it exits, when its port is taken.
            if log.contains("unable to listen on any configured interfaces") {
                return false;
            }
            panic!("named exited ({status}):\n{log}");
        }
        if dig(port, zone, "SOA").contains("RRSIG\tSOA") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "named did not serve {zone} signed within 20 s:\n{}",
        log(dir)
    );
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (package bind9)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
