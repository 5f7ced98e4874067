//! A real BIND `named` on loopback as the primary of the zones its caller configures, killed on
//! drop. Started as a plain foreground process (`-g`) with everything in a temp dir: no system
//! service, no control channel, no user switch. It stands apart from the knotd hierarchy of
//! [`super::dns::TestDns`]: no parent holds a DS for its zones.
#![allow(dead_code)]

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Named {
    // Before `dir`: fields drop in order, named is killed before its files are removed.
    child: Running,
    dir: tempfile::TempDir,
    port: u16,
}

/// named's process, killed when dropped (also when a wait for it fails the test).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Named {
    /// Starts named with `statements` (zones, keys: named.conf text that names its files
    /// relative to the working directory) after options of its own, in a temp dir holding
    /// `files` (name, content), and waits until `zone` is served signed.
    pub fn start(files: &[(&str, &str)], statements: &str, zone: &str) -> Named {
        let dir = tempfile::Builder::new()
            .prefix("named-")
            .tempdir()
            .expect("temp dir");
        for (name, content) in files {
            fs::write(dir.path().join(name), content).expect("write named's file");
        }
        // The port was free when chosen; another test may bind it before named does.
        for _ in 0..5 {
            let port = super::free_port();
            let conf = dir.path().join("named.conf");
            fs::write(&conf, config(dir.path(), port, statements)).expect("write named.conf");
            check_config(&conf);
            let mut child = Running(launch(dir.path(), &conf));
            if wait_until_signed(dir.path(), port, &mut child.0, zone) {
                return Named { child, dir, port };
            }
        }
        panic!("named found no free port in five tries");
    }

    /// The address named answers on (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
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

/// Options for a private primary: only loopback on `port`, no recursion, no control channel,
/// no pid file, its working directory (keys, journals) the temp dir.
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

fn launch(dir: &Path, conf: &Path) -> Child {
    let log = fs::File::create(dir.join("named.log")).expect("log");
    Command::new("named")
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
        let log = log(dir);
        if log.contains("address in use") {
            return false;
        }
        if let Ok(Some(status)) = child.try_wait() {
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
