//! Real parts for the integration tests: each rig starts its own daemons and stops them on drop.
#![allow(dead_code)]

pub mod capi;
pub mod card;
pub mod device;
pub mod dns;
pub mod dnsproxy;
pub mod escaped;
pub mod modem;
pub mod mqtt;
pub mod named;
pub mod pki;
pub mod registry;
pub mod tls;
pub mod unbound;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A directory of the workspace's built binaries (target/debug or target/release).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .to_path_buf()
}

/// The directory of the built `libiotsafe_dane.so`, which also holds it as `iotsafe.so`, the
/// module name openssl.cnf uses (`OPENSSL_MODULES`), and under its SONAME. Tests do not build:
/// `make build` does, and a library older than the sources would test old code.
pub fn built_library_dir() -> PathBuf {
    let dir = target_dir();
    let library = dir.join("libiotsafe_dane.so");
    assert!(
        is_fresh(&library),
        "{} is missing or older than the sources: run `make build` first",
        library.display()
    );
    // The module name openssl.cnf uses, and the SONAME programs linked with -liotsafe_dane
    // ask for (as `make build` makes them).
    let soname = format!("libiotsafe_dane.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
    for link in ["iotsafe.so", soname.as_str()] {
        if !dir.join(link).exists() {
            let _ = std::os::unix::fs::symlink("libiotsafe_dane.so", dir.join(link));
        }
    }
    dir
}

/// The built broker plugin, `target/<profile>/iotsafe_mosquitto.so` (`make build` makes it).
pub fn built_mosquitto_plugin() -> PathBuf {
    built_adapter("iotsafe_mosquitto.so", "plugins/mosquitto")
}

/// A C adapter `make build` put beside the library (`iotsafe-run`, `libiotsafe_preload.so`):
/// the test fails when it is missing or older than its sources in `sources` (or than the
/// library), never runs an old one.
pub fn built_adapter(name: &str, sources: &str) -> PathBuf {
    let dir = built_library_dir();
    let built = dir.join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let built_at = modified(&built);
    let mut inputs = vec![
        dir.join("libiotsafe_dane.so"),
        root.join("include/iotsafe_dane.h"),
    ];
    inputs.extend(
        std::fs::read_dir(root.join(sources))
            .expect("adapter sources")
            .flatten()
            .map(|e| e.path()),
    );
    let stale = inputs.iter().find(|p| modified(p) > built_at);
    assert!(
        built_at.is_some() && stale.is_none(),
        "{} is missing or older than {}: run `make build` first",
        built.display(),
        stale.map_or(String::new(), |p| p.display().to_string())
    );
    built
}

/// The example configuration that loads the provider (c-examples/openssl.cnf).
pub fn example_openssl_conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("c-examples/openssl.cnf")
}

/// Whether `built` exists and is newer than every source file of the library.
fn is_fresh(built: &Path) -> bool {
    fn newest(path: &Path) -> std::time::SystemTime {
        let own = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        match std::fs::read_dir(path) {
            Ok(entries) => entries
                .flatten()
                .map(|e| newest(&e.path()))
                .fold(own, std::cmp::max),
            Err(_) => own,
        }
    }
    let Ok(built) = std::fs::metadata(built).and_then(|m| m.modified()) else {
        return false;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["src", "crates", "Cargo.toml"]
        .iter()
        .all(|p| newest(&root.join(p)) <= built)
}

/// A workspace binary built beside the tests (the simulator lives in its own crate).
pub fn workspace_binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// A loopback port free for both UDP and TCP at the time of the call.
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Two consecutive free TCP ports (vpcd listens on a pair), chosen at random to keep tests that
/// run at once apart.
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let base = 20000 + (rand_u16() % 20000) * 2;
        let both_free = TcpListener::bind(("0.0.0.0", base)).is_ok()
            && TcpListener::bind(("0.0.0.0", base + 1)).is_ok();
        if both_free {
            return base;
        }
    }
    panic!("no free port pair");
}

fn rand_u16() -> u16 {
    let mut bytes = [0u8; 2];
    openssl::rand::rand_bytes(&mut bytes).expect("random bytes");
    u16::from_ne_bytes(bytes)
}

/// Polls `ready` every 50 ms until it holds or `seconds` pass.
pub fn wait_until(seconds: u64, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn ok(out: Output) -> String {
    assert!(out.status.success(), "command failed: {}", stderr(&out));
    stdout(&out)
}

pub fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl")
}

pub fn digest_hex(hash: &str, file: &Path) -> String {
    let out = openssl(&["dgst", &format!("-{hash}"), "-r", file.to_str().unwrap()]);
    ok(out).split_whitespace().next().unwrap().to_string()
}

/// Signs a message with the `iotsafe` tool (run by `iotsafe`) and checks the signature with
/// `openssl dgst -verify` against the key `iotsafe pubkey` printed; a tampered message must not
/// verify.
pub fn sign_and_verify(dir: &Path, iotsafe: &dyn Fn(&[&str]) -> Output, hash: &str) {
    let message = dir.join("message.txt");
    std::fs::write(&message, b"telemetry: 21.5 C").unwrap();
    let pubkey = dir.join("pub.pem");
    ok(iotsafe(&["pubkey", "--out", pubkey.to_str().unwrap()]));

    let digest = digest_hex(hash, &message);
    let signature_hex = ok(iotsafe(&["sign", "--digest", &digest, "--hash", hash]));
    let signature = iotsafe_dane::hex::decode(signature_hex.trim()).unwrap();
    let sig_file = dir.join("sig.der");
    std::fs::write(&sig_file, signature).unwrap();

    let verify = |file: &Path| {
        openssl(&[
            "dgst",
            &format!("-{hash}"),
            "-verify",
            pubkey.to_str().unwrap(),
            "-signature",
            sig_file.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
    };
    let good = verify(&message);
    assert!(
        good.status.success(),
        "openssl rejected the card's signature: {}",
        stdout(&good)
    );
    assert!(stdout(&good).contains("Verified OK"));

    let tampered = dir.join("tampered.txt");
    std::fs::write(&tampered, b"telemetry: 99.9 C").unwrap();
    assert!(
        !verify(&tampered).status.success(),
        "a signature over another message must not verify"
    );
}

/// `program args...` run with a private /etc/hosts that adds `entries` (name, address) to the
/// machine's, so that programs resolving through the system (getaddrinfo, libmosquitto) find
/// the test hierarchy's names. The file is bind-mounted in a new mount namespace of the child
/// only (`unshare -m`, needs root); the machine's /etc/hosts is untouched.
pub fn with_hosts(dir: &Path, entries: &[(&str, &str)], program: &Path) -> Command {
    let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    for (name, addr) in entries {
        hosts.push_str(&format!("\n{addr} {name}\n"));
    }
    let file = dir.join("hosts");
    std::fs::write(&file, hosts).expect("write hosts file");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
    ])
    .arg(&file)
    .arg(program);
    cmd
}
