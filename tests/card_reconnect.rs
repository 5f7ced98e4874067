//! A long-lived session (as in a broker or a provider) survives the card going away and coming
//! back: the next operation after the card is back reconnects, re-selects and succeeds.

mod common;

use common::card::CardRig;
use iotsafe_dane::iotsafe::{Applet, AppletConfig, Error, HashAlg, ObjectRef};

#[test]
fn session_recovers_after_the_card_is_reinserted() {
    let mut rig = CardRig::start(&[]);
    let mut applet = Applet::open_pcsc(None, AppletConfig::default()).expect("applet");
    let key = ObjectRef::Id(vec![0x01]);
    let public_before = applet.read_public_key(&key).expect("public key");

    rig.stop_sim();
    let err = applet
        .sign_digest(&key, HashAlg::Sha256, &[1; 32])
        .unwrap_err();
    assert!(
        matches!(err, Error::CardAbsent { .. } | Error::CardReset { .. }),
        "{err}"
    );

    rig.start_sim();
    let before = rig.trace().len();
    applet
        .sign_digest(&key, HashAlg::Sha256, &[2; 32])
        .expect("signature after re-insertion");
    let trace = rig.trace();
    let commands: Vec<&str> = trace[before..].iter().map(|l| &l[..4]).collect();
    assert_eq!(
        commands,
        ["0070", "01A4", "012A", "012B"],
        "a new channel and SELECT, then the signature"
    );
    assert_eq!(
        applet.read_public_key(&key).unwrap(),
        public_before,
        "the same card"
    );
}

#[test]
fn session_recovers_after_another_process_resets_the_card() {
    let rig = CardRig::start(&[]);
    let mut applet = Applet::open_pcsc(None, AppletConfig::default()).expect("applet");
    let key = ObjectRef::Id(vec![0x01]);
    applet
        .sign_digest(&key, HashAlg::Sha256, &[1; 32])
        .expect("first signature");

    // Another client resets the card: our channel and selection are gone.
    let reset = rig
        .command("sh")
        .args([
            "-c",
            "printf 'reset\\n' | scriptor -r \"$0\" >/dev/null 2>&1 || true",
            "Virtual PCD 00 00",
        ])
        .status()
        .unwrap();
    assert!(reset.success());
    let before = rig.trace().len();
    applet
        .sign_digest(&key, HashAlg::Sha256, &[2; 32])
        .expect("signature after the reset");
    let trace = rig.trace();
    let commands: Vec<&str> = trace[before..].iter().map(|l| &l[..4]).collect();
    assert_eq!(
        commands,
        ["0070", "01A4", "012A", "012B"],
        "re-selected after the reset"
    );
}
