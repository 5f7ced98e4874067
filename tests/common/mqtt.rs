//! A real `mosquitto` broker with one TLS listener on loopback, killed on drop.
#![allow(dead_code)]

use std::ffi::OsStr;
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
        let dir = broker_dir();
        let conf = write_conf(dir.path(), port, cert, key, client_ca);
        let child = spawn(dir.path(), &conf, &[]);
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

    /// Starts a broker that must refuse to start (e.g. its key cannot be loaded), with `env`
    /// added to its environment; returns its log once it has exited.
    pub fn refuses_to_start(cert: &Path, key: &Path, env: &[(&str, &OsStr)]) -> String {
        let dir = broker_dir();
        let port = super::free_port();
        let conf = write_conf(dir.path(), port, cert, key, None);
        let mut child = spawn(dir.path(), &conf, env);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for mosquitto") {
                break status;
            }
            // (Its listening socket opens before the key is loaded: only its exit tells.)
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mosquitto still runs after 10 s although it must not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success(), "mosquitto exited with success");
        let read = |f: &str| fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        format!("{}{}", read("mosquitto.log"), read("stderr"))
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

fn broker_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mosquitto-")
        .tempdir()
        .expect("temp dir")
}

/// mosquitto.conf: one TLS listener on 127.0.0.1:`port`, anonymous clients, everything
/// logged to the directory's mosquitto.log.
fn write_conf(dir: &Path, port: u16, cert: &Path, key: &Path, client_ca: Option<&Path>) -> PathBuf {
    let conf = dir.join("mosquitto.conf");
    let log = dir.join("mosquitto.log");
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
    fs::write(&conf, text).expect("write mosquitto.conf");
    conf
}

fn spawn(dir: &Path, conf: &Path, env: &[(&str, &OsStr)]) -> Child {
    Command::new("mosquitto")
        .arg("-c")
        .arg(conf)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("stderr")).expect("stderr file"))
        .spawn()
        .expect("mosquitto (Debian package mosquitto) must be installed")
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
