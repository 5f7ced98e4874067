//! The library in-process against a simulated eSIM behind a real pcscd: the steady-state cost
//! of a signature, counted by the card's own APDU trace.

mod common;

use common::card::CardRig;
use iotsafe_dane::iotsafe::{Applet, AppletConfig, HashAlg, ObjectRef};

#[test]
fn steady_state_signature_costs_exactly_two_apdus() {
    let rig = CardRig::start(&[]);
    let mut applet = Applet::open_pcsc(None, AppletConfig::default()).expect("applet");
    // Back-to-back signatures in one kept PC/SC transaction, as the provider makes them
    // (each new transaction costs one more APDU: the SELECT that confirms our channel).
    applet.keep_between_operations(true);
    let key = ObjectRef::Id(vec![0x01]);
    applet
        .sign_digest(&key, HashAlg::Sha256, &[0x42; 32])
        .expect("first signature");
    let before = rig.trace().len();

    const SIGNATURES: usize = 10;
    for i in 0..SIGNATURES {
        applet
            .sign_digest(&key, HashAlg::Sha256, &[i as u8; 32])
            .expect("signature");
    }
    let trace = rig.trace();
    let signing: Vec<&String> = trace[before..].iter().collect();
    assert_eq!(
        signing.len(),
        2 * SIGNATURES,
        "APDUs for {SIGNATURES} signatures: {signing:#?}"
    );
    for pair in signing.chunks(2) {
        // CLA 01: our logical channel, kept open; INIT opens (P1 00), UPDATE is the last block.
        assert!(pair[0].starts_with("012A0001"), "INIT: {}", pair[0]);
        assert!(pair[1].starts_with("012B8001"), "UPDATE: {}", pair[1]);
    }
    assert!(
        !signing.iter().any(|l| l[2..].starts_with("70")
            || l[2..].starts_with("A4")
            || l.starts_with("012A01")),
        "no MANAGE CHANNEL, SELECT or session close on the signing path"
    );
}
