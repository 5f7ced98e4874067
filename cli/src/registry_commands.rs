//! `iotsafe registry ...`: a registry's operations on device records over RFC 2136 updates
//! (the `iotsafe-registry` crate); here only the arguments, the printing and the exit status:
//! 0 done (and seen secure, unless `--no-wait`); 1 failed (the message says whether anything
//! was changed); 3 the primary applied the change but the resolver did not show it in time
//! (see [`EXIT_NOT_SEEN`]); 2 a usage mistake (clap's).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dane::name::DeviceName;
use dane::resolver::{Outcome, Proof, Resolver};
use dane::tlsa::Tlsa;
use iotsafe_registry::ops::{self, Done, Waiting};
use iotsafe_registry::{device_name, fqdn, record, wait, Registry, RegistryError, TsigKey};

use crate::dane_commands::DnsArgs;

/// Exit status when the primary applied the change but the wait did not see it through the
/// resolver in time (a caching resolver may hold the previous answer for its TTL): the change
/// stands, so retrying it is not the answer.
pub const EXIT_NOT_SEEN: u8 = 3;
/// Exit status of `show` when the answer is not proven secure (insecure, bogus, indeterminate):
/// printed all the same, but nothing to rely on.
pub const EXIT_NOT_SECURE: u8 = 4;

/// Longest `--ttl` accepted: the TTL is how long a cache may keep admitting a revoked device.
const MAX_TTL: u32 = 86_400;

const NAME_HELP: &str = "The device's name (TLSA owner), absolute, inside --zone: \
    <id>._device.<domain>, e.g. sensor7._device.iotregistry.example (a plain host name only \
    with --plain-name; wildcards, escapes and _<service> names are refused)";

/// `iotsafe registry <command>`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum RegistryCommand {
    /// Add a TLSA record at NAME (default `3 1 1`: the SHA-256 of the key of the certificate
    /// or public key given).
    Publish {
        #[arg(help = NAME_HELP)]
        name: String,
        #[command(flatten)]
        record: RecordArgs,
        /// TTL of the record, in seconds (at most 86400): also how long caches may keep
        /// admitting the device after a revoke.
        #[arg(long, default_value_t = ops::DEFAULT_TTL,
              value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_TTL)))]
        ttl: u32,
        #[command(flatten)]
        update: UpdateArgs,
    },
    /// Remove NAME's TLSA records: without --record all of them (every key at the name, the
    /// new one of a rotation in progress too), with --record exactly that one. The name must
    /// have TLSA records: a mistyped name is an error, not a silent no-op.
    Revoke {
        #[arg(help = NAME_HELP)]
        name: String,
        /// Remove only this record ("U S M HEX").
        #[arg(long, value_name = "U S M HEX")]
        record: Option<String>,
        #[command(flatten)]
        update: UpdateArgs,
    },
    /// Roll NAME over to a new key (RFC 7671 8.1): `--new FILE` publishes its record beside the
    /// old one(s) and records them in a state file on this machine (--state-dir); `--finish`
    /// is refused until one TTL has passed since the primary acknowledged the new record, then
    /// removes exactly the old records seen by `--new`.
    Rotate {
        #[arg(help = NAME_HELP)]
        name: String,
        /// The new certificate or public key (PEM or DER).
        #[arg(long, value_name = "FILE", required_unless_present = "finish")]
        new: Option<PathBuf>,
        /// Remove the old record(s).
        #[arg(long, conflicts_with_all = ["new", "ttl"])]
        finish: bool,
        /// TTL of the new record (default: the TTL of the records it joins; at most 86400).
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_TTL)))]
        ttl: Option<u32>,
        /// Where `--new` records when the new record became visible, for `--finish`.
        #[arg(long, value_name = "DIR", env = "IOTSAFE_REGISTRY_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        update: UpdateArgs,
    },
    /// NAME's TLSA records as the validating resolver sees them now, with proof state and TTL.
    /// Exit status 0 only for a secure answer (records or a proven denial), 4 for an answer
    /// that is not proven secure, 1 when there is no answer.
    Show {
        /// The name to look up (any device owner form: <id>._device.<domain>,
        /// _<service>.<domain> or a plain host name).
        name: String,
        #[command(flatten)]
        dns: DnsArgs,
    },
}

/// The record to publish: exactly one of these.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct RecordArgs {
    /// The device's certificate (PEM or DER): `3 1 1` of its key.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// The device's public key (PEM or DER): `3 1 1` of it.
    #[arg(long, value_name = "FILE")]
    pubkey: Option<PathBuf>,
    /// The record itself.
    #[arg(long, value_name = "U S M HEX")]
    record: Option<String>,
}

/// Where the update goes, with which key, and how its arrival is watched.
#[derive(clap::Args, Debug, Clone)]
pub struct UpdateArgs {
    /// The zone's primary, which accepts the signed updates.
    #[arg(long, value_name = "ADDR:PORT")]
    server: SocketAddr,
    /// The zone (its apex) NAME is in; NAME must be inside it.
    #[arg(long)]
    zone: String,
    /// Accept a plain host name (e.g. sensor7.iotregistry.example) as NAME instead of the
    /// <id>._device.<domain> form.
    #[arg(long)]
    plain_name: bool,
    /// The TSIG key file, as BIND's `tsig-keygen` or knot's `keymgr -t` writes it.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "tsig",
        conflicts_with = "tsig"
    )]
    tsig_key: Option<PathBuf>,
    /// The TSIG key inline (visible to other users of this machine in the process list).
    #[arg(long, value_name = "NAME:ALG:BASE64")]
    tsig: Option<String>,
    /// Seconds one request to the server may take.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Wait until a look-up through the validating resolver sees the change secure (the
    /// default). The look-up skips this tool's own cache, not the resolver's.
    #[arg(long, overrides_with = "no_wait")]
    wait: bool,
    /// Do not wait.
    #[arg(long, overrides_with = "wait")]
    no_wait: bool,
    /// Seconds the wait may take. The resolver asked may be a caching one, holding the previous
    /// answer for up to its TTL: a time-out then exits with status 3 (applied, not yet seen).
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
    #[command(flatten)]
    dns: DnsArgs,
}

impl UpdateArgs {
    /// NAME parsed once (the registry crate's rules); refused before anything is sent.
    fn name(&self, text: &str) -> Result<DeviceName, Failed> {
        device_name(text, self.plain_name).map_err(failed)
    }

    fn registry(&self) -> Result<Registry, String> {
        let key = match (&self.tsig_key, &self.tsig) {
            (Some(file), _) => TsigKey::from_file(file),
            (None, Some(inline)) => inline.parse(),
            (None, None) => return Err("--tsig-key FILE or --tsig NAME:ALG:BASE64 needed".into()),
        }
        .map_err(|e| e.to_string())?;
        let timeout = Duration::from_secs(self.timeout.max(1));
        Registry::new(self.server, &self.zone, key, timeout).map_err(|e| e.to_string())
    }

    /// The resolver to watch through, unless `--no-wait`.
    fn resolver(&self) -> Result<Option<Resolver>, String> {
        // The last of --wait and --no-wait given wins (each overrides the other); neither: wait.
        if self.no_wait && !self.wait {
            return Ok(None);
        }
        self.dns
            .resolver()
            .map(Some)
            .map_err(|e| format!("resolver for --wait: {e}"))
    }
}

/// Runs `command`, prints its outcome (errors as one `iotsafe: ...` line) and gives the exit
/// status.
pub fn run(command: RegistryCommand) -> u8 {
    match run_command(command) {
        Ok(status) => status,
        Err((status, message)) => {
            eprintln!("iotsafe: {message}");
            status
        }
    }
}

type Failed = (u8, String);

fn failed(e: RegistryError) -> Failed {
    let status = match e {
        RegistryError::NotSeen(_) => EXIT_NOT_SEEN,
        _ => 1,
    };
    (status, e.to_string())
}

fn run_command(command: RegistryCommand) -> Result<u8, Failed> {
    match command {
        RegistryCommand::Show { name, dns } => show(&name, &dns),
        RegistryCommand::Publish {
            name,
            record,
            ttl,
            update,
        } => {
            let name = update.name(&name)?;
            let record = record.tlsa().map_err(failed)?;
            change(&update, |registry, waiting| {
                ops::publish(registry, &name, &record, ttl, waiting)
            })
        }
        RegistryCommand::Revoke {
            name,
            record,
            update,
        } => {
            let name = update.name(&name)?;
            let record = record
                .as_deref()
                .map(record::parse)
                .transpose()
                .map_err(failed)?;
            change(&update, |registry, waiting| {
                ops::revoke(registry, &name, record.as_ref(), waiting)
            })
        }
        RegistryCommand::Rotate {
            name,
            new,
            finish,
            ttl,
            state_dir,
            update,
        } => {
            let name = update.name(&name)?;
            let state_dir = state_dir.unwrap_or_else(default_state_dir);
            match (new, finish) {
                (Some(file), false) => {
                    let record = record::of_certificate_or_key_file(&file).map_err(failed)?;
                    change(&update, |registry, waiting| {
                        ops::rotate_new(registry, &name, &record, ttl, &state_dir, waiting)
                    })
                }
                _ => change(&update, |registry, waiting| {
                    ops::rotate_finish(registry, &name, &state_dir, waiting)
                }),
            }
        }
    }
}

impl RecordArgs {
    fn tlsa(&self) -> Result<Tlsa, RegistryError> {
        match (&self.cert, &self.pubkey, &self.record) {
            (Some(cert), _, _) => record::of_certificate_file(cert),
            (_, Some(key), _) => record::of_public_key_file(key),
            (_, _, Some(text)) => record::parse(text),
            _ => Err(RegistryError::Input(
                "--cert, --pubkey or --record needed".into(),
            )),
        }
    }
}

/// Runs one change and prints what it did, how long the wait took, and what comes next.
fn change(
    update: &UpdateArgs,
    operation: impl FnOnce(&Registry, Option<&Waiting>) -> Result<Done, RegistryError>,
) -> Result<u8, Failed> {
    let registry = update.registry().map_err(|e| (1, e))?;
    let resolver = update.resolver().map_err(|e| (1, e))?;
    let waiting = resolver.as_ref().map(|resolver| Waiting {
        resolver,
        limit: Duration::from_secs(update.wait_timeout.max(1)),
    });
    let done = operation(&registry, waiting.as_ref()).map_err(failed)?;
    println!("{}", done.change);
    match (done.seen_after, &resolver) {
        (Some(took), Some(resolver)) => println!(
            "seen secure through {} after {:.3} s",
            resolver.config().server,
            took.as_secs_f64()
        ),
        (None, Some(_)) => {}
        _ => println!("not waited for (--no-wait)"),
    }
    for line in done.next {
        println!("{line}");
    }
    Ok(0)
}

/// `show`: one line per record with its TTL, then the proof; a denial as one line. The exit
/// status says whether the answer is proven secure.
fn show(name: &str, dns: &DnsArgs) -> Result<u8, Failed> {
    let name = DeviceName::parse(name).map_err(|e| (1, e.to_string()))?;
    let resolver = dns.resolver().map_err(|e| (1, e.to_string()))?;
    // No answer at all is a plain failure (1), not a change left unseen.
    let answer = wait::show(&resolver, &fqdn(&name)).map_err(|e| (1, e.to_string()))?;
    match &answer.outcome {
        Outcome::Records(_) => {
            for record in answer.records().iter().filter_map(Tlsa::from_rdata) {
                println!(
                    "{}",
                    record.to_zone_line(&answer.name.to_string(), answer.ttl)
                );
            }
            print!("{} record(s), {}", answer.records().len(), answer.proof);
            match &answer.why {
                Some(why) => println!(" ({why})"),
                None => println!(),
            }
        }
        _ => println!("{answer}"),
    }
    Ok(match answer.proof {
        Proof::Secure => 0,
        _ => EXIT_NOT_SECURE,
    })
}

/// `$XDG_STATE_HOME/iotsafe`, else `~/.local/state/iotsafe`, else the current directory.
fn default_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")));
    base.map_or_else(|| PathBuf::from("."), |b| b.join("iotsafe"))
}
