//! The registry side of device identities: publish, revoke and rotate a device's TLSA records
//! in the registry's DNSSEC-signed zone by RFC 2136 dynamic updates authenticated with TSIG
//! (RFC 8945), and watch the change reach the validating resolver.
//!
//! - [`key`]: TSIG key files (BIND's, knot's) and the inline form;
//! - [`Registry`]: the updates, built with hickory's `update_message`, each with a prerequisite
//!   so that a mistake (a name without records, a record that is not there) is refused by the
//!   server instead of being a silent no-op, and each one-shot (below);
//! - [`wait`]: fresh look-ups through the project's validating resolver until the change is
//!   seen secure;
//! - [`rotation`]: what `rotate --finish` knows of when the new record became visible;
//! - [`record`]: the TLSA record of a certificate or public key file;
//! - [`ops`]: the operations as the command line runs them (change, then wait).
//!
//! The zone's primary signs what it is sent (knot's or BIND's automatic signing): the updates
//! carry no signatures. Nothing here knows about cards or the provider.
//!
//! # Names
//!
//! A NAME is parsed once with the dane crate's [`DeviceName`] (letters, digits and `-`, no
//! escapes, no wildcard `*`, underscore labels only in the DANCE owner forms), required to be of
//! the `<id>._device.<domain>` form unless plain host names are allowed, and that parsed name is
//! what is checked against the zone, sent, looked up, printed and written to rotation state. A
//! wildcard owner (`*._device.ZONE`) would otherwise admit one key as every device without a
//! record of its own, revoked ones included.
//!
//! # Replay
//!
//! TSIG protects a request's integrity, not its freshness: a server accepts a signed request
//! again as long as its time is within the fudge, and DNS servers keep no replay cache. A
//! recorded `publish` resent after a `revoke` would admit the revoked key again. So every
//! change carries one more prerequisite: the zone's SOA exactly as read from the primary just
//! before (value-dependent "RRset exists", RFC 2136 §2.4.2). Every applied change moves the
//! serial, the replayed message's own first application included, so a replay is refused
//! (NXRRSET) and changes nothing. When the serial moved because another operator's change
//! landed in between, the change is retried with a fresh read, a bounded number of times with a
//! random pause, so that concurrent operators all land. The fudge is also shrunk to
//! [`key::FUDGE_SECONDS`], which bounds the one replay the SOA cannot stop: a request that was
//! held back and never reached the server (the operator saw no answer) and is delivered
//! later, before any other change to the zone.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use dane::name::{DeviceName, DomainName, OwnerForm};
use dane::tlsa::Tlsa;
use hickory_resolver::proto::op::update_message::{self, UpdateMessage};
use hickory_resolver::proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::rdata::tlsa::TLSA;
use hickory_resolver::proto::rr::rdata::SOA;
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordSet, RecordType};

mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod key;
pub mod ops;
pub mod record;
pub mod rotation;
pub mod wait;

pub use key::{KeyError, TsigKey};

/// Most records one name may hold in an answer from the primary (a device has one, two during
/// a rotation; a few more are an operator's business, hundreds a mistake or an attack).
const MAX_RECORDS_PER_NAME: usize = 64;
/// Most attempts at one change while other changes keep moving the zone's serial (each
/// attempt that fails so lets another operator's change land: 50 operators at once finish).
const MAX_ATTEMPTS: u32 = 64;

/// Why a registry operation did not happen, or did not finish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryError {
    /// The server answered with an error RCODE: nothing was changed, if the refusal is signed
    /// with our key (or is a BADSIG/BADKEY refusal, which cannot be).
    Refused {
        server: SocketAddr,
        /// The RCODE's mnemonic (`NOTAUTH`, `NXRRSET`, ...).
        rcode: String,
        /// The TSIG error of the response (`BADSIG`, `BADKEY`, `BADTIME`), when it has one.
        tsig_error: Option<String>,
        /// Whether the refusal's TSIG verifies with our key (a refusal to a wrong key cannot be
        /// signed; a BADTIME refusal is).
        signed: bool,
    },
    /// No answer at all: whether anything changed is unknown (it did not, if the server was
    /// unreachable).
    NoAnswer { server: SocketAddr, why: String },
    /// An answer that cannot be trusted (its TSIG does not verify) or read.
    BadResponse { server: SocketAddr, why: String },
    /// A name, zone or record that cannot be used as given (nothing was sent).
    Input(String),
    /// The change was made but not seen as expected through the resolver in time.
    NotSeen(String),
    /// `rotate --finish` refused, or a rotation's state file unusable.
    Rotation(String),
    /// The zone kept changing under the update (other operators' updates); nothing changed.
    Busy(String),
    /// The primary checks updates against another SOA than the one it serves (BIND's
    /// `inline-signing`), so no change can be made one-shot; nothing changed.
    Unsupported(String),
    /// A local failure (runtime, file system).
    Local(String),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Refused {
                server,
                rcode,
                tsig_error,
                signed,
            } => {
                write!(f, "{server} refused the request: {rcode}")?;
                if let Some(tsig) = tsig_error {
                    write!(f, " (TSIG error {tsig})")?;
                }
                write!(f, ": {}", rcode_meaning(rcode, tsig_error.as_deref()))?;
                match (signed, tsig_error.as_deref()) {
                    (true, _) => f.write_str("; nothing was changed"),
                    // A server cannot sign a refusal for a key it lacks or cannot verify with.
                    (false, Some("BADSIG" | "BADKEY")) => f.write_str(
                        "; the refusal was not signed with our key (it cannot be); nothing was \
                         changed",
                    ),
                    // Anyone on the path could have sent this after the server applied it.
                    (false, _) => f.write_str(
                        "; the refusal was not signed with our key: whether the server applied \
                         the request is unverified (see `iotsafe registry show`)",
                    ),
                }
            }
            RegistryError::NoAnswer { server, why } => {
                write!(f, "no answer from the DNS server {server}: {why}")
            }
            RegistryError::BadResponse { server, why } => {
                write!(f, "unusable answer from {server}: {why}")
            }
            RegistryError::Input(why)
            | RegistryError::NotSeen(why)
            | RegistryError::Rotation(why)
            | RegistryError::Busy(why)
            | RegistryError::Unsupported(why)
            | RegistryError::Local(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for RegistryError {}

/// What an RCODE (RFC 1035, 2136, 8945) says went wrong with an update.
fn rcode_meaning(rcode: &str, tsig_error: Option<&str>) -> &'static str {
    match (rcode, tsig_error) {
        ("NOTAUTH", Some("BADSIG")) => "the server has this key with another secret",
        ("NOTAUTH", Some("BADKEY")) => {
            "the server does not know this key (name or algorithm) or does not allow it for \
             this zone or name"
        }
        ("NOTAUTH", Some("BADTIME")) => "this machine's clock and the server's differ too much",
        ("NOTAUTH", _) => "the server is not authoritative for the zone, or refuses this key",
        ("NXRRSET", _) => "prerequisite failed: the name has no such TLSA records",
        ("YXRRSET", _) => "prerequisite failed: the name's TLSA records changed meanwhile",
        ("NXDOMAIN", _) => "prerequisite failed: no such name",
        ("YXDOMAIN", _) => "prerequisite failed: the name exists",
        ("NOTZONE", _) => "the name is not in the zone",
        ("REFUSED", _) => "the server does not allow this update (policy or ACL)",
        ("SERVFAIL", _) => "the server failed to apply it",
        ("FORMERR", _) => "the server could not read the request",
        ("NOTIMP", _) => "the server does not implement dynamic updates",
        _ => "the request failed",
    }
}

fn rcode_name(rcode: ResponseCode) -> String {
    let name = match u16::from(rcode) {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        code => return format!("RCODE {code}"),
    };
    name.to_string()
}

/// A TLSA RRset as the primary holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordsAt {
    pub records: Vec<Tlsa>,
    /// The RRset's TTL (0 when there are no records).
    pub ttl: u32,
}

/// A zone on its primary, and the key allowed to update it.
pub struct Registry {
    server: SocketAddr,
    zone: Name,
    key: TsigKey,
    timeout: Duration,
    /// Seconds since the epoch that requests are signed with (the system clock).
    clock: fn() -> u64,
}

impl Registry {
    /// `zone` must be the zone's apex (the update's zone section). `timeout` bounds each
    /// request (connection and answer).
    pub fn new(
        server: SocketAddr,
        zone: &str,
        key: TsigKey,
        timeout: Duration,
    ) -> Result<Registry, RegistryError> {
        Ok(Registry {
            server,
            zone: zone_name(zone)?,
            key,
            timeout,
            clock: rotation::unix_now,
        })
    }

    /// Signs requests with the time `clock` gives instead of the system's (a machine whose
    /// clock differs from the server's, as a test makes one).
    pub fn with_clock(self, clock: fn() -> u64) -> Registry {
        Registry { clock, ..self }
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The TLSA records at `name` as the primary serves them (a signed query: the answer
    /// comes from the server holding our key, unchanged on the way).
    pub fn records_at(&self, name: &DeviceName) -> Result<RecordsAt, RegistryError> {
        let owner = self.owner(name)?;
        let mut query = Message::query();
        query.add_query(Query::query(owner.clone(), RecordType::TLSA));
        let response = self.send(query, &[ResponseCode::NoError, ResponseCode::NXDomain])?;
        let tlsa: Vec<&Record> = response
            .answers
            .iter()
            .filter(|r| r.name == owner && r.record_type() == RecordType::TLSA)
            .collect();
        if tlsa.len() > MAX_RECORDS_PER_NAME {
            return Err(RegistryError::BadResponse {
                server: self.server,
                why: format!(
                    "{} TLSA records at {owner}, more than {MAX_RECORDS_PER_NAME}",
                    tlsa.len()
                ),
            });
        }
        Ok(RecordsAt {
            ttl: tlsa.iter().map(|r| r.ttl).min().unwrap_or(0),
            records: tlsa
                .iter()
                .filter_map(|r| Tlsa::from_rdata(&r.data))
                .collect(),
        })
    }

    /// The zone's SOA as the primary serves it now (a signed query, like [`Self::records_at`]).
    pub fn zone_soa(&self) -> Result<ZoneSoa, RegistryError> {
        let mut query = Message::query();
        query.add_query(Query::query(self.zone.clone(), RecordType::SOA));
        let response = self.send(query, &[ResponseCode::NoError])?;
        response
            .answers
            .iter()
            .find(|r| r.name == self.zone && r.record_type() == RecordType::SOA)
            .and_then(|r| match &r.data {
                RData::SOA(soa) => Some(ZoneSoa {
                    soa: soa.clone(),
                    ttl: r.ttl,
                }),
                _ => None,
            })
            .ok_or_else(|| RegistryError::BadResponse {
                server: self.server,
                why: format!("no SOA for the zone {} in its answer", self.zone),
            })
    }

    /// Adds `record` to the TLSA RRset at `name` (created if there is none); adding a record
    /// that is there already changes nothing (RFC 2136 §3.4.2.2).
    pub fn publish(
        &self,
        name: &DeviceName,
        record: &Tlsa,
        ttl: u32,
    ) -> Result<Applied, RegistryError> {
        self.update(|| self.publish_message(name, record, ttl, false))
    }

    /// Adds `record` beside the existing records at `name`, which must exist (the first step of
    /// a rollover, RFC 7671 §8.1).
    pub fn publish_beside(
        &self,
        name: &DeviceName,
        record: &Tlsa,
        ttl: u32,
    ) -> Result<Applied, RegistryError> {
        self.update(|| self.publish_message(name, record, ttl, true))
    }

    /// Deletes every TLSA record at `name` as `current` (read just before) lists them, on the
    /// prerequisite that the set is still exactly that: a record published meanwhile is not
    /// deleted unseen, the server refuses instead (NXRRSET). A name that had no records is
    /// sent the deletion of its whole set on the prerequisite that one exists, once, without
    /// the retries of [`Registry::update`] (so that a mistyped name is refused by the server
    /// rather than deleting nothing, and a set published after the read is never deleted).
    pub fn revoke_all(
        &self,
        name: &DeviceName,
        current: &RecordsAt,
    ) -> Result<Applied, RegistryError> {
        let retry = revoke_all_retry(current);
        self.update_with(|| self.revoke_all_plan(name, current), retry)
    }

    /// The message of [`Registry::revoke_all`]: the records `current` lists, deleted on the
    /// prerequisite that the set is exactly them; with none, the whole set on the
    /// prerequisite that one exists.
    fn revoke_all_plan(
        &self,
        name: &DeviceName,
        current: &RecordsAt,
    ) -> Result<Message, RegistryError> {
        if current.records.is_empty() {
            self.revoke_all_message(name)
        } else {
            self.remove_records_message(name, current, &current.records)
        }
    }

    /// Deletes exactly `remove` from the RRset at `name`, on the prerequisite that the RRset
    /// is still exactly `current` (value-dependent, RFC 2136 §2.4.2): the deletion applies to
    /// the set the caller saw, or the server refuses it (NXRRSET) and nothing changes. An empty
    /// `current` asks only that some RRset exists, which the server then refuses.
    pub fn remove_records(
        &self,
        name: &DeviceName,
        current: &RecordsAt,
        remove: &[Tlsa],
    ) -> Result<Applied, RegistryError> {
        self.update(|| self.remove_records_message(name, current, remove))
    }

    fn publish_message(
        &self,
        name: &DeviceName,
        record: &Tlsa,
        ttl: u32,
        must_exist: bool,
    ) -> Result<Message, RegistryError> {
        let rrset = self.rrset(name, ttl, std::slice::from_ref(record))?;
        Ok(update_message::append(
            rrset,
            self.zone.clone(),
            must_exist,
            false,
        ))
    }

    fn revoke_all_message(&self, name: &DeviceName) -> Result<Message, RegistryError> {
        let owner = self.owner(name)?;
        let mut message = update_message::delete_rrset(
            Record::update0(owner.clone(), 0, RecordType::TLSA),
            self.zone.clone(),
            false,
        );
        message.add_pre_requisite(rrset_exists(owner));
        Ok(message)
    }

    fn remove_records_message(
        &self,
        name: &DeviceName,
        current: &RecordsAt,
        remove: &[Tlsa],
    ) -> Result<Message, RegistryError> {
        let owner = self.owner(name)?;
        let delete = self.rrset(name, 0, remove)?;
        let mut message = update_message::delete_by_rdata(delete, self.zone.clone(), false);
        if current.records.is_empty() {
            message.add_pre_requisite(rrset_exists(owner));
        } else {
            let mut exact = self.rrset(name, 0, &current.records)?;
            exact.set_ttl(0);
            message.add_pre_requisites(exact);
        }
        Ok(message)
    }

    /// Sends the update `build` makes, one-shot: with the prerequisite that the zone's SOA is
    /// still the one read just before. A refusal (NXRRSET) after which the serial has moved
    /// was another change landing first: read again, pause a random moment, retry (bounded).
    /// A refusal with the serial unmoved is the update's own prerequisite failing: reported.
    fn update(
        &self,
        build: impl Fn() -> Result<Message, RegistryError>,
    ) -> Result<Applied, RegistryError> {
        self.update_with(build, Retry::WhenTheZoneMoved)
    }

    fn update_with(
        &self,
        build: impl Fn() -> Result<Message, RegistryError>,
        retry: Retry,
    ) -> Result<Applied, RegistryError> {
        let mut soa = self.zone_soa()?;
        for attempt in 1..=MAX_ATTEMPTS {
            let mut message = build()?;
            message.add_pre_requisite(soa.prerequisite(&self.zone));
            let refused = match self.send(message, &[ResponseCode::NoError]) {
                Ok(_) => return Ok(Applied { before: soa }),
                Err(refused @ RegistryError::Refused { .. })
                    if retry == Retry::WhenTheZoneMoved && is_signed_nxrrset(&refused) =>
                {
                    refused
                }
                Err(e) => return Err(e),
            };
            // The refusal is what the caller hears if the zone cannot be read again.
            let Ok(now) = self.zone_soa() else {
                return Err(refused);
            };
            if now.soa == soa.soa {
                return Err(self.why_refused_unmoved(refused, &now));
            }
            soa = now;
            std::thread::sleep(retry_pause(attempt));
        }
        Err(RegistryError::Busy(format!(
            "the zone {} on {} changed before each of {MAX_ATTEMPTS} attempts (other updates \
             keep landing first); nothing was changed",
            self.zone, self.server
        )))
    }

    /// Why a change was refused (NXRRSET) while the zone's serial stayed where it was read:
    /// its own prerequisite failed, unless the primary refuses the SOA prerequisite alone. That
    /// is a primary that checks updates against another SOA than the one it serves, as BIND
    /// does with `inline-signing` (updates go to an unsigned copy with a serial of its own):
    /// every change would be refused so, and saying "the name has no such records" would send
    /// the operator looking in the wrong place.
    fn why_refused_unmoved(&self, refused: RegistryError, soa: &ZoneSoa) -> RegistryError {
        match self.send(self.soa_probe(soa), &[ResponseCode::NoError]) {
            Err(probe) if is_signed_nxrrset(&probe) => RegistryError::Unsupported(format!(
                "{} refuses updates to {} that require the SOA it serves (serial {}): it                  checks them against another copy of the zone, as BIND does with                  inline-signing, so no change can be made safe against a replay; serve the                  zone as a dynamic zone signed in place (dnssec-policy without inline-signing,                  see the README); nothing was changed",
                self.server,
                self.zone,
                soa.serial()
            )),
            _ => refused,
        }
    }

    /// An update with the SOA prerequisite alone and nothing to change (RFC 2136 §3.4 lets the
    /// update section be empty): applied, it changes nothing.
    fn soa_probe(&self, soa: &ZoneSoa) -> Message {
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        message.add_zone(zone);
        message.add_pre_requisite(soa.prerequisite(&self.zone));
        message
    }

    /// `name` as an absolute name inside the zone, or why not.
    fn owner(&self, name: &DeviceName) -> Result<Name, RegistryError> {
        let owner = name.dns_name().clone();
        if !self.zone.zone_of(&owner) {
            return Err(RegistryError::Input(format!(
                "{owner} is not in the zone {} (--zone); nothing was sent",
                self.zone
            )));
        }
        Ok(owner)
    }

    fn rrset(
        &self,
        name: &DeviceName,
        ttl: u32,
        records: &[Tlsa],
    ) -> Result<RecordSet, RegistryError> {
        let owner = self.owner(name)?;
        let mut rrset = RecordSet::with_ttl(owner, RecordType::TLSA, ttl);
        for record in records {
            rrset.add_rdata(RData::TLSA(TLSA::new(
                record.usage.into(),
                record.selector.into(),
                record.mtype.into(),
                record.data.clone(),
            )));
        }
        Ok(rrset)
    }

    fn send(&self, message: Message, accept: &[ResponseCode]) -> Result<Message, RegistryError> {
        exchange::exchange(
            self.server,
            message,
            (&self.key.signer(), (self.clock)()),
            self.timeout,
            accept,
        )
        .map_err(|e| match e {
            exchange::Failure::Refused(rcode, tsig_error, signed) => RegistryError::Refused {
                server: self.server,
                rcode: rcode_name(rcode),
                tsig_error,
                signed,
            },
            exchange::Failure::Other(e) => e,
        })
    }
}

/// The prerequisite "a TLSA RRset exists at `owner`" (RFC 2136 §2.4.1).
fn rrset_exists(owner: Name) -> Record {
    let mut record = Record::update0(owner, 0, RecordType::TLSA);
    record.dns_class = DNSClass::ANY;
    record
}

/// Whether `e` is the server's NXRRSET (a prerequisite "RRset exists" that does not hold).
/// A prerequisite refusal signed with our key: only such a refusal may be retried (an
/// unsigned one may be a forger's, sent while the real server applied the change).
fn is_signed_nxrrset(e: &RegistryError) -> bool {
    matches!(e, RegistryError::Refused { rcode, signed: true, .. } if rcode == "NXRRSET")
}

/// A revocation of a name read without records is never retried: a set published after the
/// read must not be deleted unseen.
fn revoke_all_retry(current: &RecordsAt) -> Retry {
    if current.records.is_empty() {
        Retry::Never
    } else {
        Retry::WhenTheZoneMoved
    }
}

/// Whether [`Registry::update_with`] retries a change refused because the zone moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    WhenTheZoneMoved,
    Never,
}

/// A random pause before attempt `attempt + 1`, growing with the attempts (up to 0.2 s), so
/// that operators who collided do not collide again in step.
fn retry_pause(attempt: u32) -> Duration {
    let mut byte = [0u8; 1];
    // A fixed pause if the generator fails: still bounded, only less spread.
    let _ = openssl::rand::rand_bytes(&mut byte);
    let ceiling_ms = 20 * u64::from(attempt.min(10));
    Duration::from_millis(5 + u64::from(byte[0]) * ceiling_ms / 255)
}

/// The zone's SOA as read from the primary.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneSoa {
    pub soa: SOA,
    /// The SOA record's TTL.
    pub ttl: u32,
}

impl ZoneSoa {
    pub fn serial(&self) -> u32 {
        self.soa.serial
    }

    /// How long a resolver may cache a denial from this zone (RFC 2308 §5: the smaller of the
    /// SOA's TTL and its MINIMUM).
    pub fn negative_ttl(&self) -> u32 {
        self.ttl.min(self.soa.minimum)
    }

    /// The prerequisite "the zone's SOA is exactly this" (value-dependent RRset exists: class
    /// IN, TTL 0, RFC 2136 §2.4.2).
    fn prerequisite(&self, zone: &Name) -> Record {
        let mut record = Record::from_rdata(zone.clone(), 0, RData::SOA(self.soa.clone()));
        record.dns_class = DNSClass::IN;
        record
    }
}

/// An update the primary applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The zone's SOA it was applied on top of (the change made the serial move past it).
    pub before: ZoneSoa,
}

/// The zone's apex (`--zone`) with host-name syntax (no escapes, no wildcard), absolute.
fn zone_name(text: &str) -> Result<Name, RegistryError> {
    let zone = DomainName::parse(text).map_err(|e| RegistryError::Input(format!("--zone: {e}")))?;
    let mut name = Name::from_ascii(zone.to_string())
        .map_err(|e| RegistryError::Input(format!("--zone {zone}: {e}")))?;
    name.set_fqdn(true);
    Ok(name)
}

/// NAME as an operator gives it, parsed once (see "Names" above): `<id>._device.<domain>`, or
/// with `plain` also a plain host name; never a wildcard, an escape or a `_<service>` form.
pub fn device_name(text: &str, plain: bool) -> Result<DeviceName, RegistryError> {
    let name = DeviceName::parse(text)
        .map_err(|e| RegistryError::Input(format!("{e}; nothing was sent")))?;
    match name.form() {
        OwnerForm::Device => Ok(name),
        OwnerForm::Plain if plain => Ok(name),
        OwnerForm::Plain => Err(RegistryError::Input(format!(
            "'{name}' is not a device name of the form <id>._device.<domain> (add \
             --plain-name for a plain host name); nothing was sent"
        ))),
        OwnerForm::Service => Err(RegistryError::Input(format!(
            "'{name}' is a _<service> owner name, not a device name of the form \
             <id>._device.<domain>; nothing was sent"
        ))),
    }
}

/// The bytes of the regular file at `path`, at most `max` of them, read without trusting its
/// metadata: a device (`/dev/zero`), a FIFO or a directory is refused at once, and a file
/// longer than `max` (or growing while read) is refused after `max + 1` bytes. The last path
/// component is not followed if it is a symbolic link only when `no_follow`.
pub(crate) fn read_bounded(
    path: &std::path::Path,
    max: u64,
    no_follow: bool,
) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Not blocking on a FIFO without a writer: it is refused below anyway.
    let mut flags = libc::O_NONBLOCK;
    if no_follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = options.custom_flags(flags).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("more than {max} bytes")));
    }
    Ok(bytes)
}

/// A parsed name in presentation form, absolute (what is printed and written to state).
pub fn fqdn(name: &DeviceName) -> String {
    format!("{name}.")
}

#[cfg(test)]
mod tests;
