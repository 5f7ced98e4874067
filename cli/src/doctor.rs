//! `iotsafe doctor`: the checks a user runs when something does not work, one line each (ok or
//! problem, and what to do), from pcscd to the TLSA records of the device. The OpenSSL checks
//! run the real `openssl` tool in the user's environment (`OPENSSL_CONF`, `OPENSSL_MODULES`),
//! as every other OpenSSL program meets the provider.

use std::path::{Path, PathBuf};
use std::process::Command;

use dane::client::ClientVerifier;
use iotsafe_card::transport::pcsc;
use iotsafe_card::Applet;
use iotsafe_provider::uri::KeyUri;
use openssl::pkey::{PKey, Public};
use openssl::x509::X509;

use crate::card::{self, CardOptions};
use crate::dane_commands::{self, DnsArgs};

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Also check that this key-reference file loads through OpenSSL as the card's key.
    #[arg(long, value_name = "FILE")]
    keyref: Option<PathBuf>,
    /// Also check the device's TLSA records at this owner name: found, validated, matching.
    #[arg(long, value_name = "OWNER")]
    name: Option<String>,
    #[command(flatten)]
    dns: DnsArgs,
}

/// The report: one line per check; the exit status is 0 only when no check found a problem.
#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn ok(&mut self, check: &str, detail: &str) {
        println!("ok       {check:<12} {detail}");
    }

    fn problem(&mut self, check: &str, detail: &str, todo: &str) {
        self.problems += 1;
        println!("PROBLEM  {check:<12} {detail}");
        println!("         {:<12} do: {todo}", "");
    }
}

pub fn run(options: &CardOptions, args: &DoctorArgs) -> i32 {
    let mut report = Report::default();
    let modem = options.target().ok().and_then(|t| t.modem);
    if modem.is_none() {
        check_pcscd(&mut report);
    }
    // The card's key and certificate, for the OpenSSL and DNS checks after it.
    let found = check_card(&mut report, options);
    check_openssl(&mut report);
    check_provider(&mut report, options, found.as_ref().map(|f| &f.0));
    if let Some(file) = &args.keyref {
        check_keyref(&mut report, file, found.as_ref().map(|f| &f.0));
    }
    if let Some(name) = &args.name {
        check_tlsa(
            &mut report,
            args,
            name,
            found.as_ref().and_then(|f| f.1.as_ref()),
        );
    }
    if report.problems == 0 {
        println!("everything checked is fine");
        0
    } else {
        eprintln!("iotsafe: doctor found {} problem(s)", report.problems);
        1
    }
}

fn check_pcscd(report: &mut Report) {
    match pcsc::reader_presence() {
        Err(e) => report.problem(
            "pcscd",
            &e.to_string(),
            "start pcscd (systemctl start pcscd.socket), or set PCSCLITE_CSOCK_NAME to its socket",
        ),
        Ok(readers) if readers.is_empty() => report.problem(
            "readers",
            "pcscd runs but knows no reader",
            "connect the reader (for the simulator: the vpcd driver and iotsafe-sim)",
        ),
        Ok(readers) => {
            report.ok("pcscd", "reachable");
            for (reader, card) in readers {
                let state = if card { "card present" } else { "no card" };
                report.ok("reader", &format!("'{reader}': {state}"));
            }
        }
    }
}

/// The applet, the selected key and its certificate. Returns the key's public key and the
/// certificate when the card could be used.
fn check_card(report: &mut Report, options: &CardOptions) -> Option<(PKey<Public>, Option<X509>)> {
    let mut applet = match options.open() {
        Ok(applet) => applet,
        Err(e) => {
            report.problem(
                "applet",
                &e,
                "use a SIM with the IoT SAFE applet; --reader, --modem, --aid name where it is",
            );
            return None;
        }
    };
    report.ok("applet", &describe_applet(options, &applet));
    let key = match card::card_public_key(options, &mut applet) {
        Ok(key) => key,
        Err(e) => {
            report.problem(
                "key",
                &e,
                "`iotsafe objects` lists the keys; name one with --key-id or --key-label",
            );
            return None;
        }
    };
    let key_name = options.key().map(|k| k.to_string()).unwrap_or_default();
    report.ok("key", &format!("private key {key_name}: public key read"));
    let cert = check_certificate(report, options, &mut applet, &key);
    Some((key, cert))
}

fn describe_applet(options: &CardOptions, applet: &Applet) -> String {
    let aid = applet
        .selected_aid()
        .map(iotsafe_hex::encode)
        .unwrap_or_else(|| "?".into());
    let cla = options
        .target()
        .map(|t| t.applet_config().cla_style.name())
        .unwrap_or("00");
    let mut text = format!("in '{}', AID {aid}, CLA style {cla}", applet.reader());
    if let Some(route) = applet.route() {
        text += &format!(", APDUs by {route}");
    }
    text
}

fn check_certificate(
    report: &mut Report,
    options: &CardOptions,
    applet: &mut Applet,
    key: &PKey<Public>,
) -> Option<X509> {
    let file = options
        .cert()
        .map(|c| c.describe(iotsafe_card::ObjectKind::File))
        .unwrap_or_default();
    let cert = match card::read_certificate(options, applet) {
        Ok(cert) => cert,
        Err(e) => {
            report.problem(
                "certificate",
                &e,
                "write the device certificate to the card, or name its file with --cert-id",
            );
            return None;
        }
    };
    if card::holds_key(&cert, key) {
        report.ok("certificate", &format!("{file} holds the selected key"));
    } else {
        report.problem(
            "certificate",
            &format!("{file} holds another public key than the selected key"),
            "issue a certificate for this key (or name its own with --cert-id/--cert-label)",
        );
    }
    Some(cert)
}

/// OpenSSL's version and where it looks for the provider module.
fn check_openssl(report: &mut Report) {
    let version = match openssl_tool(&["version", "-v", "-m"]) {
        Ok(out) => out,
        Err(e) => {
            report.problem(
                "openssl",
                &e,
                "install the openssl tool (Debian package openssl)",
            );
            return;
        }
    };
    let configured = std::env::var("OPENSSL_MODULES").ok();
    let default_dir = version
        .lines()
        .find_map(|l| l.strip_prefix("MODULESDIR: "))
        .map(|d| d.trim_matches('"').to_string());
    let first = version.lines().next().unwrap_or_default();
    let Some(dir) = configured.clone().or(default_dir) else {
        report.ok("openssl", first);
        return;
    };
    let source = if configured.is_some() {
        "OPENSSL_MODULES"
    } else {
        "openssl version -m"
    };
    if Path::new(&dir).join("iotsafe.so").exists() {
        report.ok(
            "openssl",
            &format!("{first}; modules in {dir} ({source}), iotsafe.so there"),
        );
    } else {
        report.problem(
            "openssl",
            &format!("{first}; no iotsafe.so in {dir} ({source})"),
            "`make install`, or export OPENSSL_MODULES=<repository>/target/debug after `make build`",
        );
    }
}

/// The provider loads through the user's OPENSSL_CONF, with its settings, and gives the card's
/// key for the selected target.
fn check_provider(report: &mut Report, options: &CardOptions, key: Option<&PKey<Public>>) {
    let conf = std::env::var("OPENSSL_CONF").unwrap_or_else(|_| "(OpenSSL's default)".into());
    match openssl_tool(&["list", "-providers"]) {
        Ok(list) if list.contains("iotsafe") => {
            report.ok("provider", &format!("loaded through OPENSSL_CONF={conf}"))
        }
        Ok(_) => {
            report.problem(
                "provider",
                &format!("OPENSSL_CONF={conf} does not load the iotsafe provider"),
                "export OPENSSL_CONF=<an openssl.cnf with an activated iotsafe section, e.g. c-examples/openssl.cnf>",
            );
            return;
        }
        Err(e) => {
            report.problem("provider", &e, "check OPENSSL_CONF and OPENSSL_MODULES");
            return;
        }
    }
    let settings: Vec<String> = std::env::vars()
        .filter(|(name, _)| name.starts_with("IOTSAFE_"))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    if !settings.is_empty() {
        report.ok("settings", &settings.join(" "));
    }
    let Ok(target) = options.target() else { return };
    let uri = KeyUri {
        target,
        object: None,
    }
    .to_string();
    load_through_openssl(report, "provider key", &uri, key);
}

fn check_keyref(report: &mut Report, file: &Path, key: Option<&PKey<Public>>) {
    load_through_openssl(report, "keyref", &file.to_string_lossy(), key);
}

/// `openssl pkey -in INPUT -pubout`: the key must load and be the card's.
fn load_through_openssl(report: &mut Report, check: &str, input: &str, key: Option<&PKey<Public>>) {
    let loaded = match openssl_tool(&["pkey", "-in", input, "-pubout"]) {
        Ok(pem) => pem,
        Err(e) => {
            report.problem(
                check,
                &format!("{input} does not load: {e}"),
                "fix what the message names (openssl.cnf, the card, the file: `iotsafe keyref` writes one anew)",
            );
            return;
        }
    };
    let same = PKey::public_key_from_pem(loaded.as_bytes())
        .ok()
        .zip(key)
        .is_some_and(|(loaded, key)| loaded.public_eq(key));
    match key {
        Some(_) if !same => report.problem(
            check,
            &format!("{input} loads another key than the selected one"),
            "write the reference anew with `iotsafe keyref` and the key's options",
        ),
        _ => report.ok(check, &format!("{input} loads the card's key")),
    }
}

fn check_tlsa(report: &mut Report, args: &DoctorArgs, name: &str, cert: Option<&X509>) {
    let Some(cert) = cert else {
        report.problem(
            "tlsa",
            &format!("{name}: not checked, no certificate of the key"),
            "fix the certificate problem first",
        );
        return;
    };
    let resolver = match args.dns.resolver() {
        Ok(resolver) => resolver,
        Err(e) => {
            report.problem(
                "tlsa",
                &e.to_string(),
                "check --resolver and --trust-anchor",
            );
            return;
        }
    };
    let verification = ClientVerifier::new(Vec::new(), None).verify(&resolver, name, cert, &[]);
    let verdict = dane_commands::verdict(&verification.to_string());
    if verification.authenticated() {
        report.ok("tlsa", &format!("{name}: {verdict}"));
    } else {
        report.problem(
            "tlsa",
            &format!("{name}: {verdict}"),
            &format!("publish `iotsafe tlsa --name {name}` in the signed zone"),
        );
    }
}

/// Runs the `openssl` tool; its stdout, or its error lines (the provider's reasons first).
fn openssl_tool(args: &[&str]) -> Result<String, String> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reasons: Vec<String> = stderr
        .lines()
        .filter_map(|l| {
            l.split_once(":iotsafe:iotsafe:")
                .map(|(_, e)| provider_error(e))
        })
        .collect();
    let first = stderr.lines().next().unwrap_or("failed");
    Err(if reasons.is_empty() {
        first.to_string()
    } else {
        reasons.join("; ")
    })
}

/// A provider error line of OpenSSL (`reason:file.rs:line:detail`) as `reason: detail`.
fn provider_error(line: &str) -> String {
    let Some((reason, rest)) = line.split_once(':') else {
        return line.to_string();
    };
    let detail = rest
        .split_once(".rs:")
        .and_then(|(_, after)| after.split_once(':'))
        .map_or(rest, |(_, detail)| detail);
    format!("{reason}: {detail}")
}
