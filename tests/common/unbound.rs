//! A real `unbound` on loopback, validating the private hierarchy of a [`super::dns::TestDns`]
//! (its root key as trust anchor, knotd as the server of the root zone), killed on drop.
//! Started as a plain foreground process with everything in a temp dir: no system service,
//! no remote control, no chroot, no user switch.
#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::dns::TestDns;

pub struct Unbound {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Unbound {
    pub fn start(dns: &TestDns) -> Unbound {
        Self::start_with(dns, "")
    }

    /// As [`Unbound::start`], with extra `server:` lines (e.g. `max-udp-size: 512`).
    pub fn start_with(dns: &TestDns, server_options: &str) -> Unbound {
        let dir = tempfile::Builder::new()
            .prefix("unbound-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let anchor = d.join("root.key");
        fs::write(&anchor, dns.trust_anchor()).expect("write trust anchor");
        let port = super::free_port();
        let conf = d.join("unbound.conf");
        let mut text = config(d, port, &anchor, dns.addr(), &dns.zones());
        text = text.replacen(
            "remote-control:",
            &format!("{server_options}remote-control:"),
            1,
        );
        fs::write(&conf, text).expect("write unbound.conf");
        let check = Command::new("unbound-checkconf")
            .arg(&conf)
            .output()
            .expect("unbound-checkconf (Debian package unbound) must be installed");
        assert!(
            check.status.success(),
            "unbound.conf: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new("unbound")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("unbound.log")).expect("log"))
            .spawn()
            .expect("unbound (Debian package unbound) must be installed");
        let mut unbound = Unbound { dir, child, port };
        unbound.wait_until_answering();
        unbound
    }

    /// The address unbound answers on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// unbound's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("unbound.log")).unwrap_or_default()
    }

    /// `kdig` through unbound (with the DO bit), for diagnostics.
    pub fn dig(&self, name: &str, rtype: &str) -> String {
        self.kdig(&[name, rtype])
    }

    /// One UDP query without the retry over TCP on truncation (`+ignore`).
    pub fn dig_udp_only(&self, name: &str, rtype: &str) -> String {
        self.kdig(&["+ignore", "+bufsize=1232", name, rtype])
    }

    fn kdig(&self, args: &[&str]) -> String {
        let out = Command::new("kdig")
            .args(["+dnssec", "+timeout=2", "+retry=0"])
            .arg("@127.0.0.1")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("kdig (package knot-dnsutils) must be installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("unbound exited ({status}): {}", self.log());
            }
            if answers(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "unbound does not answer on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something answers a DNS query (for `. NS`, any answer) on the port.
fn answers(port: u16) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    // id 0x1234, RD, one question: . IN NS
    let query = [
        0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1,
    ];
    if sock.send_to(&query, ("127.0.0.1", port)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(sock.recv(&mut buf), Ok(n) if n >= 12 && buf[..2] == [0x12, 0x34])
}

/// Every zone of the hierarchy is a stub zone at knotd: the delegations in the zones name
/// `ns.test.` at 127.0.0.1 port 53, where nothing of the test listens.
fn config(dir: &Path, port: u16, anchor: &Path, knot: SocketAddr, zones: &[&str]) -> String {
    let d = dir.display();
    let mut stubs = String::new();
    for zone in zones {
        stubs.push_str(&format!(
            "stub-zone:\n    name: \"{zone}\"\n    stub-addr: {}@{}\n",
            knot.ip(),
            knot.port()
        ));
    }
    format!(
        r#"server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    num-threads: 1
    so-reuseport: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    val-log-level: 2
    module-config: "validator iterator"
    trust-anchor-file: "{anchor}"
    do-not-query-localhost: no
    qname-minimisation: no
    aggressive-nsec: no
    local-zone: "test." nodefault
    access-control: 127.0.0.0/8 allow
remote-control:
    control-enable: no
{stubs}"#,
        anchor = anchor.display(),
    )
}
