//! The card behind a modem's AT command port, played by `iotsafe-sim --modem`: through the
//! modem's own logical channels (`AT+CCHO`/`AT+CGLA`/`AT+CCHC`) or, when the modem refuses
//! them, `AT+CSIM`.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::modem::{ModemMode, ModemRig, CHANNELS, CSIM, MODES};
use common::{ok, stderr};
use iotsafe_dane::iotsafe::{Applet, AppletConfig, HashAlg, ObjectRef};

/// The tool signs (verified by openssl), lists and describes the applet over `mode`; `info`
/// names the AT commands used; every APDU travels by the mode's AT command; the modem's
/// channel is given back when the tool exits.
fn tool_works_over(mode: &ModemMode, extra_sim_args: &[&str]) {
    let args: Vec<&str> = mode
        .sim_args
        .iter()
        .chain(extra_sim_args)
        .copied()
        .collect();
    let rig = ModemRig::start(&args);
    common::sign_and_verify(rig.dir.path(), &|args| rig.iotsafe(args), "sha256");
    assert_eq!(ok(rig.iotsafe(&["objects"])).lines().count(), 3);
    let info = ok(rig.iotsafe(&["info"]));
    let first = info.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("modem:        {} {}", rig.port_str(), mode.route)),
        "{}: {info}",
        mode.name
    );
    let commands = rig.at_commands();
    let other = if mode.name == CHANNELS.name {
        CSIM.apdu_command
    } else {
        CHANNELS.apdu_command
    };
    assert!(
        commands.iter().all(|c| !c.starts_with(other)),
        "{}: {commands:?}",
        mode.name
    );
    if mode.name == CHANNELS.name {
        let opened = commands
            .iter()
            .filter(|c| c.starts_with("AT+CCHO=\""))
            .count();
        let closed = commands.iter().filter(|c| *c == "AT+CCHC=1").count();
        assert!(opened >= 4, "{commands:?}");
        assert_eq!(opened, closed, "every channel closed: {commands:?}");
        assert_eq!(commands.last().map(String::as_str), Some("AT+CCHC=1"));
    }
}

#[test]
fn the_tool_works_over_modem_channels() {
    tool_works_over(&CHANNELS, &[]);
}

#[test]
fn the_tool_falls_back_to_at_csim_when_the_modem_has_no_ccho() {
    tool_works_over(&CSIM, &[]);
}

/// A modem that has AT+CCHO but will not open a channel for the applet: the session opens
/// its own through AT+CSIM, and `info` says why.
#[test]
fn the_tool_falls_back_to_at_csim_when_the_modem_refuses_the_channel() {
    let refusing = ModemMode {
        sim_args: &["--modem-refuse-ccho", "not-allowed"],
        route: "by AT+CSIM (the modem opened no logical channel for the applet: modem ",
        ..CSIM
    };
    tool_works_over(&refusing, &[]);
    let rig = ModemRig::start(refusing.sim_args);
    let info = ok(rig.iotsafe(&["info"]));
    assert!(
        info.contains("answered +CME ERROR: 3 to AT+CCHO)"),
        "{info}"
    );
}

/// Echo that ATE0 does not stop, unsolicited result codes around every answer, answers that
/// come late and in pieces: the same, over each mode.
#[test]
fn modem_quirks_are_taken_in_stride_over_each_mode() {
    for mode in &MODES {
        tool_works_over(
            mode,
            &["--modem-echo", "--modem-urcs", "--modem-slow-ms", "5"],
        );
    }
}

#[test]
fn steady_state_signature_over_a_modem_is_two_at_commands_in_each_mode() {
    for mode in &MODES {
        let rig = ModemRig::start(mode.sim_args);
        let mut applet =
            Applet::open_modem(&rig.port_str(), AppletConfig::default()).expect("applet");
        let key = ObjectRef::Id(vec![1]);
        applet.sign_digest(&key, HashAlg::Sha256, &[7; 32]).unwrap();
        let (before, at_before) = (rig.trace().len(), rig.at_commands().len());
        for i in 0..5u8 {
            applet.sign_digest(&key, HashAlg::Sha256, &[i; 32]).unwrap();
        }
        let commands: Vec<String> = rig.trace()[before..]
            .iter()
            .map(|l| l[..4].to_string())
            .collect();
        assert_eq!(commands, ["012A", "012B"].repeat(5), "{}", mode.name);
        assert_eq!(
            rig.apdu_commands_since(at_before, mode),
            (10, 10),
            "{}: {:?}",
            mode.name,
            rig.at_commands()
        );
    }
}

/// Another host on the port restarts the modem (`AT+CFUN=1,1`), which forgets its logical
/// channels and turns echo back on: the next signature opens a new channel, once, and works.
#[test]
fn a_modem_reset_between_signatures_reopens_the_channel_once() {
    let rig = ModemRig::start(&[]);
    let mut applet = Applet::open_modem(&rig.port_str(), AppletConfig::default()).expect("applet");
    let key = ObjectRef::Id(vec![1]);
    applet.sign_digest(&key, HashAlg::Sha256, &[7; 32]).unwrap();
    rig.reset_modem();
    let after_reset = rig.at_commands().len();
    applet.sign_digest(&key, HashAlg::Sha256, &[8; 32]).unwrap();
    let commands = rig.at_commands()[after_reset..].to_vec();
    let expected_start = [
        "AT+CGLA=1,36,\"012A00010D840101A1010391020001920104\"",
        "AT+CCHC=1",
        "ATE0",
        "AT+CCHO=?",
        "AT+CCHO=\"A0000005590010\"",
    ];
    assert_eq!(commands[..5], expected_start, "{commands:?}");
    assert!(
        commands[5..].iter().all(|c| c.starts_with("AT+CGLA=1,")) && commands.len() == 7,
        "{commands:?}"
    );
    drop(applet);
    assert_eq!(
        rig.at_commands().last().map(String::as_str),
        Some("AT+CCHC=1")
    );
}

/// The modem refuses one `AT+CGLA` for a reason of its own (busy with the SIM) while the
/// session stays open: the host closes that session before opening a new one, so the modem is
/// left with one channel, not a forgotten one beside it.
#[test]
fn a_refused_cgla_closes_its_session_before_a_new_one_is_opened() {
    let rig = ModemRig::start(&[]);
    let mut applet = Applet::open_modem(&rig.port_str(), AppletConfig::default()).expect("applet");
    let key = ObjectRef::Id(vec![1]);
    applet.sign_digest(&key, HashAlg::Sha256, &[7; 32]).unwrap();
    rig.another_host_sends("AT+XBUSY");
    let after_busy = rig.at_commands().len();
    applet.sign_digest(&key, HashAlg::Sha256, &[8; 32]).unwrap();
    let commands = rig.at_commands()[after_busy..].to_vec();
    assert!(commands[0].starts_with("AT+CGLA=1,"), "{commands:?}");
    assert_eq!(
        commands[1], "AT+CCHC=1",
        "closed before anything else: {commands:?}"
    );
    assert!(
        commands.contains(&"AT+CCHO=\"A0000005590010\"".to_string()),
        "{commands:?}"
    );
    drop(applet);
    // The new session got channel 1 again (it was free): nothing was left open.
    assert_eq!(
        rig.at_commands().last().map(String::as_str),
        Some("AT+CCHC=1")
    );
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

/// Processes signing at once through one modem (as many as the card has logical channels):
/// each gets a channel of its own from the modem, the port's lock keeps their AT commands
/// apart, and each gives its channel back.
#[test]
fn processes_sign_at_once_over_modem_channels() {
    let rig = ModemRig::start(&[]);
    let digest = "33".repeat(32);
    let signers: Vec<_> = (0..3)
        .map(|_| {
            rig.command()
                .args(["sign", "--digest", &digest])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for signer in signers {
        let out = signer.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let commands = rig.at_commands();
    let opened = commands
        .iter()
        .filter(|c| c.starts_with("AT+CCHO=\""))
        .count();
    let closed = commands
        .iter()
        .filter(|c| c.starts_with("AT+CCHC="))
        .count();
    assert_eq!((opened, closed), (3, 3), "{commands:?}");
    assert!(
        commands.iter().all(|c| !c.starts_with("AT+CSIM")),
        "{commands:?}"
    );
}
