//! The iotsafe provider with the SIM behind a modem's AT port (configured by `IOTSAFE_MODEM`;
//! a key reference may name that modem and no other device), with the real `openssl` tool
//! as the application.

mod common;

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Command, Output};

use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::X509;

use common::modem::{ModemMode, ModemRig, CHANNELS, CSIM};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[test]
fn provider_signs_through_modem_channels_with_two_at_commands() {
    provider_signs_through_a_modem_with_two_at_commands(&CHANNELS);
}

#[test]
fn provider_signs_through_at_csim_with_two_at_commands() {
    provider_signs_through_a_modem_with_two_at_commands(&CSIM);
}

fn provider_signs_through_a_modem_with_two_at_commands(mode: &ModemMode) {
    let rig = ModemRig::start(mode.sim_args);
    let dir = rig.dir.path().to_path_buf();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    ok(rig.iotsafe(&["keyref", "--out", &path("dev.keyref.pem")]));
    ok(rig.iotsafe(&["pubkey", "--out", &path("pub.pem")]));
    assert!(std::fs::read_to_string(path("dev.keyref.pem"))
        .unwrap()
        .contains("IOTSAFE KEY REFERENCE"));

    // The key reference names the modem it was written for: without that modem configured,
    // the provider refuses it (and never touches the port).
    // (`openssl pkey` drops a decoder's errors; the message is checked through a URI.)
    let before = rig.trace().len();
    let unconfigured = openssl_with_modem(None, &["pkey", "-in", &path("dev.keyref.pem")]);
    assert!(!unconfigured.status.success());
    assert_eq!(rig.trace().len(), before, "the modem was used");
    let uri = format!("iotsafe:modem={};key-id=01", rig.port_str());
    let unconfigured = openssl_with_modem(None, &["pkey", "-in", &uri]);
    assert!(
        text(&unconfigured.stderr).contains("no modem is configured"),
        "{}",
        text(&unconfigured.stderr)
    );
    let port = rig.port_str();
    let log = path("provider.log");
    let openssl = |args: &[&str]| {
        let mut command = openssl_command(Some(&port), args);
        command.env("IOTSAFE_DEBUG_LOG", &log).output().unwrap()
    };
    let public = ok(openssl(&[
        "pkey",
        "-in",
        &path("dev.keyref.pem"),
        "-pubout",
    ]));
    assert_eq!(public, std::fs::read_to_string(path("pub.pem")).unwrap());

    std::fs::write(path("data"), b"over the air").unwrap();
    let before = rig.trace().len();
    let at_before = rig.at_commands().len();
    ok(openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &path("dev.keyref.pem"),
        "-out",
        &path("sig"),
        &path("data"),
    ]));
    let signing: Vec<String> = rig.trace()[before..]
        .iter()
        .filter(|l| matches!(l.get(2..4), Some("2A" | "2B")))
        .cloned()
        .collect();
    assert_eq!(signing.len(), 2, "{signing:?}");
    let signing_at: Vec<String> = rig.at_commands()[at_before..]
        .iter()
        .filter(|c| c.contains("\"012A") || c.contains("\"012B"))
        .cloned()
        .collect();
    assert!(
        signing_at.len() == 2 && signing_at.iter().all(|c| c.starts_with(mode.apdu_command)),
        "{}: {signing_at:?}",
        mode.name
    );
    // The debug log says which AT commands the provider drives the modem with.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(&format!("APDUs to {port} {}", mode.route)),
        "{}: {logged}",
        mode.name
    );
    let verified = ok(Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-verify",
            &path("pub.pem"),
            "-signature",
            &path("sig"),
            &path("data"),
        ])
        .output()
        .unwrap());
    assert!(verified.contains("Verified OK"));
}

/// The `openssl` tool with the provider, and the modem configured through IOTSAFE_MODEM.
fn openssl_with_modem(modem: Option<&str>, args: &[&str]) -> Output {
    openssl_command(modem, args).output().unwrap()
}

fn openssl_command(modem: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new("openssl");
    command
        .args(args)
        .env("OPENSSL_CONF", common::example_openssl_conf())
        .env("OPENSSL_MODULES", common::built_library_dir())
        .env_remove("IOTSAFE_MODEM");
    if let Some(modem) = modem {
        command.env("IOTSAFE_MODEM", modem);
    }
    command
}

/// Mutual TLS 1.3: `openssl s_client` with the card's key through the modem, against a
/// server that requires exactly the card's certificate; the handshake's signature is two AT
/// commands of the mode's kind.
fn mutual_tls_over(mode: &ModemMode) {
    let rig = ModemRig::start(mode.sim_args);
    let dir = rig.dir.path().to_path_buf();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    ok(rig.iotsafe(&["keyref", "--out", &path("dev.keyref.pem")]));
    ok(rig.iotsafe(&["cert", "--out", &path("dev.pem")]));
    let card_cert = X509::from_pem(&std::fs::read(path("dev.pem")).unwrap()).unwrap();
    let server = common::pki::leaf(&dir, "srv", "server", &[], None);
    let (port, verified) = tls_server(&server, &card_cert);

    let at_before = rig.at_commands().len();
    let modem = rig.port_str();
    let mut client = openssl_command(
        Some(&modem),
        &[
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_3",
            "-cert",
            &path("dev.pem"),
            "-key",
            &path("dev.keyref.pem"),
            "-CAfile",
            server.cert_path.to_str().unwrap(),
            "-verify_return_error",
        ],
    )
    .stdin(std::process::Stdio::null())
    .output()
    .unwrap();
    let outcome = verified.join().unwrap();
    assert!(
        client.status.success(),
        "{}: s_client failed: {}{}",
        mode.name,
        text(&client.stdout),
        text(&std::mem::take(&mut client.stderr))
    );
    assert_eq!(
        outcome,
        Ok(()),
        "{}: the server's view of the client",
        mode.name
    );
    let signing: Vec<String> = rig.at_commands()[at_before..]
        .iter()
        .filter(|c| c.contains("\"012A") || c.contains("\"012B"))
        .cloned()
        .collect();
    assert!(
        signing.len() == 2 && signing.iter().all(|c| c.starts_with(mode.apdu_command)),
        "{}: {signing:?}",
        mode.name
    );
}

/// A TLS 1.3 server (software key) for one connection, which requires a client certificate
/// and reports whether it was `expected`.
fn tls_server(
    server: &common::pki::Issued,
    expected: &X509,
) -> (u16, std::thread::JoinHandle<Result<(), String>>) {
    let mut acceptor = SslAcceptor::mozilla_modern_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(&server.key).unwrap();
    acceptor.set_certificate(&server.cert).unwrap();
    acceptor
        .cert_store_mut()
        .add_cert(expected.clone())
        .unwrap();
    acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let expected = expected.to_der().unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
        let mut tls = acceptor.accept(stream).map_err(|e| e.to_string())?;
        let peer = tls
            .ssl()
            .peer_certificate()
            .ok_or("no client certificate")?;
        if peer.to_der().unwrap() != expected {
            return Err("another client certificate".into());
        }
        let _ = std::io::Write::write_all(&mut tls, b"k");
        let _ = tls.shutdown();
        Ok(())
    });
    (port, handle)
}

#[test]
fn mutual_tls_with_the_card_key_over_modem_channels() {
    mutual_tls_over(&CHANNELS);
}

#[test]
fn mutual_tls_with_the_card_key_over_at_csim() {
    mutual_tls_over(&CSIM);
}

/// A terminal that is not a modem: both ends of a pseudo-terminal, as a user's terminal.
struct Terminal {
    master: File,
    slave: File,
    path: String,
}

impl Terminal {
    fn open() -> Terminal {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty fills in two descriptors, which become owned Files here.
        unsafe {
            assert_eq!(
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    std::ptr::null()
                ),
                0
            );
            libc::fcntl(master, libc::F_SETFL, libc::O_NONBLOCK);
            let path = std::fs::read_link(format!("/proc/self/fd/{slave}")).unwrap();
            Terminal {
                master: File::from_raw_fd(master),
                slave: File::from_raw_fd(slave),
                path: path.to_string_lossy().into_owned(),
            }
        }
    }

    /// The line settings that matter (flags and control characters) and the speed.
    fn settings(&self) -> (u32, u32, u32, u32, Vec<u8>, u32) {
        // SAFETY: tcgetattr fills in the plain-data struct from our own descriptor.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.slave.as_raw_fd(), &mut t), 0);
            (
                t.c_iflag,
                t.c_oflag,
                t.c_cflag,
                t.c_lflag,
                t.c_cc.to_vec(),
                libc::cfgetospeed(&t),
            )
        }
    }

    /// What was written to the terminal (by anyone but its owner).
    fn written(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = self.master.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }
}

/// A key reference (or URI) naming some terminal as its modem is refused before the
/// terminal is opened: its line settings stay as they were and nothing is written to it.
#[test]
fn provider_refuses_a_key_reference_naming_a_terminal_as_its_modem() {
    let rig = ModemRig::start(&[]);
    let mut terminal = Terminal::open();
    let before = terminal.settings();
    let dir = rig.dir.path();
    let keyref = dir.join("hostile.keyref.pem");
    let uri = format!("iotsafe:modem={};key-id=01", terminal.path);
    std::fs::write(&keyref, iotsafe_dane::provider::uri::keyref_pem(&uri)).unwrap();
    let keyref = keyref.to_str().unwrap();
    let port = rig.port_str();
    // Through a key-reference file (`openssl pkey` drops a decoder's error text) ...
    for configured in [None, Some(port.as_str())] {
        let out = openssl_with_modem(configured, &["pkey", "-in", keyref]);
        assert!(!out.status.success(), "key reference with {configured:?}");
    }
    // ... and through the store, which keeps it.
    for (configured, expected) in [
        (None, "no modem is configured"),
        (Some(port.as_str()), "the configured modem is"),
    ] {
        let out = openssl_with_modem(configured, &["pkey", "-in", &uri]);
        assert!(!out.status.success(), "URI with {configured:?}");
        let message = text(&out.stderr);
        assert!(
            message.contains(&format!("names modem {}", terminal.path))
                && message.contains(expected),
            "URI with {configured:?}: {message}"
        );
    }
    assert_eq!(
        terminal.settings(),
        before,
        "the terminal's line settings changed"
    );
    assert_eq!(
        text(&terminal.written()),
        "",
        "something was written to the terminal"
    );
}

/// A long-lived TLS server (`openssl s_server`) whose key is on the card behind the modem's
/// logical channel: between two handshakes another host restarts the modem, which forgets the
/// channel. The next handshake still succeeds: the provider opens a new channel, once, and the
/// AT commands show it.
#[test]
fn a_server_key_survives_a_modem_reset_between_handshakes() {
    let rig = ModemRig::start(CHANNELS.sim_args);
    let dir = rig.dir.path().to_path_buf();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    ok(rig.iotsafe(&["keyref", "--out", &path("dev.keyref.pem")]));
    ok(rig.iotsafe(&["cert", "--out", &path("dev.pem")]));
    let port = common::free_port();
    let modem = rig.port_str();
    let mut server = openssl_command(
        Some(&modem),
        &[
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-naccept",
            "2",
            "-tls1_3",
            "-cert",
            &path("dev.pem"),
            "-key",
            &path("dev.keyref.pem"),
        ],
    );
    let server = server
        .env("IOTSAFE_DEBUG_LOG", path("provider.log"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = KillOnDrop(server);
    // (A probe connection would use up an accept: wait for the listening socket.)
    let listening = format!(":{port:04X} ");
    common::wait_until(10, "s_server", || {
        std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains(&listening) && l.contains(" 0A "))
        })
    });
    let handshake = || {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args([
                "-tls1_3",
                "-CAfile",
                &path("dev.pem"),
                "-verify_return_error",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    handshake();
    rig.reset_modem();
    let after_reset = rig.at_commands().len();
    handshake();
    drop(server);
    let mut commands = rig.at_commands()[after_reset..].to_vec();
    // A server that ended on its own after its last connection closed its channel at exit.
    if commands.last().is_some_and(|c| c == "AT+CCHC=1") {
        commands.pop();
    }
    // The refused AT+CGLA's session is closed (the modem no longer has it: best effort), the
    // channel opened anew, the signature sent on it.
    let reopened = [
        "AT+CCHC=1",
        "ATE0",
        "AT+CCHO=?",
        "AT+CCHO=\"A0000005590010\"",
    ];
    assert!(
        commands.len() == 7
            && commands[0].starts_with("AT+CGLA=1,36,\"012A")
            && commands[1..5] == reopened
            && commands[5..].iter().all(|c| c.starts_with("AT+CGLA=1,")),
        "{commands:?}"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
