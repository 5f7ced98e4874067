//! The registry's operations as an operator runs them: the update, then (unless told not to)
//! the wait until the validating resolver sees the change secure.

use std::path::Path;
use std::time::Duration;

use dane::resolver::Resolver;
use dane::tlsa::Tlsa;

use crate::rotation::{unix_now, Rotation, Seen};
use crate::wait::{self, Expect};
use crate::{Registry, RegistryError};

/// TTL of a record published without one, and of a rotation's new record at a name that has
/// none to take it from.
pub const DEFAULT_TTL: u32 = 300;

/// How to watch a change arrive: through this resolver, at most this long.
pub struct Waiting<'a> {
    pub resolver: &'a Resolver,
    pub limit: Duration,
}

/// What an operation did.
#[derive(Debug)]
pub struct Done {
    /// One line saying what was changed.
    pub change: String,
    /// How long until a fresh look-up saw it secure (`None` when not waited for).
    pub seen_after: Option<Duration>,
    /// A line on what comes next, if anything.
    pub next: Option<String>,
}

/// Adds `record` at `name`.
pub fn publish(
    registry: &Registry,
    name: &str,
    record: &Tlsa,
    ttl: u32,
    waiting: Option<&Waiting>,
) -> Result<Done, RegistryError> {
    registry.publish(name, record, ttl)?;
    Ok(Done {
        change: format!("published {}", record.to_zone_line(name, ttl)),
        seen_after: seen(waiting, name, &Expect::Present(record.clone()))?,
        next: None,
    })
}

/// Removes `record` from `name`, or with `None` the whole TLSA RRset. The server refuses
/// (NXRRSET) when the name has no TLSA records; a record that is not among them is refused
/// here, before anything is sent.
pub fn revoke(
    registry: &Registry,
    name: &str,
    record: Option<&Tlsa>,
    waiting: Option<&Waiting>,
) -> Result<Done, RegistryError> {
    let Some(record) = record else {
        registry.revoke_all(name)?;
        return Ok(Done {
            change: format!("revoked every TLSA record at {}", fqdn(name)),
            seen_after: seen(waiting, name, &Expect::None)?,
            next: None,
        });
    };
    let current = registry.records_at(name)?;
    if !current.records.is_empty() && !current.records.contains(record) {
        return Err(RegistryError::Input(format!(
            "{} has no TLSA record {record} on {} (it has: {}); nothing was sent",
            fqdn(name),
            registry.server(),
            list(&current.records)
        )));
    }
    registry.remove_records(name, &current, std::slice::from_ref(record))?;
    Ok(Done {
        change: format!("revoked {} IN TLSA {record}", fqdn(name)),
        seen_after: seen(waiting, name, &Expect::Absent(record.clone()))?,
        next: None,
    })
}

/// The first step of a rollover: `record` published beside the records at `name` (which must
/// have some), and the moment it became visible written to the rotation state in `state_dir`.
/// Without `ttl`, the new record takes the TTL of the set it joins.
pub fn rotate_new(
    registry: &Registry,
    name: &str,
    record: &Tlsa,
    ttl: Option<u32>,
    state_dir: &Path,
    waiting: Option<&Waiting>,
) -> Result<Done, RegistryError> {
    // A state file that cannot be read is not taken for "no rotation": it is reported.
    if Rotation::path(state_dir, name)?.exists() {
        let running = Rotation::load(state_dir, name)?;
        return Err(RegistryError::Rotation(format!(
            "a rotation of {} to {} is in progress: finish it first (`rotate {name} --finish`)",
            running.name, running.new
        )));
    }
    let current = registry.records_at(name)?;
    if current.records.contains(record) {
        return Err(RegistryError::Input(format!(
            "{} already has TLSA {record}; nothing was sent",
            fqdn(name)
        )));
    }
    let ttl = ttl.unwrap_or(if current.records.is_empty() {
        DEFAULT_TTL
    } else {
        current.ttl
    });
    registry.publish_beside(name, record, ttl)?;
    let seen_after = seen(waiting, name, &Expect::Present(record.clone()))?;
    let rotation = Rotation {
        name: fqdn(name),
        new: record.clone(),
        ttl: ttl.max(current.ttl),
        visible_since: unix_now(),
        seen: match seen_after {
            Some(_) => Seen::Secure,
            None => Seen::Acknowledged,
        },
    };
    let state = rotation.save(state_dir)?;
    Ok(Done {
        change: format!(
            "published {} beside {} old record(s)",
            record.to_zone_line(name, ttl),
            current.records.len()
        ),
        seen_after,
        next: Some(format!(
            "the old record(s) may go in {} s (one TTL): `rotate {} --finish` (state in {})",
            rotation.ttl,
            fqdn(name),
            state.display()
        )),
    })
}

/// The second step: once the new record has been visible for one TTL, every other TLSA record
/// at `name` is removed (on the prerequisite that the set is still the one seen).
pub fn rotate_finish(
    registry: &Registry,
    name: &str,
    state_dir: &Path,
    waiting: Option<&Waiting>,
) -> Result<Done, RegistryError> {
    let rotation = Rotation::load(state_dir, name)?;
    rotation.may_finish(unix_now())?;
    let current = registry.records_at(name)?;
    if !current.records.contains(&rotation.new) {
        return Err(RegistryError::Rotation(format!(
            "the new record {} is no longer at {} on {} (it has: {}); nothing was sent \
             (remove {} to start again)",
            rotation.new,
            rotation.name,
            registry.server(),
            list(&current.records),
            Rotation::path(state_dir, name)?.display()
        )));
    }
    let old: Vec<Tlsa> = current
        .records
        .iter()
        .filter(|r| **r != rotation.new)
        .cloned()
        .collect();
    if !old.is_empty() {
        registry.remove_records(name, &current, &old)?;
    }
    let seen_after = seen(waiting, name, &Expect::Exactly(vec![rotation.new.clone()]))?;
    Rotation::remove(state_dir, name)?;
    Ok(Done {
        change: format!(
            "removed {} old record(s) at {}; {} IN TLSA {} remains",
            old.len(),
            rotation.name,
            rotation.name,
            rotation.new
        ),
        seen_after,
        next: None,
    })
}

/// Waits for `expect` when asked to; how long it took.
fn seen(
    waiting: Option<&Waiting>,
    name: &str,
    expect: &Expect,
) -> Result<Option<Duration>, RegistryError> {
    waiting
        .map(|w| wait::until_seen(w.resolver, name, expect, w.limit))
        .transpose()
}

fn fqdn(name: &str) -> String {
    dane::tlsa::fqdn(name)
}

fn list(records: &[Tlsa]) -> String {
    if records.is_empty() {
        return "none".into();
    }
    records
        .iter()
        .map(Tlsa::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
