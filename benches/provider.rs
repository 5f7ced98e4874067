//! `make bench`: TLS 1.3 mutual-authentication handshakes over loopback with the client key on
//! the simulated card versus a software key, in the same run; prints `BENCH <name> <value>`.
//! Run by `make bench` (`cargo bench --bench provider`, after a release build of the workspace).
//!
//! The same over a modem's AT port, in each of its two ways (`AT+CGLA` on a logical channel
//! the modem opens, `AT+CSIM`), each in a child process of this bench: the provider reads the
//! modem from its environment once, when OpenSSL loads it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::card::CardRig;
use common::modem::{ModemMode, ModemRig, MODES};
use common::pki;
use iotsafe_dane::iotsafe::transport::pcsc;
use iotsafe_dane::iotsafe::{HashAlg, Target};
use iotsafe_dane::provider::card::{Card, HOLD_WHILE_IDLE};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslConnector, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;

/// A server that accepts clients with either certificate, one connection at a time.
fn server(dir: &Path, client_certs: &[&X509]) -> (u16, X509) {
    let server = pki::leaf(dir, "server", "server", &[], None);
    let (key, cert) = (server.key, server.cert);
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(&key).unwrap();
    acceptor.set_certificate(&cert).unwrap();
    for client in client_certs {
        acceptor
            .cert_store_mut()
            .add_cert((*client).clone())
            .unwrap();
    }
    acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let acceptor = Arc::new(acceptor.build());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_nodelay(true);
            if let Ok(mut tls) = acceptor.accept(stream) {
                let _ = std::io::Write::write_all(&mut tls, b"k");
                let _ = tls.shutdown();
            }
        }
    });
    (port, cert)
}

fn connector(cert: &Path, key: &Path, server: &X509) -> SslConnector {
    let mut builder = SslConnector::builder(SslMethod::tls()).unwrap();
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_3))
        .unwrap();
    builder
        .set_certificate_file(cert, SslFiletype::PEM)
        .unwrap();
    builder.set_private_key_file(key, SslFiletype::PEM).unwrap();
    builder.cert_store_mut().add_cert(server.clone()).unwrap();
    builder.build()
}

/// One complete handshake (connect, handshake, one byte read).
fn handshake(connector: &SslConnector, port: u16) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut config = connector.configure().unwrap();
    config.set_verify_hostname(false);
    let mut tls = config.connect("server", stream).expect("handshake");
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut tls, &mut byte).unwrap();
}

/// Milliseconds of each of `count` handshakes through `a` and through `b`, taken in turns
/// (a, b, a, b, ...) after one warm-up of each, so that a burst of load on the shared machine
/// falls on both alike. Compared by their medians: one slow handshake (a page fault, another
/// process scheduled) moves a mean, not a median.
/// `card_apdus` counts the APDUs the card has answered so far: each `a` handshake's own are kept
/// beside its time.
fn paired_handshakes(
    a: &SslConnector,
    b: &SslConnector,
    port: u16,
    count: usize,
    card_apdus: &dyn Fn() -> usize,
) -> Paired {
    handshake(a, port);
    handshake(b, port);
    let time = |connector| {
        let started = Instant::now();
        handshake(connector, port);
        started.elapsed().as_secs_f64() * 1000.0
    };
    let mut paired = Paired::default();
    for _ in 0..count {
        let before = card_apdus();
        paired.a_ms.push(time(a));
        paired.a_apdus.push(card_apdus() - before);
        paired.b_ms.push(time(b));
    }
    paired
}

/// Handshake times in pairs taken back to back (see [`paired_handshakes`]), and the APDUs of
/// each `a` handshake.
#[derive(Default)]
struct Paired {
    a_ms: Vec<f64>,
    a_apdus: Vec<usize>,
    b_ms: Vec<f64>,
}

impl Paired {
    fn median_a(&self) -> f64 {
        median(self.a_ms.clone())
    }

    fn median_b(&self) -> f64 {
        median(self.b_ms.clone())
    }

    /// The median, over the pairs, of what `a` took beyond `b` and beyond its own APDUs'
    /// card time (`apdu_ms` each): the host's cost of the card path, with the load both saw at
    /// the time cancelled pair by pair and each handshake's card time its own (one that also
    /// confirmed the channel waited for three APDUs, not two).
    fn median_extra_ms(&self, apdu_ms: f64) -> f64 {
        median(
            self.a_ms
                .iter()
                .zip(&self.a_apdus)
                .zip(&self.b_ms)
                .map(|((a, apdus), b)| a - b - *apdus as f64 * apdu_ms)
                .collect(),
        )
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Every APDU the card has answered so far (the simulator's trace).
fn apdus(rig: &CardRig) -> usize {
    rig.trace().len()
}

/// Handshakes `pause` apart (longer than the provider keeps the card: each one acquires
/// it anew); returns the APDUs per handshake.
fn isolated_handshakes(rig: &CardRig, connector: &SslConnector, port: u16) -> f64 {
    let count = 10;
    let pause = HOLD_WHILE_IDLE * 5;
    std::thread::sleep(pause);
    let before = apdus(rig);
    for _ in 0..count {
        handshake(connector, port);
        std::thread::sleep(pause);
    }
    (apdus(rig) - before) as f64 / count as f64
}

/// Signatures through the provider's card connection in this process, with the PC/SC
/// transaction kept for `hold` after each (zero: one transaction per signature, begun and
/// ended around it). Returns (round trips to pcscd per signature, ms per signature), over
/// back-to-back signatures, or signatures `hold * 5` apart when `isolated`.
fn signatures_holding(hold: Duration, isolated: bool, count: usize) -> (f64, f64) {
    let card = Card::holding(Box::new(|| Target::default().connect()), hold);
    let key = card.default_key().unwrap();
    let sign = || card.sign_digest(&key, HashAlg::Sha256, &[7; 32]).unwrap();
    sign();
    let pause = HOLD_WHILE_IDLE * 5;
    if isolated {
        std::thread::sleep(pause);
    }
    let before = pcsc::round_trips();
    let mut busy = Duration::ZERO;
    for _ in 0..count {
        if isolated {
            std::thread::sleep(pause);
        }
        let started = Instant::now();
        sign();
        busy += started.elapsed();
    }
    // The releaser's end of the last transaction is part of the cost.
    std::thread::sleep(pause);
    let trips = pcsc::round_trips() - before;
    (
        trips as f64 / count as f64,
        busy.as_secs_f64() * 1000.0 / count as f64,
    )
}

/// Milliseconds per round trip of a command the card answers at once (an instruction it does
/// not know, `6D00`), on a PC/SC connection of its own with the transaction held: the path
/// every APDU of a signature takes (this process, pcscd, vpcd's socket, the simulator) with
/// next to no work at either end. Back to back, or each after `idle` with nothing happening,
/// every process on the path asleep meanwhile, as between the APDUs of a slow card.
fn bare_round_trip_ms(count: usize, idle: Duration) -> f64 {
    use iotsafe_dane::iotsafe::transport::Transport;
    let reader = pcsc::reader_names().unwrap().remove(0);
    let mut transport = pcsc::PcscTransport::connect(&reader).unwrap();
    transport.keep_between_operations(true);
    let mut times = Vec::with_capacity(count);
    {
        let mut link = transport.link().unwrap();
        for _ in 0..count {
            if !idle.is_zero() {
                std::thread::sleep(idle);
            }
            let started = Instant::now();
            let response = link.transmit(&[0x00, 0xCB, 0x00, 0x00, 0x00]).unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(
                response,
                [0x6D, 0x00],
                "the card's answer to an unknown instruction"
            );
        }
    }
    transport.release();
    median(times)
}

/// The simulated card's time per APDU in the slow-card figures (`..._latency50`).
const LATENCY_MS: u64 = 50;

/// Set (to a mode's name) in the child process that measures the modem.
const MODEM_MODE_VARIABLE: &str = "IOTSAFE_BENCH_MODEM_MODE";

fn main() {
    std::env::set_var("OPENSSL_MODULES", common::built_library_dir());
    std::env::set_var("OPENSSL_CONF", common::example_openssl_conf());
    if let Ok(name) = std::env::var(MODEM_MODE_VARIABLE) {
        let mode = MODES.iter().find(|m| m.name == name).expect("a modem mode");
        return modem_handshakes(mode);
    }
    openssl::init();
    let mut rig = CardRig::start(&[]);
    let files = rig.dir.path().to_path_buf();
    let (keyref, card_cert) = (files.join("dev.keyref.pem"), files.join("dev.pem"));
    assert!(rig
        .iotsafe(&["keyref", "--out", keyref.to_str().unwrap()])
        .status
        .success());
    assert!(rig
        .iotsafe(&["cert", "--out", card_cert.to_str().unwrap()])
        .status
        .success());
    let soft = pki::leaf(&files, "soft", "software client", &[], None);
    let (soft_cert, soft_key_file, soft_cert_file) = (soft.cert, soft.key_path, soft.cert_path);
    let card_x509 = X509::from_pem(&std::fs::read(&card_cert).unwrap()).unwrap();
    let (port, server_cert) = server(&files, &[&card_x509, &soft_cert]);

    let card = connector(&card_cert, &keyref, &server_cert);
    let software = connector(&soft_cert_file, &soft_key_file, &server_cert);

    let before = apdus(&rig);
    let n = 200;
    let burst = paired_handshakes(&card, &software, port, n, &|| apdus(&rig));
    let burst_apdus = apdus(&rig) - before;
    // With the warm-up. Back-to-back handshakes share the card's kept PC/SC transaction (a
    // software handshake in between is shorter than the idle time): the SELECT that confirms
    // the provider's channel comes once per burst, not per handshake.
    let card_handshakes = n + 1;
    println!(
        "BENCH apdus_per_handshake {:.3}",
        burst_apdus as f64 / card_handshakes as f64
    );
    println!(
        "BENCH apdus_per_handshake_isolated {:.3}",
        isolated_handshakes(&rig, &card, port)
    );
    let (card_ms, soft_ms) = (burst.median_a(), burst.median_b());
    println!("BENCH handshake_ms_card_key {card_ms:.3}");
    println!("BENCH handshake_ms_software_key {soft_ms:.3}");
    println!(
        "BENCH handshake_ratio_card_vs_software {:.3}",
        card_ms / soft_ms
    );

    // One card signature alone (2 APDUs through PC/SC), from the key the client uses.
    let key = PKey::private_key_from_pem(&std::fs::read(&keyref).unwrap()).unwrap();
    let started = Instant::now();
    for _ in 0..200 {
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), &key).unwrap();
        signer.update(b"CertificateVerify").unwrap();
        signer.sign_to_vec().unwrap();
    }
    println!(
        "BENCH signature_ms_card_key {:.3}",
        started.elapsed().as_secs_f64() * 1000.0 / 200.0
    );

    // The designs measured against each other, through the provider's card connection in
    // this process: one PC/SC transaction per signature (begin, 2 transmissions, end) versus
    // the transaction kept across back-to-back signatures and released when idle.
    for (name, hold) in [("per_operation", Duration::ZERO), ("kept", HOLD_WHILE_IDLE)] {
        let (trips, ms) = signatures_holding(hold, false, 300);
        println!("BENCH pcsc_round_trips_per_signature_{name} {trips:.3}");
        println!("BENCH signature_ms_card_{name} {ms:.3}");
    }
    let (kept_trips, _) = signatures_holding(HOLD_WHILE_IDLE, false, 300);
    println!("BENCH pcsc_round_trips_per_signature {kept_trips:.3}");
    let (isolated_trips, _) = signatures_holding(HOLD_WHILE_IDLE, true, 10);
    println!("BENCH pcsc_round_trips_per_signature_isolated {isolated_trips:.3}");
    // The floor under those: one bare round trip, twice per signature.
    std::thread::sleep(HOLD_WHILE_IDLE * 5); // the provider's kept transaction ends
    println!(
        "BENCH apdu_round_trip_ms_bare {:.3}",
        bare_round_trip_ms(200, Duration::ZERO)
    );
    println!(
        "BENCH apdu_round_trip_ms_bare_after_idle50 {:.3}",
        bare_round_trip_ms(24, Duration::from_millis(LATENCY_MS))
    );

    // The same with 50 ms per APDU: the card's time (APDUs x 50 ms) and the software
    // handshake subtracted, what is left is the host's own cost of the card path.
    rig.stop_sim();
    rig.start_sim_with(&["--apdu-latency-ms", &LATENCY_MS.to_string()]);
    handshake(&card, port); // reconnects to the restarted card
    let n = 24;
    let slow = paired_handshakes(&card, &software, port, n, &|| apdus(&rig));
    // The card's time per APDU: the simulator answers 50 ms after it has taken the command,
    // its own work included (it sleeps, then spins to that instant: `Card::apdu` in
    // sim/src/vpcd.rs), so a late wake-up of the simulator counts as the host's, not the card's.
    let apdu_ms = LATENCY_MS as f64;
    let card_time_ms = slow.a_apdus.iter().sum::<usize>() as f64 / n as f64 * apdu_ms;
    println!(
        "BENCH handshake_ms_card_key_latency50 {:.3}",
        slow.median_a()
    );
    println!(
        "BENCH handshake_ms_software_key_latency50 {:.3}",
        slow.median_b()
    );
    println!("BENCH handshake_card_time_ms_latency50 {card_time_ms:.3}");
    println!(
        "BENCH handshake_extra_ms_card_latency50 {:.3}",
        slow.median_extra_ms(apdu_ms)
    );
    // One signature alone at 50 ms per APDU, its two APDUs' card time subtracted: the host's
    // and the PC/SC stack's own cost per signature.
    // Eight (0.8 s of card time): within the longest continuous hold, after which the card is
    // let go for 110 ms so that other processes get it (its cost under constant load is
    // `signature_ms_card_latency50_constant`).
    let (_, ms) = signatures_holding(HOLD_WHILE_IDLE, false, 8);
    println!("BENCH signature_ms_card_latency50 {ms:.3}");
    println!(
        "BENCH signature_extra_ms_card_latency50 {:.3}",
        ms - 2.0 * apdu_ms
    );
    let (_, constant) = signatures_holding(HOLD_WHILE_IDLE, false, 30);
    println!("BENCH signature_ms_card_latency50_constant {constant:.3}");

    for mode in &MODES {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env(MODEM_MODE_VARIABLE, mode.name)
            .status()
            .unwrap();
        assert!(status.success(), "the {} bench failed", mode.name);
    }
}

/// Mutual-TLS handshakes with the card's key behind the simulated modem in `mode`, against
/// software-key handshakes in the same process: APDUs and AT commands per handshake (what a
/// real modem's serial round trips cost), and the time.
fn modem_handshakes(mode: &ModemMode) {
    let rig = ModemRig::start(mode.sim_args);
    std::env::set_var("IOTSAFE_MODEM", rig.port());
    openssl::init();
    let files = rig.dir.path().to_path_buf();
    let (keyref, card_cert) = (files.join("dev.keyref.pem"), files.join("dev.pem"));
    for args in [
        ["keyref", "--out", keyref.to_str().unwrap()],
        ["cert", "--out", card_cert.to_str().unwrap()],
    ] {
        assert!(rig.iotsafe(&args).status.success());
    }
    let soft = pki::leaf(&files, "soft", "software client", &[], None);
    let card_x509 = X509::from_pem(&std::fs::read(&card_cert).unwrap()).unwrap();
    let (port, server_cert) = server(&files, &[&card_x509, &soft.cert]);
    let card = connector(&card_cert, &keyref, &server_cert);
    let software = connector(&soft.cert_path, &soft.key_path, &server_cert);

    let (apdus_before, at_before) = (rig.trace().len(), rig.at_commands().len());
    let n = 100;
    let timed = paired_handshakes(&card, &software, port, n, &|| rig.trace().len());
    let (card_ms, soft_ms) = (timed.median_a(), timed.median_b());
    let handshakes_done = (n + 1) as f64; // with the warm-up
    let apdus = (rig.trace().len() - apdus_before) as f64;
    // Every AT command, not only those carrying APDUs: a modem's cost is its round trips.
    let (_, at_commands) = rig.apdu_commands_since(at_before, mode);
    let suffix = mode.name.trim_start_matches("AT+").to_ascii_lowercase();
    println!(
        "BENCH modem_apdus_per_handshake_{suffix} {:.3}",
        apdus / handshakes_done
    );
    println!(
        "BENCH modem_at_commands_per_handshake_{suffix} {:.3}",
        at_commands as f64 / handshakes_done
    );
    println!("BENCH modem_handshake_ms_{suffix} {card_ms:.3}");
    println!("BENCH modem_software_handshake_ms_{suffix} {soft_ms:.3}");
    println!(
        "BENCH modem_handshake_ratio_{suffix}_vs_software {:.3}",
        card_ms / soft_ms
    );
}
