//! What `rotate --finish` knows of a key rollover (RFC 7671 §8.1): the new record was published
//! beside the old ones, and when it became visible. The old records may only go once the new
//! one has been visible for the RRset's TTL: until then a resolver may still hold the old set,
//! without the new record, and would refuse the device's new key.
//!
//! `rotate --new` first claims the state file (created exclusively, so that two rotations of
//! one name at once cannot both publish), and writes the state as soon as the primary
//! acknowledges the new record, before any wait: a wait that times out or is interrupted
//! leaves a rotation that `--finish` can complete. The state holds the old records seen then:
//! `--finish` removes exactly those, and leaves records that appeared since (another key, a CA
//! pin) alone.
//!
//! The clock for `--finish` starts at the acknowledgement. A resolver that fetches the set
//! from the primary after that moment gets it with the new record; one that fetched before
//! holds the old set for at most its TTL. So one TTL after the acknowledgement no cache fed by
//! the primary can still hold a set without the new record. The wait's sighting is no better
//! clock: it is when one resolver's cache, not the zone, changed (see `wait`), and it is
//! missing exactly when the wait failed. Secondaries that take the change later by zone
//! transfer (seconds, NOTIFY then IXFR) add their delay; a zone served by slow secondaries
//! should wait that much longer than the printed time.
//!
//! The state directory is created private (0700); files are written under a unique name
//! created exclusively and without following symbolic links, mode 0600, then renamed into
//! place, so a link planted in a shared directory is never written through.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dane::name::DeviceName;
use dane::tlsa::Tlsa;

use crate::RegistryError;

/// Largest state file read (a few lines, one per old record).
const MAX_STATE_BYTES: u64 = 16 * 1024;

/// How the new record was known to be there when the state was last written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A fresh validated look-up saw the new record secure.
    Secure,
    /// The primary acknowledged the update (not waited for, or the wait did not see it).
    Acknowledged,
}

/// A rollover in progress at one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// The device's name, absolute, as parsed.
    pub name: String,
    /// The record published beside the old ones.
    pub new: Tlsa,
    /// The records at the name when the new one was published: what `--finish` removes.
    pub old: Vec<Tlsa>,
    /// How long caches may hold the old set: the larger of the old and the new TTL.
    pub ttl: u32,
    /// Seconds since the epoch when the primary acknowledged the new record.
    pub visible_since: u64,
    pub seen: Seen,
}

/// The claim on a name's state file taken before `rotate --new` sends anything; released
/// (the file removed) when dropped unless the state was written.
pub struct Claim {
    path: PathBuf,
    kept: bool,
}

impl Claim {
    /// Writes `rotation` over the claimed file; from then on the file stays.
    pub fn write(&mut self, rotation: &Rotation) -> Result<(), RegistryError> {
        write_private(&self.path, &rotation.to_text())?;
        self.kept = true;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Rotation {
    /// The state file of `name`'s rotation in `dir` (the parsed name needs no escaping: letters,
    /// digits, `-`, `_` and dots only).
    pub fn path(dir: &Path, name: &DeviceName) -> PathBuf {
        dir.join(format!("rotate-{name}.state"))
    }

    /// Takes the state file of `name` for a new rotation: refused, naming it, when a rotation
    /// is in progress (or a file is in the way).
    pub fn claim(dir: &Path, name: &DeviceName) -> Result<Claim, RegistryError> {
        let path = Self::path(dir, name);
        let local = |e: std::io::Error| {
            RegistryError::Local(format!("rotation state {}: {e}", path.display()))
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(local)?;
        check_private(dir, 0o022)?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_o_nofollow())
            .open(&path)
        {
            Ok(_) => Ok(Claim { path, kept: false }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let what = match Self::load(dir, name) {
                    Ok(running) => format!("to {}", running.new),
                    Err(_) => format!(
                        "(its state is being written, or was left unreadable by a `rotate \
                         --new` that was interrupted: if none is running, check `iotsafe \
                         registry show {name}.` and remove {})",
                        path.display()
                    ),
                };
                Err(RegistryError::Rotation(format!(
                    "a rotation of {name}. {what} is in progress (state {}): finish it first \
                     (`rotate {name}. --finish`); nothing was sent",
                    path.display()
                )))
            }
            Err(e) => Err(local(e)),
        }
    }

    /// Writes the state of a rotation in progress (replacing the previous one whole).
    pub fn save(&self, dir: &Path, name: &DeviceName) -> Result<PathBuf, RegistryError> {
        let path = Self::path(dir, name);
        write_private(&path, &self.to_text())?;
        Ok(path)
    }

    fn to_text(&self) -> String {
        let seen = match self.seen {
            Seen::Secure => "secure",
            Seen::Acknowledged => "acknowledged",
        };
        let mut text = format!(
            "name {}\nnew {}\nttl {}\nvisible-since {}\nseen {seen}\n",
            self.name, self.new, self.ttl, self.visible_since
        );
        for old in &self.old {
            text += &format!("old {old}\n");
        }
        text
    }

    /// Reads the state of `name`'s rotation; an error naming the file when there is none or it
    /// cannot be read.
    pub fn load(dir: &Path, name: &DeviceName) -> Result<Rotation, RegistryError> {
        let path = Self::path(dir, name);
        let bad = |why: String| {
            RegistryError::Rotation(format!(
                "{}: {why} (a `rotate --new` interrupted before it saved its state leaves such \
                 a file: check `iotsafe registry show {name}.`, then remove it)",
                path.display()
            ))
        };
        if path.exists() {
            check_private(dir, 0o022)?;
            check_private(&path, 0o077)?;
        }
        let text = match read_bounded(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::Rotation(format!(
                    "no rotation of {name}. in progress ({} does not exist): run \
                     `rotate {name}. --new FILE` first",
                    path.display()
                )))
            }
            Err(e) => return Err(bad(e.to_string())),
        };
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
        let old = text
            .lines()
            .filter_map(|l| l.strip_prefix("old "))
            .map(|r| r.parse().map_err(|e| bad(format!("`old`: {e}"))))
            .collect::<Result<Vec<Tlsa>, _>>()?;
        let rotation = Rotation {
            name: field("name")?.to_string(),
            new: field("new")?
                .parse()
                .map_err(|e| bad(format!("`new`: {e}")))?,
            old,
            ttl: u32::try_from(number("ttl")?).map_err(|_| bad("`ttl` too large".into()))?,
            visible_since: number("visible-since")?,
            seen: match field("seen")? {
                "secure" => Seen::Secure,
                "acknowledged" => Seen::Acknowledged,
                other => return Err(bad(format!("`seen {other}` is unknown"))),
            },
        };
        if rotation.name != crate::fqdn(name) {
            return Err(bad(format!("it is the rotation of {}", rotation.name)));
        }
        Ok(rotation)
    }

    /// Removes the state file (the rotation is finished).
    pub fn remove(dir: &Path, name: &DeviceName) -> Result<(), RegistryError> {
        let path = Self::path(dir, name);
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
        if left.is_zero() && now >= self.visible_since {
            return Ok(());
        }
        let how = match self.seen {
            Seen::Secure => "acknowledged by the primary (and seen secure)",
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

/// `O_NOFOLLOW`: the last component of a path opened is never a symbolic link.
/// Refuses a state directory or file that another user owns or may write (`forbidden`: the
/// permission bits that must be clear): its contents decide when old records may go.
fn check_private(path: &Path, forbidden: u32) -> Result<(), RegistryError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| RegistryError::Local(format!("rotation state {}: {e}", path.display())))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me || meta.mode() & forbidden != 0 {
        return Err(RegistryError::Local(format!(
            "rotation state {}: owned by uid {} with mode {:o}; it must be this user's ({me}) \
             and not writable{} by others (chmod {})",
            path.display(),
            meta.uid(),
            meta.mode() & 0o7777,
            if forbidden == 0o077 {
                " or readable"
            } else {
                ""
            },
            if forbidden == 0o077 { "600" } else { "go-w" }
        )));
    }
    Ok(())
}

fn libc_o_nofollow() -> i32 {
    libc::O_NOFOLLOW
}

/// Writes `text` to `path` whole: into a new file of a unique name beside it (created
/// exclusively, mode 0600, never through a link), then renamed over `path`.
fn write_private(path: &Path, text: &str) -> Result<(), RegistryError> {
    let local =
        |e: std::io::Error| RegistryError::Local(format!("rotation state {}: {e}", path.display()));
    let mut unique = [0u8; 8];
    openssl::rand::rand_bytes(&mut unique)
        .map_err(|e| RegistryError::Local(format!("no random name for the state file: {e}")))?;
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let aside = path.with_file_name(format!(
        ".{file_name}.{}.{}",
        std::process::id(),
        u64::from_ne_bytes(unique)
    ));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(&aside)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
    if let Err(e) = written.and_then(|()| std::fs::rename(&aside, path)) {
        let _ = std::fs::remove_file(&aside);
        return Err(local(e));
    }
    Ok(())
}

/// The text of the state file: a regular file of at most [`MAX_STATE_BYTES`], not a link.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    let bytes = crate::read_bounded(path, MAX_STATE_BYTES, true)?;
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("not text"))
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
    use crate::tests::tlsa;

    fn name() -> DeviceName {
        DeviceName::parse("sensor7._device.iotregistry.test").unwrap()
    }

    fn rotation() -> Rotation {
        Rotation {
            name: "sensor7._device.iotregistry.test.".into(),
            new: tlsa(1),
            old: vec![tlsa(2), tlsa(3)],
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
        let zero = Rotation { ttl: 0, ..r };
        assert!(
            zero.may_finish(999_999).is_err(),
            "before the acknowledgement"
        );
    }

    #[test]
    fn state_round_trips_with_the_old_records_and_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let r = rotation();
        let path = r.save(dir.path(), &name()).unwrap();
        assert_eq!(Rotation::load(dir.path(), &name()).unwrap(), r);
        std::fs::write(&path, "name sensor7._device.iotregistry.test.\nttl x\n").unwrap();
        let err = Rotation::load(dir.path(), &name()).unwrap_err();
        assert!(err.to_string().contains("no `new` line"), "{err}");
        Rotation::remove(dir.path(), &name()).unwrap();
        let err = Rotation::load(dir.path(), &name()).unwrap_err();
        assert!(err.to_string().contains("no rotation of"), "{err}");
    }

    /// The name in the file is the parsed one, whatever case the operator typed: `--finish`
    /// with another spelling of the same name finds and accepts it.
    #[test]
    fn state_is_written_and_found_under_the_parsed_name() {
        let dir = tempfile::tempdir().unwrap();
        let typed = DeviceName::parse("Sensor7._DEVICE.IoTRegistry.test.").unwrap();
        let mut claim = Rotation::claim(dir.path(), &typed).unwrap();
        let r = Rotation {
            name: crate::fqdn(&typed),
            ..rotation()
        };
        claim.write(&r).unwrap();
        drop(claim);
        assert_eq!(Rotation::load(dir.path(), &name()).unwrap(), r);
    }

    /// One claim per name: a second is refused naming the rotation in progress; a claim that
    /// was never written is released when dropped (the update was refused).
    #[test]
    fn a_name_is_claimed_once_and_an_unused_claim_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let claim = Rotation::claim(&state, &name()).unwrap();
        let err = Rotation::claim(&state, &name()).err().unwrap().to_string();
        assert!(err.contains("is in progress"), "{err}");
        drop(claim);
        assert!(!Rotation::path(&state, &name()).exists());

        let mut claim = Rotation::claim(&state, &name()).unwrap();
        claim.write(&rotation()).unwrap();
        drop(claim);
        let err = Rotation::claim(&state, &name()).err().unwrap().to_string();
        assert!(
            err.contains("is in progress") && err.contains(&tlsa(1).to_string()),
            "{err}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&Rotation::path(&state, &name())), 0o600);
    }

    /// A symbolic link planted where the state goes is neither written through nor followed.
    #[test]
    fn a_planted_link_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, Rotation::path(dir.path(), &name())).unwrap();
        assert!(Rotation::claim(dir.path(), &name()).is_err());
        assert!(Rotation::load(dir.path(), &name()).is_err());
        rotation().save(dir.path(), &name()).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(
            Rotation::load(dir.path(), &name()).unwrap(),
            rotation(),
            "the link itself was replaced"
        );
    }

    /// A state path that is a device is refused at once, not read without end.
    #[test]
    fn a_state_that_is_not_a_regular_file_is_refused() {
        let err = read_bounded(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    /// The state decides when old records may go: a directory others may write, or a state
    /// file others may read or write, is refused (a planted `visible-since 0` would let
    /// `--finish` run at once).
    #[test]
    fn a_state_directory_or_file_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = Rotation::claim(dir.path(), &name())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not writable"), "{err}");

        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = rotation().save(dir.path(), &name()).unwrap();
        assert!(Rotation::load(dir.path(), &name()).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Rotation::load(dir.path(), &name()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    /// An empty state file (a `--new` interrupted before it saved) is named with what to do.
    #[test]
    fn an_empty_state_file_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = Rotation::path(dir.path(), &name());
        std::fs::File::create(&path).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let err = Rotation::load(dir.path(), &name()).unwrap_err().to_string();
        assert!(err.contains("then remove it"), "{err}");
        let err = Rotation::claim(dir.path(), &name())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("and remove"), "{err}");
    }
}
