//! Real parts for the integration tests: each rig starts its own daemons and stops them on drop.
#![allow(dead_code)]

pub mod card;

use std::net::TcpListener;
use std::path::PathBuf;

/// A directory of the workspace's built binaries (target/debug or target/release).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target directory")
        .to_path_buf()
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
