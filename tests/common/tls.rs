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
        let port = super::free_port();
        let mut cmd = Command::new("openssl");
        cmd.arg("s_server")
            .args(extra)
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .arg("-quiet")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
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
