//! `iotsafe registry`: publish, revoke, rotate and show device records over RFC 2136 updates
//! signed with TSIG, against the test hierarchy's knotd (which signs what it is sent), with the
//! real `iotsafe` tool as an operator runs it; `iotsafe dane check-client` is the device's judge.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::dns::{TestDns, UpdateKey, TSIG_KEY_NAME};
use common::dnsproxy::{self, DnsProxy, Forgery};
use common::pki::{self, Issued};
use common::unbound::Unbound;
use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};

const ZONE: &str = "iotregistry.test.";

/// A knotd with the signed hierarchy, its trust anchor, and a directory for certificates and
/// rotation state.
struct Rig {
    dns: TestDns,
    anchor: PathBuf,
    dir: tempfile::TempDir,
}

impl Rig {
    fn start() -> Rig {
        Rig::start_with_update_keys(&[])
    }

    /// As [`Rig::start`], with knotd also accepting updates signed with `keys`.
    fn start_with_update_keys(keys: &[UpdateKey]) -> Rig {
        let dns = TestDns::start_with_update_keys(&[], keys);
        let anchor = dns.trust_anchor_file();
        Rig {
            dns,
            anchor,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn device(&self, file: &str) -> Issued {
        pki::leaf(self.dir.path(), file, file, &[], None)
    }

    fn resolver_args(&self) -> Vec<String> {
        vec![
            "--resolver".into(),
            self.dns.addr().to_string(),
            "--trust-anchor".into(),
            self.anchor.to_str().unwrap().into(),
        ]
    }

    /// `iotsafe registry COMMAND NAME ARGS` with this rig's server, zone, resolver and state
    /// directory, and the key arguments `key` (`--tsig-key FILE` or `--tsig INLINE`).
    fn registry_with_key(&self, command: &str, name: &str, args: &[&str], key: &[&str]) -> Output {
        common::registry::command(&self.dns, command, name)
            .args(args)
            .args(key)
            .env("IOTSAFE_REGISTRY_STATE_DIR", self.dir.path().join("state"))
            .output()
            .expect("run iotsafe registry")
    }

    fn registry(&self, command: &str, name: &str, args: &[&str]) -> Output {
        let key = self.dns.tsig_bind_file();
        self.registry_with_key(command, name, args, &["--tsig-key", key.to_str().unwrap()])
    }

    /// As [`Rig::registry`], with the update sent to `server` and the wait through `resolver`.
    fn registry_via(
        &self,
        command: &str,
        name: &str,
        args: &[&str],
        server: std::net::SocketAddr,
        resolver: std::net::SocketAddr,
    ) -> Command {
        let mut cmd = common::registry::command_via(&self.dns, command, name, server, resolver);
        cmd.args(args)
            .arg("--tsig-key")
            .arg(self.dns.tsig_bind_file())
            .env("IOTSAFE_REGISTRY_STATE_DIR", self.dir.path().join("state"));
        cmd
    }

    /// `rotate NAME --finish`, asked again until one TTL has passed and it accepts.
    fn finish_rotation(&self, name: &str, ttl: u64) -> String {
        let start = Instant::now();
        loop {
            let out = self.registry("rotate", name, &["--finish"]);
            if out.status.success() {
                return common::stdout(&out);
            }
            let err = common::stderr(&out);
            assert!(err.contains("try again in"), "{err}");
            assert!(
                start.elapsed() < Duration::from_secs(ttl + 10),
                "never accepted"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn show(&self, name: &str) -> String {
        let out = Command::new(common::workspace_binary("iotsafe"))
            .args(["registry", "show", name])
            .args(self.resolver_args())
            .output()
            .expect("run iotsafe registry show");
        common::ok(out)
    }

    /// Whether `iotsafe dane check-client` authenticates `cert` at `name`.
    fn admitted(&self, cert: &Path, name: &str) -> bool {
        check_client_admits(cert, name, &self.resolver_args())
    }

    /// The zone's SOA serial as knotd serves it (every applied update bumps it).
    fn serial(&self) -> u32 {
        soa_serial(ZONE, &self.dns.dig(ZONE, "SOA"))
    }
}

/// Whether `iotsafe dane check-client` with `resolver_args` authenticates `cert` at `name`.
fn check_client_admits(cert: &Path, name: &str, resolver_args: &[String]) -> bool {
    let out = Command::new(common::workspace_binary("iotsafe"))
        .args(["dane", "check-client", "--cert", cert.to_str().unwrap()])
        .args(["--name", name])
        .args(resolver_args)
        .output()
        .expect("run iotsafe dane check-client");
    match out.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("check-client failed: {}", common::stderr(&out)),
    }
}

/// The serial of the SOA of `zone` in a `dig` answer.
fn soa_serial(zone: &str, dig: &str) -> u32 {
    dig.lines()
        .find(|l| !l.starts_with(';') && l.contains("\tSOA\t"))
        .and_then(|l| l.split_whitespace().nth(6))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no SOA for {zone}:\n{dig}"))
}

fn succeeded(out: Output) -> String {
    assert!(
        out.status.success(),
        "iotsafe registry failed: {}{}",
        common::stderr(&out),
        common::stdout(&out)
    );
    common::stdout(&out)
}

/// A failure is exit status 1 and exactly one line on stderr, `iotsafe: ...`.
fn failed(out: Output) -> String {
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}{}", common::stdout(&out));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("iotsafe: "), "{err}");
    err
}

/// `knsupdate` with the rig's key: the update lands and is served signed (the rig itself).
#[test]
fn the_rig_accepts_updates_signed_with_its_key() {
    let dns = TestDns::start(&[]);
    let script = format!(
        "server 127.0.0.1 {}\nkey hmac-sha256:{TSIG_KEY_NAME} {}\nzone {ZONE}\n\
         update add probe._device.{ZONE} 300 TLSA 3 1 1 {}\nsend\n",
        dns.addr().port(),
        dns.tsig_secret(),
        "ab".repeat(32)
    );
    let out = common::dns::knsupdate(&script);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let answer = dns.dig(&format!("probe._device.{ZONE}"), "TLSA");
    assert!(answer.contains("RRSIG\tTLSA"), "{answer}");
}

/// Publish with knot's key file: the tool waits until the record is seen secure, says how long
/// that took, `show` prints it with its TTL and proof, and check-client admits the device (and
/// not another key).
#[test]
fn a_published_device_is_admitted() {
    let rig = Rig::start();
    let device = rig.device("dev");
    let other = rig.device("other");
    let name = "sensor1._device.iotregistry.test";
    assert!(!rig.admitted(&device.cert_path, name));

    let key = rig.dns.tsig_knot_file();
    let out = succeeded(rig.registry_with_key(
        "publish",
        name,
        &["--cert", device.cert_path.to_str().unwrap(), "--ttl", "120"],
        &["--tsig-key", key.to_str().unwrap()],
    ));
    let record = pki::dane_ee_record(&device.cert);
    assert!(
        out.contains(&format!("published {name}. 120 IN TLSA {record}")),
        "{out}"
    );
    assert!(out.contains("seen secure through"), "{out}");
    assert!(rig.admitted(&device.cert_path, name));
    assert!(!rig.admitted(&other.cert_path, name));

    let shown = rig.show(name);
    assert!(
        shown.contains(&format!("{name}. 120 IN TLSA {record}")),
        "{shown}"
    );
    assert!(shown.contains("1 record(s), secure"), "{shown}");
}

/// Revoking the whole set, or the only record by `--record`: the device is refused, and the
/// name is proven absent (a secure denial, not a failure to find out).
#[test]
fn a_revoked_device_is_refused_with_a_secure_denial() {
    let rig = Rig::start();
    let device = rig.device("dev");
    let name = "sensor2._device.iotregistry.test";
    let cert = device.cert_path.to_str().unwrap();
    let denied = || {
        assert!(!rig.admitted(&device.cert_path, name));
        let shown = rig.show(name);
        assert!(
            shown.contains("no such name (NXDOMAIN), secure"),
            "a proven absence: {shown}"
        );
    };

    // The whole set.
    succeeded(rig.registry("publish", name, &["--cert", cert]));
    assert!(rig.admitted(&device.cert_path, name));
    let out = succeeded(rig.registry("revoke", name, &[]));
    assert!(out.contains("revoked every TLSA record"), "{out}");
    assert!(out.contains("seen secure through"), "{out}");
    denied();

    // The only record, by --record.
    succeeded(rig.registry("publish", name, &["--cert", cert]));
    assert!(rig.admitted(&device.cert_path, name));
    let record = pki::dane_ee_record(&device.cert).to_string();
    let out = succeeded(rig.registry("revoke", name, &["--record", &record]));
    assert!(
        out.contains(&format!("revoked {name}. IN TLSA {record}")),
        "{out}"
    );
    denied();
}

/// `--record` removes exactly that record: a second device key at the same name stays.
#[test]
fn revoking_one_record_keeps_the_others() {
    let rig = Rig::start();
    let (a, b) = (rig.device("a"), rig.device("b"));
    let name = "sensor3._device.iotregistry.test";
    // The first without waiting: the primary has applied it when it answers.
    let out = succeeded(rig.registry(
        "publish",
        name,
        &["--cert", a.cert_path.to_str().unwrap(), "--no-wait"],
    ));
    assert!(out.contains("not waited for (--no-wait)"), "{out}");
    succeeded(rig.registry("publish", name, &["--pubkey", &public_key_file(&rig, &b)]));
    assert!(rig.admitted(&a.cert_path, name) && rig.admitted(&b.cert_path, name));

    let record = pki::dane_ee_record(&a.cert).to_string();
    succeeded(rig.registry("revoke", name, &["--record", &record]));
    assert!(!rig.admitted(&a.cert_path, name), "the revoked key");
    assert!(rig.admitted(&b.cert_path, name), "the other key stays");

    // The same record again: not there any more, refused before anything is sent.
    let before = rig.serial();
    let err = failed(rig.registry("revoke", name, &["--record", &record]));
    assert!(err.contains("has no TLSA record"), "{err}");
    assert_eq!(rig.serial(), before);
}

/// `b`'s public key alone, as a PEM file.
fn public_key_file(rig: &Rig, device: &Issued) -> String {
    let path = rig.dir.path().join("pub.pem");
    std::fs::write(&path, device.key.public_key_to_pem().unwrap()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Usage mistakes are clap's: exit status 2, nothing sent.
#[test]
fn usage_mistakes_exit_with_2() {
    let status = |args: &[&str]| {
        Command::new(common::workspace_binary("iotsafe"))
            .arg("registry")
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    let to = [
        "--server",
        "127.0.0.1:1",
        "--zone",
        "z.test",
        "--tsig",
        "k:hmac-sha256:c2VjcmV0",
    ];
    let with = |args: &[&'static str]| -> Vec<&'static str> { [args, &to[..]].concat() };
    // No record, two records, no key, rotate without --new or --finish, both.
    assert_eq!(status(&with(&["publish", "d.z.test"])), Some(2));
    assert_eq!(
        status(&with(&[
            "publish", "d.z.test", "--cert", "a", "--record", "3 1 1 00"
        ])),
        Some(2)
    );
    assert_eq!(
        status(&[
            "revoke",
            "d.z.test",
            "--server",
            "127.0.0.1:1",
            "--zone",
            "z.test"
        ]),
        Some(2)
    );
    assert_eq!(status(&with(&["rotate", "d.z.test"])), Some(2));
    assert_eq!(
        status(&with(&["rotate", "d.z.test", "--new", "a", "--finish"])),
        Some(2)
    );
}

/// Revoking at a name without records is the server's prerequisite error, and changes nothing.
#[test]
fn revoking_a_name_without_records_is_a_prerequisite_error() {
    let rig = Rig::start();
    let name = "typo._device.iotregistry.test";
    let before = rig.serial();
    let err = failed(rig.registry("revoke", name, &[]));
    assert!(err.contains("refused the request: NXRRSET"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    let record = pki::dane_ee_record(&rig.device("x").cert).to_string();
    let err = failed(rig.registry("revoke", name, &["--record", &record]));
    assert!(err.contains("NXRRSET"), "{err}");
    assert_eq!(rig.serial(), before, "no update was applied");
}

/// The rollover: the device is admitted with its old key and, once the new record is seen,
/// with the new one; `--finish` is refused until the new record has been visible for one TTL
/// (both keys still admitted then); after it, only the new key is.
#[test]
fn a_rotation_keeps_the_device_admitted_at_every_step() {
    let rig = Rig::start();
    let (old, new) = (rig.device("old"), rig.device("new"));
    let name = "sensor4._device.iotregistry.test";
    let ttl = 3;
    succeeded(rig.registry(
        "publish",
        name,
        &[
            "--cert",
            old.cert_path.to_str().unwrap(),
            "--ttl",
            &ttl.to_string(),
        ],
    ));
    assert!(rig.admitted(&old.cert_path, name));
    assert!(!rig.admitted(&new.cert_path, name));

    let out = succeeded(rig.registry("rotate", name, &["--new", new.cert_path.to_str().unwrap()]));
    let published = Instant::now();
    assert!(out.contains("beside 1 old record(s)"), "{out}");
    assert!(out.contains("--finish"), "{out}");
    assert!(
        rig.admitted(&old.cert_path, name),
        "old key during the rollover"
    );
    assert!(
        rig.admitted(&new.cert_path, name),
        "new key during the rollover"
    );

    let before = rig.serial();
    let third = rig.device("third");
    let err = failed(rig.registry(
        "rotate",
        name,
        &["--new", third.cert_path.to_str().unwrap()],
    ));
    assert!(
        err.contains("is in progress"),
        "one rotation at a time: {err}"
    );
    let err = failed(rig.registry("rotate", name, &["--finish"]));
    assert!(
        err.contains("refused") && err.contains("try again in"),
        "{err}"
    );
    assert_eq!(rig.serial(), before, "a refused --finish changes nothing");
    assert!(rig.admitted(&old.cert_path, name) && rig.admitted(&new.cert_path, name));

    // The TTL has to pass in real time: --finish is asked again until it accepts.
    let finished = loop {
        let out = rig.registry("rotate", name, &["--finish"]);
        if out.status.success() {
            break common::stdout(&out);
        }
        assert!(
            common::stderr(&out).contains("try again in"),
            "{}",
            common::stderr(&out)
        );
        assert!(
            published.elapsed() < Duration::from_secs(ttl + 10),
            "never accepted"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    // Whole seconds on both sides: at least TTL - 1 s of real time.
    assert!(published.elapsed() >= Duration::from_secs(ttl - 1));
    assert!(finished.contains("removed 1 old record(s)"), "{finished}");
    assert!(
        rig.admitted(&new.cert_path, name),
        "new key after the rollover"
    );
    assert!(!rig.admitted(&old.cert_path, name), "old key gone");
    let err = failed(rig.registry("rotate", name, &["--finish"]));
    assert!(err.contains("no rotation of"), "{err}");
}

/// A wrong secret, an unknown key, a zone the key may not update, a zone the server does not
/// serve, a name outside --zone, a server that is down: one clear line each, and the zone is
/// unchanged.
#[test]
fn refused_and_failed_updates_say_why_and_change_nothing() {
    let rig = Rig::start();
    let device = rig.device("dev");
    let cert = device.cert_path.to_str().unwrap();
    let name = "sensor5._device.iotregistry.test";
    let before = rig.serial();

    let other_secret = "c2VjcmV0IHRoYXQgaXMgbm90IHRoZSBzZXJ2ZXIncyBrZXk=";
    let wrong_secret = format!("{TSIG_KEY_NAME}:hmac-sha256:{other_secret}");
    let err = failed(rig.registry_with_key(
        "publish",
        name,
        &["--cert", cert],
        &["--tsig", &wrong_secret],
    ));
    assert!(err.contains("NOTAUTH (TSIG error BADSIG)"), "{err}");
    assert!(
        err.contains(&rig.dns.addr().to_string()),
        "names the server: {err}"
    );

    let unknown_key = format!("someone-else:hmac-sha256:{other_secret}");
    let err = failed(rig.registry_with_key(
        "publish",
        name,
        &["--cert", cert],
        &["--tsig", &unknown_key],
    ));
    assert!(err.contains("NOTAUTH (TSIG error BADKEY)"), "{err}");
    assert!(err.contains("for this zone or name"), "{err}");

    // The right key, inline, for a zone it may not update (knotd's ACL): refused.
    let right = rig.dns.tsig_inline();
    let run_with = |extra: &[&str], name: &str, zone: &str, server: &str| {
        Command::new(common::workspace_binary("iotsafe"))
            .args(["registry", "publish", name, "--cert", cert])
            .args(["--server", server, "--zone", zone, "--tsig", &right])
            .args(extra)
            .args(rig.resolver_args())
            .output()
            .unwrap()
    };
    let run = |name: &str, zone: &str, server: &str| run_with(&[], name, zone, server);
    let server = rig.dns.addr().to_string();
    let err = failed(run("d._device.bogus.test", "bogus.test.", &server));
    assert!(
        err.contains("refused the request: NOTAUTH")
            || err.contains("refused the request: REFUSED"),
        "{err}"
    );
    let err = failed(run("d._device.nothere.test", "nothere.test.", &server));
    assert!(err.contains("refused the request: NOTAUTH"), "{err}");
    // The right key and zone, but a name outside `_device` (allowed here by --plain-name),
    // which the server's ACL excludes.
    let err = failed(run_with(
        &["--plain-name"],
        "www.iotregistry.test",
        ZONE,
        &server,
    ));
    assert!(
        err.contains("refused the request: NOTAUTH")
            || err.contains("refused the request: REFUSED"),
        "{err}"
    );
    let err = failed(run(name, "example.test.", &server));
    assert!(err.contains("is not in the zone example.test."), "{err}");
    assert!(err.contains("nothing was sent"), "{err}");

    let down = format!("127.0.0.1:{}", common::free_port());
    let err = failed(run(name, ZONE, &down));
    assert!(
        err.contains(&format!(
            "no answer from the DNS server {down}: cannot connect"
        )) && err.contains("nothing was sent"),
        "{err}"
    );

    // A server that takes the connection and never answers: a time-out naming it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let err = failed(run_with(&["--timeout", "1"], name, ZONE, &silent_addr));
    assert!(
        err.contains(&format!(
            "no answer from the DNS server {silent_addr}: no answer within 1 s"
        )),
        "{err}"
    );
    assert!(
        err.contains("whether the server applied the request is unknown")
            && err.contains("may still apply within 60 s"),
        "a request sent but not answered may have been applied, or be applied later: {err}"
    );

    // A server that claims success without our key's signature is not believed.
    let liar = UnsignedSuccess::start();
    let err = failed(run(name, ZONE, &liar.addr));
    assert!(
        err.contains(&format!("unusable answer from {}", liar.addr))
            && err.contains("TSIG does not verify"),
        "{err}"
    );

    // An unsigned refusal proves nothing: it is not reported as "nothing was changed".
    let forger = UnsignedSuccess::answering(ResponseCode::Refused);
    let err = failed(run(name, ZONE, &forger.addr));
    assert!(
        err.contains("REFUSED")
            && err.contains("unverified")
            && !err.contains("nothing was changed"),
        "{err}"
    );

    assert_eq!(rig.serial(), before, "no update was applied");
    assert!(!rig.admitted(&device.cert_path, name));
    assert!(rig
        .dns
        .dig("d._device.bogus.test", "TLSA")
        .contains("NXDOMAIN"));
}

/// A fake primary on loopback that answers every request over TCP with one RCODE and no TSIG:
/// with NOERROR, what an attacker on the path could send to make an operator believe a
/// revocation was done; with REFUSED, to make one believe it was not.
struct UnsignedSuccess {
    addr: String,
}

impl UnsignedSuccess {
    fn start() -> UnsignedSuccess {
        Self::answering(ResponseCode::NoError)
    }

    fn answering(rcode: ResponseCode) -> UnsignedSuccess {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                // RFC 1035 4.2.2 framing: a two-byte length, then the message.
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut request = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut request).is_err() {
                    continue;
                }
                let request = Message::from_vec(&request).unwrap();
                let mut response = Message::response(request.metadata.id, request.metadata.op_code);
                response.metadata.response_code = rcode;
                response.add_queries(request.queries.clone());
                let bytes = response.to_vec().unwrap();
                let _ = stream.write_all(&(bytes.len() as u16).to_be_bytes());
                let _ = stream.write_all(&bytes);
            }
        });
        UnsignedSuccess { addr }
    }
}

/// 50 `iotsafe registry publish` processes at once, each for its own device: every record
/// lands (no update lost), each seen secure by the process that made it.
#[test]
fn fifty_concurrent_publishes_all_land() {
    let rig = Rig::start();
    let key = rig.dns.tsig_bind_file();
    let records: Vec<(String, String)> = (0..50)
        .map(|i| {
            let mut digest = [0u8; 32];
            openssl::rand::rand_bytes(&mut digest).unwrap();
            (
                format!("dev{i}._device.iotregistry.test"),
                format!("3 1 1 {}", iotsafe_dane::hex::encode_lower(&digest)),
            )
        })
        .collect();
    let children: Vec<_> = records
        .iter()
        .map(|(name, record)| {
            Command::new(common::workspace_binary("iotsafe"))
                .args(["registry", "publish", name, "--record", record])
                .args(["--server", &rig.dns.addr().to_string(), "--zone", ZONE])
                .args(["--tsig-key", key.to_str().unwrap()])
                .args(rig.resolver_args())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        succeeded(child.wait_with_output().unwrap());
    }
    for (name, record) in &records {
        let shown = rig.show(name);
        assert!(
            shown.contains(record.as_str()) && shown.contains("secure"),
            "{name}: {shown}"
        );
    }
}

/// A signed publish recorded on the way (a TCP pass-through in front of the primary) and sent
/// again after the device was revoked: the server refuses it (the zone's SOA it required has
/// moved on), nothing changes, and the device stays refused with a secure denial.
#[test]
fn a_replayed_publish_does_not_undo_a_revocation() {
    let rig = Rig::start();
    let device = rig.device("dev");
    let name = "sensor6._device.iotregistry.test";
    let proxy = DnsProxy::start(rig.dns.addr());
    let cert = device.cert_path.to_str().unwrap();
    succeeded(
        rig.registry_via(
            "publish",
            name,
            &["--cert", cert],
            proxy.addr(),
            rig.dns.addr(),
        )
        .output()
        .unwrap(),
    );
    assert!(rig.admitted(&device.cert_path, name));
    let update = proxy
        .tcp_requests()
        .into_iter()
        .find(|r| Message::from_vec(r).is_ok_and(|m| m.metadata.op_code == OpCode::Update))
        .expect("the signed UPDATE went through the proxy");

    succeeded(rig.registry("revoke", name, &[]));
    assert!(!rig.admitted(&device.cert_path, name));
    let before = rig.serial();
    let answer = dnsproxy::tcp_exchange(rig.dns.addr(), &update).expect("knotd answers");
    let answer = Message::from_vec(&answer).unwrap();
    assert_eq!(
        answer.metadata.response_code,
        ResponseCode::NXRRSet,
        "the replayed UPDATE is refused on its SOA prerequisite"
    );
    assert_eq!(rig.serial(), before, "the replay changed nothing");
    assert!(!rig.admitted(&device.cert_path, name), "still revoked");
    let shown = rig.show(name);
    assert!(shown.contains("no such name (NXDOMAIN), secure"), "{shown}");
}

/// NAME is parsed as a device name: a wildcard (which would admit one key as every device
/// without a record, revoked ones included), an escaped label and a `_service` form are
/// refused before anything is sent.
#[test]
fn wildcards_escapes_and_service_names_are_refused_before_sending() {
    let rig = Rig::start();
    let before = rig.serial();
    let record = format!("3 1 1 {}", "ab".repeat(32));
    for name in [
        "*._device.iotregistry.test",
        "a\\.b._device.iotregistry.test",
        "sensor\\0657._device.iotregistry.test",
        "_mqtt._device.iotregistry.test",
        "sensor8.iotregistry.test",
    ] {
        let err = failed(rig.registry("publish", name, &["--record", &record]));
        assert!(err.contains("nothing was sent"), "{name}: {err}");
    }
    assert_eq!(rig.serial(), before, "nothing was applied");
}

/// `rotate --new` whose wait fails (no resolver answers) after the primary acknowledged the
/// record: exit status 3, the message says the change was applied and where the state is, and
/// `--finish` later completes the rotation.
#[test]
fn a_rotation_whose_wait_failed_can_be_finished() {
    let rig = Rig::start();
    let (old, new) = (rig.device("old"), rig.device("new"));
    let name = "sensor9._device.iotregistry.test";
    let extra = ["--dns-timeout", "1", "--wait-timeout", "1"];
    let out = rotate_with_a_silent_resolver(&rig, name, &old, &new, &extra);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "applied, not seen: {err}");
    assert!(
        err.contains("applied the change") && err.contains("--finish"),
        "{err}"
    );
    assert!(
        rig.admitted(&new.cert_path, name),
        "the new record is there"
    );

    finish_keeps_only_the_new(&rig, name, &old, &new);
}

/// `rotate --new --no-wait`: done at the primary's acknowledgement, without a look-up (the
/// resolver it names answers nothing, so a wait would have failed with status 3), and the TTL
/// before `--finish` is still counted from that acknowledgement: refused at once, accepted
/// once the TTL has passed, the old record removed.
#[test]
fn a_rotation_without_waiting_still_waits_one_ttl_before_finish() {
    let rig = Rig::start();
    let (old, new) = (rig.device("old"), rig.device("new"));
    let name = "sensor18._device.iotregistry.test";
    let extra = ["--no-wait", "--dns-timeout", "1"];
    let out = rotate_with_a_silent_resolver(&rig, name, &old, &new, &extra);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let said = common::stdout(&out);
    assert!(said.contains("not waited for (--no-wait)"), "{said}");
    assert!(said.contains("beside 1 old record(s)"), "{said}");
    assert!(rig.admitted(&old.cert_path, name) && rig.admitted(&new.cert_path, name));

    let before = rig.serial();
    let err = failed(rig.registry("rotate", name, &["--finish"]));
    assert!(err.contains("try again in"), "{err}");
    assert_eq!(rig.serial(), before, "a refused --finish changes nothing");

    finish_keeps_only_the_new(&rig, name, &old, &new);
}

/// Publishes `old` at `name` (TTL 3 s), then runs `rotate NAME --new NEW` and `extra` with,
/// as its resolver, one that answers nothing.
fn rotate_with_a_silent_resolver(
    rig: &Rig,
    name: &str,
    old: &Issued,
    new: &Issued,
    extra: &[&str],
) -> Output {
    let old_cert = old.cert_path.to_str().unwrap();
    succeeded(rig.registry("publish", name, &["--cert", old_cert, "--ttl", "3"]));
    let nobody = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let args = [&["--new", new.cert_path.to_str().unwrap()][..], extra].concat();
    rig.registry_via("rotate", name, &args, rig.dns.addr(), nobody)
        .output()
        .unwrap()
}

/// `--finish` once the TTL (3 s) has passed: the old record removed, the new one kept.
fn finish_keeps_only_the_new(rig: &Rig, name: &str, old: &Issued, new: &Issued) {
    let finished = rig.finish_rotation(name, 3);
    assert!(finished.contains("removed 1 old record(s)"), "{finished}");
    assert!(rig.admitted(&new.cert_path, name));
    assert!(!rig.admitted(&old.cert_path, name));
}

/// `--finish` removes the old records seen by `--new`, not a record published since.
#[test]
fn finish_removes_only_the_old_records_seen_by_new() {
    let rig = Rig::start();
    let (a, b) = (rig.device("a"), rig.device("b"));
    let name = "sensor10._device.iotregistry.test";
    succeeded(rig.registry(
        "publish",
        name,
        &["--cert", a.cert_path.to_str().unwrap(), "--ttl", "3"],
    ));
    succeeded(rig.registry("rotate", name, &["--new", b.cert_path.to_str().unwrap()]));
    let c = format!("3 1 1 {}", "cd".repeat(32));
    succeeded(rig.registry("publish", name, &["--record", &c]));

    let finished = rig.finish_rotation(name, 3);
    assert!(finished.contains("removed 1 old record(s)"), "{finished}");
    assert!(finished.contains("left alone"), "{finished}");
    let shown = rig.show(name);
    assert!(shown.contains(&c), "C stays: {shown}");
    assert!(shown.contains("2 record(s), secure"), "{shown}");
    assert!(!rig.admitted(&a.cert_path, name) && rig.admitted(&b.cert_path, name));
}

/// Two `rotate --new` of one name at once: one runs, the other is refused before sending.
#[test]
fn two_rotations_of_one_name_at_once_one_is_refused() {
    let rig = Rig::start();
    let (a, b, c) = (rig.device("a"), rig.device("b"), rig.device("c"));
    let name = "sensor11._device.iotregistry.test";
    succeeded(rig.registry("publish", name, &["--cert", a.cert_path.to_str().unwrap()]));
    let spawn = |cert: &Path| {
        rig.registry_via(
            "rotate",
            name,
            &["--new", cert.to_str().unwrap()],
            rig.dns.addr(),
            rig.dns.addr(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (first, second) = (spawn(&b.cert_path), spawn(&c.cert_path));
    let outs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "exactly one rotation runs");
    let refused = outs.iter().find(|o| !o.status.success()).unwrap();
    assert!(
        common::stderr(refused).contains("in progress"),
        "{}",
        common::stderr(refused)
    );
    let (with_b, with_c) = (
        rig.admitted(&b.cert_path, name),
        rig.admitted(&c.cert_path, name),
    );
    assert!(with_b != with_c, "exactly one new key published");
}

/// A second key published at a name that has one: the output names the record already there
/// (still admitted) and how to replace it instead. The same record again sends nothing.
#[test]
fn publish_notes_the_records_already_at_the_name() {
    let rig = Rig::start();
    let (a, b) = (rig.device("a"), rig.device("b"));
    let name = "sensor12._device.iotregistry.test";
    let a_cert = a.cert_path.to_str().unwrap();
    let out = succeeded(rig.registry("publish", name, &["--cert", a_cert]));
    assert!(!out.contains("note:"), "{out}");
    let out = succeeded(rig.registry("publish", name, &["--cert", b.cert_path.to_str().unwrap()]));
    let a_record = pki::dane_ee_record(&a.cert).to_string();
    assert!(
        out.contains("note:") && out.contains(&a_record) && out.contains("rotate"),
        "{out}"
    );
    let before = rig.serial();
    let out = succeeded(rig.registry("publish", name, &["--cert", a_cert]));
    assert!(out.contains("already has TLSA"), "{out}");
    assert_eq!(rig.serial(), before);
}

/// A caching resolver between the tool and the zone: after a revoke, unbound serves the
/// record it cached until its TTL runs out. The wait's time-out then says the primary applied
/// the change and how long the resolver may hold the old answer, with its own exit status.
#[test]
fn a_wait_through_a_caching_resolver_says_the_change_was_applied() {
    let rig = Rig::start();
    let device = rig.device("dev");
    let name = "sensor13._device.iotregistry.test";
    let cert = device.cert_path.to_str().unwrap();
    succeeded(rig.registry("publish", name, &["--cert", cert, "--ttl", "120"]));
    let unbound = Unbound::start(&rig.dns);
    let cached = unbound.dig(name, "TLSA");
    assert!(cached.contains("TLSA"), "{cached}");

    let before = rig.serial();
    let out = rig
        .registry_via(
            "revoke",
            name,
            &["--wait-timeout", "2"],
            rig.dns.addr(),
            unbound.addr(),
        )
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("applied the change"), "{err}");
    assert!(
        err.contains(&format!("the zone's serial was {before}")),
        "{err}"
    );
    assert!(err.contains("up to 120 s"), "{err}");
    assert!(err.contains("bypasses only this tool's own cache"), "{err}");
    assert!(
        !rig.admitted(&device.cert_path, name),
        "revoked at the source"
    );
}

/// `--ttl` is bounded (it is the revocation latency); revoke says how long caches may still
/// admit the device.
#[test]
fn ttl_is_bounded_and_revoke_states_the_cache_latency() {
    let rig = Rig::start();
    let name = "sensor14._device.iotregistry.test";
    let record = format!("3 1 1 {}", "ef".repeat(32));
    let before = rig.serial();
    let out = rig.registry(
        "publish",
        name,
        &["--record", &record, "--ttl", "4294967295"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert_eq!(rig.serial(), before);
    succeeded(rig.registry("publish", name, &["--record", &record, "--ttl", "77"]));
    let out = succeeded(rig.registry("revoke", name, &[]));
    assert!(out.contains("for up to 77 s more"), "{out}");
}

/// Help for operators: no card options under `registry` (it uses no card), NAME described on
/// every command that changes records, revoke says that without --record every key goes.
#[test]
fn registry_help_describes_name_and_shows_no_card_options() {
    let help = |args: &[&str]| {
        common::ok(
            Command::new(common::workspace_binary("iotsafe"))
                .arg("registry")
                .args(args)
                .arg("--help")
                .output()
                .unwrap(),
        )
    };
    for command in ["publish", "revoke", "rotate"] {
        let text = help(&[command]);
        assert!(text.contains("<id>._device.<domain>"), "{command}: {text}");
    }
    assert!(help(&["revoke"]).contains("all of them"));
    for command in [&[][..], &["publish"], &["revoke"], &["rotate"], &["show"]] {
        let text = help(command);
        assert!(
            !text.contains("--modem") && !text.contains("Card options"),
            "{command:?}: {text}"
        );
    }
}

/// `show` exits 0 only for a secure answer: a denial stripped of its proof on the way, or a
/// revoke whose wait only sees insecure answers, is printed but is not success.
#[test]
fn show_and_the_wait_refuse_answers_that_are_not_proven_secure() {
    let rig = Rig::start();
    let name = "sensor15._device.iotregistry.test";
    let proxy = DnsProxy::start(rig.dns.addr());
    let show = |resolver: std::net::SocketAddr| {
        Command::new(common::workspace_binary("iotsafe"))
            .args([
                "registry",
                "show",
                name,
                "--resolver",
                &resolver.to_string(),
            ])
            .arg("--trust-anchor")
            .arg(&rig.anchor)
            .output()
            .unwrap()
    };
    assert_eq!(show(proxy.addr()).status.code(), Some(0), "a secure denial");
    proxy.forge(
        &format!("{name}."),
        hickory_resolver::proto::rr::RecordType::TLSA,
        Forgery::StrippedNsec,
    );
    let out = show(proxy.addr());
    assert_eq!(out.status.code(), Some(4), "{}", common::stdout(&out));

    // The wait through an on-path forger of an insecure denial: the revoke was applied, the
    // wait does not take the forged answer for the secure denial it expects.
    succeeded(rig.registry(
        "publish",
        name,
        &["--record", &format!("3 1 1 {}", "12".repeat(32))],
    ));
    proxy.forge(
        &format!("{name}."),
        hickory_resolver::proto::rr::RecordType::TLSA,
        Forgery::ForeignInsecureSoa("insecure.test."),
    );
    let out = rig
        .registry_via(
            "revoke",
            name,
            &["--wait-timeout", "2"],
            rig.dns.addr(),
            proxy.addr(),
        )
        .output()
        .unwrap();
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("was not seen as expected") && err.contains("insecure"),
        "{err}"
    );
}

/// Ten operators publishing ten keys at one name at once: none is lost (each update is
/// applied on the set as it is then, retried when the zone moved under it).
#[test]
fn ten_concurrent_publishes_at_one_name_all_land() {
    let rig = Rig::start();
    let name = "shared._device.iotregistry.test";
    let records: Vec<String> = (0..10u8)
        .map(|i| format!("3 1 1 {}", format!("{:02x}", i + 0xa0).repeat(32)))
        .collect();
    let children: Vec<_> = records
        .iter()
        .map(|record| {
            rig.registry_via(
                "publish",
                name,
                &["--record", record],
                rig.dns.addr(),
                rig.dns.addr(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for child in children {
        succeeded(child.wait_with_output().unwrap());
    }
    let shown = rig.show(name);
    assert!(shown.contains("10 record(s), secure"), "{shown}");
    for record in &records {
        assert!(shown.contains(record.as_str()), "{record}: {shown}");
    }
}

/// A machine whose clock is an hour off: knotd refuses with BADTIME, signed with our key, and
/// the error names the clock, not the key.
#[test]
fn a_request_signed_an_hour_off_is_refused_for_the_clock() {
    use iotsafe_registry::{Registry, RegistryError};
    let rig = Rig::start();
    let before = rig.serial();
    let key = rig.dns.tsig_inline().parse().unwrap();
    let an_hour_ago = || iotsafe_registry::rotation::unix_now() - 3600;
    let registry = Registry::new(rig.dns.addr(), ZONE, key, Duration::from_secs(5))
        .unwrap()
        .with_clock(an_hour_ago);
    let name = iotsafe_registry::device_name("sensor16._device.iotregistry.test", false).unwrap();
    let record = format!("3 1 1 {}", "34".repeat(32)).parse().unwrap();
    let err = registry.publish(&name, &record, 60).unwrap_err();
    match &err {
        RegistryError::Refused {
            rcode,
            tsig_error,
            signed,
            ..
        } => {
            assert_eq!(rcode, "NOTAUTH");
            assert_eq!(tsig_error.as_deref(), Some("BADTIME"));
            assert!(signed, "knotd signs its BADTIME answer with our key");
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("clock") && !text.contains("not signed"),
        "{text}"
    );
    assert_eq!(rig.serial(), before);
}

/// A new record already at the name with no rotation in progress (a `--new` whose answer was
/// lost after the primary applied it, or a record published by hand): `--new` takes it as the
/// rotation's new record without sending anything, and `--finish` completes the rollover. A
/// name with only that record has nothing to rotate.
#[test]
fn rotate_new_adopts_a_new_record_already_published() {
    let rig = Rig::start();
    let (old, new) = (rig.device("old"), rig.device("new"));
    let name = "sensor17._device.iotregistry.test";
    let (old_cert, new_cert) = (
        old.cert_path.to_str().unwrap(),
        new.cert_path.to_str().unwrap(),
    );
    succeeded(rig.registry("publish", name, &["--cert", old_cert, "--ttl", "3"]));
    succeeded(rig.registry("publish", name, &["--cert", new_cert, "--ttl", "3"]));
    let before = rig.serial();
    let out = succeeded(rig.registry("rotate", name, &["--new", new_cert]));
    assert!(out.contains("taken as the rotation's new record"), "{out}");
    assert_eq!(rig.serial(), before, "nothing sent");
    let finished = rig.finish_rotation(name, 3);
    assert!(finished.contains("removed 1 old record(s)"), "{finished}");
    assert!(rig.admitted(&new.cert_path, name) && !rig.admitted(&old.cert_path, name));

    let err = failed(rig.registry("rotate", name, &["--new", new_cert]));
    assert!(err.contains("nothing to rotate"), "{err}");
}

/// A TSIG key file as BIND's own tools write it, run here: `tsig-keygen` (its default
/// hmac-sha256, and hmac-sha512) and `ddns-confgen -q` (the same syntax). knotd, told each key
/// (the secret taken from the file by the test, not by the tool's parser), accepts the updates
/// `iotsafe registry` signs with it: the device is admitted after `publish`, refused after
/// `revoke`. ddns-confgen's default output (the key followed by an `update-policy` example and
/// an nsupdate command) is refused, naming its line and how to write the key alone.
#[test]
fn key_files_written_by_bind_tools_sign_updates_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let made = [
        bind_tool_key(
            dir.path(),
            "tsig-keygen",
            &["bind-sha256"],
            "bind-sha256",
            "hmac-sha256",
        ),
        bind_tool_key(
            dir.path(),
            "tsig-keygen",
            &["-a", "hmac-sha512", "bind-sha512"],
            "bind-sha512",
            "hmac-sha512",
        ),
        bind_tool_key(
            dir.path(),
            "ddns-confgen",
            &["-q", "-a", "hmac-sha384", "-k", "ddns-key"],
            "ddns-key",
            "hmac-sha384",
        ),
    ];
    let keys: Vec<UpdateKey> = made.iter().map(|(_, key)| key.clone()).collect();
    let rig = Rig::start_with_update_keys(&keys);

    for (index, (file, key)) in made.iter().enumerate() {
        let device = rig.device(&format!("dev{index}"));
        let name = format!("bindkey{index}._device.iotregistry.test");
        let key_args = ["--tsig-key", file.to_str().unwrap()];
        let cert = ["--cert", device.cert_path.to_str().unwrap()];
        succeeded(rig.registry_with_key("publish", &name, &cert, &key_args));
        assert!(rig.admitted(&device.cert_path, &name), "key {}", key.name);
        succeeded(rig.registry_with_key("revoke", &name, &[], &key_args));
        assert!(!rig.admitted(&device.cert_path, &name), "key {}", key.name);
    }

    let full = dir.path().join("ddns-confgen.out");
    let text = common::ok(
        Command::new("ddns-confgen")
            .args(["-k", "ddns-key", "-z", "iotregistry.test"])
            .output()
            .expect("ddns-confgen (package bind9)"),
    );
    std::fs::write(&full, &text).unwrap();
    let policy_line = 1 + text
        .lines()
        .position(|l| l.starts_with("update-policy"))
        .unwrap_or_else(|| panic!("no update-policy example in ddns-confgen's output:\n{text}"));
    let device = rig.device("devfull");
    let err = failed(rig.registry_with_key(
        "publish",
        "bindfull._device.iotregistry.test",
        &["--cert", device.cert_path.to_str().unwrap()],
        &["--tsig-key", full.to_str().unwrap()],
    ));
    assert!(
        err.contains(&format!(
            "{}:{policy_line}: more after the key",
            full.display()
        )),
        "{err}"
    );
    assert!(err.contains("ddns-confgen -q"), "{err}");
}

/// Runs BIND's `tool` (which prints a key named `name` of `algorithm`) and writes its output to
/// a file: the file, and the key as knotd is told it.
fn bind_tool_key(
    dir: &Path,
    tool: &str,
    args: &[&str],
    name: &str,
    algorithm: &str,
) -> (PathBuf, UpdateKey) {
    let text = common::ok(
        Command::new(tool)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{tool} (package bind9): {e}")),
    );
    assert!(
        text.starts_with(&format!("key \"{name}\" {{\n\talgorithm {algorithm};\n")),
        "{tool} wrote another key than expected:\n{text}"
    );
    let secret = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret \"")?.strip_suffix("\";"))
        .unwrap_or_else(|| panic!("no secret line in {tool}'s output"))
        .to_string();
    let file = dir.join(format!("{name}.key"));
    std::fs::write(&file, &text).unwrap();
    let key = UpdateKey {
        name: name.into(),
        algorithm: algorithm.into(),
        secret,
    };
    (file, key)
}

/// A real BIND `named` as the zone's primary, configured with the README's BIND snippet as it
/// is written there (its zone, its key file made by the `tsig-keygen` command of its comment,
/// `dnssec-policy default`, its `update-policy`), under a private root that named also serves
/// (the fixture's, with the zone's DS). `publish` waits until the record is seen secure through
/// the project's validating resolver asking named, with the private root's key as trust anchor;
/// named serves it with an RRSIG, and `iotsafe dane check-client` admits the device. `revoke`
/// leaves a signed denial (NXDOMAIN with NSEC and RRSIG) that `show` finds secure, and the
/// device is refused. The update-policy refuses a record outside `_device` (REFUSED, the serial
/// unchanged).
#[test]
fn a_bind_primary_configured_as_the_readme_says_applies_and_signs_the_changes() {
    let bind = BindPrimary::start(&readme_bind_snippet());
    let named = &bind.named;
    let zone = &bind.zone;
    let name = format!("sensor7._device.{zone}");
    let cert = ["--cert", bind.device.cert_path.to_str().unwrap()];
    assert!(!bind.admitted(&name));
    let out = succeeded(bind.registry("publish", &name, &cert));
    assert!(out.contains("seen secure through"), "{out}");
    assert!(bind.admitted(&name));
    let answer = named.dig(&name, "TLSA");
    let record = pki::dane_ee_record(&bind.device.cert).to_string();
    let hex = record.rsplit(' ').next().unwrap().to_uppercase();
    assert!(answer.contains(&format!("TLSA\t3 1 1 {hex}")), "{answer}");
    assert!(answer.contains("RRSIG\tTLSA"), "signed by named: {answer}");

    // The update-policy allows TLSA below `_device` only: a plain host name is refused.
    let before = bind.serial();
    let plain = format!("sensor7.{zone}");
    let err = failed(bind.registry("publish", &plain, &[&cert[..], &["--plain-name"]].concat()));
    assert!(err.contains("REFUSED"), "{err}");
    assert_eq!(bind.serial(), before, "nothing changed");

    let out = succeeded(bind.registry("revoke", &name, &[]));
    assert!(out.contains("seen secure through"), "{out}");
    assert!(!bind.admitted(&name));
    let shown = Command::new(common::workspace_binary("iotsafe"))
        .args(["registry", "show", &name])
        .args(bind.resolver_args())
        .output()
        .expect("run iotsafe registry show");
    let shown = common::ok(shown);
    assert!(shown.contains("no such name (NXDOMAIN), secure"), "{shown}");
    let denial = named.dig(&name, "TLSA");
    assert!(denial.contains("status: NXDOMAIN"), "{denial}");
    assert!(denial.contains("\tNSEC\t"), "{denial}");
    assert!(denial.contains("RRSIG\tNSEC"), "a signed denial: {denial}");
}

/// The README's configuration with `inline-signing yes;` instead of `no`: BIND applies updates to an
/// unsigned copy of the zone whose serial is not the one it serves, so the SOA prerequisite
/// that makes each change one-shot can never hold. Publishing is refused with a line that
/// names that cause (not "the name has no such records"), and nothing changes.
#[test]
fn a_bind_primary_with_inline_signing_is_named_as_unsupported_and_nothing_changes() {
    let snippet = readme_bind_snippet().replace("inline-signing no;", "inline-signing yes;");
    assert!(snippet.contains("inline-signing yes;"), "{snippet}");
    let bind = BindPrimary::start(&snippet);
    let name = format!("sensor8._device.{}", bind.zone);
    let cert = ["--cert", bind.device.cert_path.to_str().unwrap()];
    let before = bind.serial();
    let err = failed(bind.registry("publish", &name, &cert));
    assert!(
        err.contains("inline-signing") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(!err.contains("no such TLSA records"), "{err}");
    assert_eq!(bind.serial(), before, "nothing changed");
    assert!(!bind.admitted(&name));
}

/// A real named as the zone's primary, configured with `snippet` (named.conf statements in the
/// README's form: an `include` of the key file, a zone with its file and an `update-policy`),
/// its key made by `tsig-keygen`, and a device certificate to publish.
struct BindPrimary {
    named: common::named::Named,
    zone: String,
    key_path: PathBuf,
    device: Issued,
    _dir: tempfile::TempDir,
}

impl BindPrimary {
    fn start(snippet: &str) -> BindPrimary {
        let quoted_after = |keyword: &str| -> String {
            let rest = snippet
                .split_once(keyword)
                .unwrap_or_else(|| panic!("no {keyword} in the BIND snippet:\n{snippet}"))
                .1;
            rest.split('"').nth(1).expect("a quoted name").to_string()
        };
        let zone = quoted_after("zone ");
        let zone_file = quoted_after("file ");
        let key_file = quoted_after("include ");
        let key_name = snippet
            .split_once("grant ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .expect("a grant in the update-policy")
            .to_string();
        let key = common::ok(
            Command::new("tsig-keygen")
                .arg(&key_name)
                .output()
                .expect("tsig-keygen (package bind9)"),
        );
        let zone_text =
            "$TTL 300\n@ SOA ns1 hostmaster 1 3600 600 86400 300\n@ NS ns1\nns1 A 127.0.0.1\n";
        let named = common::named::Named::start(
            &[(&key_file, &key), (&zone_file, zone_text)],
            snippet,
            &zone,
        );
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join(&key_file);
        std::fs::write(&key_path, &key).unwrap();
        let device = pki::leaf(dir.path(), "dev", "dev", &[], None);
        BindPrimary {
            named,
            zone,
            key_path,
            device,
            _dir: dir,
        }
    }

    fn resolver_args(&self) -> Vec<String> {
        vec![
            "--resolver".into(),
            self.named.addr().to_string(),
            "--trust-anchor".into(),
            self.named.trust_anchor_file().to_str().unwrap().into(),
        ]
    }

    fn registry(&self, command: &str, name: &str, args: &[&str]) -> Output {
        Command::new(common::workspace_binary("iotsafe"))
            .args(["registry", command, name])
            .args([
                "--server",
                &self.named.addr().to_string(),
                "--zone",
                &self.zone,
            ])
            .arg("--tsig-key")
            .arg(&self.key_path)
            .args(self.resolver_args())
            .args(args)
            .output()
            .expect("run iotsafe registry")
    }

    /// Whether `iotsafe dane check-client` admits the device's certificate at `name`.
    fn admitted(&self, name: &str) -> bool {
        check_client_admits(&self.device.cert_path, name, &self.resolver_args())
    }

    /// The serial of the zone's SOA as named serves it.
    fn serial(&self) -> u32 {
        soa_serial(&self.zone, &self.named.dig(&self.zone, "SOA"))
    }
}

/// The README's BIND configuration for a registry's primary: the code block after "BIND (".
fn readme_bind_snippet() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let after = readme
        .split_once("\nBIND (")
        .expect("the README's BIND configuration")
        .1;
    let block = after
        .split_once("```\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a code block after \"BIND (\"")
        .0;
    block.to_string()
}
