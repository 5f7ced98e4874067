//! The applet's objects and their persistence.
//!
//! The state file is line-oriented text, one object per line, with every
//! byte string in hex; it is rewritten atomically (temp file + rename)
//! after every change so a killed simulator never leaves half a file.
//! Volatile objects are never written.

use crate::hex;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const MAGIC: &str = "iotsafe-sim-state 1";

/// How a command names an object: by id (tags 8x) or label (tags 7x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjRef {
    Id(Vec<u8>),
    Label(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateKey {
    pub id: Vec<u8>,
    pub label: Vec<u8>,
    pub usage: u8,
    /// Private scalar, 32 bytes.
    pub d: Vec<u8>,
    /// Id of the public key object of the pair.
    pub pub_id: Vec<u8>,
    /// Signatures made with this key (kept across restarts).
    pub sign_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub id: Vec<u8>,
    pub label: Vec<u8>,
    pub usage: u8,
    /// Uncompressed point; `None` until a PUT PUBLIC KEY fills it.
    pub q: Option<Vec<u8>>,
    /// Volatile objects live in RAM only and vanish at power off.
    pub volatile: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub id: Vec<u8>,
    pub label: Vec<u8>,
    pub usage: u8,
    pub data: Vec<u8>,
}

trait Named {
    fn id(&self) -> &[u8];
    fn label(&self) -> &[u8];
    fn matches(&self, r: &ObjRef) -> bool {
        match r {
            ObjRef::Id(id) => self.id() == id.as_slice(),
            ObjRef::Label(l) => self.label() == l.as_slice(),
        }
    }
}

macro_rules! named {
    ($($t:ty),*) => {$(
        impl Named for $t {
            fn id(&self) -> &[u8] { &self.id }
            fn label(&self) -> &[u8] { &self.label }
        }
    )*};
}
named!(PrivateKey, PublicKey, File);

#[derive(Debug, Default)]
pub struct Store {
    path: Option<PathBuf>,
    pub privs: Vec<PrivateKey>,
    pub pubs: Vec<PublicKey>,
    pub files: Vec<File>,
}

impl Store {
    /// An in-memory store that is never written.
    pub fn volatile() -> Self {
        Store::default()
    }

    /// Loads `path`; a missing file gives an empty store bound to it.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut store = Store {
            path: Some(path.to_path_buf()),
            ..Store::default()
        };
        match fs::read_to_string(path) {
            Ok(text) => store.parse(&text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(store)
    }

    pub fn is_empty(&self) -> bool {
        self.privs.is_empty() && self.pubs.is_empty() && self.files.is_empty()
    }

    pub fn private(&self, r: &ObjRef) -> Option<&PrivateKey> {
        self.privs.iter().find(|o| o.matches(r))
    }

    pub fn private_mut(&mut self, r: &ObjRef) -> Option<&mut PrivateKey> {
        self.privs.iter_mut().find(|o| o.matches(r))
    }

    pub fn public(&self, r: &ObjRef) -> Option<&PublicKey> {
        self.pubs.iter().find(|o| o.matches(r))
    }

    pub fn public_mut(&mut self, r: &ObjRef) -> Option<&mut PublicKey> {
        self.pubs.iter_mut().find(|o| o.matches(r))
    }

    pub fn file(&self, r: &ObjRef) -> Option<&File> {
        self.files.iter().find(|o| o.matches(r))
    }

    /// Whether a private key pairs with this public key object (such a
    /// public key must not be overwritten from outside).
    pub fn is_paired(&self, pub_id: &[u8]) -> bool {
        self.privs.iter().any(|k| k.pub_id == pub_id)
    }

    /// Drops the volatile objects (power off).
    pub fn drop_volatile(&mut self) {
        self.pubs.retain(|p| !p.volatile);
    }

    /// Writes the persistent objects, atomically. A store without a path
    /// (tests, `--state` not given) keeps everything in memory.
    pub fn save(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // No fsync: the rename already protects against a killed process,
        // and a simulator need not survive power loss; every signature
        // bumps a counter, so the write stays cheap.
        fs::File::create(&tmp)?.write_all(self.serialize().as_bytes())?;
        fs::rename(&tmp, path)
    }

    fn serialize(&self) -> String {
        let mut s = format!("{MAGIC}\n");
        for k in &self.privs {
            s += &format!(
                "priv id={} label={} usage={:02X} pub={} d={} count={}\n",
                hex::encode(&k.id),
                hex::encode(&k.label),
                k.usage,
                hex::encode(&k.pub_id),
                hex::encode(&k.d),
                k.sign_count
            );
        }
        for k in self.pubs.iter().filter(|p| !p.volatile) {
            s += &format!(
                "pub id={} label={} usage={:02X} q={}\n",
                hex::encode(&k.id),
                hex::encode(&k.label),
                k.usage,
                hex::encode(k.q.as_deref().unwrap_or_default())
            );
        }
        for f in &self.files {
            s += &format!(
                "file id={} label={} usage={:02X} data={}\n",
                hex::encode(&f.id),
                hex::encode(&f.label),
                f.usage,
                hex::encode(&f.data)
            );
        }
        s
    }

    fn parse(&mut self, text: &str) -> io::Result<()> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(bad("not an iotsafe-sim state file".into()));
        }
        for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            self.parse_line(line)
                .map_err(|e| bad(format!("state line {}: {e}", n + 2)))?;
        }
        Ok(())
    }

    fn parse_line(&mut self, line: &str) -> Result<(), String> {
        let mut words = line.split_whitespace();
        let kind = words.next().unwrap_or_default();
        let fields = Fields::parse(words)?;
        match kind {
            "priv" => self.privs.push(PrivateKey {
                id: fields.hex("id")?,
                label: fields.hex("label")?,
                usage: fields.byte("usage")?,
                d: fields.hex("d")?,
                pub_id: fields.hex("pub")?,
                sign_count: fields.get("count")?.parse().map_err(|_| "bad count")?,
            }),
            "pub" => {
                let q = fields.hex("q")?;
                self.pubs.push(PublicKey {
                    id: fields.hex("id")?,
                    label: fields.hex("label")?,
                    usage: fields.byte("usage")?,
                    q: (!q.is_empty()).then_some(q),
                    volatile: false,
                })
            }
            "file" => self.files.push(File {
                id: fields.hex("id")?,
                label: fields.hex("label")?,
                usage: fields.byte("usage")?,
                data: fields.hex("data")?,
            }),
            other => return Err(format!("unknown object kind {other:?}")),
        }
        Ok(())
    }
}

/// The `key=value` words of one state line.
struct Fields<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Fields<'a> {
    fn parse(words: impl Iterator<Item = &'a str>) -> Result<Self, String> {
        words
            .map(|w| w.split_once('=').ok_or(format!("bad field {w:?}")))
            .collect::<Result<_, _>>()
            .map(Fields)
    }

    fn get(&self, key: &str) -> Result<&'a str, String> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .ok_or(format!("missing {key}"))
    }

    fn hex(&self, key: &str) -> Result<Vec<u8>, String> {
        hex::decode(self.get(key)?)
    }

    fn byte(&self, key: &str) -> Result<u8, String> {
        match self.hex(key)?.as_slice() {
            [b] => Ok(*b),
            _ => Err(format!("{key} must be one byte")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_reload() {
        let dir = std::env::temp_dir().join(format!("iotsafe-sim-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        let _ = fs::remove_file(&path);
        let mut s = Store::open(&path).unwrap();
        assert!(s.is_empty());
        s.privs.push(PrivateKey {
            id: vec![1],
            label: b"A B".to_vec(),
            usage: 1,
            d: vec![9; 32],
            pub_id: vec![1],
            sign_count: 7,
        });
        s.pubs.push(PublicKey {
            id: vec![1],
            label: b"A B".to_vec(),
            usage: 1,
            q: Some(vec![4; 65]),
            volatile: false,
        });
        s.pubs.push(PublicKey {
            id: vec![9],
            label: vec![],
            usage: 1,
            q: None,
            volatile: true,
        });
        s.files.push(File {
            id: vec![2],
            label: vec![],
            usage: 2,
            data: vec![],
        });
        s.save().unwrap();
        let r = Store::open(&path).unwrap();
        assert_eq!(r.privs, s.privs);
        assert_eq!(r.pubs, s.pubs[..1]);
        assert_eq!(r.files, s.files);
        fs::write(&path, "garbage").unwrap();
        assert!(Store::open(&path).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
