//! The card behind a modem's AT command port (`AT+CSIM`), played by `iotsafe-sim --modem`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::modem::ModemRig;
use common::{ok, stderr};
use iotsafe_dane::iotsafe::{Applet, AppletConfig, HashAlg, ObjectRef};

#[test]
fn signature_over_at_csim_verifies_with_openssl() {
    let rig = ModemRig::start(&[]);
    common::sign_and_verify(rig.dir.path(), &|args| rig.iotsafe(args), "sha256");
    assert_eq!(ok(rig.iotsafe(&["objects"])).lines().count(), 3);
}

#[test]
fn steady_state_signature_over_a_modem_is_two_at_commands() {
    let rig = ModemRig::start(&[]);
    let mut applet = Applet::open_modem(&rig.port_str(), AppletConfig::default()).expect("applet");
    let key = ObjectRef::Id(vec![1]);
    applet.sign_digest(&key, HashAlg::Sha256, &[7; 32]).unwrap();
    let before = rig.trace().len();
    for i in 0..5u8 {
        applet.sign_digest(&key, HashAlg::Sha256, &[i; 32]).unwrap();
    }
    let commands: Vec<String> = rig.trace()[before..]
        .iter()
        .map(|l| l[..4].to_string())
        .collect();
    assert_eq!(commands, ["012A", "012B"].repeat(5));
}

#[test]
fn modem_that_goes_away_mid_signature_is_a_clear_bounded_error() {
    let mut rig = ModemRig::start(&["--apdu-latency-ms", "500"]);
    let mut signer = rig
        .command()
        .args(["sign", "--digest", &"22".repeat(32)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_until(20, "COMPUTE SIGNATURE INIT", || {
        rig.trace().iter().any(|l| l[2..].starts_with("2A00"))
    });
    rig.stop_sim();
    let deadline = Instant::now() + Duration::from_secs(30);
    while signer.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the tool hangs after the modem went away"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = signer.wait_with_output().unwrap();
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains(&format!(
            "the card behind '{}' is unreachable",
            rig.port_str()
        )),
        "{message}"
    );

    let missing = rig.iotsafe(&["objects"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("cannot open modem"),
        "{}",
        stderr(&missing)
    );
}
