//! What `rotate --finish` knows of a key rollover (RFC 7671 §8.1): the new record was published
//! beside the old ones, and when it became visible. The old records may only go once the new
//! one has been visible for the RRset's TTL: until then a resolver may still hold the old set,
//! without the new record, and would refuse the device's new key.
//!
//! `rotate --new` writes this down in a small state file once the change is seen: with the
//! wait (the default), the moment a fresh look-up through the validating resolver saw the new
//! record secure; with `--no-wait`, the moment the primary acknowledged the update (the
//! earliest a cache could have fetched the new set: secondaries may take longer, which only
//! the wait observes). `rotate --finish` reads it, refuses before one TTL has passed, and
//! removes the file when done.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dane::tlsa::Tlsa;

use crate::RegistryError;

/// Largest state file read (a few lines).
const MAX_STATE_BYTES: u64 = 4096;

/// How the moment of visibility was known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A fresh validated look-up saw the new record secure.
    Secure,
    /// The primary acknowledged the update (`--no-wait`).
    Acknowledged,
}

/// A rollover in progress at one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The device's name, absolute, lower case.
    pub name: String,
    /// The record published beside the old ones.
    pub new: Tlsa,
    /// How long caches may hold the old set: the larger of the old and the new TTL.
    pub ttl: u32,
    /// Seconds since the epoch when the new record became visible.
    pub visible_since: u64,
    pub seen: Seen,
}

impl Rotation {
    /// The state file of `name`'s rotation in `dir`.
    pub fn path(dir: &Path, name: &str) -> Result<PathBuf, RegistryError> {
        let name = crate::fqdn_name(name)?.to_string();
        let safe = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !safe {
            return Err(RegistryError::Input(format!(
                "{name}: only letters, digits, '.', '_' and '-' are supported in rotated names"
            )));
        }
        Ok(dir.join(format!("rotate-{}state", name)))
    }

    /// Writes the state (replacing a previous one whole: written aside, then renamed).
    pub fn save(&self, dir: &Path) -> Result<PathBuf, RegistryError> {
        let path = Self::path(dir, &self.name)?;
        let local = |e: std::io::Error| {
            RegistryError::Local(format!("rotation state {}: {e}", path.display()))
        };
        std::fs::create_dir_all(dir).map_err(local)?;
        let seen = match self.seen {
            Seen::Secure => "secure",
            Seen::Acknowledged => "acknowledged",
        };
        let text = format!(
            "name {}\nnew {}\nttl {}\nvisible-since {}\nseen {seen}\n",
            self.name, self.new, self.ttl, self.visible_since
        );
        let aside = path.with_extension("state.new");
        std::fs::write(&aside, text).map_err(local)?;
        std::fs::rename(&aside, &path).map_err(local)?;
        Ok(path)
    }

    /// Reads the state of `name`'s rotation; an error naming the file when there is none or it
    /// cannot be read.
    pub fn load(dir: &Path, name: &str) -> Result<Rotation, RegistryError> {
        let path = Self::path(dir, name)?;
        let bad = |why: String| RegistryError::Rotation(format!("{}: {why}", path.display()));
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::Rotation(format!(
                    "no rotation of {name} in progress ({} does not exist): run \
                     `rotate {name} --new FILE` first",
                    path.display()
                )))
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        if size > MAX_STATE_BYTES {
            return Err(bad(format!("{size} bytes, not a rotation state")));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .ok_or_else(|| bad(format!("no `{key}` line")))
        };
        let number = |key: &str| -> Result<u64, RegistryError> {
            field(key)?
                .parse()
                .map_err(|_| bad(format!("`{key}` is not a number")))
        };
        let rotation = Rotation {
            name: field("name")?.to_string(),
            new: field("new")?
                .parse()
                .map_err(|e| bad(format!("`new`: {e}")))?,
            ttl: u32::try_from(number("ttl")?).map_err(|_| bad("`ttl` too large".into()))?,
            visible_since: number("visible-since")?,
            seen: match field("seen")? {
                "secure" => Seen::Secure,
                "acknowledged" => Seen::Acknowledged,
                other => return Err(bad(format!("`seen {other}` is unknown"))),
            },
        };
        if rotation.name != crate::fqdn_name(name)?.to_string() {
            return Err(bad(format!("it is the rotation of {}", rotation.name)));
        }
        Ok(rotation)
    }

    /// Removes the state file (the rotation is finished).
    pub fn remove(dir: &Path, name: &str) -> Result<(), RegistryError> {
        let path = Self::path(dir, name)?;
        std::fs::remove_file(&path)
            .map_err(|e| RegistryError::Local(format!("{}: {e}", path.display())))
    }

    /// How long until the old records may go (zero when they may go now).
    pub fn wait_left(&self, now: u64) -> Duration {
        let since = now.saturating_sub(self.visible_since);
        Duration::from_secs(u64::from(self.ttl).saturating_sub(since))
    }

    /// Ok when the new record has been visible for one TTL at `now`, else why not.
    pub fn may_finish(&self, now: u64) -> Result<(), RegistryError> {
        let left = self.wait_left(now);
        if left.is_zero() {
            return Ok(());
        }
        let how = match self.seen {
            Seen::Secure => "seen secure",
            Seen::Acknowledged => "acknowledged by the primary",
        };
        Err(RegistryError::Rotation(format!(
            "rotate --finish {} refused: the new record was {how} {} s ago, and caches may hold \
             the old set for its TTL of {} s; try again in {} s",
            self.name,
            now.saturating_sub(self.visible_since),
            self.ttl,
            left.as_secs()
        )))
    }
}

/// Seconds since the epoch now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation() -> Rotation {
        Rotation {
            name: "sensor7._device.iotregistry.test.".into(),
            new: "3 1 1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
                .parse()
                .unwrap(),
            ttl: 300,
            visible_since: 1_000_000,
            seen: Seen::Secure,
        }
    }

    #[test]
    fn finish_is_refused_until_one_ttl_has_passed() {
        let r = rotation();
        let err = r.may_finish(1_000_299).unwrap_err().to_string();
        assert!(err.contains("try again in 1 s"), "{err}");
        assert!(r.may_finish(1_000_300).is_ok());
        assert!(r.may_finish(900_000).is_err(), "a clock set back refuses");
    }

    #[test]
    fn state_round_trips_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let r = rotation();
        let path = r.save(dir.path()).unwrap();
        assert_eq!(
            Rotation::load(dir.path(), "sensor7._device.iotregistry.test").unwrap(),
            r
        );
        std::fs::write(&path, "name sensor7._device.iotregistry.test.\nttl x\n").unwrap();
        let err = Rotation::load(dir.path(), "sensor7._device.iotregistry.test.").unwrap_err();
        assert!(err.to_string().contains("no `new` line"), "{err}");
        Rotation::remove(dir.path(), "sensor7._device.iotregistry.test.").unwrap();
        let err = Rotation::load(dir.path(), "sensor7._device.iotregistry.test.").unwrap_err();
        assert!(err.to_string().contains("no rotation of"), "{err}");
    }
}
