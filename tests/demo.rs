//! `make demo` keeps working: the demo program runs to its end against the real parts.

mod common;

#[test]
fn end_to_end_demo_runs_to_its_end() {
    let demo = common::target_dir().join("examples").join("demo");
    assert!(
        demo.exists(),
        "{} is not built: run `cargo build --workspace --all-targets`",
        demo.display()
    );
    let out = std::process::Command::new(&demo)
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Verified OK"), "{stdout}");
    assert!(stdout.contains("AUTHENTICATED: TLSA 3 1 1"), "{stdout}");
    assert!(
        stdout.contains("u'iotsafe-sim device'"),
        "mutual TLS with the card key: {stdout}"
    );
    assert!(
        stdout.contains("the card signed the handshake with 2 APDUs"),
        "{stdout}"
    );
    assert!(stdout.contains("(refused, as it should be)"), "{stdout}");
    assert!(stdout.trim_end().ends_with("demo: OK"), "{stdout}");
}
