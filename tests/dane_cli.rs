//! The `iotsafe dane check-server` / `check-client` subcommands of the real tool.

mod common;

use common::escaped::{self, EscapedHostRig};
use common::{dns, dnsproxy, pki, tls};

use common::card::CardRig;

/// Runs `iotsafe dane ARGS` (the real tool) and returns its exit status.
fn exit_status(args: &[&str]) -> i32 {
    let out = std::process::Command::new(common::workspace_binary("iotsafe"))
        .arg("dane")
        .args(args)
        .output()
        .expect("run iotsafe dane");
    out.status.code().expect("exit status")
}

/// 2 is for usage errors only: 0 and 1 are the verdicts.
#[test]
fn usage_errors_exit_with_2() {
    assert_eq!(exit_status(&["check-server"]), 2);
    assert_eq!(
        exit_status(&["check-server", "broker.example.test", "x"]),
        2
    );
    assert_eq!(exit_status(&["check-client", "--name", "a._device.b"]), 2);
    assert_eq!(
        exit_status(&["check-server", "h.test", "1", "--policy", "maybe"]),
        2
    );
}

#[test]
fn check_server_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let leaf = pki::leaf(dir.path(), "srv", "broker", &["broker.example.test"], None);
    let other = pki::leaf(
        dir.path(),
        "other",
        "broker",
        &["broker.example.test"],
        None,
    );
    let good = tls::TlsServer::start(&leaf.cert_path, &leaf.key_path, None);
    let bad = tls::TlsServer::start(&other.cert_path, &other.key_path, None);
    let record = pki::dane_ee_record(&leaf.cert);
    let lines = [
        "broker 300 IN A 127.0.0.1".to_string(),
        format!("_{}._tcp.broker 300 IN TLSA {record}", good.port),
        format!("_{}._tcp.broker 300 IN TLSA {record}", bad.port),
    ];
    let extra: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("example.test.", l.as_str()))
        .collect();
    let dns = dns::TestDns::start(&extra);
    let addr = dns.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let anchor = anchor.to_str().unwrap();
    let common = ["--resolver", &addr, "--trust-anchor", anchor];
    let port = good.port.to_string();
    let mut args = vec!["check-server", "broker.example.test", &port];
    args.extend_from_slice(&common);
    assert_eq!(exit_status(&args), 0);
    let port = bad.port.to_string();
    let mut args = vec!["check-server", "broker.example.test", &port];
    args.extend_from_slice(&common);
    assert_eq!(exit_status(&args), 1);
    // Without the private trust anchor the IANA root is used: nothing validates.
    let port = good.port.to_string();
    assert_eq!(
        exit_status(&[
            "check-server",
            "broker.example.test",
            &port,
            "--resolver",
            &addr
        ]),
        1
    );
}

#[test]
fn check_client_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
    let other = pki::leaf(dir.path(), "other", "other", &[], None);
    let record = pki::dane_ee_record(&device.cert);
    let line = format!("sensor7._device 300 IN TLSA {record}");
    let dns = dns::TestDns::start(&[("iotregistry.test.", line.as_str())]);
    let addr = dns.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let args = |cert: &std::path::Path| {
        vec![
            "check-client".to_string(),
            "--cert".into(),
            cert.to_str().unwrap().into(),
            "--name".into(),
            "sensor7._device.iotregistry.test".into(),
            "--resolver".into(),
            addr.clone(),
            "--trust-anchor".into(),
            anchor.to_str().unwrap().into(),
            "--allowed-domain".into(),
            "iotregistry.test".into(),
        ]
    };
    let status = |v: Vec<String>| exit_status(&v.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(status(args(&device.cert_path)), 0);
    assert_eq!(status(args(&other.cert_path)), 1);
}

/// `--dns-timeout` bounds the whole look-up and each query in it: a TLSA answer that comes
/// 3 s late is waited for with `--dns-timeout 20`, not with the default 5 s (whose queries
/// give up after 2 s each).
#[test]
fn dns_timeout_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
    let record = pki::dane_ee_record(&device.cert);
    let line = format!("sensor7._device 300 IN TLSA {record}");
    let dns = dns::TestDns::start(&[("iotregistry.test.", line.as_str())]);
    let proxy = dnsproxy::DnsProxy::start(dns.addr());
    proxy.forge(
        "sensor7._device.iotregistry.test.",
        hickory_resolver::proto::rr::RecordType::TLSA,
        dnsproxy::Forgery::Late(std::time::Duration::from_secs(3)),
    );
    let addr = proxy.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let run = |timeout: Option<&str>| {
        let mut command = std::process::Command::new(common::workspace_binary("iotsafe"));
        command
            .args(["dane", "check-client", "--cert"])
            .arg(&device.cert_path);
        command.args([
            "--name",
            "sensor7._device.iotregistry.test",
            "--resolver",
            &addr,
        ]);
        command.arg("--trust-anchor").arg(&anchor);
        if let Some(timeout) = timeout {
            command.args(["--dns-timeout", timeout]);
        }
        command.output().unwrap()
    };
    let out = run(Some("20"));
    assert!(
        out.status.success(),
        "{}{}",
        common::stdout(&out),
        common::stderr(&out)
    );
    let out = run(None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::stderr(&out).contains("timed out"),
        "{}",
        common::stderr(&out)
    );
}

/// A resolver that passes no DNSSEC records on: the refusal says so and what to use instead,
/// rather than only "bogus".
#[test]
fn a_resolver_without_signatures_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
    let record = pki::dane_ee_record(&device.cert);
    let line = format!("sensor7._device 300 IN TLSA {record}");
    let dns = dns::TestDns::start(&[("iotregistry.test.", line.as_str())]);
    let proxy = dnsproxy::DnsProxy::start(dns.addr());
    proxy.strip_all_signatures();
    let out = std::process::Command::new(common::workspace_binary("iotsafe"))
        .args(["dane", "check-client", "--cert"])
        .arg(&device.cert_path)
        .args(["--name", "sensor7._device.iotregistry.test"])
        .args(["--resolver", &proxy.addr().to_string(), "--trust-anchor"])
        .arg(dns.trust_anchor_file())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = common::stderr(&out);
    assert!(
        message.contains(&format!(
            "the DNS server {} returns no DNSSEC signatures",
            proxy.addr()
        )) && message.contains("--trust-ad"),
        "{message}"
    );
    assert!(
        message.lines().all(|l| l.starts_with("iotsafe: ")),
        "{message}"
    );
}

/// Both halves together: the card's certificate, its TLSA record as `iotsafe tlsa` prints it,
/// published in the signed zone, authenticates the device by `iotsafe dane check-client`; a
/// certificate of another key does not.
#[test]
fn card_certificate_is_authenticated_by_the_record_iotsafe_tlsa_prints() {
    let card = CardRig::start(&[]);
    let owner = "sensor7._device.iotregistry.test";
    let record = common::ok(card.iotsafe(&["tlsa", "--name", owner]));
    let rdata = record
        .split(" IN TLSA ")
        .nth(1)
        .expect("a TLSA record")
        .trim()
        .to_string();
    let line = format!("sensor7._device 300 IN TLSA {rdata}");
    let dns = dns::TestDns::start(&[("iotregistry.test.", line.as_str())]);

    let cert = card.dir.path().join("card.pem");
    common::ok(card.iotsafe(&["cert", "--out", cert.to_str().unwrap()]));
    let other = pki::leaf(card.dir.path(), "other", "other", &[], None);
    let addr = dns.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let check = |cert: &std::path::Path| {
        exit_status(&[
            "check-client",
            "--cert",
            cert.to_str().unwrap(),
            "--name",
            owner,
            "--resolver",
            &addr,
            "--trust-anchor",
            anchor.to_str().unwrap(),
        ])
    };
    assert_eq!(
        check(&cert),
        0,
        "the card's certificate matches its published record"
    );
    assert_eq!(check(&other.cert_path), 1, "another key does not");
}

/// An escaped dot (`\.`) makes one label of `foo.iotregistry`: the name then lies in `test.`,
/// outside the allowed domain, though its text ends in `.iotregistry.test`. The attacker's
/// record there (a zone it controls, signed and secure) must not authenticate it: the tool
/// refuses the name itself, naming it, before any DNS query.
#[test]
fn check_client_refuses_an_escaped_dot_leaving_the_allowed_domain() {
    let dir = tempfile::tempdir().unwrap();
    let attacker = pki::leaf(dir.path(), "att", "att", &[], None);
    let record = pki::dane_ee_record(&attacker.cert);
    let line = format!("x._device.foo\\.iotregistry 300 IN TLSA {record}");
    let dns = dns::TestDns::start(&[("test.", line.as_str())]);
    let anchor = dns.trust_anchor_file();
    let name = r"x._device.foo\.iotregistry.test";
    let out = std::process::Command::new(common::workspace_binary("iotsafe"))
        .args(["dane", "check-client", "--name", name])
        .arg("--cert")
        .arg(&attacker.cert_path)
        .args(["--resolver", &dns.addr().to_string()])
        .arg("--trust-anchor")
        .arg(&anchor)
        .args(["--allowed-domain", "iotregistry.test"])
        .output()
        .expect("run iotsafe dane");
    let report = common::stderr(&out) + &common::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains(name),
        "the refusal names the name: {report}"
    );
    assert!(report.contains("no DNS query"), "{report}");
}

/// `broker\.example.test` is the name `broker.example` (one label) in `test.`, not
/// broker.example.test: whoever holds that name in `test.` publishes an address and a TLSA
/// record for its own server there. Honouring the escape in the look-up while the PKIX check
/// and the user read `broker.example.test` authenticates that server; the tool refuses the
/// name itself, naming it, before any DNS query.
#[test]
fn check_server_refuses_an_escaped_host_name() {
    let EscapedHostRig { server, dns, .. } = &EscapedHostRig::start();
    let host = escaped::HOST;
    for policy in ["require", "opportunistic"] {
        let out = std::process::Command::new(common::workspace_binary("iotsafe"))
            .args(["dane", "check-server", host, &server.port.to_string()])
            .args(["--policy", policy])
            .args(["--resolver", &dns.addr().to_string()])
            .arg("--trust-anchor")
            .arg(dns.trust_anchor_file())
            .output()
            .expect("run iotsafe dane");
        let report = common::stderr(&out) + &common::stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{policy}: {report}");
        assert!(
            report.contains(&format!("'{host}' is not a host name")) && report.contains("escapes"),
            "{policy}: the refusal names the name: {report}"
        );
        assert!(report.contains("no DNS query"), "{policy}: {report}");
        assert!(!report.contains("AUTHENTICATED: by"), "{policy}: {report}");
    }
}

/// `iotsafe dane fetch-ca`: the CA certificates a registry publishes as full-certificate TLSA
/// records (`2 0 0`, `0 0 0`) are written to a file when the answer is secure; a bogus or an
/// insecure answer writes nothing and says which it was.
#[test]
fn fetch_ca_writes_the_published_cas_only_from_a_secure_answer() {
    use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::ca(dir.path(), "ca", "Registry CA");
    let old_ca = pki::ca(dir.path(), "old", "Registry CA 2019");
    let full = |cert: &openssl::x509::X509, usage| {
        Tlsa::for_certificate(cert, usage, Selector::Cert, Matching::Full).unwrap()
    };
    let digest =
        Tlsa::for_certificate(&ca.cert, Usage::DaneTa, Selector::Spki, Matching::Sha256).unwrap();
    let lines = [
        format!("_device 300 IN TLSA {}", full(&ca.cert, Usage::DaneTa)),
        format!("_device 300 IN TLSA {}", full(&old_ca.cert, Usage::PkixTa)),
        format!("_device 300 IN TLSA {digest}"),
    ];
    let bogus = format!("_device 300 IN TLSA {}", full(&ca.cert, Usage::DaneTa));
    let mut records: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| ("iotregistry.test.", l.as_str()))
        .collect();
    records.push(("bogus.test.", bogus.as_str()));
    records.push(("insecure.test.", bogus.as_str()));
    let dns = dns::TestDns::start(&records);
    let addr = dns.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let fetch = |domain: &str, out: &std::path::Path| {
        std::process::Command::new(common::workspace_binary("iotsafe"))
            .args(["dane", "fetch-ca", domain, "--resolver", &addr])
            .arg("--trust-anchor")
            .arg(&anchor)
            .arg("--out")
            .arg(out)
            .output()
            .expect("run iotsafe dane fetch-ca")
    };

    let out_file = dir.path().join("cafile.pem");
    let out = fetch("_device.iotregistry.test", &out_file);
    let report = common::stdout(&out) + &common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    let written = openssl::x509::X509::stack_from_pem(&std::fs::read(&out_file).unwrap()).unwrap();
    let der = |c: &openssl::x509::X509| c.to_der().unwrap();
    let mut got: Vec<Vec<u8>> = written.iter().map(der).collect();
    let mut want = vec![der(&ca.cert), der(&old_ca.cert)];
    got.sort();
    want.sort();
    assert_eq!(got, want, "{report}");
    assert!(report.contains("CN=Registry CA 2019"), "{report}");
    assert!(report.contains("skipped 2 1 1"), "{report}");

    for (domain, proof) in [
        ("_device.bogus.test", "bogus"),
        ("_device.insecure.test", "insecure"),
    ] {
        let file = dir.path().join(format!("{proof}.pem"));
        let out = fetch(domain, &file);
        let report = common::stdout(&out) + &common::stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{report}");
        assert!(
            report.contains("NOT WRITTEN") && report.contains(proof),
            "{report}"
        );
        assert!(!file.exists(), "nothing written for a {proof} answer");
    }
}

/// `iotsafe dane fetch-ca` writes only CA certificates (basicConstraints CA:TRUE): an
/// end-entity certificate published as `2 0 0` is skipped, and a domain that publishes nothing
/// else writes nothing. The file is replaced whole: a write that fails halfway (here: the file
/// size limit) leaves the previous cafile as it was, and no temporary file behind.
#[test]
fn fetch_ca_writes_only_ca_certificates_and_replaces_the_file_whole() {
    use iotsafe_dane::dane::tlsa::{Matching, Selector, Tlsa, Usage};
    let dir = tempfile::tempdir().unwrap();
    let cas: Vec<pki::Issued> = (1..=3)
        .map(|i| pki::ca(dir.path(), &format!("ca{i}"), &format!("Registry CA {i}")))
        .collect();
    let leaf = pki::leaf(dir.path(), "leaf", "Not A CA", &[], Some(&cas[0]));
    let full = |cert: &openssl::x509::X509| {
        Tlsa::for_certificate(cert, Usage::DaneTa, Selector::Cert, Matching::Full).unwrap()
    };
    let mut lines: Vec<String> = cas
        .iter()
        .map(|ca| format!("_device 300 IN TLSA {}", full(&ca.cert)))
        .collect();
    lines.push(format!("_device 300 IN TLSA {}", full(&leaf.cert)));
    lines.push(format!("_pki 300 IN TLSA {}", full(&leaf.cert)));
    let dns = dns::TestDns::start(
        &lines
            .iter()
            .map(|l| ("iotregistry.test.", l.as_str()))
            .collect::<Vec<_>>(),
    );
    let addr = dns.addr().to_string();
    let anchor = dns.trust_anchor_file();
    let out_dir = tempfile::tempdir().unwrap();
    let cafile = out_dir.path().join("cafile.pem");
    const OLD: &str = "the cafile a broker reads now\n";
    std::fs::write(&cafile, OLD).unwrap();
    // `iotsafe dane fetch-ca DOMAIN` run by bash after `setup` (a shell command).
    let fetch = |domain: &str, setup: &str| {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("{setup}; exec \"$@\""))
            .arg("bash")
            .arg(common::workspace_binary("iotsafe"))
            .args(["dane", "fetch-ca", domain, "--resolver", &addr])
            .arg("--trust-anchor")
            .arg(&anchor)
            .arg("--out")
            .arg(&cafile)
            .output()
            .expect("run iotsafe dane fetch-ca")
    };
    let leftovers = || {
        std::fs::read_dir(out_dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "cafile.pem")
            .collect::<Vec<_>>()
    };

    let out = fetch("_pki.iotregistry.test", "true");
    let report = common::stdout(&out) + &common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("NOT WRITTEN") && report.contains("not a CA certificate"),
        "{report}"
    );
    assert_eq!(std::fs::read_to_string(&cafile).unwrap(), OLD, "{report}");

    // Three CA certificates are more than 1 KiB of PEM: the write fails halfway.
    let out = fetch("_device.iotregistry.test", "trap '' XFSZ; ulimit -f 1");
    let report = common::stdout(&out) + &common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(report.contains("NOT WRITTEN"), "{report}");
    assert_eq!(
        std::fs::read_to_string(&cafile).unwrap(),
        OLD,
        "a failed write leaves the old cafile: {report}"
    );
    assert!(leftovers().is_empty(), "{:?}", leftovers());

    let out = fetch("_device.iotregistry.test", "true");
    let report = common::stdout(&out) + &common::stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("CN=Not A CA: not a CA certificate"),
        "the end-entity certificate is named as skipped: {report}"
    );
    let written = openssl::x509::X509::stack_from_pem(&std::fs::read(&cafile).unwrap()).unwrap();
    let der = |c: &openssl::x509::X509| c.to_der().unwrap();
    let mut got: Vec<Vec<u8>> = written.iter().map(der).collect();
    let mut want: Vec<Vec<u8>> = cas.iter().map(|ca| der(&ca.cert)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "only the CA certificates: {report}");
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}
