//! A real `mosquitto` broker with one TLS listener on loopback, killed on drop.
#![allow(dead_code)]

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    dir: tempfile::TempDir,
    child: Child,
    pub port: u16,
}

impl Broker {
    /// Serves TLS with `cert`/`key` on 127.0.0.1:`port`, anonymous clients allowed, everything
    /// logged (see [`Broker::log`]).
    pub fn start(port: u16, cert: &Path, key: &Path) -> Broker {
        Broker::start_with(port, cert, key, None)
    }

    /// Like [`Broker::start`]; with `client_ca`, clients must present a certificate issued by
    /// it (mutual TLS), and the certificate's CN becomes the client's user name.
    pub fn start_with(port: u16, cert: &Path, key: &Path, client_ca: Option<&Path>) -> Broker {
        Broker::start_via(Command::new("mosquitto"), port, cert, key, client_ca, "")
    }

    /// Like [`Broker::start_with`], run as `launcher -c CONF` (`launcher` being `mosquitto`,
    /// or a command that ends by running it, such as `iotsafe-run --broker mosquitto`), with
    /// `extra` lines added to the listener's configuration.
    pub fn start_via(
        mut launcher: Command,
        port: u16,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        extra: &str,
    ) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("mosquitto-")
            .tempdir()
            .expect("temp dir");
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        // `user root`: as root, mosquitto would otherwise switch to a `mosquitto` user that
        // cannot read the temp dir; it is ignored when not started as root.
        let mut text = format!(
            "user root\npersistence false\nlog_dest file {log}\nlog_type all\nconnection_messages true\n\
             listener {port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\nallow_anonymous true\n",
            log = log.display(),
            cert = cert.display(),
            key = key.display(),
        );
        if let Some(ca) = client_ca {
            text += &format!(
                "require_certificate true\ncafile {}\nuse_identity_as_username true\n",
                ca.display()
            );
        }
        text += extra;
        fs::write(&conf, text).expect("write mosquitto.conf");
        let child = launcher
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("mosquitto (Debian package mosquitto) must be installed");
        let mut broker = Broker { dir, child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("mosquitto exited ({status}): {}", broker.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}: {}",
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// The broker's log so far (and what it wrote to stderr).
    pub fn log(&self) -> String {
        let read = |f: &str| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("mosquitto.log"), read("stderr"))
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
