//! A real `mosquitto` broker with one TLS listener on loopback, killed on drop.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
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
        let mut listener = String::new();
        if let Some(ca) = client_ca {
            listener = format!(
                "require_certificate true\ncafile {}\nuse_identity_as_username true\n",
                ca.display()
            );
        }
        Broker::launch(
            Command::new("mosquitto"),
            port,
            cert,
            key,
            "",
            &listener,
            "allow_anonymous true\n",
        )
    }

    /// Like [`Broker::start_with`], run as `launcher -c CONF` (`launcher` being `mosquitto`,
    /// or a command that ends by running it, such as `iotsafe-run --broker mosquitto`), with
    /// `extra` lines added to the listener's configuration.
    pub fn start_via(
        launcher: Command,
        port: u16,
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        extra: &str,
    ) -> Broker {
        let mut listener = String::new();
        if let Some(ca) = client_ca {
            listener = format!(
                "require_certificate true\ncafile {}\nuse_identity_as_username true\n",
                ca.display()
            );
        }
        listener += extra;
        Broker::launch(
            launcher,
            port,
            cert,
            key,
            "",
            &listener,
            "allow_anonymous true\n",
        )
    }

    /// Mutual TLS with client certificates issued by `registry_ca`, and the broker plugin
    /// (`plugin`, the built iotsafe_mosquitto.so) deciding who connects, with these
    /// `plugin_opt_` options. `per_listener_settings false`, as the plugin requires.
    /// `listener_extra`: more lines for the listener.
    pub fn start_with_plugin(
        port: u16,
        cert: &Path,
        key: &Path,
        registry_ca: &Path,
        plugin: &Path,
        options: &[(&str, &str)],
        listener_extra: &str,
    ) -> Broker {
        let mut global = format!("per_listener_settings false\nplugin {}\n", plugin.display());
        for (key, value) in options {
            global += &format!("plugin_opt_{key} {value}\n");
        }
        let listener = format!(
            "require_certificate true\ncafile {}\n{listener_extra}",
            registry_ca.display()
        );
        Broker::launch(
            Command::new("mosquitto"),
            port,
            cert,
            key,
            &global,
            &listener,
            "allow_anonymous false\n",
        )
    }

    /// Like [`Broker::start_with_plugin`], for a configuration mosquitto must refuse: the
    /// broker's exit status and log. A broker still running after 10 s accepted the
    /// configuration: it is stopped and the test fails with its log.
    pub fn refused_plugin_conf(conf_text: &str) -> (std::process::ExitStatus, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        fs::write(&conf, format!("user root\nlog_dest stderr\n{conf_text}")).unwrap();
        let mut child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .env("LD_LIBRARY_PATH", super::built_library_dir())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("mosquitto");
        let read_log = || {
            fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
                + &fs::read_to_string(&log).unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for mosquitto") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mosquitto still runs after 10 s although it must refuse:\n{conf_text}\n{}",
                    read_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, read_log())
    }

    /// Starts a broker that must refuse to start (e.g. its key cannot be loaded), with `env`
    /// added to its environment; returns its log once it has exited.
    pub fn refuses_to_start(cert: &Path, key: &Path, env: &[(&str, &OsStr)]) -> String {
        let mut launcher = Command::new("mosquitto");
        launcher.envs(env.iter().copied());
        let port = super::free_port();
        let (dir, mut child) =
            Broker::spawn(launcher, port, cert, key, "", "", "allow_anonymous true\n");
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
        let broker = Broker { dir, child, port };
        broker.log()
    }

    /// Starts `launcher -c CONF` (mosquitto, or a command that ends by running it) with
    /// `global` lines, one TLS listener on 127.0.0.1:`port` with `listener` lines, and
    /// `security` lines; waits until it listens.
    fn launch(
        launcher: Command,
        port: u16,
        cert: &Path,
        key: &Path,
        global: &str,
        listener: &str,
        security: &str,
    ) -> Broker {
        let (dir, child) = Broker::spawn(launcher, port, cert, key, global, listener, security);
        let mut broker = Broker { dir, child, port };
        broker.wait_until_listening();
        broker
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mosquitto exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}: {}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker with SIGTERM, as a service stop does (with `persistence true` it saves
    /// its database then), and starts plain `mosquitto` again on the same configuration; its
    /// log goes on in the same files.
    pub fn restart(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of a child this struct owns (not yet reaped).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        let status = self.child.wait().expect("wait for mosquitto");
        assert!(
            status.success(),
            "mosquitto stopped with {status}: {}",
            self.log()
        );
        let append = |name: &str| {
            fs::OpenOptions::new()
                .append(true)
                .open(self.dir.path().join(name))
                .expect("the broker's output file")
        };
        self.child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .env("LD_LIBRARY_PATH", super::built_library_dir())
            .stdin(Stdio::null())
            .stdout(append("stdout"))
            .stderr(append("stderr"))
            .spawn()
            .expect("mosquitto");
        self.wait_until_listening();
    }

    /// Writes the configuration of [`Broker::launch`] into a new directory and starts the
    /// broker on it.
    fn spawn(
        mut launcher: Command,
        port: u16,
        cert: &Path,
        key: &Path,
        global: &str,
        listener: &str,
        security: &str,
    ) -> (tempfile::TempDir, Child) {
        let dir = tempfile::Builder::new()
            .prefix("mosquitto-")
            .tempdir()
            .expect("temp dir");
        let conf = dir.path().join("mosquitto.conf");
        let log = dir.path().join("mosquitto.log");
        // `user root`: as root, mosquitto would otherwise switch to a `mosquitto` user that
        // cannot read the temp dir; it is ignored when not started as root. `set_tcp_nodelay`:
        // small packets (CONNACK) leave at once instead of waiting for an ACK.
        let text = format!(
            "user root\npersistence false\nset_tcp_nodelay true\nlog_dest file {log}\nlog_type all\nconnection_messages true\n\
             {global}{security}listener {port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n{listener}",
            log = log.display(),
            cert = cert.display(),
            key = key.display(),
        );
        fs::write(&conf, text).expect("write mosquitto.conf");
        // The plugin links libiotsafe_dane.so.0, found beside it in the build directory.
        let child = launcher
            .arg("-c")
            .arg(&conf)
            .env("LD_LIBRARY_PATH", super::built_library_dir())
            .stdin(Stdio::null())
            // Lines logged while plugins start, before the log file is open, go to stdout.
            .stdout(fs::File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(fs::File::create(dir.path().join("stderr")).expect("stderr file"))
            .spawn()
            .expect("mosquitto (Debian package mosquitto) must be installed");
        (dir, child)
    }

    /// Waits until the log has a line containing every one of `needles` (at most `seconds`);
    /// that line.
    pub fn wait_for_line(&self, seconds: u64, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let log = self.log();
            if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needles:?} in the broker's log within {seconds} s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The broker's log so far (and what it wrote to stderr).
    pub fn log(&self) -> String {
        let read = |f: &str| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "{}{}{}",
            read("stdout"),
            read("mosquitto.log"),
            read("stderr")
        )
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Sends the broker SIGHUP, as `systemctl reload mosquitto` or logrotate does: it reads its
    /// configuration again and re-checks every client (mosquitto_security_apply).
    pub fn reload(&self) {
        // mosquitto starts listening before it installs its signal handlers, and SIGHUP's
        // default action ends the process: wait until the handler is there.
        let caught = format!("/proc/{}/status", self.child.id());
        super::wait_until(10, "mosquitto to catch SIGHUP", || {
            fs::read_to_string(&caught)
                .ok()
                .and_then(|status| {
                    let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
                    u64::from_str_radix(mask.trim(), 16).ok()
                })
                .is_some_and(|mask| mask & (1 << (libc::SIGHUP - 1)) != 0)
        });
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of a child this struct owns (not yet reaped).
        let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
        assert_eq!(
            rc,
            0,
            "SIGHUP to mosquitto: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare MQTT 3.1.1 session over TLS from this process, for tests that need many idle
/// sessions that never reconnect (the mosquitto clients reconnect at once when the broker
/// drops them): CONNECT with a client id, CONNACK accepted, then nothing until dropped
/// (keep-alive 60 s).
pub struct BareSession {
    _stream: openssl::ssl::SslStream<TcpStream>,
}

impl BareSession {
    /// Connects to 127.0.0.1:`port` with this certificate and key (the broker's own
    /// certificate is not checked); `None` when the broker refuses the client.
    pub fn connect(port: u16, cert: &Path, key: &Path, client_id: &str) -> Option<BareSession> {
        use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
        let mut tls = SslConnector::builder(SslMethod::tls_client()).unwrap();
        tls.set_verify(SslVerifyMode::NONE);
        tls.set_certificate_file(cert, SslFiletype::PEM).unwrap();
        tls.set_private_key_file(key, SslFiletype::PEM).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut stream = tls.build().connect("localhost", tcp).ok()?;
        let mut connect = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
        connect.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
        connect.extend_from_slice(client_id.as_bytes());
        // CONNECT; the body is short enough for a one-byte remaining length.
        let mut packet = vec![0x10, connect.len() as u8];
        packet.extend_from_slice(&connect);
        stream.write_all(&packet).ok()?;
        // CONNACK: 0x20, 2, flags, return code (0: accepted).
        let mut ack = [0u8; 4];
        stream.read_exact(&mut ack).ok()?;
        (ack[0] == 0x20 && ack[3] == 0).then_some(BareSession { _stream: stream })
    }
}
