//! The registry's operations as an operator runs them: the update, then (unless told not to)
//! the wait until the validating resolver sees the change secure.
//!
//! A wait that times out after the primary acknowledged the change is reported as that
//! ([`RegistryError::NotSeen`], with the zone's serial now and how long the resolver may keep
//! the previous answer): the wait skips this tool's own cache only, and a caching resolver on
//! the way serves what it holds until its TTL runs out.

use std::path::Path;
use std::time::Duration;

use dane::name::DeviceName;
use dane::resolver::Resolver;
use dane::tlsa::Tlsa;

use crate::rotation::{unix_now, Rotation, Seen};
use crate::wait::{self, Expect};
use crate::{fqdn, Applied, RecordsAt, Registry, RegistryError};

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
    /// Lines on what comes next, or what else the operator should know.
    pub next: Vec<String>,
}

/// Adds `record` at `name`. Other records already at the name stay (and stay admitted): the
/// result says so, naming them, since a re-enrolled device's old key is one of them.
pub fn publish(
    registry: &Registry,
    name: &DeviceName,
    record: &Tlsa,
    ttl: u32,
    waiting: Option<&Waiting>,
) -> Result<Done, RegistryError> {
    let current = registry.records_at(name)?;
    if current.records.contains(record) {
        return Ok(Done {
            change: format!("{} already has TLSA {record}; nothing was sent", fqdn(name)),
            seen_after: None,
            next: vec![],
        });
    }
    let applied = registry.publish(name, record, ttl)?;
    let previous_ttl = previous_answer_ttl(&applied, &current);
    let expect = Expect::Present(record.clone());
    let mut next = vec![];
    if !current.records.is_empty() {
        next.push(format!(
            "note: {} also has {} other TLSA record(s), still admitted: {} (to replace a key, \
             `rotate {} --new FILE`; to remove one, `revoke {} --record \"U S M HEX\"`)",
            fqdn(name),
            current.records.len(),
            list(&current.records),
            fqdn(name),
            fqdn(name)
        ));
    }
    Ok(Done {
        change: format!("published {}", record.to_zone_line(&fqdn(name), ttl)),
        seen_after: seen(registry, waiting, name, &expect, &applied, previous_ttl)?,
        next,
    })
}

/// Removes `record` from `name`, or with `None` the whole TLSA RRset. A name without TLSA
/// records is refused by the server (NXRRSET, its prerequisite); a record that is not among
/// the records is refused before anything is sent (and by the server's prerequisite too,
/// should the set change meanwhile).
pub fn revoke(
    registry: &Registry,
    name: &DeviceName,
    record: Option<&Tlsa>,
    waiting: Option<&Waiting>,
) -> Result<Done, RegistryError> {
    let current = registry.records_at(name)?;
    let caches = format!(
        "resolvers that fetched the record before may admit the device for up to {} s more \
         (its TTL; a broker with the plugin re-validates up to its revalidate_seconds later)",
        current.ttl
    );
    let Some(record) = record else {
        let applied = registry.revoke_all(name, &current)?;
        return Ok(Done {
            change: format!(
                "revoked every TLSA record at {}: {}",
                fqdn(name),
                list(&current.records)
            ),
            seen_after: seen(
                registry,
                waiting,
                name,
                &Expect::None,
                &applied,
                current.ttl,
            )?,
            next: vec![caches],
        });
    };
    if !current.records.is_empty() && !current.records.contains(record) {
        return Err(RegistryError::Input(format!(
            "{} has no TLSA record {record} on {} (it has: {}); nothing was sent",
            fqdn(name),
            registry.server(),
            list(&current.records)
        )));
    }
    let applied = registry.remove_records(name, &current, std::slice::from_ref(record))?;
    let expect = Expect::Absent(record.clone());
    Ok(Done {
        change: format!("revoked {} IN TLSA {record}", fqdn(name)),
        seen_after: seen(registry, waiting, name, &expect, &applied, current.ttl)?,
        next: vec![caches],
    })
}

/// The first step of a rollover: `record` published beside the records at `name` (which must
/// have some; a `record` already there is adopted: taken as the new record, nothing sent).
/// The rotation's state (the old records, the moment the primary acknowledged the new one) is
/// written to `state_dir` before any wait, so that `--finish` can follow even when the wait
/// fails. Without `ttl`, the new record takes the TTL of the set it joins.
pub fn rotate_new(
    registry: &Registry,
    name: &DeviceName,
    record: &Tlsa,
    ttl: Option<u32>,
    state_dir: &Path,
    waiting: Option<&Waiting>,
) -> Result<Done, RegistryError> {
    // Taken before anything is sent: a second rotation of the name at once is refused here.
    let mut claim = Rotation::claim(state_dir, name)?;
    let current = registry.records_at(name)?;
    if current.records.contains(record) {
        return adopt(claim, name, record, &current, ttl, waiting);
    }
    let ttl = ttl.unwrap_or(if current.records.is_empty() {
        DEFAULT_TTL
    } else {
        current.ttl
    });
    let applied = registry.publish_beside(name, record, ttl)?;
    let mut rotation = Rotation {
        name: fqdn(name),
        new: record.clone(),
        old: current.records.clone(),
        ttl: ttl.max(current.ttl),
        visible_since: unix_now(),
        seen: Seen::Acknowledged,
    };
    claim.write(&rotation)?;
    let finish_later = format!(
        "the rotation's state is saved in {}: `rotate {} --finish` may run {} s after the \
         acknowledgement (one TTL)",
        claim.path().display(),
        fqdn(name),
        rotation.ttl
    );
    let expect = Expect::Present(record.clone());
    let previous_ttl = previous_answer_ttl(&applied, &current);
    let seen_after =
        seen(registry, waiting, name, &expect, &applied, previous_ttl).map_err(|e| match e {
            RegistryError::NotSeen(why) => RegistryError::NotSeen(format!("{why}; {finish_later}")),
            other => other,
        })?;
    if seen_after.is_some() {
        rotation.seen = Seen::Secure;
        rotation.save(state_dir, name)?;
    }
    Ok(Done {
        change: format!(
            "published {} beside {} old record(s)",
            record.to_zone_line(&fqdn(name), ttl),
            current.records.len()
        ),
        seen_after,
        next: vec![format!(
            "the old record(s) may go in {} s (one TTL): `rotate {} --finish` (state in {})",
            rotation.ttl,
            fqdn(name),
            claim.path().display()
        )],
    })
}

/// `rotate --new` of a record already at the name, with no rotation in progress: the record is
/// taken as the rotation's new one (a `--new` whose answer was lost, or a record published by
/// hand), the others as the old ones, and the TTL counts from now (later than the record's
/// real arrival: never too early). Nothing is sent. A name with only that record has nothing
/// to rotate. The set's TTL now may be lower than the old set's was (the new record may have
/// lowered it, and caches hold the old set for the old TTL): `ttl`, when given, is taken if
/// larger, and the output says so.
fn adopt(
    mut claim: crate::rotation::Claim,
    name: &DeviceName,
    record: &Tlsa,
    current: &RecordsAt,
    ttl: Option<u32>,
    waiting: Option<&Waiting>,
) -> Result<Done, RegistryError> {
    let old: Vec<Tlsa> = current
        .records
        .iter()
        .filter(|r| *r != record)
        .cloned()
        .collect();
    if old.is_empty() {
        return Err(RegistryError::Input(format!(
            "{} has only TLSA {record}: nothing to rotate; nothing was sent",
            fqdn(name)
        )));
    }
    let rotation = Rotation {
        name: fqdn(name),
        new: record.clone(),
        old,
        ttl: current.ttl.max(ttl.unwrap_or(0)),
        visible_since: unix_now(),
        seen: Seen::Acknowledged,
    };
    claim.write(&rotation)?;
    let seen_after = seen_without_update(waiting, name, &Expect::Present(record.clone()))?;
    Ok(Done {
        change: format!(
            "{} already has TLSA {record} beside {} other record(s): taken as the rotation's new \
             record, nothing was sent",
            fqdn(name),
            rotation.old.len()
        ),
        seen_after,
        next: vec![format!(
            "the old record(s) may go in {} s (one TTL from now): `rotate {} --finish` (state in \
             {})",
            rotation.ttl,
            fqdn(name),
            claim.path().display()
        )],
    })
}

/// The second step: once the new record has been visible for one TTL, the old records seen by
/// `--new` that are still there are removed (on the prerequisite that the set is still the one
/// read just before). Records that appeared since are neither old nor new: they stay.
pub fn rotate_finish(
    registry: &Registry,
    name: &DeviceName,
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
            Rotation::path(state_dir, name).display()
        )));
    }
    let (old, remaining): (Vec<Tlsa>, Vec<Tlsa>) = current
        .records
        .iter()
        .cloned()
        .partition(|r| rotation.old.contains(r));
    let others: Vec<Tlsa> = remaining
        .iter()
        .filter(|r| **r != rotation.new)
        .cloned()
        .collect();
    let seen_after = if old.is_empty() {
        // Removed by an earlier `--finish` whose wait failed, or by hand: nothing to send.
        let expect = Expect::Exactly(remaining.clone());
        seen_without_update(waiting, name, &expect)?
    } else {
        let applied = registry.remove_records(name, &current, &old)?;
        let expect = Expect::Exactly(remaining.clone());
        seen(registry, waiting, name, &expect, &applied, current.ttl)?
    };
    Rotation::remove(state_dir, name)?;
    let mut change = format!(
        "removed {} old record(s) at {}; {} IN TLSA {} remains",
        old.len(),
        rotation.name,
        rotation.name,
        rotation.new
    );
    if !others.is_empty() {
        change += &format!("; left alone (published after --new): {}", list(&others));
    }
    Ok(Done {
        change,
        seen_after,
        next: vec![],
    })
}

/// How long a resolver may keep the answer from before a change: the old set's TTL when the
/// name had records, else the zone's negative TTL (a cached denial).
fn previous_answer_ttl(applied: &Applied, before: &RecordsAt) -> u32 {
    if before.records.is_empty() {
        applied.before.negative_ttl()
    } else {
        before.ttl
    }
}

/// Waits for `expect` when asked to; how long it took. A time-out is reported with what the
/// primary did (`applied`, the serial now) and how long the resolver may keep the previous
/// answer (`previous_ttl`).
fn seen(
    registry: &Registry,
    waiting: Option<&Waiting>,
    name: &DeviceName,
    expect: &Expect,
    applied: &Applied,
    previous_ttl: u32,
) -> Result<Option<Duration>, RegistryError> {
    seen_without_update(waiting, name, expect).map_err(|e| match e {
        RegistryError::NotSeen(why) => {
            let serial = registry
                .zone_soa()
                .map(|soa| format!("zone serial now {}", soa.serial()))
                .unwrap_or_else(|e| format!("zone serial not read again: {e}"));
            RegistryError::NotSeen(format!(
                "the primary {} applied the change (the zone's serial was {}; {serial}), but \
                 {why}; a caching resolver may serve the previous answer for up to {previous_ttl} s \
                 (its TTL): the wait bypasses only this tool's own cache",
                registry.server(),
                applied.before.serial(),
            ))
        }
        other => other,
    })
}

fn seen_without_update(
    waiting: Option<&Waiting>,
    name: &DeviceName,
    expect: &Expect,
) -> Result<Option<Duration>, RegistryError> {
    waiting
        .map(|w| wait::until_seen(w.resolver, &fqdn(name), expect, w.limit))
        .transpose()
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
