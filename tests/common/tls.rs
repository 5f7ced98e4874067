//! `openssl s_server` as a TLS peer on a free loopback port, killed on drop.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TlsServer {
    child: Child,
    pub port: u16,
}

impl TlsServer {
    /// Serves `cert`/`key`, sending `chain` (extra certificates) after the leaf.
    pub fn start(cert: &Path, key: &Path, chain: Option<&Path>) -> TlsServer {
        TlsServer::start_with(cert, key, chain, &[])
    }

    /// Serves `cert`/`key` to HTTPS clients (`-www`: a status page for every request).
    pub fn start_www(cert: &Path, key: &Path) -> TlsServer {
        TlsServer::start_with(cert, key, None, &["-www"])
    }

    fn start_with(cert: &Path, key: &Path, chain: Option<&Path>, extra: &[&str]) -> TlsServer {
        TlsServer::spawn(Command::new("openssl"), cert, key, chain, extra, None)
    }

    /// Serves `cert`/`key` with `extra` options, writing what clients send to `received`
    /// (unbuffered, in the order the connections came; its input stays open, since s_server
    /// ends each connection at the end of its input).
    pub fn start_recording(cert: &Path, key: &Path, extra: &[&str], received: &Path) -> TlsServer {
        let mut stdbuf = Command::new("stdbuf");
        stdbuf.args(["-o0", "openssl"]);
        let out = std::fs::File::create(received).expect("the server's output file");
        TlsServer::spawn(stdbuf, cert, key, None, extra, Some(out))
    }

    /// `openssl s_server` with `extra` options, run by `launcher` (a command the server's
    /// command line is appended to, such as `iotsafe-run --broker`).
    pub fn start_through(
        mut launcher: Command,
        cert: &Path,
        key: &Path,
        extra: &[&str],
    ) -> TlsServer {
        launcher.arg("openssl");
        TlsServer::spawn(launcher, cert, key, None, extra, None)
    }

    /// `cmd` (which runs openssl) with `s_server` and its options appended; what clients send
    /// goes to `received`, if given.
    fn spawn(
        mut cmd: Command,
        cert: &Path,
        key: &Path,
        chain: Option<&Path>,
        extra: &[&str],
        received: Option<std::fs::File>,
    ) -> TlsServer {
        let port = super::free_port();
        cmd.arg("s_server")
            .args(extra)
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .arg("-quiet")
            .stderr(Stdio::null());
        match received {
            Some(file) => cmd.stdin(Stdio::piped()).stdout(file),
            None => cmd.stdin(Stdio::null()).stdout(Stdio::null()),
        };
        if let Some(chain) = chain {
            cmd.arg("-cert_chain").arg(chain);
        }
        let child = cmd.spawn().expect("openssl s_server");
        let server = TlsServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s_server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        server
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
