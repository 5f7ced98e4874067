//! The iotsafe provider loaded into this test process through OPENSSL_CONF, as an
//! application would load it: fork, threads, key exchange and a clean error queue.
//! (nextest runs each test in a process of its own, so each loads its own provider.)

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use common::card::CardRig;
use common::pki;
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use openssl::ssl::{SslAcceptor, SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509;

struct Card {
    rig: CardRig,
    keyref: PathBuf,
    cert: PathBuf,
    public: PKey<Public>,
}

/// Configures the provider for this process (before OpenSSL initialises), then starts the card.
fn card() -> Card {
    std::env::set_var("OPENSSL_MODULES", common::built_library_dir());
    std::env::set_var("OPENSSL_CONF", common::example_openssl_conf());
    openssl::init();
    let rig = CardRig::start(&[]);
    let keyref = rig.dir.path().join("dev.keyref.pem");
    let cert = rig.dir.path().join("dev.pem");
    let public = rig.dir.path().join("pub.pem");
    for (args, path) in [
        (["keyref", "--out"], &keyref),
        (["cert", "--out"], &cert),
        (["pubkey", "--out"], &public),
    ] {
        let out = rig.iotsafe(&[args[0], args[1], path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let public = PKey::public_key_from_pem(&std::fs::read(&public).unwrap()).unwrap();
    Card {
        rig,
        keyref,
        cert,
        public,
    }
}

fn load_key(card: &Card) -> PKey<Private> {
    PKey::private_key_from_pem(&std::fs::read(&card.keyref).unwrap())
        .expect("load the key reference")
}

fn sign(key: &PKey<Private>, data: &[u8]) -> Vec<u8> {
    let mut signer = Signer::new(MessageDigest::sha256(), key).expect("sign init");
    signer.update(data).unwrap();
    signer.sign_to_vec().expect("card signature")
}

fn verifies(public: &PKey<Public>, data: &[u8], signature: &[u8]) -> bool {
    let mut verifier = Verifier::new(MessageDigest::sha256(), public).unwrap();
    verifier.update(data).unwrap();
    verifier.verify(signature).unwrap_or(false)
}

#[test]
fn provider_signs_in_a_forked_child() {
    let card = card();
    let key = load_key(&card);
    let data = b"before fork";
    assert!(verifies(&card.public, data, &sign(&key, data)));

    // SAFETY: the child only signs, verifies and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let child_data = b"in the child";
        let ok = std::panic::catch_unwind(|| {
            verifies(&card.public, child_data, &sign(&key, child_data))
        });
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child could not sign (status {status})"
    );
    // The parent's connection is intact.
    assert!(verifies(
        &card.public,
        b"after fork",
        &sign(&key, b"after fork")
    ));
}

#[test]
fn provider_eight_threads_two_hundred_handshakes_each() {
    let card = card();
    // A software server that requires the card's certificate.
    let server = pki::leaf(card.rig.dir.path(), "server", "server", &[], None);
    let (server_key, server_cert) = (server.key, server.cert);

    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_private_key(&server_key).unwrap();
    acceptor.set_certificate(&server_cert).unwrap();
    acceptor.set_ca_file(&card.cert).unwrap();
    acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let acceptor = Arc::new(acceptor.build());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let acceptor = acceptor.clone();
            std::thread::spawn(move || {
                if let Ok(mut tls) = acceptor.accept(stream) {
                    let _ = std::io::Write::write_all(&mut tls, b"k");
                    let _ = tls.shutdown();
                }
            });
        }
    });

    // One client context for all threads, its key on the card.
    let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
    connector
        .set_certificate_file(&card.cert, SslFiletype::PEM)
        .unwrap();
    connector
        .set_private_key_file(&card.keyref, SslFiletype::PEM)
        .unwrap();
    connector.check_private_key().unwrap();
    let server_pem = server_cert.to_pem().unwrap();
    connector
        .cert_store_mut()
        .add_cert(X509::from_pem(&server_pem).unwrap())
        .unwrap();
    let connector = Arc::new(connector.build());

    let trace_before = card.rig.trace().len();
    let signatures_before = card
        .rig
        .trace()
        .iter()
        .filter(|l| matches!(l.get(2..4), Some("2A" | "2B")))
        .count();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let connector = connector.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                    let mut config = connector.configure().unwrap();
                    config.set_verify_hostname(false);
                    let mut tls = config
                        .connect("server", stream)
                        .unwrap_or_else(|e| panic!("thread {t} handshake {i}: {e}"));
                    let mut byte = [0u8; 1];
                    std::io::Read::read_exact(&mut tls, &mut byte).unwrap();
                    assert_eq!(&byte, b"k");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a client thread failed");
    }
    let trace = card.rig.trace();
    let signatures = trace
        .iter()
        .filter(|l| matches!(l.get(2..4), Some("2A" | "2B")))
        .count();
    // The key was loaded before: no public key or certificate read during the handshakes.
    // The only other APDUs are the SELECTs (P2 0C) that confirm the provider's channel each
    // time it acquires the card anew, at most one per signature (two APDUs).
    let others: Vec<&String> = trace[trace_before..]
        .iter()
        .filter(|l| !matches!(l.get(2..4), Some("2A" | "2B")))
        .collect();
    assert!(
        others.iter().all(|l| l.get(2..8) == Some("A4040C")),
        "APDUs other than signatures and channel checks during the handshakes: {others:?}"
    );
    assert!(
        others.len() <= (signatures - signatures_before) / 2,
        "{} channel checks for {} signature APDUs",
        others.len(),
        signatures - signatures_before
    );
    assert_eq!(
        signatures - signatures_before,
        2 * 8 * 200,
        "2 signature APDUs per handshake"
    );
}

#[test]
fn provider_leaves_no_error_on_success_and_matches_its_certificate() {
    let card = card();
    openssl::error::ErrorStack::get(); // start from an empty queue
    let mut ctx = openssl::ssl::SslContext::builder(SslMethod::tls()).unwrap();
    ctx.set_private_key_file(&card.keyref, SslFiletype::PEM)
        .unwrap();
    assert!(
        openssl::error::ErrorStack::get().errors().is_empty(),
        "stray errors after loading the key"
    );
    // SSL_CTX_use_certificate_chain_file fails when the queue is not empty.
    ctx.set_certificate_chain_file(&card.cert).unwrap();
    ctx.check_private_key()
        .expect("the card's certificate matches its key");
    assert!(openssl::error::ErrorStack::get().errors().is_empty());
    let key = load_key(&card);
    assert!(
        key.public_eq(&card.public),
        "EVP_PKEY_eq of the card key and its public key"
    );
    assert_eq!(key.bits(), 256);
    assert_eq!(key.size(), 72);
    assert!(openssl::error::ErrorStack::get().errors().is_empty());
}

#[test]
fn provider_ecdh_on_the_card_matches_software() {
    let card = card();
    let key = load_key(&card);
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let peer = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let peer_public = PKey::public_key_from_pem(&peer.public_key_to_pem().unwrap()).unwrap();

    let mut on_card = Deriver::new(&key).expect("ECDH init with the card key");
    on_card.set_peer(&peer_public).unwrap();
    let card_secret = on_card.derive_to_vec().expect("COMPUTE DH");

    let mut software = Deriver::new(&peer).unwrap();
    software.set_peer(&card.public).unwrap();
    assert_eq!(card_secret, software.derive_to_vec().unwrap());
}

#[test]
fn provider_card_pulled_after_loading_fails_clearly_and_recovers() {
    let mut card = card();
    let key = load_key(&card);
    assert!(verifies(&card.public, b"one", &sign(&key, b"one")));

    card.rig.stop_sim();
    let started = std::time::Instant::now();
    let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
    signer.update(b"two").unwrap();
    let error = signer.sign_to_vec().expect_err("no card, no signature");
    assert!(
        started.elapsed().as_secs() < 10,
        "a missing card must not hang the signer"
    );
    let message = error.to_string();
    assert!(
        message.contains("cannot reach the IoT SAFE applet"),
        "{message}"
    );

    // The card is back: the same key signs again, on a new connection.
    card.rig.start_sim();
    assert!(verifies(&card.public, b"three", &sign(&key, b"three")));
}

#[test]
fn provider_combined_file_loads_as_key_and_chain_without_stray_errors() {
    let card = card();
    let combined = card.rig.dir.path().join("combined.pem");
    let out = card
        .rig
        .iotsafe(&["keyref", "--with-cert", "--out", combined.to_str().unwrap()]);
    assert!(out.status.success());
    openssl::error::ErrorStack::get();
    let mut ctx = openssl::ssl::SslContext::builder(SslMethod::tls()).unwrap();
    ctx.set_private_key_file(&combined, SslFiletype::PEM)
        .expect("the key reference after the certificate");
    assert!(openssl::error::ErrorStack::get().errors().is_empty());
    ctx.set_certificate_chain_file(&combined)
        .expect("the certificate before the reference");
    ctx.check_private_key().expect("they match");
}
