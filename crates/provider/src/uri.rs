//! `iotsafe:` URIs: which card, applet and objects, in the style of PKCS#11 URIs
//! (RFC 7512): `iotsafe:key-id=01;cert-id=02` or
//! `iotsafe:reader=Virtual%20PCD;key-label=DEVICE;type=private`.
//!
//! The attributes are those of the card target ([`iotsafe_card::target`]), plus `type`
//! (`private`, `public`, `cert`) to pick one object from the store. Values are percent-encoded.

use std::fmt;

use super::config::{Settings, DEBUG_LOG_ATTRIBUTE};
use iotsafe_card::Target;

pub const SCHEME: &str = "iotsafe:";

/// Which object of the card a URI asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Private,
    Public,
    Cert,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUri {
    /// The card, applet and objects the URI names.
    pub target: Target,
    pub object: Option<ObjectType>,
}

impl KeyUri {
    pub fn parse(text: &str) -> Result<KeyUri, String> {
        let rest = text
            .get(..SCHEME.len())
            .filter(|s| s.eq_ignore_ascii_case(SCHEME))
            .map(|_| &text[SCHEME.len()..])
            .ok_or_else(|| format!("'{text}' is not an iotsafe: URI"))?;
        let mut uri = KeyUri::default();
        for attribute in rest.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = attribute
                .split_once('=')
                .ok_or_else(|| format!("'{text}': attribute '{attribute}' has no value"))?;
            let value = percent_decode(value).map_err(|e| format!("'{text}': {e}"))?;
            if name == "type" {
                uri.object = Some(match value.as_str() {
                    "private" => ObjectType::Private,
                    "public" => ObjectType::Public,
                    "cert" => ObjectType::Cert,
                    _ => {
                        return Err(format!(
                            "'{text}': type must be private, public or cert, not '{value}'"
                        ))
                    }
                });
            } else if name == DEBUG_LOG_ATTRIBUTE.0 {
                return Err(format!("'{text}': debug-log is not a URI attribute"));
            } else {
                uri.target
                    .set(name, &value)
                    .map_err(|e| format!("'{text}': {e}"))?;
            }
        }
        Ok(uri)
    }

    /// The card target this URI (or key reference) reaches: its attributes over the configured
    /// ones. It cannot choose a modem of its own: key references are files any user may hand
    /// to a program, and the provider opens a modem's device, changes its line settings and
    /// writes AT commands to it. A modem named here must be the configured one (openssl.cnf
    /// `modem` or `IOTSAFE_MODEM`), as in a key reference written for that modem.
    pub fn settings_over(&self, configured: &Settings) -> Result<Target, String> {
        let configured = &configured.target;
        if let Some(modem) = &self.target.modem {
            if configured.modem.as_ref() != Some(modem) {
                let configured = match &configured.modem {
                    Some(other) => format!("the configured modem is {other}"),
                    None => "no modem is configured".to_string(),
                };
                return Err(format!(
                    "'{self}' names modem {modem}, but {configured}: a key reference or URI \
                     may only name the modem of openssl.cnf (modem) or IOTSAFE_MODEM"
                ));
            }
        }
        Ok(self.target.overlay(configured))
    }
}

impl fmt::Display for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .target
            .attributes()
            .into_iter()
            .map(|(name, value)| format!("{name}={}", percent_encode(&value)))
            .collect();
        if let Some(object) = self.object {
            parts.push(
                match object {
                    ObjectType::Private => "type=private",
                    ObjectType::Public => "type=public",
                    ObjectType::Cert => "type=cert",
                }
                .into(),
            );
        }
        write!(f, "{SCHEME}{}", parts.join(";"))
    }
}

fn percent_encode(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:/@!$'()*+,".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hexits = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in '{value}'"))?;
            out.push(hexits);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{value}' is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iotsafe_card::ObjectRef;

    #[test]
    fn round_trip() {
        let uri =
            KeyUri::parse("iotsafe:reader=Virtual%20PCD;key-label=DEVICE;cert-id=02;type=private")
                .unwrap();
        assert_eq!(uri.target.reader.as_deref(), Some("Virtual PCD"));
        assert_eq!(uri.target.key, Some(ObjectRef::Label("DEVICE".into())));
        assert_eq!(uri.target.cert, Some(ObjectRef::Id(vec![2])));
        assert_eq!(uri.object, Some(ObjectType::Private));
        assert_eq!(KeyUri::parse(&uri.to_string()).unwrap(), uri);
    }

    #[test]
    fn a_uri_names_only_the_configured_modem() {
        let uri = KeyUri::parse("iotsafe:modem=/dev/ttyS0;key-id=01").unwrap();
        let e = uri.settings_over(&Settings::default()).unwrap_err();
        assert!(
            e.contains("names modem /dev/ttyS0, but no modem is configured"),
            "{e}"
        );
        let mut configured = Settings::default();
        configured.set("modem", "/dev/ttyUSB2").unwrap();
        let e = uri.settings_over(&configured).unwrap_err();
        assert!(e.contains("the configured modem is /dev/ttyUSB2"), "{e}");
        configured.set("modem", "/dev/ttyS0").unwrap();
        let settings = uri.settings_over(&configured).unwrap();
        assert_eq!(settings.modem.as_deref(), Some("/dev/ttyS0"));
        // Without a modem of its own, a URI uses the configured one.
        let plain = KeyUri::parse("iotsafe:key-id=01").unwrap();
        assert_eq!(
            plain.settings_over(&configured).unwrap().modem.as_deref(),
            Some("/dev/ttyS0")
        );
    }

    #[test]
    fn every_attribute_survives_printing() {
        let text = "iotsafe:reader=Virtual%20PCD;modem=/dev/ttyUSB2;aid=A0000005591010FFFFFFFF8900000100;\
                    cla-style=80;channel=basic;key-id=01;pub-id=03;cert-id=02;dh-peer-id=11;type=private";
        let uri = KeyUri::parse(text).unwrap();
        assert_eq!(uri.target.dh_peer, Some(ObjectRef::Id(vec![0x11])));
        assert_eq!(uri.to_string(), text);
        assert_eq!(KeyUri::parse(&uri.to_string()).unwrap(), uri);
    }

    #[test]
    fn wrong_uris_are_refused_with_a_reason() {
        for (bad, reason) in [
            ("file:/etc/passwd", "not an iotsafe: URI"),
            ("iotsafe:key-id=zz", "key-id"),
            ("iotsafe:colour=blue", "unknown attribute"),
            ("iotsafe:type=secret", "type must be"),
            ("iotsafe:key-id", "has no value"),
            ("iotsafe:reader=%4", "percent"),
        ] {
            let e = KeyUri::parse(bad).unwrap_err();
            assert!(e.contains(reason), "{bad}: {e}");
        }
    }
}

/// The PEM label of a key-reference file.
pub const PEM_LABEL: &str = "IOTSAFE KEY REFERENCE";
/// The structure name decoders give a key reference's DER.
pub const STRUCTURE: &str = "iotsafe-keyref";
const DESCRIPTION: &str = "IoT SAFE applet key";

/// A key reference's DER: `SEQUENCE { UTF8String description, UTF8String uri }`.
pub fn keyref_der(uri: &str) -> Vec<u8> {
    let mut body = der_string(DESCRIPTION);
    body.extend(der_string(uri));
    der_tlv(0x30, &body)
}

/// The URI inside a key reference's DER; `None` when the DER is something else.
pub fn uri_of_keyref(der: &[u8]) -> Option<String> {
    let (tag, body, rest) = der_parse(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (tag, description, rest) = der_parse(body)?;
    if tag != 0x0C || description != DESCRIPTION.as_bytes() {
        return None;
    }
    let (tag, uri, rest) = der_parse(rest)?;
    if tag != 0x0C || !rest.is_empty() {
        return None;
    }
    String::from_utf8(uri.to_vec()).ok()
}

/// The key-reference PEM block for `uri`.
pub fn keyref_pem(uri: &str) -> String {
    let b64 = openssl::base64::encode_block(&keyref_der(uri));
    let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    pem
}

/// One PEM object as read from a file, before its body is decoded.
#[derive(Debug, PartialEq, Eq)]
pub struct PemBlock {
    pub label: String,
    /// The base64 lines between BEGIN and END.
    pub body: String,
    /// Whether the END line was there (a truncated file has none).
    pub complete: bool,
}

/// Reads the next PEM object from `next_line` (lines as the input gives them): the lines
/// before its BEGIN line are skipped, and reading stops after its END line, as OpenSSL's PEM
/// reader consumes them, or after `limit` bytes. `None` when no BEGIN line follows.
pub fn next_pem_block(
    mut next_line: impl FnMut() -> Option<String>,
    limit: usize,
) -> Option<PemBlock> {
    let mut read = 0;
    let mut take = |read: &mut usize| {
        let line = next_line().filter(|_| *read < limit)?;
        *read += line.len();
        Some(line)
    };
    let label = loop {
        let line = take(&mut read)?;
        if let Some(label) = pem_boundary(&line, "BEGIN") {
            break label;
        }
    };
    let mut body = String::new();
    while let Some(line) = take(&mut read) {
        if let Some(end) = pem_boundary(&line, "END") {
            let complete = end == label;
            return Some(PemBlock {
                label,
                body,
                complete,
            });
        }
        body.push_str(line.trim());
    }
    Some(PemBlock {
        label,
        body,
        complete: false,
    })
}

/// The label of a `-----BEGIN label-----` (or END) line.
fn pem_boundary(line: &str, which: &str) -> Option<String> {
    let label = line
        .trim()
        .strip_prefix("-----")?
        .strip_prefix(which)?
        .strip_prefix(' ')?
        .strip_suffix("-----")?;
    Some(label.to_string())
}

/// The URI of a key-reference PEM block, or why the block is not a usable key reference.
pub fn uri_of_keyref_pem(block: &PemBlock) -> Result<String, String> {
    let damaged = "write it anew with `iotsafe keyref`";
    if !block.complete {
        return Err(format!(
            "the key-reference file is truncated: no -----END {PEM_LABEL}----- line ({damaged})"
        ));
    }
    let der = openssl::base64::decode_block(&block.body).map_err(|_| {
        format!("the body of the key-reference file is not valid base64 ({damaged})")
    })?;
    uri_of_keyref(&der).ok_or_else(|| {
        format!(
            "the {PEM_LABEL} block does not hold an IoT SAFE key reference: the file is \
             damaged ({damaged})"
        )
    })
}

fn der_string(s: &str) -> Vec<u8> {
    der_tlv(0x0C, s.as_bytes())
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(value);
    out
}

fn der_parse(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        l if l < 0x80 => (usize::from(l), rest),
        0x81 => (usize::from(*rest.first()?), &rest[1..]),
        0x82 => (
            usize::from(*rest.first()?) << 8 | usize::from(*rest.get(1)?),
            rest.get(2..)?,
        ),
        _ => return None,
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod keyref_tests {
    use super::*;

    #[test]
    fn keyref_round_trip_and_refusals() {
        let uri = "iotsafe:key-id=01;cert-id=02";
        assert_eq!(uri_of_keyref(&keyref_der(uri)).as_deref(), Some(uri));
        let long = format!("iotsafe:key-label={}", "x".repeat(300));
        assert_eq!(uri_of_keyref(&keyref_der(&long)), Some(long));
        // A SubjectPublicKeyInfo or a truncated reference is not ours.
        assert_eq!(uri_of_keyref(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
        let der = keyref_der(uri);
        assert_eq!(uri_of_keyref(&der[..der.len() - 1]), None);
        assert!(keyref_pem(uri).starts_with("-----BEGIN IOTSAFE KEY REFERENCE-----\n"));
    }

    fn block_of(text: &str) -> Option<PemBlock> {
        let mut lines = text.split_inclusive('\n').map(str::to_string);
        next_pem_block(|| lines.next(), 64 * 1024)
    }

    #[test]
    fn a_pem_block_is_read_to_its_end_line() {
        let pem = keyref_pem("iotsafe:key-id=01");
        let text = format!("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n{pem}");
        let mut lines = text.split_inclusive('\n').map(str::to_string);
        let first = next_pem_block(|| lines.next(), 1 << 16).unwrap();
        assert_eq!(
            (first.label.as_str(), first.complete),
            ("CERTIFICATE", true)
        );
        let second = next_pem_block(|| lines.next(), 1 << 16).unwrap();
        assert_eq!(second.label, PEM_LABEL);
        assert_eq!(uri_of_keyref_pem(&second).unwrap(), "iotsafe:key-id=01");
        assert_eq!(next_pem_block(|| lines.next(), 1 << 16), None);
    }

    #[test]
    fn a_damaged_key_reference_says_how() {
        let pem = keyref_pem("iotsafe:key-id=01");
        let truncated: String = pem.lines().take(2).map(|l| format!("{l}\n")).collect();
        let not_base64 = pem.replacen("MC", "M!", 1);
        let body_start = pem.find('\n').unwrap() + 1;
        // A character of the DER's first bytes changed: still base64, no longer a reference.
        let mut flipped = pem.clone().into_bytes();
        flipped[body_start] = if flipped[body_start] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let flipped = String::from_utf8(flipped).unwrap();
        for (text, reason) in [
            (truncated.as_str(), "truncated"),
            (not_base64.as_str(), "not valid base64"),
            (flipped.as_str(), "does not hold an IoT SAFE key reference"),
        ] {
            let block = block_of(text).unwrap();
            assert_eq!(block.label, PEM_LABEL);
            let e = uri_of_keyref_pem(&block).unwrap_err();
            assert!(e.contains(reason), "{text}: {e}");
        }
    }
}
