//! What the applet holds: keys and files, how they are addressed, and their attributes.

use std::fmt;

use super::error::{Error, Result};
use super::tlv;

/// The kinds of object the applet stores; each has its own tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    PrivateKey,
    PublicKey,
    File,
    SecretKey,
}

impl ObjectKind {
    /// The block tag of this kind in the object list (GET DATA 01), also the P1 of GET DATA
    /// for one object.
    pub fn list_tag(self) -> u8 {
        match self {
            ObjectKind::PrivateKey => 0xC1,
            ObjectKind::PublicKey => 0xC2,
            ObjectKind::File => 0xC3,
            ObjectKind::SecretKey => 0xC4,
        }
    }

    pub fn id_tag(self) -> u16 {
        match self {
            ObjectKind::PrivateKey => 0x84,
            ObjectKind::PublicKey => 0x85,
            ObjectKind::File => 0x83,
            ObjectKind::SecretKey => 0x86,
        }
    }

    pub fn label_tag(self) -> u16 {
        match self {
            ObjectKind::PrivateKey => 0x74,
            ObjectKind::PublicKey => 0x75,
            ObjectKind::File => 0x73,
            ObjectKind::SecretKey => 0x76,
        }
    }

    fn from_list_tag(tag: u16) -> Option<Self> {
        [
            ObjectKind::PrivateKey,
            ObjectKind::PublicKey,
            ObjectKind::File,
            ObjectKind::SecretKey,
        ]
        .into_iter()
        .find(|k| u16::from(k.list_tag()) == tag)
    }

    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::PrivateKey => "private key",
            ObjectKind::PublicKey => "public key",
            ObjectKind::File => "file",
            ObjectKind::SecretKey => "secret key",
        }
    }
}

/// How a command names an object: by its binary id or by its label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ObjectRef {
    Id(Vec<u8>),
    Label(String),
}

impl ObjectRef {
    /// Parses an id given in hex (`01`, `3031`), as users and configuration files write it.
    pub fn id_from_hex(hex: &str) -> Result<Self> {
        let id = iotsafe_hex::decode(hex)
            .map_err(|e| Error::Invalid(format!("object id '{hex}': {e}")))?;
        if id.is_empty() || id.len() > 20 {
            return Err(Error::Invalid(format!(
                "object id '{hex}' must be 1 to 20 bytes"
            )));
        }
        Ok(ObjectRef::Id(id))
    }

    /// The TLV that names this object in a command for an object of `kind`.
    pub fn encode(&self, kind: ObjectKind) -> Vec<u8> {
        match self {
            ObjectRef::Id(id) => tlv::encode(kind.id_tag(), id),
            ObjectRef::Label(label) => tlv::encode(kind.label_tag(), label.as_bytes()),
        }
    }

    /// "private key id 01", "file label \"cert\"": the object as messages name it.
    pub fn describe(&self, kind: ObjectKind) -> String {
        format!("{} {self}", kind.noun())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectRef::Id(id) => write!(f, "id {}", iotsafe_hex::encode(id)),
            ObjectRef::Label(label) => write!(f, "label {label:?}"),
        }
    }
}

/// Attributes of one object, as GET DATA returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub kind: ObjectKind,
    pub id: Vec<u8>,
    pub label: Option<String>,
    /// Tag 4A: 01 active.
    pub state: Option<u8>,
    /// Tag 4B: 13/14 P-256, 23/24 brainpoolP256r1, 03 RSA-2048.
    pub key_type: Option<u8>,
    /// Keys (tag 4E): 01 general, 02 TLS 1.2 CertificateVerify, 03 TLS 1.3 CertificateVerify.
    /// Files (tag 21): 02 X.509 certificate.
    pub usage: Option<u8>,
    /// Tag 61: bit field 01 sign, 02 keygen, 04 key agreement, 08 derivation.
    pub functions: Option<u8>,
    /// File size (tag 20), for files.
    pub size: Option<usize>,
}

/// The EC curves of the key types (tag 4B) this host works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Curve {
    /// The curve the IoT SAFE specification requires every applet to support.
    #[default]
    P256,
    BrainpoolP256r1,
}

impl Curve {
    /// The curve of an applet key type (tag 4B), when it is an EC curve we support.
    pub fn from_key_type(key_type: u8) -> Option<Self> {
        match key_type {
            0x13 | 0x14 => Some(Curve::P256),
            0x23 | 0x24 => Some(Curve::BrainpoolP256r1),
            _ => None,
        }
    }

    /// The curve's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::BrainpoolP256r1 => "brainpoolP256r1",
        }
    }

    /// Bytes of one coordinate, and of `r` or `s` in a raw signature.
    pub fn field_len(self) -> usize {
        32
    }
}

/// A public key as the card holds it: its curve (from the key's attributes) and its point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub curve: Curve,
    /// Uncompressed EC point `04 X Y`.
    pub point: Vec<u8>,
}

pub const FUNCTION_SIGN: u8 = 0x01;
pub const FUNCTION_KEY_AGREEMENT: u8 = 0x04;

impl ObjectInfo {
    /// Parses the attribute TLVs of one object of `kind`.
    pub fn parse(what: &str, kind: ObjectKind, attributes: &[u8]) -> Result<Self> {
        let mut info = ObjectInfo {
            kind,
            id: Vec::new(),
            label: None,
            state: None,
            key_type: None,
            usage: None,
            functions: None,
            size: None,
        };
        for element in tlv::parse_all(what, attributes)? {
            let first = element.value.first().copied();
            match element.tag {
                t if t == kind.id_tag() => info.id = element.value.to_vec(),
                t if t == kind.label_tag() => {
                    info.label = Some(String::from_utf8_lossy(element.value).into_owned())
                }
                0x4A => info.state = first,
                0x4B => info.key_type = first,
                // Keys carry their usage in 4E, files in 21.
                0x4E | 0x21 => info.usage = first,
                0x61 => info.functions = first,
                0x20 => info.size = Some(big_endian(element.value)),
                _ => {}
            }
        }
        if info.id.is_empty() && info.label.is_none() {
            return Err(Error::malformed(
                what,
                format!("a {} without id or label", kind.noun()),
            ));
        }
        Ok(info)
    }

    /// The reference that names this object most precisely.
    pub fn reference(&self) -> ObjectRef {
        match (&self.id, &self.label) {
            (id, _) if !id.is_empty() => ObjectRef::Id(id.clone()),
            (_, Some(label)) => ObjectRef::Label(label.clone()),
            _ => ObjectRef::Id(Vec::new()),
        }
    }

    pub fn can(&self, function: u8) -> bool {
        self.functions.is_none_or(|f| f & function != 0)
    }

    pub fn key_type_name(&self) -> Option<&'static str> {
        Some(match self.key_type? {
            0x13 => "P-256",
            0x14 => "P-256 (volatile)",
            0x23 => "brainpoolP256r1",
            0x24 => "brainpoolP256r1 (volatile)",
            0x03 => "RSA-2048",
            _ => "unknown",
        })
    }
}

impl fmt::Display for ObjectInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<12} id {}",
            self.kind.noun(),
            iotsafe_hex::encode(&self.id)
        )?;
        if let Some(label) = &self.label {
            write!(f, "  label {label:?}")?;
        }
        if let Some(key_type) = self.key_type_name() {
            write!(f, "  type {key_type}")?;
        }
        if let Some(size) = self.size {
            write!(f, "  size {size}")?;
        }
        if let Some(functions) = self.functions {
            write!(f, "  functions {}", function_names(functions))?;
        }
        Ok(())
    }
}

fn function_names(bits: u8) -> String {
    let names: Vec<&str> = [
        (0x01, "sign"),
        (0x02, "keygen"),
        (0x04, "key-agreement"),
        (0x08, "derivation"),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, name)| name)
    .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

/// A big-endian count from the card. One too large for a `usize` reads as `usize::MAX`:
/// the users of each count bound it (e.g. [`super::applet::MAX_FILE_SIZE`]) and refuse it.
fn big_endian(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .try_fold(0usize, |acc, b| {
            acc.checked_mul(256).map(|acc| acc | usize::from(*b))
        })
        .unwrap_or(usize::MAX)
}

/// Parses the object list (GET DATA P1=01): blocks C1..C4, each holding one object's attributes.
pub fn parse_object_list(what: &str, data: &[u8]) -> Result<Vec<ObjectInfo>> {
    tlv::parse_all(what, data)?
        .into_iter()
        .filter_map(|block| ObjectKind::from_list_tag(block.tag).map(|kind| (kind, block.value)))
        .map(|(kind, attributes)| ObjectInfo::parse(what, kind, attributes))
        .collect()
}

/// The applet's description of itself (GET DATA P1=00).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppInfo {
    pub version: Vec<u8>,
    pub applet_id: Vec<u8>,
    /// Tags B1..B4: maximum number of files, private, public and secret keys.
    pub max_objects: [Option<usize>; 4],
    pub max_sessions: Option<usize>,
}

impl AppInfo {
    pub fn parse(what: &str, data: &[u8]) -> Result<Self> {
        let mut info = AppInfo::default();
        for element in tlv::parse_all(what, data)? {
            match element.tag {
                0x10 => info.version = element.value.to_vec(),
                0x11 => info.applet_id = element.value.to_vec(),
                t @ 0xB1..=0xB4 => {
                    info.max_objects[usize::from(t - 0xB1)] = Some(big_endian(element.value))
                }
                0xB7 => info.max_sessions = Some(big_endian(element.value)),
                _ => {}
            }
        }
        Ok(info)
    }
}

impl fmt::Display for AppInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use iotsafe_hex::encode;
        writeln!(f, "version:      {}", encode(&self.version))?;
        writeln!(f, "applet id:    {}", encode(&self.applet_id))?;
        let names = ["files", "private keys", "public keys", "secret keys"];
        for (name, max) in names.iter().zip(self.max_objects) {
            if let Some(max) = max {
                writeln!(f, "max {name}: {max}")?;
            }
        }
        if let Some(sessions) = self.max_sessions {
            writeln!(f, "max sessions: {sessions}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_object_list_of_keys_and_a_file() {
        let list = [
            &[
                0xC1, 0x0E, 0x74, 0x03, b'D', b'E', b'V', 0x84, 0x01, 0x01, 0x4B, 0x01, 0x13, 0x61,
                0x01, 0x01,
            ][..],
            &[
                0xC3, 0x0E, 0x73, 0x02, b'C', b'1', 0x83, 0x01, 0x02, 0x20, 0x02, 0x01, 0xF4, 0x21,
                0x01, 0x02,
            ][..],
        ]
        .concat();
        let objects = parse_object_list("GET DATA", &list).unwrap();
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[0].kind, ObjectKind::PrivateKey);
        assert_eq!(objects[0].label.as_deref(), Some("DEV"));
        assert_eq!(objects[0].id, [1]);
        assert_eq!(objects[0].key_type_name(), Some("P-256"));
        assert!(objects[0].can(FUNCTION_SIGN));
        assert!(!objects[0].can(FUNCTION_KEY_AGREEMENT));
        assert_eq!(objects[1].kind, ObjectKind::File);
        assert_eq!(objects[1].size, Some(500));
        assert_eq!(objects[1].usage, Some(0x02), "a certificate file");
    }

    #[test]
    fn references_encode_with_the_kinds_tags() {
        let id = ObjectRef::id_from_hex("303031").unwrap();
        assert_eq!(
            id.encode(ObjectKind::PrivateKey),
            [0x84, 0x03, 0x30, 0x30, 0x31]
        );
        assert_eq!(
            id.encode(ObjectKind::PublicKey),
            [0x85, 0x03, 0x30, 0x30, 0x31]
        );
        let label = ObjectRef::Label("C".into());
        assert_eq!(label.encode(ObjectKind::File), [0x73, 0x01, b'C']);
        assert_eq!(id.describe(ObjectKind::PrivateKey), "private key id 303031");
    }

    #[test]
    fn bad_ids_are_refused() {
        assert!(ObjectRef::id_from_hex("0g").is_err());
        assert!(ObjectRef::id_from_hex("").is_err());
    }

    #[test]
    fn object_without_name_is_malformed() {
        assert!(ObjectInfo::parse("x", ObjectKind::File, &[0x20, 0x01, 0x10]).is_err());
    }
}
