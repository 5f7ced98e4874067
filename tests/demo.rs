//! `make demo` keeps its word: the demo program runs to its end against the real parts, and the
//! evidence it prints for each claim is there (a demo whose claims stopped holding fails here
//! even if it exited 0).

mod common;

#[test]
fn end_to_end_demo_runs_to_its_end_with_every_claim_shown() {
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
    let device = "sensor7._device.iotregistry.test";
    let step = |n: u32| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("[{n}/9] ")))
            .unwrap_or_else(|| panic!("no step {n}:\n{stdout}"))
    };
    let has = |n: u32, needles: &[&str]| {
        let line = step(n);
        for needle in needles {
            assert!(line.contains(needle), "step {n} lacks {needle:?}: {line}");
        }
    };
    has(
        1,
        &[
            "generated on the simulated eSIM",
            "enroll --genkey",
            "1 GENERATE KEY PAIR of",
        ],
    );
    has(
        2,
        &[
            "signed on the card",
            "iotsafe enroll",
            "2 signing APDUs",
            "req -verify OK",
            "TLSA 3 1 1 of the card's key",
        ],
    );
    has(3, &["openssl verify OK", &format!("SAN DNS:{device}")]);
    has(
        4,
        &[
            "iotsafe registry publish",
            "DNS UPDATE signed with TSIG",
            "seen secure through",
            "1 record(s), secure",
            "(DANE-EE) matched the certificate",
        ],
    );
    has(5, &["devices admitted by DNSSEC-validated TLSA"]);
    has(
        6,
        &[
            "(2 signing APDUs)",
            "mosquitto_sub received it",
            &format!("as sensor7._device.iotregistry.test/pub (p2, c1, k60, u'{device}')"),
        ],
    );
    has(
        7,
        &[
            "iotsafe registry revoke",
            "seen secure through",
            "kicked client sensor7._device.iotregistry.test/live",
            "NO_RECORDS",
        ],
    );
    has(
        8,
        &[
            "refused for NO_RECORDS",
            "refused client sensor7._device.iotregistry.test/retry",
            device,
        ],
    );
    has(
        9,
        &[
            "iotsafe registry publish again",
            "seen secure through",
            "connects again",
            "admitted client sensor7._device.iotregistry.test/back",
            device,
        ],
    );
    assert!(stdout.trim_end().ends_with("demo: OK"), "{stdout}");
}
