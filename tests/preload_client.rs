//! The `iotsafe-run` launcher and its preload shim on the client side, with the Debian
//! packages' own binaries (mosquitto_pub, mosquitto_sub, curl), never rebuilt, against servers
//! that only a `3 1 1` TLSA record vouches for: no CA could, the certificates are self-issued.
//! The programs resolve the server's name through the system, so they run with a private
//! /etc/hosts (`unshare -m`, as root like the other rigs).

mod common;

use common::{dns, mqtt, pki, tls, unbound};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const HOST: &str = "broker.example.test";
/// A name in a zone whose DS in its parent does not match its key.
const BOGUS_HOST: &str = "broker.bogus.test";

struct Rig {
    dir: tempfile::TempDir,
    dns: dns::TestDns,
    /// The key the TLSA records designate (its certificate names HOST and BOGUS_HOST).
    good: pki::Issued,
    /// Another key, same names.
    other: pki::Issued,
    launcher: PathBuf,
}

impl Rig {
    fn new() -> Rig {
        let launcher = common::built_adapter("iotsafe-run", "preload");
        common::built_adapter("libiotsafe_preload.so", "preload");
        let dir = tempfile::tempdir().unwrap();
        let good = pki::leaf(dir.path(), "good", "broker", &[HOST, BOGUS_HOST], None);
        let other = pki::leaf(dir.path(), "other", "broker", &[HOST, BOGUS_HOST], None);
        let dns = dns::TestDns::start(&[
            ("example.test.", "broker 300 IN A 127.0.0.1"),
            ("bogus.test.", "broker 300 IN A 127.0.0.1"),
        ]);
        Rig {
            dir,
            dns,
            good,
            other,
            launcher,
        }
    }

    /// Publishes the `3 1 1` record of the good key for `port` at HOST (and BOGUS_HOST).
    fn publish_record(&self, port: u16) {
        let record = pki::dane_ee_record(&self.good.cert);
        for zone in ["example.test.", "bogus.test."] {
            self.dns
                .add_record(zone, &format!("_{port}._tcp.broker 300 IN TLSA {record}"));
        }
    }

    /// `program args` through the launcher (with the test DNS as resolver and trust anchor),
    /// with HOST and BOGUS_HOST resolvable by the system.
    fn through_launcher(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = self.plain(&self.launcher);
        cmd.arg("--resolver")
            .arg(self.dns.addr().to_string())
            .arg("--trust-anchor")
            .arg(self.dns.trust_anchor_file())
            .arg(program)
            .args(args);
        cmd
    }

    /// `program` without the launcher, names resolvable the same way.
    fn plain(&self, program: &Path) -> Command {
        let mut cmd = common::with_hosts(
            self.dir.path(),
            &[(HOST, "127.0.0.1"), (BOGUS_HOST, "127.0.0.1")],
            program,
        );
        for var in [
            "IOTSAFE_DANE_POLICY",
            "IOTSAFE_DANE_RESOLVER",
            "IOTSAFE_DANE_TRUST_ANCHOR",
            "IOTSAFE_DANE_BROKER",
            "IOTSAFE_DANE_DEVICE_IDENTITY",
            "OPENSSL_CONF",
            "LD_PRELOAD",
        ] {
            cmd.env_remove(var);
        }
        cmd.stdin(Stdio::null());
        cmd
    }
}

fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run (needs unshare from util-linux)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} did not finish: {}", common::stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn mqtt_args(host: &str, port: u16) -> Vec<String> {
    ["-h", host, "-p", &port.to_string(), "--tls-use-os-certs"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn pub_args(host: &str, port: u16) -> Vec<String> {
    let mut args = mqtt_args(host, port);
    args.extend(["-i", "pub", "-t", "sensors/7", "-m", "21.5"].map(String::from));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A `mosquitto_sub` through the launcher, waiting for one message.
fn subscriber(rig: &Rig, broker: &mqtt::Broker) -> Child {
    let mut args = mqtt_args(HOST, broker.port);
    args.extend(["-i", "observer", "-t", "sensors/7", "-C", "1", "-W", "20"].map(String::from));
    let child = rig
        .through_launcher("mosquitto_sub", &strs(&args))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub");
    common::wait_until(15, "the subscription through the launcher", || {
        broker.log().contains("Received SUBSCRIBE from observer")
    });
    child
}

#[test]
fn mosquitto_pub_and_sub_reach_a_broker_vouched_for_only_by_its_tlsa_record() {
    let rig = Rig::new();
    let port = common::free_port();
    rig.publish_record(port);
    let broker = mqtt::Broker::start(port, &rig.good.cert_path, &rig.good.key_path);
    let observer = subscriber(&rig, &broker);

    let out = run(rig.through_launcher("mosquitto_pub", &strs(&pub_args(HOST, port))));
    assert!(
        out.status.success(),
        "published through the launcher: {}\nbroker: {}",
        common::stderr(&out),
        broker.log()
    );
    let got = observer.wait_with_output().unwrap();
    assert_eq!(
        common::stdout(&got).trim(),
        "21.5",
        "the subscriber through the launcher got it: {}",
        common::stderr(&got)
    );

    // The same binary without the launcher: PKIX, and no CA vouches for the broker.
    let mut plain = rig.plain(Path::new("mosquitto_pub"));
    plain.args(pub_args(HOST, port));
    let out = run(plain);
    assert!(!out.status.success(), "PKIX alone must refuse the broker");
    assert!(
        common::stderr(&out).contains("A TLS error occurred"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn mosquitto_pub_through_the_launcher_refuses_a_broker_with_another_key() {
    let rig = Rig::new();
    let port = common::free_port();
    rig.publish_record(port);
    let broker = mqtt::Broker::start(port, &rig.other.cert_path, &rig.other.key_path);

    let out = run(rig.through_launcher("mosquitto_pub", &strs(&pub_args(HOST, port))));
    let err = common::stderr(&out);
    assert!(!out.status.success(), "refused: {err}");
    assert!(
        err.contains("A TLS error occurred"),
        "the program's own error: {err}"
    );
    assert!(
        err.contains(&format!(
            "iotsafe-run: TLS connection refused: {HOST}:{port}"
        )) && err.contains("(NO_MATCH)"),
        "the shim says why: {err}"
    );
    assert!(
        !broker.log().contains("Received PUBLISH"),
        "nothing reached the broker: {}",
        broker.log()
    );
}

#[test]
fn mosquitto_pub_through_the_launcher_refuses_a_bogus_zone() {
    let rig = Rig::new();
    let port = common::free_port();
    rig.publish_record(port);
    let broker = mqtt::Broker::start(port, &rig.good.cert_path, &rig.good.key_path);

    let out = run(rig.through_launcher("mosquitto_pub", &strs(&pub_args(BOGUS_HOST, port))));
    let err = common::stderr(&out);
    assert!(!out.status.success(), "refused: {err}");
    assert!(
        err.contains("iotsafe-run: TLS connection refused") && err.contains("bogus"),
        "the shim says why: {err}"
    );
    assert!(
        !broker.log().contains("Received CONNECT"),
        "{}",
        broker.log()
    );
}

/// `openssl s_server -www` with `cert`, the good key's record published for its port.
fn web_server(rig: &Rig, cert: &pki::Issued) -> tls::TlsServer {
    let server = tls::TlsServer::start_www(&cert.cert_path, &cert.key_path);
    rig.publish_record(server.port);
    server
}

fn curl(rig: &Rig, launcher: bool, port: u16, extra: &[&str]) -> Output {
    let url = format!("https://{HOST}:{port}/");
    let mut args = vec!["-sS", "--max-time", "20"];
    args.extend(extra);
    args.push(&url);
    let cmd = if launcher {
        rig.through_launcher("curl", &args)
    } else {
        let mut cmd = rig.plain(Path::new("curl"));
        cmd.args(&args);
        cmd
    };
    run(cmd)
}

#[test]
fn curl_reaches_a_server_vouched_for_only_by_its_tlsa_record() {
    let rig = Rig::new();
    let server = web_server(&rig, &rig.good);

    let out = curl(&rig, true, server.port, &[]);
    assert!(
        out.status.success() && common::stdout(&out).contains("s_server"),
        "through the launcher: {}",
        common::stderr(&out)
    );

    let out = curl(&rig, false, server.port, &[]);
    assert_eq!(out.status.code(), Some(60), "PKIX alone refuses: {out:?}");
}

#[test]
fn curl_through_the_launcher_refuses_another_key_even_with_verification_off() {
    let rig = Rig::new();
    let server = web_server(&rig, &rig.other);

    let out = curl(&rig, true, server.port, &[]);
    assert!(!out.status.success(), "another key refused: {out:?}");
    // `-k` turns the program's checks off, not the launcher's: the record still decides.
    let out = curl(&rig, true, server.port, &["-k"]);
    let err = common::stderr(&out);
    assert!(
        !out.status.success(),
        "-k does not admit another key: {err}"
    );
    assert!(err.contains("iotsafe-run: TLS connection refused"), "{err}");
    // Without the launcher, -k connects to anything.
    assert!(curl(&rig, false, server.port, &["-k"]).status.success());
}

/// tests/c/shim_client.c (a plain OpenSSL client, no DANE code) built into the rig's directory.
fn shim_client(rig: &Rig) -> PathBuf {
    let exe = rig.dir.path().join("shim_client");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/shim_client.c");
    let built = Command::new("gcc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(source)
        .args(["-lssl", "-lcrypto"])
        .output()
        .expect("gcc");
    assert!(built.status.success(), "{}", common::stderr(&built));
    exe
}

/// `openssl s_server` with `cert`, the good key's record published for its port.
fn tls_server(rig: &Rig, cert: &pki::Issued) -> tls::TlsServer {
    let server = tls::TlsServer::start(&cert.cert_path, &cert.key_path, None);
    rig.publish_record(server.port);
    server
}

fn client(rig: &Rig, launcher: bool, args: &[&str]) -> Output {
    let exe = shim_client(rig);
    if launcher {
        run(rig.through_launcher(exe.to_str().unwrap(), args))
    } else {
        let mut cmd = rig.plain(&exe);
        cmd.args(args);
        run(cmd)
    }
}

fn handshake_ok(out: &Output) -> bool {
    out.status.success() && common::stdout(out).contains("handshake ok")
}

#[test]
fn a_verify_callback_that_accepts_everything_does_not_admit_another_key() {
    let rig = Rig::new();
    let sni = format!("sni:{HOST}");
    let good = tls_server(&rig, &rig.good);
    let port = good.port.to_string();
    let out = client(&rig, true, &[&sni, &port, "accept-all"]);
    assert!(handshake_ok(&out), "the record's key: {out:?}");

    let other = tls_server(&rig, &rig.other);
    let port = other.port.to_string();
    // Without the launcher, the callback accepts any key.
    assert!(handshake_ok(&client(
        &rig,
        false,
        &[&sni, &port, "accept-all"]
    )));
    let out = client(&rig, true, &[&sni, &port, "accept-all"]);
    let (stdout, err) = (common::stdout(&out), common::stderr(&out));
    assert!(!out.status.success(), "refused: {stdout}{err}");
    assert!(
        stdout.contains("callback: depth 0: no matching DANE TLSA records (accepted)"),
        "the callback saw DANE's verdict: {stdout}"
    );
    assert!(
        err.contains(&format!("TLS connection refused: {HOST}:{port}"))
            && err.contains("(NO_MATCH)"),
        "refused in the handshake, the shim says why: {err}"
    );
    assert!(stdout.contains("handshake failed"), "{stdout}");
}

#[test]
fn verification_switched_off_by_the_program_is_switched_on_by_the_launcher() {
    let rig = Rig::new();
    let sni = format!("sni:{HOST}");
    let other = tls_server(&rig, &rig.other);
    let port = other.port.to_string();
    assert!(handshake_ok(&client(&rig, false, &[&sni, &port, "none"])));
    let out = client(&rig, true, &[&sni, &port, "none"]);
    assert!(!out.status.success(), "refused: {out:?}");
    assert!(
        common::stderr(&out).contains("(NO_MATCH)"),
        "{}",
        common::stderr(&out)
    );
}

#[test]
fn a_name_given_only_to_ssl_set1_host_is_the_server_name() {
    let rig = Rig::new();
    let host = format!("host:{HOST}");
    let good = tls_server(&rig, &rig.good);
    let out = client(&rig, true, &[&host, &good.port.to_string(), "pkix"]);
    assert!(handshake_ok(&out), "{out:?}");
    let other = tls_server(&rig, &rig.other);
    let out = client(&rig, true, &[&host, &other.port.to_string(), "pkix"]);
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn no_server_name_is_refused_under_require_and_left_to_the_program_when_opportunistic() {
    let rig = Rig::new();
    let good = tls_server(&rig, &rig.good);
    let port = good.port.to_string();
    let out = client(&rig, true, &["-", &port, "accept-all"]);
    let err = common::stderr(&out);
    assert!(!out.status.success(), "require refuses: {err}");
    assert!(err.contains("no server name"), "{err}");
    assert!(
        !common::stdout(&out).contains("callback:"),
        "refused before the handshake"
    );

    let opportunistic = |verify: &str| {
        let exe = shim_client(&rig);
        let mut cmd = rig.plain(&rig.launcher);
        cmd.args(["--policy", "opportunistic", "--resolver"])
            .arg(rig.dns.addr().to_string())
            .arg("--trust-anchor")
            .arg(rig.dns.trust_anchor_file())
            .arg(exe)
            .args(["-", &port, verify]);
        run(cmd)
    };
    let out = opportunistic("accept-all");
    assert!(handshake_ok(&out), "the program's own callback: {out:?}");
    assert!(common::stderr(&out).contains("no DANE (opportunistic)"));
    let out = opportunistic("pkix");
    assert!(!out.status.success(), "the program's own PKIX: {out:?}");
}

#[test]
fn non_blocking_handshakes_on_a_relayed_socket_are_prepared_once_and_checked() {
    let rig = Rig::new();
    let sni = format!("sni:{HOST}");
    let good = tls_server(&rig, &rig.good);
    let out = client(
        &rig,
        true,
        &[&sni, &good.port.to_string(), "pkix", "nonblock"],
    );
    assert!(handshake_ok(&out), "{out:?}");
    assert!(
        !common::stdout(&out).contains("retries: 0"),
        "the handshake took several calls: {}",
        common::stdout(&out)
    );
    // The SSL's own socket is no TCP connection: the port is the one this thread connected.
    assert!(!common::stderr(&out).contains("no socket"), "{out:?}");
    let other = tls_server(&rig, &rig.other);
    let out = client(
        &rig,
        true,
        &[&sni, &other.port.to_string(), "pkix", "nonblock"],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(common::stderr(&out).contains("(NO_MATCH)"), "{out:?}");
}

/// The launcher with only `options` (no resolver or trust anchor given on its command line),
/// and `env` set, running the C client with `args`.
fn launcher_with(rig: &Rig, options: &[&str], env: &[(&str, &Path)], args: &[&str]) -> Output {
    let exe = shim_client(rig);
    let mut cmd = rig.plain(&rig.launcher);
    cmd.args(options).arg(exe).args(args);
    for (var, value) in env {
        cmd.env(var, value);
    }
    run(cmd)
}

/// A copy of c-examples/openssl.cnf with `lines` added to the provider's section.
fn openssl_cnf_with(rig: &Rig, lines: &[String]) -> PathBuf {
    let text = std::fs::read_to_string(common::example_openssl_conf()).unwrap();
    let section = "[iotsafe_sect]\n";
    let at = text.find(section).expect("provider section") + section.len();
    let mut out = text[..at].to_string();
    for line in lines {
        out += line;
        out += "\n";
    }
    out += &text[at..];
    let path = rig.dir.path().join("openssl.cnf");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn settings_come_from_options_then_variables_then_the_providers_openssl_cnf_section() {
    let rig = Rig::new();
    let good = tls_server(&rig, &rig.good);
    let port = good.port.to_string();
    let sni = format!("sni:{HOST}");
    let resolver = rig.dns.addr().to_string();
    let anchor = rig.dns.trust_anchor_file();

    // Resolver and trust anchor from the variables.
    let out = launcher_with(
        &rig,
        &[],
        &[
            ("IOTSAFE_DANE_RESOLVER", Path::new(&resolver)),
            ("IOTSAFE_DANE_TRUST_ANCHOR", &anchor),
        ],
        &[&sni, &port, "pkix"],
    );
    assert!(handshake_ok(&out), "from the variables: {out:?}");

    // From the provider's section of the configuration OpenSSL reads, policy included.
    let cnf = openssl_cnf_with(
        &rig,
        &[
            format!("dane-resolver = {resolver}"),
            format!("dane-trust-anchor = {}", anchor.display()),
            "dane-policy = opportunistic".to_string(),
        ],
    );
    let from_cnf = |options: &[&str], env: &[(&str, &Path)]| {
        let mut all = vec![("OPENSSL_CONF", cnf.as_path())];
        all.extend_from_slice(env);
        launcher_with(&rig, options, &all, &["-", &port, "accept-all"])
    };
    let out = launcher_with(&rig, &[], &[("OPENSSL_CONF", &cnf)], &[&sni, &port, "pkix"]);
    assert!(handshake_ok(&out), "from openssl.cnf: {out:?}");
    let out = from_cnf(&[], &[]);
    assert!(
        handshake_ok(&out),
        "opportunistic from openssl.cnf: {out:?}"
    );
    // A variable overrides the file, an option the variable.
    let require = [("IOTSAFE_DANE_POLICY", Path::new("require"))];
    let out = from_cnf(&[], &require);
    assert!(!out.status.success(), "the variable's policy: {out:?}");
    let out = from_cnf(&["--policy", "opportunistic"], &require);
    assert!(handshake_ok(&out), "the option's policy: {out:?}");
}

#[test]
fn the_launcher_sets_the_preload_and_openssl_conf_and_checks_its_options() {
    let rig = Rig::new();
    let show = |env: &[(&str, &str)], options: &[&str]| {
        let mut cmd = rig.plain(&rig.launcher);
        cmd.args(options).args([
            "sh",
            "-c",
            "echo \"$LD_PRELOAD|$OPENSSL_CONF|$IOTSAFE_DANE_POLICY\"",
        ]);
        for (var, value) in env {
            cmd.env(var, value);
        }
        run(cmd)
    };
    let out = show(&[], &["--policy=opportunistic"]);
    let line = common::stdout(&out);
    let preload = common::built_adapter("libiotsafe_preload.so", "preload");
    assert_eq!(
        line.trim(),
        format!(
            "{}|{}|opportunistic",
            preload.display(),
            common::example_openssl_conf().display()
        )
    );
    let out = show(
        &[("OPENSSL_CONF", "/etc/mine.cnf"), ("LD_PRELOAD", "libx.so")],
        &[],
    );
    assert_eq!(
        common::stdout(&out).trim(),
        format!("{}:libx.so|/etc/mine.cnf|", preload.display()),
        "the caller's OPENSSL_CONF is kept, its preloads follow the shim"
    );

    for (options, message) in [
        (
            vec!["--policy", "sometimes"],
            "expected require or opportunistic",
        ),
        (vec!["--trust-anchor", "/nonexistent"], "no such file"),
        (vec!["--timeout-ms", "0"], "expected 1 to 60000"),
        (vec!["--frobnicate"], "unknown option --frobnicate"),
        (vec!["no-such-program-here"], "command not found"),
    ] {
        let out = show(&[], &options);
        assert!(!out.status.success(), "{options:?}");
        assert!(
            common::stderr(&out).contains(message),
            "{options:?}: {}",
            common::stderr(&out)
        );
    }
}

/// Python loads libssl only when a script imports `ssl` (its `_ssl` module, by dlopen): the
/// shim reaches it there all the same, and says so when a program never used libssl at all.
#[test]
fn python_loads_libssl_late_and_is_reached_and_a_program_without_libssl_is_told() {
    let rig = Rig::new();
    let good = tls_server(&rig, &rig.good);
    let script = format!(
        "import socket, ssl\n\
         s = socket.create_connection(('127.0.0.1', {}))\n\
         t = ssl.create_default_context().wrap_socket(s, server_hostname='{HOST}')\n\
         print('connected', t.version())\n",
        good.port
    );
    let out = run(rig.through_launcher("python3", &["-c", &script]));
    assert!(
        out.status.success() && common::stdout(&out).contains("connected"),
        "Python's ssl through the launcher: {out:?}"
    );
    assert!(!common::stderr(&out).contains("python3 (pid"), "{out:?}");
    let mut plain = rig.plain(Path::new("python3"));
    plain.args(["-c", &script]);
    let out = run(plain);
    assert!(
        common::stderr(&out).contains("CERTIFICATE_VERIFY_FAILED"),
        "PKIX alone refuses: {out:?}"
    );

    let out = run(rig.through_launcher("python3", &["-c", "print('no TLS')"]));
    assert!(
        common::stderr(&out).contains("iotsafe-run: python3 (pid")
            && common::stderr(&out).contains("never used OpenSSL 3's libssl"),
        "{out:?}"
    );
}

/// A program built on another TLS library (Debian's wget is built on GnuTLS) would run without
/// DANE: under require the launcher does not start it, and the shim stops it where the launcher
/// never looked (started by a script); --allow-no-dane or --policy opportunistic runs it, told
/// at start.
#[test]
fn a_program_on_another_tls_library_is_not_started_under_require() {
    let rig = Rig::new();
    let out = run(rig.through_launcher("wget", &["--version"]));
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    let err = common::stderr(&out);
    assert!(
        err.contains("wget uses libgnutls")
            && err.contains("not started under policy require")
            && !common::stdout(&out).contains("GNU Wget"),
        "{err}"
    );
    // Started by a shell the launcher let through: the shim refuses it in that process.
    let out = run(rig.through_launcher("sh", &["-c", "wget --version; echo wget=$?"]));
    assert!(
        common::stdout(&out).contains("wget=126")
            && common::stderr(&out).contains("iotsafe-run: wget uses libgnutls")
            && !common::stdout(&out).contains("GNU Wget"),
        "{out:?}"
    );
    for option in ["--allow-no-dane", "--policy=opportunistic"] {
        let out = run(rig.through_launcher(option, &["wget", "--version"]));
        let err = common::stderr(&out);
        assert!(
            out.status.success()
                && common::stdout(&out).contains("GNU Wget")
                && err.contains("iotsafe-run: wget uses libgnutls")
                && err.contains("get no DANE"),
            "{option}: {out:?}"
        );
    }
}

/// A program linked against another OpenSSL's libssl (here a stand-in named libssl.so.1.1),
/// and a 32-bit program (the dynamic linker ignores a 64-bit shim for it: "wrong ELF class"),
/// would run without DANE: not started under require unless --allow-no-dane.
#[test]
fn programs_on_another_libssl_or_of_another_elf_class_are_not_started_under_require() {
    let rig = Rig::new();
    let d = rig.dir.path();
    let gcc = |args: &[&str]| {
        let out = Command::new("gcc").args(args).output().expect("gcc");
        assert!(out.status.success(), "{}", common::stderr(&out));
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/other_openssl.c");
    let lib = d.join("libssl.so.1.1");
    // Its symbols carry OpenSSL 1.1's version, as the real library's do.
    let map = d.join("libssl11.map");
    std::fs::write(&map, "OPENSSL_1_1_0 { global: SSL_connect; local: *; };\n").unwrap();
    let map_arg = format!("-Wl,--version-script={}", map.display());
    gcc(&[
        "-DOTHER_LIBRARY",
        "-fPIC",
        "-shared",
        &map_arg,
        "-Wl,-soname,libssl.so.1.1",
        "-o",
        lib.to_str().unwrap(),
        source.to_str().unwrap(),
    ]);
    let old_openssl = d.join("old_openssl");
    let rpath = format!("-Wl,-rpath,{}", d.display());
    gcc(&[
        "-o",
        old_openssl.to_str().unwrap(),
        source.to_str().unwrap(),
        lib.to_str().unwrap(),
        &rpath,
    ]);
    // 32-bit, with a program interpreter (dynamic), no C library needed to build it.
    let start = d.join("start32.c");
    std::fs::write(&start, "void _start(void) { for (;;) ; }\n").unwrap();
    let program32 = d.join("program32");
    gcc(&[
        "-m32",
        "-nostdlib",
        "-fPIE",
        "-pie",
        "-o",
        program32.to_str().unwrap(),
        start.to_str().unwrap(),
    ]);

    let cases = [
        (
            &old_openssl,
            "linked against another OpenSSL (libssl.so.1.1)",
        ),
        (&program32, "is a 32-bit program"),
    ];
    for (program, reason) in cases {
        let out = run(rig.through_launcher(program.to_str().unwrap(), &[]));
        assert_eq!(out.status.code(), Some(126), "{out:?}");
        assert!(
            common::stderr(&out).contains(reason)
                && common::stderr(&out).contains("not started under policy require"),
            "{out:?}"
        );
    }
    let out = run(rig.through_launcher("--allow-no-dane", &[old_openssl.to_str().unwrap()]));
    assert!(
        out.status.success()
            && common::stdout(&out).contains("the other OpenSSL's SSL_connect")
            && common::stderr(&out).contains("uses libssl.so.1.1"),
        "{out:?}"
    );
}

#[test]
fn a_statically_linked_program_is_not_started_without_dane() {
    let rig = Rig::new();
    let source = rig.dir.path().join("static.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\nint main(void) { puts(\"ran\"); }\n",
    )
    .unwrap();
    let exe = rig.dir.path().join("static_program");
    let built = Command::new("gcc")
        .args(["-static", "-o"])
        .arg(&exe)
        .arg(&source)
        .output()
        .expect("gcc");
    assert!(built.status.success(), "{}", common::stderr(&built));

    let mut cmd = rig.plain(&rig.launcher);
    cmd.arg(&exe);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(
        common::stderr(&out).contains("is statically linked")
            && !common::stdout(&out).contains("ran"),
        "{out:?}"
    );
    let mut cmd = rig.plain(&rig.launcher);
    cmd.arg("--allow-no-dane").arg(&exe);
    let out = run(cmd);
    assert!(common::stdout(&out).contains("ran"), "{out:?}");

    // A script whose interpreter is the static program: the dynamic linker never runs either.
    let script = rig.dir.path().join("script");
    std::fs::write(&script, format!("#!{}\n", exe.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = rig.plain(&rig.launcher);
    cmd.arg(&script);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(
        common::stderr(&out).contains(&format!(
            "{} (the interpreter of {}) is statically linked",
            exe.display(),
            script.display()
        )) && !common::stdout(&out).contains("ran"),
        "{out:?}"
    );
}

/// The launcher reads the program (and a script's interpreters) before starting it: a FIFO or
/// a terminal named as either is refused as no regular file, at once, rather than read (which
/// would block for ever).
#[test]
fn a_program_or_interpreter_that_is_no_regular_file_is_refused_without_blocking() {
    let rig = Rig::new();
    let fifo = rig.dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).output().expect("mkfifo");
    assert!(made.status.success(), "{}", common::stderr(&made));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = rig.dir.path().join("script");
    std::fs::write(&script, format!("#!{}\n", fifo.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    for (program, what) in [
        (&fifo, format!("{} is not a regular file", fifo.display())),
        (
            &script,
            format!(
                "{} (the interpreter of {}) is not a regular file",
                fifo.display(),
                script.display()
            ),
        ),
    ] {
        let mut cmd = rig.plain(&rig.launcher);
        cmd.arg(program);
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(126), "{out:?}");
        assert!(common::stderr(&out).contains(&what), "{what}: {out:?}");
    }
}

/// c-examples/paho_pub.c (Paho C, no DANE code in it) through the launcher: its trust store
/// holds a CA that did not issue the broker's certificate, so only the TLSA record vouches.
#[test]
fn the_paho_c_example_publishes_through_the_launcher_to_a_broker_vouched_for_by_tlsa() {
    let rig = Rig::new();
    let d = rig.dir.path();
    let exe = d.join("paho_pub");
    let built = Command::new("gcc")
        .arg("-o")
        .arg(&exe)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("c-examples/paho_pub.c"))
        .arg("-lpaho-mqtt3cs")
        .output()
        .expect("gcc");
    assert!(built.status.success(), "{}", common::stderr(&built));
    let unrelated_ca = pki::ca(d, "ca", "unrelated CA");
    let client = pki::leaf(d, "client", "client", &[], None);
    let keystore = d.join("client.keystore.pem");
    let mut pem = std::fs::read(&client.cert_path).unwrap();
    pem.extend(std::fs::read(&client.key_path).unwrap());
    std::fs::write(&keystore, pem).unwrap();

    let port = common::free_port();
    rig.publish_record(port);
    let uri = format!("ssl://{HOST}:{port}");
    let args = [
        uri.as_str(),
        unrelated_ca.cert_path.to_str().unwrap(),
        keystore.to_str().unwrap(),
        "sensors/7",
        "21.5",
    ];
    let publish = |launcher: bool| {
        if launcher {
            run(rig.through_launcher(exe.to_str().unwrap(), &args))
        } else {
            let mut cmd = rig.plain(&exe);
            cmd.args(args);
            run(cmd)
        }
    };

    let broker = mqtt::Broker::start(port, &rig.good.cert_path, &rig.good.key_path);
    let out = publish(true);
    assert!(
        out.status.success(),
        "through the launcher: {out:?}\nbroker: {}",
        broker.log()
    );
    assert!(broker.log().contains("'sensors/7'"), "{}", broker.log());
    assert!(!publish(false).status.success(), "PKIX alone refuses");
    drop(broker);

    let _other = mqtt::Broker::start(port, &rig.other.cert_path, &rig.other.key_path);
    let out = publish(true);
    assert!(!out.status.success(), "another key: {out:?}");
    assert!(common::stderr(&out).contains("(NO_MATCH)"), "{out:?}");
}

/// `openssl s_client` never calls SSL_connect: its handshake happens inside SSL_write/SSL_read
/// (after SSL_set_connect_state), and its verify callback accepts every certificate. Reached
/// there all the same.
#[test]
fn openssl_s_client_handshaking_inside_its_reads_and_writes_is_reached() {
    let rig = Rig::new();
    let s_client = |port: u16| {
        let connect = format!("127.0.0.1:{port}");
        let args = ["s_client", "-connect", &connect, "-servername", HOST];
        run(rig.through_launcher("openssl", &args))
    };
    let good = tls_server(&rig, &rig.good);
    let out = s_client(good.port);
    assert!(
        out.status.success() && common::stdout(&out).contains("Verification: OK"),
        "{out:?}"
    );
    let other = tls_server(&rig, &rig.other);
    let out = s_client(other.port);
    assert!(!out.status.success(), "{out:?}");
    assert!(common::stderr(&out).contains("(NO_MATCH)"), "{out:?}");
}

/// `--trust-ad`: the AD bit of a validating resolver on loopback (a real unbound validating the
/// test hierarchy) decides instead of in-process validation; `--timeout-ms` is passed along.
#[test]
fn trust_ad_takes_a_validating_resolvers_verdict() {
    let rig = Rig::new();
    let unbound = unbound::Unbound::start(&rig.dns);
    let sni = format!("sni:{HOST}");
    let client = |server: &tls::TlsServer| {
        let port = server.port.to_string();
        let resolver = unbound.addr().to_string();
        launcher_with(
            &rig,
            &[
                "--trust-ad",
                "--timeout-ms",
                "4000",
                "--resolver",
                &resolver,
            ],
            &[],
            &[&sni, &port, "pkix"],
        )
    };
    let good = tls_server(&rig, &rig.good);
    let out = client(&good);
    assert!(handshake_ok(&out), "{out:?}\n{}", unbound.log());
    let other = tls_server(&rig, &rig.other);
    let out = client(&other);
    assert!(!out.status.success(), "{out:?}");
    assert!(common::stderr(&out).contains("(NO_MATCH)"), "{out:?}");
}

/// A program linked against another OpenSSL asks for `SSL_connect@OPENSSL_1_1_0`: the shim's
/// `SSL_connect@OPENSSL_3.0.0` is not that symbol, so the program's own library gets the call.
#[test]
fn a_program_linked_against_another_openssl_is_left_alone() {
    let rig = Rig::new();
    let d = rig.dir.path();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/other_openssl.c");
    let map = d.join("other.map");
    std::fs::write(&map, "OPENSSL_1_1_0 { global: SSL_connect; local: *; };\n").unwrap();
    let gcc = |args: &[&str]| {
        let out = Command::new("gcc").args(args).output().expect("gcc");
        assert!(out.status.success(), "{}", common::stderr(&out));
    };
    let lib = d.join("libotherssl.so");
    let map_arg = format!("-Wl,--version-script={}", map.display());
    gcc(&[
        "-DOTHER_LIBRARY",
        "-fPIC",
        "-shared",
        &map_arg,
        "-o",
        lib.to_str().unwrap(),
        source.to_str().unwrap(),
    ]);
    let exe = d.join("other_openssl");
    let rpath = format!("-Wl,-rpath,{}", d.display());
    let libdir = format!("-L{}", d.display());
    gcc(&[
        "-o",
        exe.to_str().unwrap(),
        source.to_str().unwrap(),
        &libdir,
        &rpath,
        "-lotherssl",
    ]);

    let out = run(rig.through_launcher(exe.to_str().unwrap(), &[]));
    assert!(out.status.success(), "{out:?}");
    assert!(
        common::stdout(&out).contains("the other OpenSSL's SSL_connect(its own SSL)"),
        "{out:?}"
    );
}

/// A client handshake no handshake function starts (SSL_peek after SSL_set_connect_state, or a
/// BIO_f_ssl BIO whose writes libssl makes through its own functions) is held to the record
/// like any other: the shim prepares it when libssl announces the handshake.
#[test]
fn handshakes_begun_by_ssl_peek_or_a_bio_f_ssl_write_are_held_to_the_record() {
    let rig = Rig::new();
    let sni = format!("sni:{HOST}");
    let good = tls_server(&rig, &rig.good);
    let other = tls_server(&rig, &rig.other);
    let (good_port, other_port) = (good.port.to_string(), other.port.to_string());
    for mode in ["peek", "bio"] {
        let out = client(&rig, true, &[&sni, &good_port, "pkix", mode]);
        assert!(handshake_ok(&out), "{mode}, the record's key: {out:?}");
        assert!(
            handshake_ok(&client(&rig, false, &[&sni, &other_port, "none", mode])),
            "{mode} without the launcher connects to anything"
        );
        let out = client(&rig, true, &[&sni, &other_port, "none", mode]);
        assert!(!out.status.success(), "{mode}, another key: {out:?}");
        assert!(
            common::stderr(&out).contains("(NO_MATCH)"),
            "{mode}: {}",
            common::stderr(&out)
        );
    }
}

/// A verify callback that resets OpenSSL's error to X509_V_OK leaves no failed verify result
/// behind: the record's verdict is enforced in the handshake, whatever the callback says.
#[test]
fn a_verify_callback_that_resets_the_error_does_not_admit_another_key() {
    let rig = Rig::new();
    let sni = format!("sni:{HOST}");
    let good = tls_server(&rig, &rig.good);
    let out = client(&rig, true, &[&sni, &good.port.to_string(), "launder"]);
    assert!(handshake_ok(&out), "the record's key: {out:?}");
    let other = tls_server(&rig, &rig.other);
    let port = other.port.to_string();
    assert!(handshake_ok(&client(
        &rig,
        false,
        &[&sni, &port, "launder"]
    )));
    let out = client(&rig, true, &[&sni, &port, "launder"]);
    assert!(!out.status.success(), "another key: {out:?}");
    assert!(
        common::stderr(&out).contains("(NO_MATCH)"),
        "{}",
        common::stderr(&out)
    );
}

/// A handshake begun by SSL_write (with a verify callback that accepts everything) is finished
/// and checked before the data goes: a server the record does not vouch for receives nothing.
#[test]
fn data_written_before_the_handshake_never_reaches_a_server_that_fails_the_check() {
    let rig = Rig::new();
    let sni = format!("sni:{HOST}");
    let received = rig.dir.path().join("received.txt");
    let other =
        tls::TlsServer::start_recording(&rig.other.cert_path, &rig.other.key_path, &[], &received);
    rig.publish_record(other.port);
    let port = other.port.to_string();
    let out = client(&rig, true, &[&sni, &port, "accept-all", "write"]);
    assert!(!out.status.success(), "another key: {out:?}");
    // The same write without the launcher reaches the server; it serves one connection after
    // the other, so once this one's data is there the first one's would be too.
    assert!(handshake_ok(&client(
        &rig,
        false,
        &[&sni, &port, "accept-all", "write"]
    )));
    let count = || {
        std::fs::read_to_string(&received)
            .unwrap_or_default()
            .matches("secret-payload")
            .count()
    };
    common::wait_until(10, "the plain client's data at the server", || count() > 0);
    assert_eq!(count(), 1, "only the plain client's write arrived");
    assert!(
        common::stderr(&out).contains("(NO_MATCH)"),
        "refused in the handshake: {out:?}"
    );
}

/// `--broker` when the resolver cannot be set up (here a look-up time-out beyond the
/// library's limit, given by variable): the server's contexts admit no client, whatever the
/// server's own verify setting was; they are never left open.
#[test]
fn a_broker_whose_resolver_cannot_be_set_up_admits_no_client() {
    let rig = Rig::new();
    let mut launcher = rig.plain(&rig.launcher);
    launcher
        .args(["--broker", "--resolver", &rig.dns.addr().to_string()])
        .arg("--trust-anchor")
        .arg(rig.dns.trust_anchor_file())
        .env("IOTSAFE_DANE_TIMEOUT_MS", "999999");
    let server = tls::TlsServer::start_through(
        launcher,
        &rig.good.cert_path,
        &rig.good.key_path,
        &["-www", "-Verify", "1"],
    );
    // A client with no certificate at all (TLS 1.2: the server's verdict ends the handshake).
    let url = format!("https://127.0.0.1:{}/", server.port);
    let mut curl = rig.plain(Path::new("curl"));
    curl.args(["-sS", "-k", "--tls-max", "1.2", "--max-time", "10", &url]);
    let out = run(curl);
    assert!(
        !out.status.success() && !common::stdout(&out).contains("s_server"),
        "a client without a certificate got in: {out:?}"
    );
}

/// An SSL cleared with SSL_clear and connected again under another server name does not keep
/// the first connection's records or verdict. Here the first name's record designates the
/// other key (a server the program may trust for that name); the second connection, to HOST
/// (whose record designates the good key), meets the same server: it must be refused.
#[test]
fn an_ssl_cleared_for_another_server_does_not_keep_the_first_servers_records() {
    let rig = Rig::new();
    let other = tls_server(&rig, &rig.other);
    let first = "first.example.test";
    rig.dns
        .add_record("example.test.", "first 300 IN A 127.0.0.1");
    rig.dns.add_record(
        "example.test.",
        &format!(
            "_{}._tcp.first 300 IN TLSA {}",
            other.port,
            pki::dane_ee_record(&rig.other.cert)
        ),
    );
    let sni = format!("sni:{first}");
    let clear = format!("clear={HOST}");
    let args = [sni.as_str(), &other.port.to_string(), "pkix", &clear];
    let out = client(&rig, true, &args);
    assert!(
        common::stdout(&out).contains("first handshake ok"),
        "the first name's record: {out:?}"
    );
    assert!(
        !out.status.success(),
        "HOST's record names another key: {out:?}"
    );
    // OpenSSL's SSL_clear keeps the DANE records, which cannot be enabled twice: refused.
    assert!(
        common::stderr(&out)
            .contains("an SSL cleared for reuse keeps its last server's TLSA records"),
        "{out:?}"
    );
}

/// A session the program offers for resumption is dropped before the handshake: a resumed
/// session skips the server's certificate, so a record changed since (up to a ticket's
/// lifetime) would not count. Every connection through the launcher checks the certificate.
#[test]
fn sessions_offered_for_resumption_are_dropped_so_every_handshake_checks_the_record() {
    let rig = Rig::new();
    let sni = format!("sni:{HOST}");
    let good = tls_server(&rig, &rig.good);
    let args = [sni.as_str(), &good.port.to_string(), "accept-all", "resume"];
    let out = client(&rig, false, &args);
    assert!(
        handshake_ok(&out) && common::stdout(&out).contains("session reused"),
        "without the launcher the server resumes the session: {out:?}"
    );
    let out = client(&rig, true, &args);
    assert!(handshake_ok(&out), "{out:?}");
    assert!(
        !common::stdout(&out).contains("session reused"),
        "through the launcher: {out:?}"
    );
}

/// The dynamic linker ignores LD_PRELOAD for a program that runs set-user-ID as someone else,
/// and LD_PRELOAD splits its list on spaces: either way the program would run without DANE,
/// so the launcher does not start it.
#[test]
fn the_launcher_does_not_start_what_the_preload_cannot_reach() {
    let rig = Rig::new();
    let d = rig.dir.path();
    let setuid = d.join("setuid_id");
    std::fs::copy("/usr/bin/id", &setuid).unwrap();
    let chown = Command::new("chown")
        .arg("nobody")
        .arg(&setuid)
        .output()
        .expect("chown");
    assert!(chown.status.success(), "{}", common::stderr(&chown));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut cmd = rig.plain(&rig.launcher);
    cmd.arg(&setuid);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(
        common::stderr(&out).contains("ignores LD_PRELOAD") && common::stdout(&out).is_empty(),
        "{out:?}"
    );
    // The same program as a script's interpreter: the kernel runs it set-user-ID all the same.
    let script = d.join("script");
    std::fs::write(&script, format!("#!{}\n", setuid.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = rig.plain(&rig.launcher);
    cmd.arg(&script);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(
        common::stderr(&out).contains("(the interpreter of")
            && common::stderr(&out).contains("ignores LD_PRELOAD")
            && common::stdout(&out).is_empty(),
        "{out:?}"
    );

    let spaced = d.join("with space");
    std::fs::create_dir(&spaced).unwrap();
    let preload = common::built_adapter("libiotsafe_preload.so", "preload");
    std::fs::copy(&rig.launcher, spaced.join("iotsafe-run")).unwrap();
    std::fs::copy(&preload, spaced.join("libiotsafe_preload.so")).unwrap();
    let mut cmd = rig.plain(&spaced.join("iotsafe-run"));
    cmd.args(["sh", "-c", "echo ran"]);
    let out = run(cmd);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(
        common::stderr(&out).contains("on which LD_PRELOAD splits")
            && !common::stdout(&out).contains("ran"),
        "{out:?}"
    );
}

/// A program whose SSL hides its socket (the port is taken from the TCP connections the thread
/// made) with connections to two ports open: which one the handshake uses is unknown, so under
/// require it is refused rather than checked against the wrong port's records. Here the decoy
/// port's records name the other key, which the real server presents.
#[test]
fn a_hidden_socket_with_connections_to_several_ports_open_is_refused_under_require() {
    let rig = Rig::new();
    let sni = format!("sni:{HOST}");
    let other = tls_server(&rig, &rig.other);
    let decoy = tls_server(&rig, &rig.good);
    rig.dns.add_record(
        "example.test.",
        &format!(
            "_{}._tcp.broker 300 IN TLSA {}",
            decoy.port,
            pki::dane_ee_record(&rig.other.cert)
        ),
    );
    let decoy_mode = format!("decoy={}", decoy.port);
    let out = client(
        &rig,
        true,
        &[&sni, &other.port.to_string(), "pkix", &decoy_mode],
    );
    assert!(!out.status.success(), "{out:?}");
    assert!(
        common::stderr(&out).contains("connections to several ports open"),
        "{out:?}"
    );
}

/// tests/c/shim_server.c through `iotsafe-run --broker` in `mode`, killed on drop.
struct BrokerServer {
    child: Child,
    port: u16,
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker_server(rig: &Rig, mode: &str) -> BrokerServer {
    let exe = rig.dir.path().join("shim_server");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/shim_server.c");
    let built = Command::new("gcc")
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(source)
        .args(["-lssl", "-lcrypto"])
        .output()
        .expect("gcc");
    assert!(built.status.success(), "{}", common::stderr(&built));
    let port = common::free_port();
    let mut cmd = rig.plain(&rig.launcher);
    cmd.args([
        "--broker",
        "--allowed-domains",
        "example.test",
        "--resolver",
    ])
    .arg(rig.dns.addr().to_string())
    .arg("--trust-anchor")
    .arg(rig.dns.trust_anchor_file())
    .arg(&exe)
    .arg(port.to_string())
    .arg(&rig.good.cert_path)
    .arg(&rig.good.key_path)
    .arg(mode)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let child = cmd.spawn().expect("shim_server");
    let server = BrokerServer { child, port };
    common::wait_until(10, "shim_server listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    server
}

/// Server contexts the broker mode would not recognise by their set-up (a TLS_method()
/// context asking for optional client certificates), or whose verification the server
/// switches off per connection (SSL_set_verify), never admit a client DANE did not verify:
/// checked when each server handshake starts.
#[test]
fn broker_mode_refuses_clients_of_server_contexts_it_did_not_configure() {
    let rig = Rig::new();
    for mode in ["tls-method-optional", "per-ssl-none"] {
        let server = broker_server(&rig, mode);
        // Twice: the first connection of an unrecognised context is refused, and the context
        // is configured for the next ones, which need a certificate DANE verifies.
        for attempt in 0..2 {
            let url = format!("https://127.0.0.1:{}/", server.port);
            refused_without_a_certificate(
                &rig,
                &["--tls-max", "1.2", &url],
                &format!("{mode}, attempt {attempt}"),
            );
        }
    }
}

/// A server that moves a connection to another context after its handshake started (an SNI
/// callback switching to a host context that never set verification, as nginx does for its
/// server blocks) admits no client DANE did not verify: server handshakes are checked again
/// when they finish, and a refused client's accept and I/O fail. Twice: the host context is
/// configured after its first client, and the callback's per-SSL verify setting still
/// replaces DANE's.
#[test]
fn broker_mode_refuses_clients_moved_to_another_context_during_the_handshake() {
    let rig = Rig::new();
    let server = broker_server(&rig, "sni-vhost");
    for attempt in 0..2 {
        let host = "vhost.example.test";
        let url = format!("https://{host}:{}/", server.port);
        let resolve = format!("{host}:{}:127.0.0.1", server.port);
        refused_without_a_certificate(
            &rig,
            &["--resolve", &resolve, &url],
            &format!("attempt {attempt}"),
        );
    }
}

/// The unmodified curl, without a client certificate, through a broker-mode server: never
/// admitted (`what` names the case in the failure).
fn refused_without_a_certificate(rig: &Rig, args: &[&str], what: &str) {
    let mut curl = rig.plain(Path::new("curl"));
    curl.args(["-sS", "-k", "--max-time", "10"]).args(args);
    let out = run(curl);
    assert!(
        !common::stdout(&out).contains("admitted"),
        "{what}: a client without a certificate got in: {out:?}"
    );
}

/// A server that switches its session cache back on after configuring verification (nginx's
/// order) resumes sessions by id, with no certificate and no DANE check in the resumed
/// handshake: such a client is refused when the handshake finishes, while the full handshake
/// of a device whose record matches is admitted.
#[test]
fn broker_mode_refuses_a_session_resumed_without_a_dane_check() {
    let rig = Rig::new();
    let device = pki::leaf(
        rig.dir.path(),
        "device",
        "dev1",
        &["dev1._device.example.test"],
        None,
    );
    rig.dns.add_record(
        "example.test.",
        &format!(
            "dev1._device 300 IN TLSA {}",
            pki::dane_ee_record(&device.cert)
        ),
    );
    let server = broker_server(&rig, "cache-after-verify");
    let session = rig.dir.path().join("session.pem");
    let s_client = |extra: &[&std::ffi::OsStr]| {
        let mut args = vec!["-tls1_2".as_ref()];
        args.extend_from_slice(extra);
        s_client_request(&rig, server.port, &args)
    };

    let out = s_client(&[
        "-cert".as_ref(),
        device.cert_path.as_os_str(),
        "-key".as_ref(),
        device.key_path.as_os_str(),
        "-sess_out".as_ref(),
        session.as_os_str(),
    ]);
    assert!(
        common::stdout(&out).contains("admitted"),
        "the device's full handshake: {out:?}"
    );
    let out = s_client(&["-sess_in".as_ref(), session.as_os_str()]);
    assert!(
        common::stdout(&out).contains("Reused,"),
        "the server resumed the session: {out:?}"
    );
    assert!(
        !common::stdout(&out).contains("admitted"),
        "a resumed session without a DANE check got in: {out:?}"
    );
}

/// `openssl s_client` (unmodified, without the launcher) to 127.0.0.1:`port` with `extra`
/// options, sending an HTTP request and reading until the server closes.
fn s_client_request(rig: &Rig, port: u16, extra: &[&std::ffi::OsStr]) -> Output {
    let request = rig.dir.path().join("request");
    std::fs::write(&request, "GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut cmd = rig.plain(Path::new("openssl"));
    cmd.args(["s_client", "-ign_eof", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .stdin(std::fs::File::open(&request).unwrap());
    run(cmd)
}

/// A server with an info callback of its own on its SSL (which replaces the context's in
/// libssl) still has each handshake verified afresh on a broker context, and an SSL made ready
/// for the next client by SSL_clear starts from nothing: after a refused client, a device is
/// admitted, and then, its record gone, refused, not admitted by the earlier handshake's
/// verdict.
#[test]
fn broker_mode_verifies_each_client_of_a_reused_ssl_with_its_own_info_callback() {
    const TTL: u64 = 2;
    let rig = Rig::new();
    let device = pki::leaf(
        rig.dir.path(),
        "device",
        "dev1",
        &["dev1._device.example.test"],
        None,
    );
    rig.dns.add_record(
        "example.test.",
        &format!(
            "dev1._device {TTL} IN TLSA {}",
            pki::dane_ee_record(&device.cert)
        ),
    );
    let server = broker_server(&rig, "ssl-info-clear");
    let connect = || {
        s_client_request(
            &rig,
            server.port,
            &[
                "-cert".as_ref(),
                device.cert_path.as_os_str(),
                "-key".as_ref(),
                device.key_path.as_os_str(),
            ],
        )
    };
    // A client refused on the SSL does not make the next one refused.
    let out = s_client_request(&rig, server.port, &[]);
    assert!(
        !common::stdout(&out).contains("admitted"),
        "no certificate: {out:?}"
    );
    let out = connect();
    assert!(
        common::stdout(&out).contains("admitted"),
        "the device, its record published: {out:?}"
    );
    rig.dns
        .set_records("example.test.", &["broker 300 IN A 127.0.0.1"]);
    // The cached answer expires after its TTL.
    std::thread::sleep(Duration::from_secs(TTL + 1));
    let out = connect();
    assert!(
        !common::stdout(&out).contains("admitted"),
        "the device, its record removed: {out:?}"
    );
}
