//! `iotsafe registry`: publish, revoke, rotate and show device records over RFC 2136 updates
//! signed with TSIG, against the test hierarchy's knotd (which signs what it is sent).

mod common;

use std::process::{Command, Stdio};

use common::dns::TestDns;

/// `knsupdate` with the rig's key: the update lands and is served signed (the rig itself).
#[test]
fn the_rig_accepts_updates_signed_with_its_key() {
    let dns = TestDns::start(&[]);
    let script = format!(
        "server 127.0.0.1 {}\nkey hmac-sha256:{} {}\nzone iotregistry.test.\n\
         update add probe._device.iotregistry.test. 300 TXT \"x\"\nsend\n",
        dns.addr().port(),
        common::dns::TSIG_KEY_NAME,
        dns.tsig_secret()
    );
    let mut child = Command::new("knsupdate")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("knsupdate (package knot-dnsutils)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let answer = dns.dig("probe._device.iotregistry.test.", "TXT");
    assert!(answer.contains("RRSIG\tTXT"), "{answer}");
}
