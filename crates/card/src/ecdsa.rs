//! ECDSA as the applet speaks it: algorithm ids, the raw `r‖s` signature it returns, and the
//! DER `ECDSA-Sig-Value` that TLS and X.509 need. This is encoding only; the arithmetic stays
//! on the card (signing) and in OpenSSL (verifying).

use super::error::{Error, Result};
use super::tlv;

/// Hash algorithms the applet knows (tag 91).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// The two-byte id of tag 91.
    pub fn id(self) -> [u8; 2] {
        match self {
            HashAlg::Sha256 => [0x00, 0x01],
            HashAlg::Sha384 => [0x00, 0x02],
            HashAlg::Sha512 => [0x00, 0x04],
        }
    }

    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// Accepts "sha256", "SHA2-256", "SHA-256" and the like.
    pub fn from_name(name: &str) -> Option<Self> {
        let normal: String = name.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        match normal.to_ascii_lowercase().as_str() {
            "sha256" | "sha2256" => Some(HashAlg::Sha256),
            "sha384" | "sha2384" => Some(HashAlg::Sha384),
            "sha512" | "sha2512" => Some(HashAlg::Sha512),
            _ => None,
        }
    }
}

/// Signature algorithm id of ECDSA (tag 92).
pub const SIGALG_ECDSA: u8 = 0x04;
/// Mode "full text" (tag A1): the applet hashes the message itself.
pub const MODE_FULL_TEXT: u8 = 0x01;
/// Mode "pad and sign" (tag A1): the host sends the finished digest.
pub const MODE_PAD_AND_SIGN: u8 = 0x03;
/// Tag of the raw signature in COMPUTE SIGNATURE / VERIFY SIGNATURE.
pub const TAG_SIGNATURE: u8 = 0x33;

/// Largest raw `r‖s` accepted from the card: two scalars of a 521-bit curve.
pub const MAX_RAW_SIGNATURE: usize = 2 * 66;

/// Extracts `r‖s` from the last COMPUTE SIGNATURE UPDATE answer. Applets answer either
/// `33 40 r‖s` (BER) or `33 00 40 r‖s` (a two-byte length); both are accepted.
pub fn raw_from_response(what: &str, data: &[u8]) -> Result<Vec<u8>> {
    let raw = match data {
        [TAG_SIGNATURE, 0x00, len, rest @ ..] if rest.len() == usize::from(*len) => rest,
        [TAG_SIGNATURE, ..] => tlv::require(what, data, u16::from(TAG_SIGNATURE))?,
        [] => return Err(Error::malformed(what, "no signature in the answer")),
        [tag, ..] => {
            return Err(Error::malformed(
                what,
                format!("expected signature tag 33, found {tag:02X}"),
            ))
        }
    };
    if raw.is_empty() || raw.len() % 2 != 0 || raw.len() > MAX_RAW_SIGNATURE {
        return Err(Error::malformed(
            what,
            format!("a raw ECDSA signature of {} bytes", raw.len()),
        ));
    }
    Ok(raw.to_vec())
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from the fixed-width `r‖s`.
pub fn der_from_raw(raw: &[u8]) -> Vec<u8> {
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = der_integer(r);
    body.extend(der_integer(s));
    let mut out = vec![0x30];
    tlv::push_length(&mut out, body.len());
    out.extend(body);
    out
}

fn der_integer(magnitude: &[u8]) -> Vec<u8> {
    let first_nonzero = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len());
    let trimmed = &magnitude[first_nonzero..];
    let mut value = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        value.push(0);
    }
    value.extend_from_slice(trimmed);
    tlv::encode(0x02, &value)
}

/// Fixed-width `r‖s` (each `width` bytes) from a DER signature.
pub fn raw_from_der(der: &[u8], width: usize) -> Result<Vec<u8>> {
    let what = "the DER ECDSA signature";
    let (sequence, rest) = tlv::parse_one(what, der)?;
    if sequence.tag != 0x30 || !rest.is_empty() {
        return Err(Error::Invalid("not a DER ECDSA signature".into()));
    }
    let parts = tlv::parse_all(what, sequence.value)?;
    let [r, s] = parts.as_slice() else {
        return Err(Error::Invalid(
            "a DER ECDSA signature holds exactly two integers".into(),
        ));
    };
    let mut raw = Vec::with_capacity(2 * width);
    for part in [r, s] {
        let magnitude = strip_leading_zeros(part.value);
        if part.tag != 0x02 || magnitude.len() > width {
            return Err(Error::Invalid(
                "ECDSA signature integer out of range".into(),
            ));
        }
        raw.extend(std::iter::repeat_n(0, width - magnitude.len()));
        raw.extend_from_slice(magnitude);
    }
    Ok(raw)
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_signature_length_styles_are_accepted() {
        let rs: Vec<u8> = (1..=64).collect();
        let short = [&[0x33, 0x40][..], &rs].concat();
        let long = [&[0x33, 0x00, 0x40][..], &rs].concat();
        assert_eq!(raw_from_response("x", &short).unwrap(), rs);
        assert_eq!(raw_from_response("x", &long).unwrap(), rs);
    }

    #[test]
    fn truncated_signature_is_malformed() {
        let err =
            raw_from_response("COMPUTE SIGNATURE UPDATE", &[0x33, 0x40, 1, 2, 3]).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
        assert!(raw_from_response("x", &[0x9E, 0x01, 0x00]).is_err());
        assert!(raw_from_response("x", &[]).is_err());
    }

    #[test]
    fn der_pads_high_bits_and_strips_leading_zeros() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a 00 pad
        raw[63] = 0x05; // s is small: 31 leading zero bytes
        let der = der_from_raw(&raw);
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x21, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x05]);
        assert_eq!(raw_from_der(&der, 32).unwrap(), raw);
    }

    #[test]
    fn hash_names() {
        assert_eq!(HashAlg::from_name("SHA2-384"), Some(HashAlg::Sha384));
        assert_eq!(HashAlg::from_name("sha-512"), Some(HashAlg::Sha512));
        assert_eq!(HashAlg::from_name("md5"), None);
    }
}
