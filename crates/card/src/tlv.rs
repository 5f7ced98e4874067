//! BER-TLV as the IoT SAFE applet uses it: one- or two-byte tags, short and long lengths.
//!
//! Values are borrowed from the input; nothing is nested automatically, because the applet's
//! "constructed" tags (e.g. 33, the raw signature) do not always hold TLVs.

use super::error::{Error, Result};

/// One TLV element, borrowing its value from the parsed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub tag: u16,
    pub value: &'a [u8],
}

/// Parses a buffer that holds a sequence of TLVs, and nothing else.
/// `what` names the answer being parsed, for the error message.
pub fn parse_all<'a>(what: &str, mut data: &'a [u8]) -> Result<Vec<Tlv<'a>>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let (tlv, rest) = parse_one(what, data)?;
        out.push(tlv);
        data = rest;
    }
    Ok(out)
}

/// Parses the first TLV of `data`; returns it and the rest.
pub fn parse_one<'a>(what: &str, data: &'a [u8]) -> Result<(Tlv<'a>, &'a [u8])> {
    let (tag, after_tag) = parse_tag(what, data)?;
    let (len, after_len) = parse_length(what, after_tag)?;
    if after_len.len() < len {
        return Err(Error::malformed(
            what,
            format!(
                "TLV tag {tag:02X} announces {len} bytes but only {} follow",
                after_len.len()
            ),
        ));
    }
    let (value, rest) = after_len.split_at(len);
    Ok((Tlv { tag, value }, rest))
}

/// Finds the value of the first element with `tag` among the TLVs of `data`.
pub fn find<'a>(what: &str, data: &'a [u8], tag: u16) -> Result<Option<&'a [u8]>> {
    Ok(parse_all(what, data)?
        .into_iter()
        .find(|t| t.tag == tag)
        .map(|t| t.value))
}

/// Like [`find`], but the element is required.
pub fn require<'a>(what: &str, data: &'a [u8], tag: u16) -> Result<&'a [u8]> {
    find(what, data, tag)?.ok_or_else(|| Error::malformed(what, format!("tag {tag:02X} missing")))
}

fn parse_tag<'a>(what: &str, data: &'a [u8]) -> Result<(u16, &'a [u8])> {
    match data {
        [] => Err(Error::malformed(what, "empty TLV")),
        [first, rest @ ..] if first & 0x1F != 0x1F => Ok((u16::from(*first), rest)),
        [first, second, rest @ ..] if second & 0x80 == 0 => {
            Ok((u16::from_be_bytes([*first, *second]), rest))
        }
        [_, _, ..] => Err(Error::malformed(
            what,
            "tags longer than two bytes are not used by the applet",
        )),
        [_] => Err(Error::malformed(what, "truncated two-byte tag")),
    }
}

fn parse_length<'a>(what: &str, data: &'a [u8]) -> Result<(usize, &'a [u8])> {
    let Some((&first, rest)) = data.split_first() else {
        return Err(Error::malformed(what, "TLV without a length"));
    };
    if first < 0x80 {
        return Ok((usize::from(first), rest));
    }
    let count = usize::from(first & 0x7F);
    if count == 0 || count > 3 {
        return Err(Error::malformed(
            what,
            format!("unsupported TLV length byte {first:02X}"),
        ));
    }
    if rest.len() < count {
        return Err(Error::malformed(what, "truncated TLV length"));
    }
    let len = rest[..count]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Ok((len, &rest[count..]))
}

/// Appends one TLV (minimal length encoding) to `out`.
pub fn push(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
    if tag > 0xFF {
        out.extend_from_slice(&tag.to_be_bytes());
    } else {
        out.push(tag as u8);
    }
    push_length(out, value.len());
    out.extend_from_slice(value);
}

/// One TLV as a fresh buffer.
pub fn encode(tag: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    push(&mut out, tag, value);
    out
}

/// Appends a BER/DER definite length.
pub fn push_length(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, len as u8]),
        0x100..=0xFFFF => {
            out.push(0x82);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x83);
            out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_short_and_long_lengths() {
        let mut data = vec![0x84, 0x01, 0x01, 0x34, 0x81, 0x80];
        data.extend(std::iter::repeat_n(0xAA, 0x80));
        let tlvs = parse_all("test", &data).unwrap();
        assert_eq!(tlvs.len(), 2);
        assert_eq!(
            tlvs[0],
            Tlv {
                tag: 0x84,
                value: &[0x01]
            }
        );
        assert_eq!(tlvs[1].tag, 0x34);
        assert_eq!(tlvs[1].value.len(), 0x80);
    }

    #[test]
    fn parses_two_byte_tags() {
        let tlvs = parse_all("test", &[0x7F, 0x21, 0x01, 0x05]).unwrap();
        assert_eq!(
            tlvs,
            vec![Tlv {
                tag: 0x7F21,
                value: &[0x05]
            }]
        );
    }

    #[test]
    fn truncated_value_is_a_clear_error() {
        let err = parse_all("READ PUBLIC KEY", &[0x34, 0x45, 0x49]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed answer to READ PUBLIC KEY: TLV tag 34 announces 69 bytes but only 1 follow"
        );
    }

    #[test]
    fn truncated_length_and_tag_are_errors() {
        assert!(parse_all("x", &[0x34, 0x82, 0x01]).is_err());
        assert!(parse_all("x", &[0x5F]).is_err());
        assert!(parse_all("x", &[0x34]).is_err());
        assert!(parse_all("x", &[0x34, 0x80]).is_err());
    }

    #[test]
    fn encoding_round_trips() {
        for len in [0usize, 1, 0x7F, 0x80, 0xFF, 0x100, 0x1234] {
            let value = vec![0x5A; len];
            let encoded = encode(0x9E, &value);
            let tlvs = parse_all("x", &encoded).unwrap();
            assert_eq!(
                tlvs,
                vec![Tlv {
                    tag: 0x9E,
                    value: &value
                }]
            );
        }
    }

    #[test]
    fn require_reports_the_missing_tag() {
        let err = require("GET DATA", &[0x84, 0x01, 0x01], 0x20).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed answer to GET DATA: tag 20 missing"
        );
    }
}
