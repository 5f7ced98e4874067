//! The binary against a stand-in for the vpcd reader driver: framing, ATR,
//! reconnection, trace, SIGTERM, --fail-after and state persistence.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

const SIM: &str = env!("CARGO_BIN_EXE_iotsafe-sim");

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("iotsafe-sim-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The simulator process; killed if a test fails before it stops it.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_at(addr: &str, args: &[&str]) -> Sim {
    Sim(Command::new(SIM)
        .args(["--vpcd", addr])
        .args(args)
        .spawn()
        .unwrap())
}

fn spawn(listener: &TcpListener, args: &[&str]) -> Sim {
    spawn_at(&listener.local_addr().unwrap().to_string(), args)
}

/// Waits (at most 10 s, so a broken simulator fails rather than hangs)
/// for the simulator to connect.
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(start.elapsed() < Duration::from_secs(10), "no connection");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn send(s: &mut TcpStream, payload: &[u8]) {
    let mut frame = (payload.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    s.write_all(&frame).unwrap();
}

fn recv(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

fn apdu(s: &mut TcpStream, hex: &str) -> Vec<u8> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    send(s, &bytes);
    recv(s).unwrap()
}

fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(start.elapsed() < within, "simulator did not exit in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn terminate(child: &mut Child) -> ExitStatus {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_exit(child, Duration::from_secs(2))
}

fn trace_lines(p: &Path) -> usize {
    std::fs::read_to_string(p).unwrap().lines().count()
}

#[test]
fn serves_reconnects_traces_and_stops() {
    let dir = tmpdir("serve");
    let trace = dir.join("trace");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = spawn(
        &listener,
        &[
            "--provision",
            "--cla-style",
            "80",
            "--trace",
            trace.to_str().unwrap(),
        ],
    );
    let mut s = accept(&listener);
    send(&mut s, &[4]);
    let atr = recv(&mut s).unwrap();
    assert_eq!(&atr[..3], &[0x3B, 0x8A, 0x01]);
    send(&mut s, &[1]); // power on: no answer expected
    assert_eq!(apdu(&mut s, "0070000001"), [0x01, 0x90, 0x00]);
    assert_eq!(apdu(&mut s, "01A4040007A0000005590010"), [0x90, 0x00]);
    let sig = apdu(&mut s, "812A00010D840101A1010391020001920104");
    assert_eq!(sig, [0x90, 0x00]);
    let digest = "00".repeat(32);
    let r = apdu(&mut s, &format!("812B8001229E20{digest}"));
    assert_eq!(
        (r.len(), &r[..2], &r[66..]),
        (68, &[0x33, 0x40][..], &[0x90, 0x00][..])
    );
    assert_eq!(trace_lines(&trace), 4);
    let line = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(line.lines().next(), Some("0070000001 019000"));

    // Card reset closes the channel.
    send(&mut s, &[2]);
    assert_eq!(apdu(&mut s, "81CB000000"), [0x68, 0x81]);

    // The reader goes away: the simulator comes back with a fresh card.
    assert_eq!(apdu(&mut s, "0070000001"), [0x01, 0x90, 0x00]);
    drop(s);
    let mut s = accept(&listener);
    assert_eq!(apdu(&mut s, "81CB000000"), [0x68, 0x81]);
    assert_eq!(trace_lines(&trace), 7);

    assert!(terminate(&mut child.0).success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fail_after_pulls_the_card() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = spawn(&listener, &["--fail-after", "2"]);
    let mut s = accept(&listener);
    assert_eq!(apdu(&mut s, "0070000001"), [0x01, 0x90, 0x00]);
    send(&mut s, &[0x00, 0x70, 0x00, 0x00, 0x01]);
    assert!(recv(&mut s).is_err());
    let st = wait_exit(&mut child.0, Duration::from_secs(2));
    assert_eq!(st.code(), Some(3));
}

#[test]
fn stops_promptly_while_waiting_for_vpcd() {
    // Bind then drop to get a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = spawn_at(&format!("127.0.0.1:{port}"), &[]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(terminate(&mut child.0).success());
}

#[test]
fn state_persists_across_restarts() {
    let dir = tmpdir("persist");
    let state = dir.join("card.state");
    let run = |extra: &[&str]| {
        let out = Command::new(SIM)
            .args(["--state", state.to_str().unwrap(), "--print-pubkey"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run(&["--provision"]);
    assert!(first.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(run(&["--provision"]), first);
    assert_eq!(run(&[]), first);
    let _ = std::fs::remove_dir_all(&dir);
}
