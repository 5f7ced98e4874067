//! The options that choose which real card the simulator plays are documented in `--help`,
//! and their bad values are refused with a message naming the option.

use std::process::Command;

const SIM: &str = env!("CARGO_BIN_EXE_iotsafe-sim");

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(SIM).args(args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn help_documents_aids_channels_and_layout() {
    let (ok, help) = run(&["--help"]);
    assert!(ok);
    for text in [
        "--aid <HEX|NAME>",
        "gsma, thales or cira",
        "--channels <N>",
        "--layout <LAYOUT>",
        "separate",
        "--pub-key-label <S>",
    ] {
        assert!(help.contains(text), "--help lacks {text:?}:\n{help}");
    }
}

#[test]
fn bad_card_model_values_are_refused_by_name() {
    for (args, message) in [
        (&["--aid", "nokia"][..], "--aid nokia"),
        (
            &["--channels", "21"][..],
            "--channels 21: a card has 1 to 20 channels",
        ),
        (
            &["--layout", "separate", "--pub-key-id", "01"][..],
            "--layout separate: the public key needs an id of its own",
        ),
        (&["--layout", "split"][..], "--layout"),
    ] {
        let (ok, text) = run(&[&["--vpcd", "127.0.0.1:1"], args].concat());
        assert!(!ok, "{args:?} accepted");
        assert!(text.contains(message), "{args:?}: {text}");
    }
}
