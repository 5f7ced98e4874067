//! The iotsafe provider with the SIM behind a modem's AT port (configured by `IOTSAFE_MODEM`;
//! a key reference may name that modem and no other device), with the real `openssl` tool
//! as the application.

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::process::{Command, Output};

use common::modem::ModemRig;

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
fn provider_signs_through_a_modem_with_two_at_commands() {
    let rig = ModemRig::start(&[]);
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
    let openssl = |args: &[&str]| openssl_with_modem(Some(&port), args);
    let public = ok(openssl(&[
        "pkey",
        "-in",
        &path("dev.keyref.pem"),
        "-pubout",
    ]));
    assert_eq!(public, std::fs::read_to_string(path("pub.pem")).unwrap());

    std::fs::write(path("data"), b"over the air").unwrap();
    let before = rig.trace().len();
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
    let mut command = Command::new("openssl");
    command
        .args(args)
        .env("OPENSSL_CONF", common::example_openssl_conf())
        .env("OPENSSL_MODULES", common::built_library_dir())
        .env_remove("IOTSAFE_MODEM");
    if let Some(modem) = modem {
        command.env("IOTSAFE_MODEM", modem);
    }
    command.output().unwrap()
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
