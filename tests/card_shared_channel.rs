//! Another host on the same card takes our logical channel away between two operations of a
//! long-lived provider process (an `openssl s_server` with its key on the card): it closes the
//! channel, or selects another vendor's applet on it. The next handshake still succeeds: the
//! provider confirms its selection when it acquires the card again, finds the channel gone or
//! re-purposed, and selects its applet again before signing; the APDU trace shows it.
//!
//! And the provider's card connection under constant load (signature after signature, the PC/SC
//! transaction kept across them) still lets another host in.

mod common;

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use iotsafe_dane::iotsafe::{HashAlg, Target};
use iotsafe_dane::provider::card::Card;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::card::CardRig;
use iotsafe_dane::iotsafe::transport::{pcsc, Transport};

/// The other vendor's applet the simulator also carries.
const FOREIGN_AID: &str = "F0464F524549474E";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(rig: &CardRig, name: &str) -> String {
    rig.dir.path().join(name).to_str().unwrap().to_string()
}

fn ok(out: Output) {
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A TLS server whose key is on the card, serving `count` handshakes in one process.
fn card_server(rig: &CardRig, port: u16, count: usize) -> Child {
    let server = rig
        .command("openssl")
        .env("OPENSSL_CONF", common::example_openssl_conf())
        .env("OPENSSL_MODULES", common::built_library_dir())
        .env("IOTSAFE_DEBUG_LOG", path(rig, "provider.log"))
        .args(["s_server", "-tls1_3", "-accept", &port.to_string()])
        .args(["-naccept", &count.to_string()])
        .args(["-cert", &path(rig, "dev.pem")])
        .args(["-key", &path(rig, "dev.keyref.pem")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start s_server");
    let listening = format!(":{port:04X} ");
    common::wait_until(10, "s_server", || {
        ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
            std::fs::read_to_string(table).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.contains(&listening) && l.contains(" 0A "))
            })
        })
    });
    server
}

/// One TLS 1.3 handshake with the server (a plain client: the server's key signs).
fn handshake(rig: &CardRig, port: u16) {
    let out = rig
        .command("openssl")
        .env_remove("OPENSSL_CONF")
        .args([
            "s_client",
            "-tls1_3",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run s_client");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("New, TLSv1.3, Cipher is")
            && stdout.contains("Peer signature type: ECDSA")
            && !text(&out.stderr).contains("alert"),
        "handshake failed: {stdout}{}",
        text(&out.stderr)
    );
}

/// The logical channel the provider opened: the answer to its last MANAGE CHANNEL open.
fn providers_channel(rig: &CardRig) -> u8 {
    let trace = rig.trace();
    let open = trace
        .iter()
        .rev()
        .find(|l| l.starts_with("0070000001 "))
        .expect("the provider opened a channel");
    u8::from_str_radix(&open[11..13], 16).unwrap()
}

/// A second host: its own PC/SC connection, sending `apdus` (hex) in one transaction.
fn second_host(apdus: &[String]) -> Vec<String> {
    let reader = pcsc::matching_readers(None).unwrap().remove(0);
    let mut transport = pcsc::PcscTransport::connect(&reader).unwrap();
    let mut link = transport.link().unwrap();
    apdus
        .iter()
        .map(|apdu| {
            let command = iotsafe_dane::hex::decode(apdu).unwrap();
            iotsafe_dane::hex::encode(&link.transmit(&command).unwrap())
        })
        .collect()
}

/// The trace lines from `from` on, as `<first 4 command bytes' hex> <status word>`.
fn commands_since(rig: &CardRig, from: usize) -> Vec<String> {
    rig.trace()[from..]
        .iter()
        .map(|l| {
            let (command, response) = l.split_once(' ').unwrap();
            format!("{} {}", &command[..8], &response[response.len() - 4..])
        })
        .collect()
}

fn setup() -> CardRig {
    let rig = CardRig::start(&["--foreign-aid", FOREIGN_AID]);
    ok(rig.iotsafe(&["keyref", "--out", &path(&rig, "dev.keyref.pem")]));
    ok(rig.iotsafe(&["cert", "--out", &path(&rig, "dev.pem")]));
    rig
}

fn finish(server: Child) {
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success(), "s_server: {}", text(&out.stderr));
}

/// The server ended on its own after its last connection: its provider gave the logical
/// channel back at teardown (MANAGE CHANNEL close), which is not part of the recovery.
fn without_close_at_exit(mut commands: Vec<String>) -> Vec<String> {
    if commands
        .last()
        .is_some_and(|c| c.starts_with("007080") && c.ends_with(" 9000"))
    {
        commands.pop();
    }
    commands
}

fn log_of(rig: &CardRig) -> String {
    std::fs::read_to_string(Path::new(&path(rig, "provider.log"))).unwrap_or_default()
}

#[test]
fn a_channel_closed_by_another_host_is_reopened_before_the_next_signature() {
    let rig = setup();
    let port = free_port();
    let server = card_server(&rig, port, 2);
    handshake(&rig, port);
    let channel = providers_channel(&rig);

    let close = format!("007080{channel:02X}");
    assert_eq!(second_host(&[close]), ["9000"], "the other host closed it");
    let before = rig.trace().len();
    handshake(&rig, port);
    finish(server);

    let cla = format!("{channel:02X}");
    let after = without_close_at_exit(commands_since(&rig, before));
    assert_eq!(
        after,
        [
            format!("{cla}A4040C 6881"),
            "00700000 9000".to_string(),
            format!("{cla}A40400 9000"),
            format!("{cla}2A0001 9000"),
            format!("{cla}2B8001 9000"),
        ],
        "the check finds the channel closed; a new one, SELECT, the signature\n{}",
        log_of(&rig)
    );
}

#[test]
fn a_channel_re_used_by_another_hosts_applet_is_selected_again_before_the_next_signature() {
    let rig = setup();
    let port = free_port();
    let server = card_server(&rig, port, 2);
    handshake(&rig, port);
    let channel = providers_channel(&rig);

    let foreign = format!(
        "{channel:02X}A40400{:02X}{FOREIGN_AID}",
        FOREIGN_AID.len() / 2
    );
    let probe = format!("{channel:02X}2A000100");
    assert_eq!(
        second_host(&[foreign, probe]),
        ["9000", "6D00"],
        "the other host's applet now answers on the provider's channel"
    );
    let before = rig.trace().len();
    handshake(&rig, port);
    finish(server);

    let cla = format!("{channel:02X}");
    let after = without_close_at_exit(commands_since(&rig, before));
    assert_eq!(
        after,
        [
            format!("{cla}A4040C 9000"),
            format!("{cla}2A0001 9000"),
            format!("{cla}2B8001 9000"),
        ],
        "the check selects the applet again on the same channel, then the signature\n{}",
        log_of(&rig)
    );
}

/// The provider's connection to the card signing every 10 ms (a server under constant load),
/// holding its PC/SC transaction for up to a minute of idle time, far beyond each 10 ms gap:
/// after the longest continuous hold it lets go for longer than pcsc-lite's waiters poll, so a
/// second host that waits for the card gets it while the signing goes on.
#[test]
fn another_host_gets_the_card_from_a_provider_under_constant_load() {
    let _rig = setup();
    let card = Card::holding(
        Box::new(|| Target::default().connect()),
        Duration::from_secs(60),
    );
    let key = card.default_key().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (card, stop) = (card.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut signatures = 0;
            while !stop.load(Ordering::SeqCst) {
                card.sign_digest(&key, HashAlg::Sha256, &[7; 32]).unwrap();
                signatures += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            signatures
        })
    };
    std::thread::sleep(Duration::from_millis(200));

    let (got, card_reached) = std::sync::mpsc::channel();
    let waiting = Instant::now();
    std::thread::spawn(move || {
        let reader = pcsc::matching_readers(None).unwrap().remove(0);
        let mut transport = pcsc::PcscTransport::connect(&reader).unwrap();
        let link = transport.link().map(|_| ()).map_err(|e| e.to_string());
        let _ = got.send(link);
    });
    let outcome = card_reached.recv_timeout(Duration::from_secs(10));
    let waited = waiting.elapsed();
    stop.store(true, Ordering::SeqCst);
    let signatures = load.join().unwrap();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("the second host's transaction failed: {e}"),
        Err(_) => panic!("the second host waited {waited:?} during {signatures} signatures"),
    }
    assert!(signatures > 20, "the load ran: {signatures} signatures");
}
